"""`subscribers import` under real-world accidents: two imports at once, a killed import,
and an export that repeats one address a million times (issue 7).

Every test runs the real CLI in separate processes, as two colleagues or a crash would.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from conftest import Result
from newsletter.config import Workspace
from newsletter.list_locks import list_lock

Cli = Callable[..., Result]


def spawn(*args: str, cwd: Path) -> subprocess.Popen[str]:
    """`python -m newsletter ARGS` started in the background (run_cli's environment)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SENDGRID_", "NEWSLETTER_"))}
    env.setdefault("COLUMNS", "200")
    return subprocess.Popen(
        [sys.executable, "-m", "newsletter", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def people(path: Path, prefix: str, count: int, start: int = 0) -> list[str]:
    emails = [f"{prefix}{i}@example.org" for i in range(start, start + count)]
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write("email,name\n")
        out.writelines(f"{e},Person {i}\n" for i, e in enumerate(emails))
    return emails


def emails_in(path: Path) -> list[str]:
    with path.open(encoding="utf-8", newline="") as handle:
        return [row["email"] for row in csv.DictReader(handle)]


def wait_for(condition: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.005)


# --------------------------------------------------------------------------- two imports


def test_two_imports_into_one_list_at_once_keep_every_row(workspace: Path) -> None:
    target = workspace / "subscribers" / "members.csv"
    existing = people(target, "member", 30_000)
    a = people(workspace / "a.csv", "a", 20_000)
    b = people(workspace / "b.csv", "b", 20_000)
    procs = [
        spawn("subscribers", "import", name, "--list", "members", cwd=workspace)
        for name in ("a.csv", "b.csv")
    ]
    outputs = [p.communicate(timeout=300) for p in procs]
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
        assert "now has 20,000 more subscribers" in out
        assert "Traceback" not in err
    final = emails_in(target)
    assert len(final) == 70_000
    assert set(final) == set(existing) | set(a) | set(b)
    assert final[:30_000] == existing  # the list's own rows stay first, untouched


def test_an_import_waits_for_the_lock_then_merges_on_top(workspace: Path) -> None:
    target = workspace / "subscribers" / "sample.csv"
    before = target.read_bytes()
    added = people(workspace / "crm.csv", "new", 3)
    with list_lock(Workspace(workspace), "sample"):  # as another import (or a send) would
        proc = spawn("subscribers", "import", "crm.csv", "--list", "sample", cwd=workspace)
        assert proc.stderr is not None
        line = proc.stderr.readline()  # blocks until the import says it is waiting
        assert line == "waiting for another import of list 'sample' to finish…\n"
        time.sleep(0.3)
        assert proc.poll() is None and target.read_bytes() == before
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert emails_in(target)[-3:] == added
    assert target.read_bytes().startswith(before)


def test_a_quick_import_says_nothing_about_waiting(cli: Cli, workspace: Path) -> None:
    people(workspace / "crm.csv", "new", 3)
    r = cli("subscribers", "import", "crm.csv", "--list", "sample")
    assert r.code == 0, r.err
    assert r.err == ""
    assert (workspace / ".newsletter" / "list-sample.lock").is_file()


# --------------------------------------------------------------------------- killed import


def stray_temp_files(workspace: Path) -> list[Path]:
    hidden = [p for p in (workspace / "subscribers").iterdir() if p.name.endswith(".tmp")]
    tmp = workspace / ".newsletter" / "tmp"
    return hidden + (list(tmp.iterdir()) if tmp.is_dir() else [])


def test_killed_import_leaves_subscribers_clean_and_next_import_cleans_up(
    cli: Cli, workspace: Path
) -> None:
    folder = workspace / "subscribers"
    list_before = {p.name: p.read_bytes() for p in folder.iterdir()}
    people(workspace / "big.csv", "big", 400_000)
    proc = spawn("subscribers", "import", "big.csv", "--list", "sample", cwd=workspace)
    try:
        wait_for(lambda: bool(stray_temp_files(workspace)) or proc.poll() is not None)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "the import finished before it could be killed"
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == list_before
    tmp = workspace / ".newsletter" / "tmp"
    [left] = list(tmp.iterdir())  # what the killed import was writing: nobody could remove it
    assert left.name.startswith("import-sample.") and left.name.endswith(".tmp")

    added = people(workspace / "crm.csv", "new", 2)
    r = cli("subscribers", "import", "crm.csv", "--list", "sample")
    assert r.code == 0, r.err
    assert "removed 1 temporary file left by an interrupted import" in r.out
    assert list(tmp.iterdir()) == []
    assert emails_in(folder / "sample.csv")[-2:] == added


def test_stale_files_of_a_list_in_use_and_foreign_files_are_left_alone(
    cli: Cli, workspace: Path
) -> None:
    tmp = workspace / ".newsletter" / "tmp"
    tmp.mkdir(parents=True)
    busy = tmp / "import-members.abcd1234.tmp"
    idle = tmp / "import-press.efgh5678.tmp"
    foreign = tmp / "notes.txt"
    for path in (busy, idle, foreign):
        path.write_text("x", encoding="utf-8")
    people(workspace / "crm.csv", "new", 1)
    with list_lock(Workspace(workspace), "members", shared=True):  # e.g. a send reading it
        r = cli("subscribers", "import", "crm.csv", "--list", "sample")
    assert r.code == 0, r.err
    assert busy.exists() and foreign.exists() and not idle.exists()
    r = cli("subscribers", "import", "crm.csv", "--list", "sample")
    assert not busy.exists() and foreign.exists()


@pytest.fixture
def other_filesystem() -> Iterator[Path]:
    """A folder on another file system than the test's workspace (tmpfs /dev/shm)."""
    shm = Path("/dev/shm")
    if not shm.is_dir() or shm.stat().st_dev == Path(__file__).stat().st_dev:
        pytest.skip("no second file system to test a cross-device rename")
    folder = shm / f"newsletter-test-{uuid.uuid4().hex}"
    folder.mkdir()
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_tmp_folder_on_another_file_system_still_replaces_atomically(
    cli: Cli, workspace: Path, other_filesystem: Path
) -> None:
    (workspace / ".newsletter").mkdir()
    (workspace / ".newsletter" / "tmp").symlink_to(other_filesystem)
    if other_filesystem.stat().st_dev == (workspace / "subscribers").stat().st_dev:
        pytest.skip("/dev/shm is on the workspace's file system here")
    before = (workspace / "subscribers" / "sample.csv").read_text(encoding="utf-8")
    added = people(workspace / "crm.csv", "new", 50)
    r = cli("subscribers", "import", "crm.csv", "--list", "sample")
    assert r.code == 0, r.err
    after = (workspace / "subscribers" / "sample.csv").read_text(encoding="utf-8")
    assert after.startswith(before) and emails_in(workspace / "subscribers" / "sample.csv")[5:] == (
        added
    )
    assert stray_temp_files(workspace) == [] and list(other_filesystem.iterdir()) == []


# --------------------------------------------------------------------------- long reports


def test_million_duplicate_rows_print_a_summary_not_a_million_lines(
    cli: Cli, workspace: Path
) -> None:
    with (workspace / "dups.csv").open("w", encoding="utf-8") as out:
        out.write("email,name\nsame@example.org,Same\n")
        out.write("same@example.org,Same\n" * 1_000_000)
    r = cli("subscribers", "import", "dups.csv", "--list", "sample", timeout=300)
    assert r.code == 0, r.err
    lines = r.out.splitlines()
    assert len(lines) < 40, lines[:5]
    shown = [ln for ln in lines if ln.startswith("skipped dups.csv:")]
    assert shown == [
        f"skipped dups.csv:{n}: duplicate: same@example.org: same address as line 2"
        for n in range(3, 23)
    ]
    assert (
        "skipped ... and 999,980 more duplicate rows in dups.csv (lines 23 to 1,000,002); "
        "`--format json` lists them all"
    ) in lines
    rows = {" ".join(ln.split()[:-1]): ln.split()[-1] for ln in lines[1:8]}
    assert rows["skipped: repeated in the file"] == "1000000" and rows["added"] == "1"


def write_messy_list(path: Path, invalid: int, duplicates: int) -> None:
    with path.open("w", encoding="utf-8") as out:
        out.write("email,name\nkeep@example.org,Keep\n")
        out.writelines(f"broken{i}@,X\n" for i in range(invalid))  # lines 3 .. 2 + invalid
        out.write("KEEP@example.org,Again\n" * duplicates)


def test_check_caps_each_kind_and_json_keeps_every_row(cli: Cli, workspace: Path) -> None:
    write_messy_list(workspace / "subscribers" / "messy.csv", invalid=25, duplicates=23)
    r = cli("subscribers", "check", "messy")
    assert r.code == 1
    lines = r.out.splitlines()
    assert [ln.split() for ln in lines if ln.startswith("messy ")] == [
        ["messy", "49", "1", "25", "23", "0"]
    ]
    invalid = [ln for ln in lines if ": invalid: " in ln]
    duplicate = [ln for ln in lines if ": duplicate: " in ln]
    assert len(invalid) == 20 and invalid[0].startswith(
        "subscribers/messy.csv:3: invalid: broken0@"
    )
    assert len(duplicate) == 20 and duplicate[-1].startswith("subscribers/messy.csv:47: duplicate")
    assert (
        "... and 5 more invalid rows in subscribers/messy.csv (lines 23 to 27); "
        "`--format json` lists them all"
    ) in lines
    assert (
        "... and 3 more duplicate rows in subscribers/messy.csv (lines 48 to 50); "
        "`--format json` lists them all"
    ) in lines
    assert lines[-1] == "problems: 48 rows to fix (rows listed above are not sent to)"
    data = json.loads(cli("subscribers", "check", "messy", "--format", "json").out)
    assert [p["line"] for p in data["problems"]] == list(range(3, 51))
    assert data["ok"] is False and data["warnings"] == []


def test_import_json_lists_every_skipped_row(cli: Cli, workspace: Path) -> None:
    write_messy_list(workspace / "crm.csv", invalid=30, duplicates=30)
    r = cli("subscribers", "import", "crm.csv", "--list", "sample", "--format", "json")
    assert r.code == 0, r.err
    data = json.loads(r.out)
    assert data["added"] == 1 and data["written"] is True
    assert [(p["line"], p["kind"]) for p in data["skipped"]] == [
        (n, "invalid" if n < 33 else "duplicate") for n in range(3, 63)
    ]
    text = cli("subscribers", "import", "crm.csv", "--list", "sample", "--dry-run").out
    assert "skipped ... and 10 more invalid rows in crm.csv (lines 23 to 32)" in text


def test_a_dry_run_import_waits_for_a_running_import_too(workspace: Path) -> None:
    people(workspace / "crm.csv", "new", 2)
    with list_lock(Workspace(workspace), "sample"):
        proc = spawn(
            "subscribers", "import", "crm.csv", "--list", "sample", "--dry-run", cwd=workspace
        )
        assert proc.stderr is not None
        assert proc.stderr.readline().startswith("waiting for another import of list 'sample'")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "dry run: nothing written (would add 2" in out
