"""The web archive of a translated issue (issue 12), as readers and search engines see it:
opened in Chromium (tests/browser.py) from a local static server, as a host would serve it."""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from xml.etree import ElementTree as ET

from browser import browser, offline_page
from conftest import Cli
from languages_fixture import EN_SUBJECT, ES_SUBJECT, translate_sample

BASE = "https://news.example.org/archive/"


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def serve(folder: Path) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def test_archive_pages_link_their_languages(workspace: Path, cli: Cli) -> None:
    translate_sample(workspace)
    r = cli("archive")
    assert r.code == 0, r.err
    site = workspace / "archive-site"
    assert (site / "2019-09" / "index.html").is_file()
    assert (site / "2019-09" / "es" / "index.html").is_file()
    assert not (site / "2019-09.es").exists()  # the translation is no issue of its own
    with serve(site) as root, browser() as b:
        page = offline_page(b)
        page.goto(root + "2019-09/")
        assert page.evaluate("document.documentElement.lang") == "en"
        alternates = page.evaluate(
            "[...document.querySelectorAll('link[rel=alternate][hreflang]')]"
            ".map(l => [l.hreflang, l.href])"
        )
        assert alternates == [
            ["en", f"{BASE}2019-09/"],
            ["es", f"{BASE}2019-09/es/"],
            ["x-default", f"{BASE}2019-09/"],
        ]
        # The visible link, named in its own language, opens the Spanish page.
        page.get_by_role("link", name="Español").click()
        page.wait_for_url(root + "2019-09/es/")
        assert page.evaluate("document.documentElement.lang") == "es"
        assert ES_SUBJECT in page.title() or ES_SUBJECT in page.content()
        assert (
            page.evaluate("document.querySelector('link[rel=alternate][hreflang=en]').href")
            == f"{BASE}2019-09/"
        )
        page.get_by_role("link", name="English").click()
        page.wait_for_url(root + "2019-09/")
        # The index lists the issue once, with its languages.
        page.goto(root)
        assert page.locator("#issues > li").count() == 1
        page.locator("#issue-2019-09").get_by_role("link", name="Español").click()
        page.wait_for_url(root + "2019-09/es/")
        page.goto(root)
        feeds = page.evaluate(
            "[...document.querySelectorAll('link[type=\"application/atom+xml\"][hreflang]')]"
            ".map(l => [l.hreflang, l.getAttribute('href')])"
        )
        assert feeds == [["en", "feed.en.xml"], ["es", "feed.es.xml"]]
    # One Atom feed per language, each entry in that language.
    ns = {"a": "http://www.w3.org/2005/Atom"}
    es = ET.parse(site / "feed.es.xml").getroot()
    assert es.get("{http://www.w3.org/XML/1998/namespace}lang") == "es"
    [entry] = es.findall("a:entry", ns)
    assert entry.findtext("a:title", namespaces=ns) == ES_SUBJECT
    assert entry.find("a:link", ns).get("href") == f"{BASE}2019-09/es/"  # type: ignore[union-attr]
    en = ET.parse(site / "feed.en.xml").getroot()
    assert [e.findtext("a:title", namespaces=ns) for e in en.findall("a:entry", ns)] == [EN_SUBJECT]


def test_single_language_archive_is_unchanged(workspace: Path, cli: Cli) -> None:
    assert cli("archive").code == 0
    site = workspace / "archive-site"
    page = (site / "2019-09" / "index.html").read_text("utf-8")
    assert "hreflang" not in page and "nl-languages" not in page
    assert sorted(p.name for p in site.glob("feed*.xml")) == ["feed.xml"]
