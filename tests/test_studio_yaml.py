"""The studio's form and the YAML file: a save changes only what the form changed."""

from __future__ import annotations

import datetime as dt
import difflib
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from newsletter.issue import load_issue
from newsletter.studio_yaml import NotAForm, apply_form, form_of, skeleton

REPO = Path(__file__).resolve().parents[1]
SAMPLE = (REPO / "tests/fixtures/workspace/issues/2019-09.yaml").read_text("utf-8")

COMMENTED = """\
# October issue. Reviewed by Ana.
subject: "Our news — October"   # keep it short
date: 2019-10-28

intro: |
  Welcome to **October**.

articles:
  - title: First story
    summary: |
      One.
    url: https://example.org/1
    # the photographer asked to be credited
    image:
      src: https://example.org/1.jpg
      alt: "A market"
      width: 300
  - title: Second story   # from the Lima office
    summary: Two.
    url: https://example.org/2
    id: second
  - title: 'Third story'
    summary: Three.
    url: https://example.org/3
closing: Bye.
"""


def changed_lines(before: str, after: str) -> list[str]:
    """The lines a diff shows (a comment after a value keeps its column: spaces are folded)."""
    return [
        " ".join(line.split()) if "#" in line else line
        for line in difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="")
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    ]


def reread(text: str, tmp_path: Path) -> dict[str, Any]:
    """The values `check` reads from the text (through the real issue reader)."""
    path = tmp_path / "2019-10.yaml"
    parsed, _ = load_issue(path, text.encode("utf-8"))
    assert parsed is not None
    return parsed.values


@pytest.mark.parametrize("text", [SAMPLE, COMMENTED, skeleton(dt.date(2027, 1, 1))])
def test_an_untouched_form_writes_the_file_back_byte_for_byte(text: str) -> None:
    assert apply_form(text, form_of(text)) == text


def test_one_word_changed_is_a_one_line_diff() -> None:
    form = form_of(SAMPLE)
    summary = form["articles"][2]["summary"]
    assert "Within the framework" in summary
    form["articles"][2]["summary"] = summary.replace("Within", "Inside")
    after = apply_form(SAMPLE, form)
    assert changed_lines(SAMPLE, after) == [
        "-      Within the framework of the Regional Conference on Migration (RCM) and the Central",
        "+      Inside the framework of the Regional Conference on Migration (RCM) and the Central",
    ]


def test_comments_quoting_and_keys_the_form_lacks_are_kept() -> None:
    form = form_of(COMMENTED)
    form["subject"] = "Our news — November"
    form["articles"][1]["title"] = "Second story, updated"
    after = apply_form(COMMENTED, form)
    assert changed_lines(COMMENTED, after) == [
        '-subject: "Our news — October" # keep it short',
        '+subject: "Our news — November" # keep it short',
        "- - title: Second story # from the Lima office",
        "+ - title: Second story, updated # from the Lima office",
    ]


@pytest.mark.parametrize(
    "typed",
    [
        "Meet #data4all: the *new* hub",
        "*Stars first",
        "- not a list",
        "yes",
        "2019",
        "@handle & friends",
        "'quoted' and \"double\"",
        "ends with a colon:",
        "% percent",
        "{braces} [brackets]",
        "  spaced  ",
    ],
)
def test_what_is_typed_reads_back_as_typed(typed: str, tmp_path: Path) -> None:
    form = form_of(COMMENTED)
    form["articles"][0]["title"] = typed
    form["articles"][2]["title"] = typed  # was single-quoted
    form["preheader"] = typed  # a new key
    values = reread(apply_form(COMMENTED, form), tmp_path)
    assert values["articles"][0]["title"] == typed
    assert values["articles"][2]["title"] == typed
    assert values["preheader"] == typed


def test_moving_an_article_moves_its_comments_and_hidden_keys(tmp_path: Path) -> None:
    form = form_of(COMMENTED)
    form["articles"].reverse()
    after = apply_form(COMMENTED, form)
    values = reread(after, tmp_path)
    assert [a["title"] for a in values["articles"]] == [
        "Third story",
        "Second story",
        "First story",
    ]
    raw = YAML(typ="safe").load(after)  # the reader leaves out keys the format lacks (id)
    assert raw["articles"][1]["id"] == "second"
    assert raw["articles"][2]["image"]["width"] == 300
    assert "  - title: Second story   # from the Lima office" in after
    # the comment inside the first article travels with it, to the end
    assert after.index("# the photographer") > after.index("title: First story")
    assert after.index("# the photographer") < after.index("closing:")


def test_adding_and_removing_articles(tmp_path: Path) -> None:
    form = form_of(COMMENTED)
    del form["articles"][0]
    form["articles"].append(
        {
            "key": "new-1",
            "title": "A new story",
            "summary": "First line.\n\n- a list item",
            "url": "https://example.org/new",
            "image": {"src": "https://example.org/new.jpg", "alt": "People at a desk"},
            "category": "",
            "location": "Lima",
            "date": "2019-10-02",
            "button": "",
        }
    )
    after = apply_form(COMMENTED, form)
    assert "First story" not in after and "photographer" not in after
    values = reread(after, tmp_path)
    new = values["articles"][-1]
    assert new == {
        "title": "A new story",
        "summary": "First line.\n\n- a list item\n",
        "url": "https://example.org/new",
        "image": {"src": "https://example.org/new.jpg", "alt": "People at a desk"},
        "location": "Lima",
        "date": "2019-10-02",
    }
    assert "    summary: |\n      First line.\n\n      - a list item\n" in after
    assert "date: 2019-10-02\n" in after  # a date, as YAML writes it: not quoted


def test_a_new_field_goes_where_a_person_would_put_it() -> None:
    form = form_of(COMMENTED)
    form["preheader"] = "Inside: our October news"
    form["number"] = "43"
    form["draft"] = True
    after = apply_form(COMMENTED, form)
    lines = after.splitlines()
    at = {line.split(":")[0]: i for i, line in enumerate(lines) if not line.startswith(" ")}
    assert at["subject"] < at["preheader"] < at["date"]
    assert YAML(typ="safe").load(after)["preheader"] == "Inside: our October news"
    assert "number: 43" in lines and "draft: true" in lines
    assert lines.index("number: 43") < lines.index("intro: |")


def test_emptying_a_field_removes_it_and_a_default_flag_is_not_written() -> None:
    form = form_of(COMMENTED)
    form["closing"] = ""
    form["greeting"] = True  # the default: nothing to write
    after = apply_form(COMMENTED, form)
    assert "closing" not in after and "greeting" not in after


def test_a_file_the_form_cannot_show_is_refused() -> None:
    with pytest.raises(NotAForm):
        form_of("subject: [a, list]\narticles: []\n")
    with pytest.raises(NotAForm):
        form_of("subject: x\n  bad: indentation\n")
    with pytest.raises(NotAForm):
        form_of("- just\n- a list\n")


def test_a_text_changed_in_the_form_loses_its_translation_mark(tmp_path: Path) -> None:
    """A translator cannot delete a comment in the form: changing the text is translating it."""
    text = (
        "language: es\n"
        'subject: "Our news"   # todo: translate\n'
        'preheader: "Inside"   # todo: translate\n'
        "\n"
        "intro: |   # todo: translate\n"
        "  Welcome.\n"
        "articles:\n"
        '  - title: "First"   # todo: translate\n'
        "    summary: |   # todo: translate\n"
        "      One.\n"
    )
    form = form_of(text)
    form["subject"] = "Nuestras noticias"
    form["intro"] = "Bienvenidos.\n"
    form["articles"][0]["summary"] = "Uno.\n"
    after = apply_form(text, form)
    assert after == (
        "language: es\n"
        'subject: "Nuestras noticias"\n'
        'preheader: "Inside"   # todo: translate\n'  # not changed: still to translate
        "\n"
        "intro: |\n"
        "  Bienvenidos.\n"
        "articles:\n"
        '  - title: "First"   # todo: translate\n'
        "    summary: |\n"
        "      Uno.\n"
    )


def test_dropping_a_mark_keeps_the_blank_line_after_it() -> None:
    text = 'subject: "A"   # todo: translate\n\n# Articles below\narticles: []\n'
    form = form_of(text)
    form["subject"] = "B"
    assert apply_form(text, form) == 'subject: "B"\n\n# Articles below\narticles: []\n'
