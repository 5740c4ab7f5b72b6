"""inline.py: one test per way premailer's defaults damage MJML output, on real MJML output."""

from __future__ import annotations

import logging
import re
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from lxml import html as lxml_html
from premailer import Premailer

from newsletter.config import Workspace
from newsletter.inline import inline_css
from newsletter.issue import read_issue
from newsletter.render import Renderer, compile_mjml

MEDIA = re.compile(r"@media[^{]*\{(?:[^{}]*\{[^{}]*\})*[^{}]*\}")
COMMENTS = re.compile(r"<!--.*?-->", re.S)


@pytest.fixture(scope="module")
def mjml_html(sample_workspace: Path) -> str:
    ws = Workspace(sample_workspace)
    located = read_issue(sample_workspace / "issues" / "2019-09.yaml")
    return compile_mjml(Renderer(ws).mjml(located))


def test_1_lowercase_doctype_is_kept(mjml_html: str) -> None:
    assert mjml_html.startswith("<!doctype html>")
    assert not Premailer(mjml_html).transform().lower().startswith("<!doctype")  # the defect
    assert inline_css(mjml_html).startswith("<!doctype html>")


def test_2_important_inside_media_rules_survives_byte_identical(mjml_html: str) -> None:
    before = MEDIA.findall(mjml_html)
    assert len(before) >= 3 and all("!important" in m for m in before)
    damaged = MEDIA.findall(Premailer(mjml_html, keep_style_tags=True).transform())
    assert damaged != before  # the defect: !important stripped
    assert MEDIA.findall(inline_css(mjml_html)) == before


def test_mso_conditional_comments_survive_byte_identical(mjml_html: str) -> None:
    before = COMMENTS.findall(mjml_html)
    assert sum("[if mso" in c for c in before) > 10
    assert COMMENTS.findall(inline_css(mjml_html)) == before


class _Counter(BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_GET(self) -> None:  # noqa: N802
        _Counter.hits.append(self.path)
        body = b"a { color: red; }"
        self.send_response(200)
        self.send_header("Content-Type", "text/css")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def css_server() -> Iterator[str]:
    _Counter.hits = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Counter)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_3_never_fetches_stylesheets(css_server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    page = (
        f'<!doctype html><html><head><link rel="stylesheet" href="{css_server}/link.css">'
        f"<style>@import url({css_server}/import.css); p {{ color: blue; }}</style></head>"
        "<body><p>x</p></body></html>"
    )
    Premailer(page).transform()
    assert "/link.css" in _Counter.hits  # the defect: premailer fetches by default
    _Counter.hits = []
    connects: list[object] = []
    real_connect = socket.socket.connect

    def spy(self: socket.socket, address: object) -> None:
        connects.append(address)
        real_connect(self, address)  # type: ignore[arg-type]

    monkeypatch.setattr(socket.socket, "connect", spy)
    out = inline_css(page)
    assert _Counter.hits == [] and connects == []
    assert 'style="color:blue"' in out


def _attributes(doc: str) -> list[tuple[str, dict[str, str]]]:
    tree = lxml_html.fromstring(doc)
    keep = ("width", "height", "align", "valign", "bgcolor", "background")
    return [
        (el.tag, {k: v for k, v in el.attrib.items() if k in keep})
        for el in tree.iter()
        if isinstance(el.tag, str)
    ]


def test_4_outlook_attributes_are_not_rewritten(mjml_html: str) -> None:
    page = (
        "<!doctype html><html><head><style>.w { width: 300px; text-align: right; "
        "background-color: #abc; }</style></head><body>"
        '<table><tr><td class="w">x</td></tr></table>'
        '<img class="w" src="https://e.org/a.png" width="100" alt="a"></body></html>'
    )
    default = Premailer(page).transform()
    assert 'bgcolor="#aabbcc"' in default and 'width="300"' in default  # the defect
    ours = inline_css(page)
    assert "bgcolor=" not in ours and 'align="right"' not in ours
    assert 'width="100"' in ours and 'width="300"' not in ours
    assert _attributes(inline_css(mjml_html)) == _attributes(mjml_html)


def test_5_no_warning_per_mso_property(caplog: pytest.LogCaptureFixture, mjml_html: str) -> None:
    assert "mso-" in mjml_html
    caplog.set_level(logging.DEBUG)
    inline_css(mjml_html)
    noisy = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert noisy == []


def test_rules_are_inlined(mjml_html: str) -> None:
    out = inline_css(mjml_html)
    # .nl-text h2 a { text-decoration: none } from the theme's mj-style lands on the element
    titles = re.findall(r'<h2[^>]*><a href="[^"]+" style="([^"]+)"', out)
    assert len(titles) == 8 and all("text-decoration:none" in t for t in titles)


def test_placeholders_survive_inlining(tmp_path: Path) -> None:
    page = (
        '<!doctype html><html><head></head><body><a href="%%unsubscribe_url%%">u</a>'
        "<p>Hello %%first_name_html%%,</p></body></html>"
    )
    out = inline_css(page)
    assert 'href="%%unsubscribe_url%%"' in out and "Hello %%first_name_html%%," in out
