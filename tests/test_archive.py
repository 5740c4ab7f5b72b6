"""`newsletter archive`: the static web archive and its Atom feed, through the real CLI."""

from __future__ import annotations

import re
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest

from conftest import TEST_ENV, Cli

ATOM = "{http://www.w3.org/2005/Atom}"
BASE = "https://news.example.org/archive/"


def _tree(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def _add_issue(
    ws: Path,
    stem: str,
    *,
    subject: str,
    date: str,
    preheader: str | None = "A second issue with a preheader long enough to pass",
) -> Path:
    text = (ws / "issues/2019-09.yaml").read_text("utf-8")
    text = re.sub(r"(?m)^subject: .*$", f'subject: "{subject}"', text)
    text = re.sub(r"(?m)^date: .*$", f"date: {date}", text)
    if preheader is None:
        text = re.sub(r"(?m)^preheader: .*\n", "", text)
    else:
        text = re.sub(r"(?m)^preheader: .*$", f'preheader: "{preheader}"', text)
    path = ws / "issues" / f"{stem}.yaml"
    path.write_text(text, "utf-8")
    return path


def test_archive_writes_index_issue_pages_and_feed(cli: Cli, workspace: Path) -> None:
    r = cli("archive")
    assert r.code == 0, r.err
    site = workspace / "archive-site"
    assert sorted(_tree(site)) == [
        ".newsletter-archive",
        "2019-09/index.html",
        "feed.xml",
        "index.html",
    ]

    # The issue page is exactly what `build` writes as web.html.
    b = cli("build", "issues/2019-09.yaml")
    assert b.code == 0, b.err
    assert (site / "2019-09/index.html").read_bytes() == (
        workspace / "build/2019-09/web.html"
    ).read_bytes()

    index = (site / "index.html").read_text("utf-8")
    assert "Mesoamerica &amp; Caribbean Digest — September 2019" in index
    assert 'href="2019-09/"' in index
    assert '<time datetime="2019-09-30">30 September 2019</time>' in index
    assert "Labour migration, cross-border networks, e-learning and information hubs" in index
    assert 'type="application/atom+xml"' in index and 'href="feed.xml"' in index


def test_feed_is_valid_atom(cli: Cli, workspace: Path) -> None:
    _add_issue(workspace, "2019-10", subject="October digest", date="2019-10-31")
    assert cli("archive").code == 0
    raw = (workspace / "archive-site/feed.xml").read_bytes()
    assert raw.startswith(b'<?xml version="1.0" encoding="utf-8"?>')
    feed = ET.fromstring(raw)
    assert feed.tag == f"{ATOM}feed"
    # RFC 4287 4.1.1: exactly one id, title, updated; an author (here on the feed).
    for tag in ("id", "title", "updated", "author"):
        assert len(feed.findall(f"{ATOM}{tag}")) == 1, tag
    assert feed.findtext(f"{ATOM}id") == BASE
    assert feed.findtext(f"{ATOM}updated") == "2019-10-31T00:00:00Z"  # newest issue, not now
    assert feed.find(f"{ATOM}author/{ATOM}name").text  # type: ignore[union-attr]
    self_links = [el for el in feed.findall(f"{ATOM}link") if el.get("rel") == "self"]
    assert [el.get("href") for el in self_links] == [f"{BASE}feed.xml"]

    entries = feed.findall(f"{ATOM}entry")
    assert [e.findtext(f"{ATOM}title") for e in entries] == [
        "October digest",
        "Mesoamerica & Caribbean Digest — September 2019",
    ]
    first = entries[0]
    assert first.findtext(f"{ATOM}id") == f"{BASE}2019-10/"
    assert first.findtext(f"{ATOM}updated") == "2019-10-31T00:00:00Z"
    alt = [el for el in first.findall(f"{ATOM}link") if el.get("rel") == "alternate"]
    assert [el.get("href") for el in alt] == [f"{BASE}2019-10/"]
    assert first.findtext(f"{ATOM}summary") == "A second issue with a preheader long enough to pass"
    ids = [e.findtext(f"{ATOM}id") for e in entries]
    assert len(set(ids)) == len(ids)


def test_newest_first_and_reproducible(cli: Cli, workspace: Path, tmp_path: Path) -> None:
    _add_issue(workspace, "2019-10", subject="October digest", date="2019-10-31")
    _add_issue(workspace, "2019-08", subject="August digest", date="2019-08-30")
    assert cli("archive").code == 0
    index = (workspace / "archive-site/index.html").read_text("utf-8")
    order = re.findall(r'<li id="issue-([0-9-]+)"', index)
    assert order == ["2019-10", "2019-09", "2019-08"]
    assert (workspace / "archive-site/2019-08/index.html").is_file()

    first = _tree(workspace / "archive-site")
    assert cli("archive").code == 0
    assert _tree(workspace / "archive-site") == first
    other = tmp_path / "elsewhere"
    assert cli("archive", "-o", str(other)).code == 0
    assert _tree(other) == first


def test_an_issue_with_errors_refuses_the_whole_archive(cli: Cli, workspace: Path) -> None:
    assert cli("archive").code == 0
    before = _tree(workspace / "archive-site")
    bad = _add_issue(workspace, "2019-10", subject="October digest", date="2019-10-31")
    bad.write_text(bad.read_text("utf-8").replace("date: 2019-10-31", "date: 31/10/2019"), "utf-8")
    r = cli("archive")
    assert r.code == 1
    assert "2019-10.yaml" in r.err and "date" in r.err and "YYYY-MM-DD" in r.err
    assert "nothing was written" in r.err
    assert "Traceback" not in r.err
    assert _tree(workspace / "archive-site") == before  # the old archive is left as it was

    fresh = workspace / "fresh"
    r = cli("archive", "-o", str(fresh))
    assert r.code == 1
    assert not fresh.exists()


def test_a_removed_issue_leaves_the_archive(cli: Cli, workspace: Path) -> None:
    extra = _add_issue(workspace, "2019-10", subject="October digest", date="2019-10-31")
    assert cli("archive").code == 0
    assert (workspace / "archive-site/2019-10/index.html").is_file()
    extra.unlink()
    assert cli("archive").code == 0
    assert not (workspace / "archive-site/2019-10").exists()
    assert "October digest" not in (workspace / "archive-site/feed.xml").read_text("utf-8")


def test_refuses_to_replace_a_folder_it_did_not_write(cli: Cli, workspace: Path) -> None:
    own = workspace / "mine"
    own.mkdir()
    (own / "notes.txt").write_text("keep me", "utf-8")
    r = cli("archive", "-o", "mine")
    assert r.code == 1
    assert "did not write" in r.err
    assert (own / "notes.txt").read_text("utf-8") == "keep me"
    assert not (own / "index.html").exists()


def test_warnings_are_printed_and_strict_refuses(cli: Cli, workspace: Path) -> None:
    _add_issue(workspace, "2019-10", subject="October digest", date="2019-10-31", preheader=None)
    r = cli("archive")
    assert r.code == 0, r.err
    assert "2019-10.yaml" in r.err and "preheader" in r.err
    feed = ET.fromstring((workspace / "archive-site/feed.xml").read_bytes())
    october = feed.findall(f"{ATOM}entry")[0]
    assert october.findtext(f"{ATOM}title") == "October digest"
    assert october.find(f"{ATOM}summary") is None  # no preheader: no empty summary

    r = cli("archive", "--strict", "-o", "strict-site")
    assert r.code == 1
    assert "preheader" in r.err
    assert not (workspace / "strict-site").exists()


def test_no_issues_is_a_clear_error(cli: Cli, workspace: Path) -> None:
    (workspace / "issues/2019-09.yaml").unlink()
    r = cli("archive")
    assert r.code == 1
    assert "no issues" in r.err and "newsletter new" in r.err
    assert not (workspace / "archive-site").exists()


@pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")
def test_archive_is_served_under_archive(
    cli: Cli, workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`newsletter serve` mounts the default folder at /archive/ (helper C's server)."""
    from starlette.testclient import TestClient

    from newsletter.config import Workspace
    from newsletter.server import create_app

    monkeypatch.setenv("NEWSLETTER_SECRET", TEST_ENV["NEWSLETTER_SECRET"])
    stem = "2019-09"
    assert cli("archive").code == 0
    with TestClient(create_app(Workspace(workspace))) as client:
        index = client.get("/archive/")
        assert index.status_code == 200
        assert f'href="{stem}/"' in index.text
        page = client.get(f"/archive/{stem}/")
        assert page.status_code == 200
        assert page.content == (workspace / f"archive-site/{stem}/index.html").read_bytes()
        assert client.get("/archive/feed.xml").status_code == 200
