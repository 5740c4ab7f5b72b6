"""build.py: files written only after every check passed; reproducible; preview.eml complete."""

from __future__ import annotations

import email
import email.policy
from pathlib import Path

import pytest

from newsletter.build import build_issue, write_build
from newsletter.config import Workspace
from newsletter.errors import CheckFailed


def test_build_writes_four_files_and_preview_eml_is_complete(workspace: Path) -> None:
    ws = Workspace(workspace)
    built = build_issue(ws, workspace / "issues" / "2019-09.yaml")
    out = write_build(ws, built, workspace / "build")
    assert sorted(p.name for p in out.folder.iterdir()) == [
        "email.html",
        "email.txt",
        "preview.eml",
        "web.html",
    ]
    msg = email.message_from_bytes(
        (out.folder / "preview.eml").read_bytes(), policy=email.policy.default
    )
    assert msg.get_content_type() == "multipart/alternative"
    assert msg["Subject"] == "Mesoamerica & Caribbean Digest — September 2019"
    assert msg["From"].addresses[0].addr_spec == "digest@news.example.org"
    text = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    html = msg.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert "Hello Ana," in text and "Hello Ana," in html
    assert "%%" not in text and "%%" not in html
    assert "https://news.example.org/u/preview" in text


def test_builds_are_byte_identical(workspace: Path, tmp_path: Path) -> None:
    ws = Workspace(workspace)
    path = workspace / "issues" / "2019-09.yaml"
    a = write_build(ws, build_issue(ws, path), tmp_path / "a")
    b = write_build(Workspace(workspace), build_issue(Workspace(workspace), path), tmp_path / "b")
    for name, file in a.files.items():
        assert file.read_bytes() == b.files[name].read_bytes(), name


def test_build_refuses_and_writes_nothing_when_check_finds_errors(workspace: Path) -> None:
    ws = Workspace(workspace)
    footer = workspace / "templates" / "default" / "_footer.mjml.j2"
    footer.write_text(
        footer.read_text("utf-8").replace("<br>{{ org.postal_address }}", ""), "utf-8"
    )
    with pytest.raises(CheckFailed) as info:
        build_issue(ws, workspace / "issues" / "2019-09.yaml")
    assert "postal address is missing" in str(info.value)
    assert not (workspace / "build").exists()


def test_strict_refuses_on_warnings(workspace: Path) -> None:
    path = workspace / "issues" / "2019-09.yaml"
    path.write_text(
        path.read_text("utf-8").replace(
            "url: https://www.example.org/news/2019-09/why-e-learning",
            "url: http://www.example.org/news/2019-09/why-e-learning",
        ),
        "utf-8",
    )
    ws = Workspace(workspace)
    assert build_issue(ws, path).warnings
    with pytest.raises(CheckFailed):
        build_issue(ws, path, strict=True)
