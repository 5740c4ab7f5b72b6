"""Replacing a file all at once (atomic.py): the old bytes or the new, never half, no litter."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

from newsletter.atomic import DEFAULT_MODE, AtomicFile, write_atomic


def test_write_atomic_replaces_the_file_with_shared_permissions(tmp_path: Path) -> None:
    target = tmp_path / "out" / "email.html"
    write_atomic(target, b"first")
    write_atomic(target, b"second")
    assert target.read_bytes() == b"second"
    assert stat.S_IMODE(target.stat().st_mode) == DEFAULT_MODE
    assert sorted(p.name for p in target.parent.iterdir()) == ["email.html"]


def test_a_write_that_fails_leaves_the_old_bytes_and_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "list.csv"
    target.write_bytes(b"email\nana@example.org\n")
    with pytest.raises(RuntimeError), AtomicFile(target) as out:
        out.handle.write(b"email\n")
        raise RuntimeError("killed half-way")
    assert target.read_bytes() == b"email\nana@example.org\n"
    assert [p.name for p in tmp_path.iterdir()] == ["list.csv"]


def test_without_commit_nothing_changes(tmp_path: Path) -> None:
    target = tmp_path / "list.csv"
    target.write_bytes(b"old")
    with AtomicFile(target) as out:
        out.text().write("new")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["list.csv"]


def test_text_follows_bytes_and_the_given_mode_is_kept(tmp_path: Path) -> None:
    target = tmp_path / "subscribers" / "members.csv"
    tmp_dir = tmp_path / "tmp"
    with AtomicFile(target, mode=0o640, tmp_dir=tmp_dir, prefix="import-members.") as out:
        assert out.tmp is not None and out.tmp.parent == tmp_dir
        assert out.tmp.name.startswith("import-members.") and out.tmp.name.endswith(".tmp")
        out.handle.write(b"email\r\n")
        out.text().write("zoë@example.org\r\n")
        out.commit()
    assert target.read_bytes() == "email\r\nzoë@example.org\r\n".encode()
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert list(tmp_dir.iterdir()) == []


def test_a_temporary_folder_on_another_file_system_still_replaces_atomically(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """os.rename cannot cross file systems (EXDEV): the copy is copied beside the target."""
    target = tmp_path / "subscribers" / "members.csv"
    target.parent.mkdir()
    target.write_bytes(b"old")
    tmp_dir = tmp_path / "tmp"
    real_replace = os.replace

    def replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        if Path(src).parent == tmp_dir:
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with AtomicFile(target, mode=0o600, tmp_dir=tmp_dir) as out:
        out.handle.write(b"new")
        out.commit()
    assert target.read_bytes() == b"new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert list(tmp_dir.iterdir()) == []
    assert [p.name for p in target.parent.iterdir()] == ["members.csv"]
