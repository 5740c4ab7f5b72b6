"""newsletter.mjml_fixes: what it changes in the MJML and in mjml-python's HTML, and what not.

The theme as a whole is compared with the official MJML compiler in
tests/test_mjml_reference.py; these tests pin down each correction on small MJML,
compiled for real by mjml-python (through render.compile_mjml, as the build does).
"""

from __future__ import annotations

import re

import lxml.html
import pytest

from newsletter.mjml_fixes import MARKER, prepare
from newsletter.render import compile_mjml


def body(inner: str, head: str = "") -> str:
    return (
        f'<mjml><mj-head>{head}</mj-head><mj-body width="600px"><mj-section><mj-column>'
        f"{inner}</mj-column></mj-section></mj-body></mjml>"
    )


def outlook_widths(html: str) -> list[str]:
    """The width attribute of every Outlook-only divider table."""
    mso = "".join(re.findall(r"<!--\[if mso \| IE\]>(.*?)<!\[endif\]-->", html, re.S))
    return re.findall(r'<table[^>]*width="([^"]*)"[^>]*border-top', mso)


def anchors(html: str) -> list[lxml.html.HtmlElement]:
    return list(lxml.html.document_fromstring(html).iter("a", "p"))


# ----------------------------------------------------------------- 1. unitless zeros
@pytest.mark.parametrize(
    ("padding", "width"),
    [("0 24px 20px", "552px"), ("0 24px", "552px"), ("0px 24px", "552px"), ("4px 10px 0", "580px")],
)
def test_divider_outlook_width_is_the_column_minus_its_padding(padding: str, width: str) -> None:
    html = compile_mjml(body(f'<mj-divider padding="{padding}" />'))
    assert outlook_widths(html) == [width]


def test_unitless_zeros_in_paddings_become_px_and_nothing_else_changes() -> None:
    source = (
        '<mjml><mj-head><mj-attributes><mj-text padding="0 24px" /></mj-attributes></mj-head>'
        "<mj-body><mj-section padding='0'><mj-column>"
        '<mj-button inner-padding="0 10px" padding-left="0" padding-top="0.0" href="x">'
        'padding="0 1px"</mj-button>'
        '<mj-image src="https://example.org/a.png" width="0" padding="10px 0% 20px 100" />'
        "</mj-column></mj-section></mj-body></mjml>"
    )
    out = prepare(source).source
    assert '<mj-text padding="0px 24px" />' in out
    assert "<mj-section padding='0px'>" in out
    assert 'inner-padding="0px 10px" padding-left="0px" padding-top="0px"' in out
    assert '>padding="0 1px"</mj-button>' in out  # text is text
    assert 'width="0" padding="10px 0% 20px 100"' in out  # not paddings / not zeros


# ----------------------------------------------------------------- 2. button titles
def test_button_title_lands_on_its_link_escaped() -> None:
    title = "Read more: \"Quotes\" & <angles> 'n' ünïcode"
    escaped = title.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;")
    html = compile_mjml(
        body(
            f'<mj-button href="https://example.org/a?x=1&amp;y=2" title="{escaped}">A</mj-button>'
            '<mj-button href="https://example.org/b">B</mj-button>'
            '<mj-button title="No link" css-class="nl-btn">C</mj-button>'
            f"<mj-text>Not a marker: {MARKER}0, {MARKER}1</mj-text>",
            head='<mj-attributes><mj-button title="not a button" /></mj-attributes>',
        )
    )
    a, b, c = anchors(html)
    assert (a.tag, a.get("href"), a.get("title")) == ("a", "https://example.org/a?x=1&y=2", title)
    assert (b.tag, b.get("title")) == ("a", None)
    assert (c.tag, c.get("title")) == ("p", "No link")
    assert html.count(MARKER) == 2  # only the two in the text
    assert f"Not a marker: {MARKER}0, {MARKER}1" in html
    # the theme's own class stays on the button's cell, and only the marker goes
    assert re.search(r'<td[^>]*class="nl-btn"', html)


def test_marking_leaves_the_head_and_untitled_buttons_alone() -> None:
    prepared = prepare(
        body(
            '<mj-button href="a">A</mj-button><mj-button href="b" title="B" />',
            head='<mj-attributes><mj-button title="default" /></mj-attributes>',
        )
    )
    assert prepared.titles == ["B"]
    assert prepared.source.count(MARKER) == 1
    assert '<mj-button title="default" />' in prepared.source
    assert f'<mj-button href="b" title="B" css-class="{MARKER}0" />' in prepared.source


# ----------------------------------------------------------------- 3. stray attribute
def test_button_cell_has_no_vertical_align_attribute() -> None:
    source = body('<mj-button href="x" vertical-align="top">A</mj-button>')
    html = compile_mjml(source)
    assert "vertical-align=" not in html
    assert 'valign="top"' in html  # what MJML uses the value for is kept
