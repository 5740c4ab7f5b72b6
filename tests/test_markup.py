"""markup.py: Markdown is never live HTML, and the text part keeps links whole on their own lines."""

from __future__ import annotations

import pytest

from newsletter.markup import refused_link, to_html, to_text, wrap

LONG_URL = "https://www.example.org/news/2019-09/" + "a-very-long-path-segment-" * 4 + "end.html"


def test_raw_html_is_escaped_never_live() -> None:
    out = to_html('<script>alert(1)</script> and <b onclick="x()">bold</b>')
    assert "<script>" not in out and "<b " not in out
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in out
    assert "&lt;b onclick=&quot;x()&quot;&gt;" in out


def test_javascript_links_are_dropped() -> None:
    out = to_html("[click](javascript:alert(1))")
    assert "href" not in out and "javascript:alert" in out  # shown as text, not a link


DISGUISED = [
    "[click](//evil.example/x)",
    "[click](<//evil.example/x>)",
    "[click](/\\evil.example/x)",
    "[click](jav%09ascript:alert(1))",
    "[click](java%2509script:alert(1))",
    "[click](<java\tscript:alert(1)>)",
    "[click](JaVaScRiPt:alert(1))",
    "[click](&#106;avascript:alert(1))",
    "[click](   javascript:alert(1))",
    "[click](<%20javascript:alert(1)>)",
    "[click](<\x01javascript:alert(1)>)",
    "[click](data:image/png;base64,iVBORw0KGgo=)",
    "[click](data:text/html;base64,PHNjcmlwdD4=)",
    "[click](VBScript:msgbox(1))",
    "[click](file:///etc/passwd)",
    "[click]\n\n[click]: jav%09ascript:alert(1)",
]


@pytest.mark.parametrize("source", DISGUISED)
def test_disguised_script_and_protocol_relative_links_are_dropped_like_javascript(
    source: str,
) -> None:
    html = to_html(source)
    assert "href" not in html and "[click]" in html  # shown as text, not a link
    assert "http" not in to_text(source) and "[1]" not in to_text(source)


@pytest.mark.parametrize(
    ("href", "why"),
    [
        ("//evil.example/x", "protocol-relative"),
        ("jav%09ascript:alert(1)", "javascript"),
        ("java%09script:alert(1)", "javascript"),
        ("&#106;avascript:alert(1)", "javascript"),
        ("%01javascript:alert(1)", "javascript"),
        ("data:image/png;base64,xx", "data"),
        ("https://www.example.org/a%2Fb?q=%25", None),
        ("http://www.example.org/", None),
        ("mailto:info@example.org", None),
        ("tel:+50412345678", None),
        ("#top", None),
    ],
)
def test_refused_link_names_why(href: str, why: str | None) -> None:
    assert refused_link(href) == why


def test_markdown_features() -> None:
    out = to_html("**bold** *it* [link](https://e.org)\n\n- a\n- b")
    assert "<strong>bold</strong>" in out and "<em>it</em>" in out
    assert '<a href="https://e.org">link</a>' in out and "<ul>" in out


def test_text_links_stand_on_their_own_lines_unbroken() -> None:
    text = to_text(f"Read [the report]({LONG_URL}) and write to [us](mailto:a@example.org).")
    lines = text.splitlines()
    assert lines[0].startswith("Read the report [1] and write to us [2].")
    assert f"[1] {LONG_URL}" in lines
    assert "[2] mailto:a@example.org" in lines
    assert all(len(line) <= 72 or LONG_URL in line for line in lines)


def test_text_wraps_without_breaking_words_or_urls() -> None:
    para = "word " * 40 + LONG_URL
    out = wrap(para)
    assert LONG_URL in out.splitlines()
    assert all(len(line) <= 72 for line in out.splitlines() if LONG_URL not in line)


def test_text_lists() -> None:
    assert to_text("- one\n- two\n\n1. first\n2. second") == "- one\n- two\n\n1. first\n2. second"


def test_text_has_no_markup_debris() -> None:
    out = to_text("**bold** and *italic* and `code`")
    assert out == "bold and italic and code"


def test_bare_urls_move_to_their_own_line_once() -> None:
    text = to_text("Details at <https://www.example.org/report> and <a@example.org>.")
    assert text.splitlines() == [
        "Details at [1] and a@example.org.",
        "",
        "[1] https://www.example.org/report",
    ]


def test_indented_lines_are_text_not_code_blocks() -> None:
    source = (
        "The agenda:\n\n    09:00  Opening session with the regional director and the ministers"
    )
    assert "<pre>" not in to_html(source) and "<code>" not in to_html(source)
    assert all(len(line) <= 72 for line in to_text(source).splitlines())
