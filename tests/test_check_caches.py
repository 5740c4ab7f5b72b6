"""The shortcuts a warm build takes must give exactly what the long way gives.

A long-lived process (the preview server, the studio) builds the same theme again and
again, so the inliner keeps the rules it read from each stylesheet, `check` keeps each
template's MJML problems and each labels.toml by their text, and the output check skips
the attributes of tags it does not read.  Each is compared here with the long way, and an
edited theme must be seen at once.
"""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

import pytest

from newsletter import inline
from newsletter.build import build_issue
from newsletter.checks import _Tags, lint_language, lint_theme
from newsletter.compat import import_premailer
from newsletter.config import Workspace
from newsletter.render import EMAIL_TEMPLATE, compile_mjml

ISSUE = "issues/2019-09.yaml"


class _AllTags(HTMLParser):
    """The output check's reading of the HTML, the long way: every tag parsed in full."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found = _Tags()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.handle_starttag(tag, attrs)


def _read(html: str) -> tuple[list[str], list[str], set[str]]:
    tags = _Tags()
    tags.feed(html)
    tags.close()
    return tags.imgs_without_alt, tags.hrefs, tags.mj_tags


def _read_long(html: str) -> tuple[list[str], list[str], set[str]]:
    parser = _AllTags()
    parser.feed(html)
    parser.close()
    return parser.found.imgs_without_alt, parser.found.hrefs, parser.found.mj_tags


TRICKY = [
    '<table><tr><td style="a:b" class="x"><img src="a.png"></td></tr></table>',
    '<div title="<a href=x>">y</div><a href="">empty</a>',
    "<!--[if mso]><img src=x><a href=y><![endif]--><p>x</p><![endif]--><img src=q alt=' '>",
    '<script>var s="<img src=z>"</script><style>a{}</style><a href="&#x41;&amp;b">',
    "<TD><A HREF='#'>x</A><mj-txt>hi</mj-txt><mj-column/>",
    '<td <img src=1><a href>no value</a><img alt="x" src=2><div\nclass="a"\n>',
    '<title><a href="t"></title><textarea><img src=t></textarea><img src="after">',
    '<p/><br/><img src="self" /><a href="h" /><div class=unterminated',
]


@pytest.mark.parametrize("html", TRICKY)
def test_output_tags_as_html_parser_reads_them(html: str) -> None:
    assert _read(html) == _read_long(html)


def test_output_tags_of_the_sample_email(sample_workspace: Path) -> None:
    built = build_issue(Workspace(sample_workspace), sample_workspace / ISSUE)
    for html in (built.html, built.web_html):
        assert _read(html) == _read_long(html)
        assert len(_read(html)[1]) > 10  # the sample's links were found


def test_inlining_from_kept_rules_is_premailers_own(sample_workspace: Path) -> None:
    ws = Workspace(sample_workspace)
    built = build_issue(ws, sample_workspace / ISSUE)
    compiled = compile_mjml(built.mjml, template=ws.theme_dir / EMAIL_TEMPLATE)
    plain = import_premailer()(compiled, session=inline._NoNetwork(), **inline.OPTIONS)
    expected = str(plain.transform())
    first, again = inline.inline_css(compiled), inline.inline_css(compiled)
    assert first == again
    assert first.endswith(expected) and first.count("<html") == 1
    assert 'style="' in first  # rules were applied from the kept ones


def test_an_edited_template_is_checked_again(workspace: Path) -> None:
    theme = Workspace(workspace).theme_dir
    assert lint_theme(theme) == []
    footer = theme / "_footer.mjml.j2"
    footer.write_text(footer.read_text("utf-8") + "\n<mj-txt>typo</mj-txt>\n", "utf-8")
    problems = lint_theme(theme)
    assert [p.message for p in problems] == [
        "<mj-txt> is not an MJML component; mjml-python drops it silently"
    ]
    assert problems[0].path == footer
    footer.write_text(footer.read_text("utf-8").replace("<mj-txt>typo</mj-txt>", ""), "utf-8")
    assert lint_theme(theme) == []


def test_edited_labels_are_read_again(workspace: Path) -> None:
    ws = Workspace(workspace)
    issue = workspace / ISSUE
    issue.write_text(
        issue.read_text("utf-8").replace("\nlanguage: en\n", "\nlanguage: xx\n", 1), "utf-8"
    )
    from newsletter.issue import read_issue

    located = read_issue(issue)
    problems = lint_language(located, ws.config, ws.theme_dir)
    assert [p.code for p in problems] == ["language_labels"]
    labels = ws.theme_dir / "labels.toml"
    text = labels.read_text("utf-8")
    labels.write_text(text + '\n[xx]\ngreeting = "Hi"\n', "utf-8")
    assert lint_language(located, ws.config, ws.theme_dir) == []
    labels.write_text(text, "utf-8")
    assert [p.code for p in lint_language(located, ws.config, ws.theme_dir)] == ["language_labels"]
