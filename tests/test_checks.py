"""checks.py: each lint on a real build of the sample, changed in one place."""

from __future__ import annotations

import fnmatch
import tomllib
from pathlib import Path

from newsletter.build import compose
from newsletter.checks import contrast
from newsletter.config import Workspace
from newsletter.errors import Problem

REPO = Path(__file__).resolve().parents[1]


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text("utf-8")
    assert old in text, old
    path.write_text(text.replace(old, new, 1), "utf-8")


def problems(workspace: Path) -> list[Problem]:
    return compose(Workspace(workspace), workspace / "issues" / "2019-09.yaml").problems


def codes(found: list[Problem], severity: str | None = None) -> list[str]:
    return [p.code for p in found if severity is None or p.severity == severity]


def issue(workspace: Path) -> Path:
    return workspace / "issues" / "2019-09.yaml"


def test_sample_is_clean(workspace: Path) -> None:
    assert problems(workspace) == []


def article_block(i: int, words: int) -> str:
    return (
        f'  - title: "Story {i}"\n    summary: |\n      ' + "lorem ipsum " * words + "\n"
        f"    url: https://www.example.org/{i}\n"
    )


def with_articles(workspace: Path, n: int, words: int) -> None:
    text = issue(workspace).read_text("utf-8")
    head, _, rest = text.partition("articles:\n")
    _, _, closing = rest.partition("closing:")
    body = "".join(article_block(i, words) for i in range(n))
    issue(workspace).write_text(f"{head}articles:\n{body}closing:{closing}", "utf-8")


def test_over_102000_bytes_is_an_error(workspace: Path) -> None:
    with_articles(workspace, 30, 300)
    found = problems(workspace)
    size = [p for p in found if p.code == "size"]
    assert size and size[0].severity == "error" and "Gmail clips" in size[0].message


def test_over_90000_bytes_is_a_warning(workspace: Path) -> None:
    with_articles(workspace, 18, 40)
    size = [p for p in problems(workspace) if p.code == "size"]
    assert size and size[0].severity == "warning", size


def test_size_counts_click_tracking_links(workspace: Path) -> None:
    with_articles(workspace, 20, 30)
    assert [p.severity for p in problems(workspace) if p.code == "size"] == ["error"]
    cfg = workspace / "newsletter.toml"
    cfg.write_text(
        cfg.read_text("utf-8").replace("click_tracking = true", "click_tracking = false")
    )
    assert [p.severity for p in problems(workspace) if p.code == "size"] == ["warning"]


def test_picture_in_markdown_is_an_error_and_one_without_alt_is_caught(workspace: Path) -> None:
    edit(
        issue(workspace),
        "    summary: |\n      Technological advances",
        "    summary: |\n      ![](https://www.example.org/x.png) Technological advances",
    )
    found = problems(workspace)
    markdown = [p for p in found if p.code == "markdown_image"]
    assert markdown[0].severity == "error" and markdown[0].field == "articles[5].summary"
    assert markdown[0].line == 60  # the summary key of the fifth article
    # and the built HTML really has an image without alt: the output check sees it too
    assert any(p.code == "img_alt" and "in the output" in p.message for p in found)


def test_non_https_links_are_warnings_with_their_line(workspace: Path) -> None:
    edit(
        issue(workspace),
        "url: https://www.example.org/news/2019-09/why-e-learning",
        "url: http://www.example.org/news/2019-09/why-e-learning",
    )
    found = [p for p in problems(workspace) if p.code == "not_https"]
    assert [(p.severity, p.field, p.line) for p in found] == [("warning", "articles[5].url", 64)]


def test_subject_and_preheader_lengths(workspace: Path) -> None:
    edit(
        issue(workspace),
        'subject: "Mesoamerica & Caribbean Digest — September 2019"',
        'subject: "' + "Long subject " * 7 + '"',
    )
    edit(
        issue(workspace),
        'preheader: "Labour migration, cross-border networks, e-learning and information hubs"',
        'preheader: "Too short"',
    )
    found = problems(workspace)
    assert set(codes(found, "warning")) == {"subject_long", "preheader_length"}
    assert [p.line for p in found] == [4, 5]


def test_missing_preheader_is_a_warning(workspace: Path) -> None:
    text = issue(workspace).read_text("utf-8").splitlines()
    issue(workspace).write_text(
        "\n".join(ln for ln in text if not ln.startswith("preheader:")), "utf-8"
    )
    assert codes(problems(workspace)) == ["preheader_missing"]


def test_no_postal_address_or_unsubscribe_link_is_an_error(workspace: Path) -> None:
    footer = workspace / "templates" / "default" / "_footer.mjml.j2"
    edit(footer, "<br>{{ org.postal_address }}", "")
    edit(footer, '<a href="{{ placeholders.unsubscribe_url }}">{{ labels.unsubscribe }}</a> · ', "")
    found = problems(workspace)
    assert {"postal_address", "unsubscribe"} <= set(codes(found, "error"))


def test_mjml_typo_that_mrml_drops_silently_is_caught_with_its_line(workspace: Path) -> None:
    article = workspace / "templates" / "default" / "_article.mjml.j2"
    edit(article, '<mj-text css-class="nl-meta">', '<mj-txt css-class="nl-meta">')
    edit(article, "{{ article.meta }}</p></mj-text>", "{{ article.meta }}</p></mj-txt>")
    edit(article, 'padding="0 24px 20px" />', 'paddng="0 24px 20px" />')
    found = [p for p in problems(workspace) if p.code == "mjml"]
    messages = [(p.path.name if p.path else "", p.line, p.message) for p in found]
    assert (
        "_article.mjml.j2",
        3,
        '<mj-divider> has no attribute "paddng"; mjml-python ignores it silently',
    ) in messages
    assert any(m[1] == 8 and "<mj-txt> is not an MJML component" in m[2] for m in messages)


def test_mjml_wrong_nesting(workspace: Path) -> None:
    article = workspace / "templates" / "default" / "_article.mjml.j2"
    edit(article, "      <mj-column>\n", "      <mj-column>\n        <mj-section></mj-section>\n")
    found = [p for p in problems(workspace) if p.code == "mjml"]
    assert found and "<mj-section> cannot be inside <mj-column>" in found[0].message


def test_low_contrast_brand_colour_is_an_error(workspace: Path) -> None:
    edit(workspace / "newsletter.toml", 'text = "#1f2933"', 'text = "#aaaaaa"')
    found = [p for p in problems(workspace) if p.code == "contrast"]
    assert found[0].severity == "error" and found[0].field == "brand.text"


def test_contrast_formula() -> None:
    assert round(contrast("#000000", "#ffffff"), 1) == 21.0
    assert round(contrast("#777777", "#ffffff"), 2) == 4.48


def test_mrml_gaps_are_reported(workspace: Path) -> None:
    layout = workspace / "templates" / "default" / "email.mjml.j2"
    edit(layout, "<mj-style>", '<mj-style inline="inline">')
    edit(layout, "<mj-all ", '<mj-body background-color="#fff" />\n      <mj-all ')
    footer = workspace / "templates" / "default" / "_footer.mjml.j2"
    edit(
        footer,
        '        <mj-text css-class="nl-small"',
        '        <mj-social><mj-social-element name="facebook" href="https://f.com/x">F'
        '</mj-social-element></mj-social>\n        <mj-text css-class="nl-small"',
    )
    found = [p.message for p in problems(workspace) if p.code == "mjml"]
    assert 'mjml-python ignores <mj-style inline="inline">' in found
    assert "mjml-python ignores mj-attributes for <mj-body>" in found
    assert "<mj-social> renders its icons without alt text" in found


def test_disguised_script_links_in_markdown_are_errors_like_javascript(workspace: Path) -> None:
    edit(
        issue(workspace),
        "      benefit of all sectors.\n",
        "      benefit of all sectors. [a](javascript:alert(1)) [b](jav%09ascript:alert(1))\n"
        "      [c](<java\tscript:alert(1)>) [d](JaVaScRiPt:alert(1)) [e](&#106;avascript:x)\n"
        "      [f](data:image/png;base64,xx) [g](vbscript:msgbox(1)) [h](https://www.example.org)\n",
    )
    found = [p for p in problems(workspace) if p.code == "unsafe_link"]
    assert [(p.severity, p.field, p.line) for p in found] == [
        ("error", "articles[1].summary", 16)
    ] * 7
    assert found[0].message == (
        "the link `javascript:alert(1)` is not a web address (javascript: addresses are not "
        "allowed in email), so it is shown as plain text"
    )
    assert found[0].hint == "link to a web page: [text](https://www.example.org/page)"
    assert "the link `jav%09ascript:alert(1)` is not a web address" in found[1].message


def test_protocol_relative_link_is_an_error_with_the_full_address_as_hint(
    workspace: Path,
) -> None:
    edit(issue(workspace), "closing: |\n", "closing: |\n  See [our site](//www.example.org/x).\n\n")
    [found] = [p for p in problems(workspace) if p.severity == "error"]
    assert (found.code, found.field, found.line) == ("link_no_scheme", "closing", 97)
    assert found.render().endswith(
        "closing: the link `//www.example.org/x` starts with // and has no https: in front, "
        "so it is shown as plain text (write the full address: https://www.example.org/x)"
    )


def test_data_files_beside_the_code_ship_with_the_package() -> None:
    """theme_checks reads mjml_schema.toml when imported: a wheel without it cannot `check`."""
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text("utf-8"))
    declared = pyproject["tool"]["setuptools"]["package-data"]["newsletter"]
    package = REPO / "src" / "newsletter"
    data = sorted(
        p.name for p in package.iterdir() if p.is_file() and p.suffix not in (".py", ".pyc")
    )
    assert "mjml_schema.toml" in data
    assert [f for f in data if not any(fnmatch.fnmatch(f, pat) for pat in declared)] == []
