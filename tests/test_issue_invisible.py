"""issue.py: invisible characters (U+2028, Word's U+000B, …) are located in their field.

They are hidden in an editor, break the Subject header at send time, and YAML reads some of
them as line breaks; so each is reported at its own line and column whether it is typed into
the file or written as a double-quoted escape such as "\\u2028".
"""

from __future__ import annotations

from pathlib import Path

import pytest

from newsletter.errors import IssueError, Problem
from newsletter.issue import read_issue

GOOD = """\
subject: "Digest — September 2019"
preheader: "Labour migration, cross-border networks, e-learning and more"
date: 2019-09-30
articles:
  - title: "First"
    summary: |
      Some *text*.

      More text.
    url: https://www.example.org/a
    image: {src: https://www.example.org/a.png, alt: "A picture"}
"""

# character, its name in the message, a double-quoted escape that YAML turns into it
CHARACTERS = [
    ("\u2028", "line-separator character (U+2028)", "\\u2028"),
    ("\u2028", "line-separator character (U+2028)", "\\L"),
    ("\u2029", "paragraph-separator character (U+2029)", "\\P"),
    ("\x85", "next-line character (U+0085)", "\\N"),
    ("\x0b", "line break from Word's Shift+Enter (U+000B)", "\\v"),
    ("\x0c", "page-break character (U+000C)", "\\f"),
    ("\x1c", "separator character (U+001C)", "\\x1c"),
    ("\x1d", "separator character (U+001D)", "\\u001D"),
    ("\x1e", "separator character (U+001E)", "\\U0000001e"),
]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "2019-09.yaml"
    path.write_text(text, "utf-8")
    return path


def found(path: Path) -> list[Problem]:
    with pytest.raises(IssueError) as info:
        read_issue(path)
    return info.value.problems


def located(problems: list[Problem]) -> list[tuple[int | None, int | None, str | None]]:
    return [(p.line, p.column, p.field) for p in problems]


@pytest.mark.parametrize(("char", "name", "escape"), CHARACTERS)
def test_escaped_character_in_the_subject_is_an_error_at_the_escape(
    tmp_path: Path, char: str, name: str, escape: str
) -> None:
    path = write(tmp_path, GOOD.replace("Digest — September", f"Digest{escape}— September"))
    [problem] = found(path)
    assert (problem.line, problem.column, problem.field) == (1, 17, "subject")
    assert problem.severity == "error" and problem.code == "control_character"
    assert problem.render() == (
        f"{path}:1:17: subject: contains an invisible {name} "
        f"(delete `{escape}` at column 17: it stands for that character)"
    )


@pytest.mark.parametrize(("char", "name", "escape"), CHARACTERS)
@pytest.mark.parametrize("quoted", [True, False])
def test_typed_character_in_the_preheader_is_an_error_at_its_column(
    tmp_path: Path, char: str, name: str, escape: str, quoted: bool
) -> None:
    text = GOOD.replace("Labour migration", f"Labour{char}migration")
    if not quoted:  # a plain scalar, where YAML would read U+2028, U+2029, U+0085 as a break
        text = text.replace('preheader: "Labour', "preheader: Labour").replace('more"', "more")
    path = write(tmp_path, text)
    [problem] = found(path)
    column = 19 if quoted else 18
    assert (problem.line, problem.column, problem.field) == (2, column, "preheader")
    assert problem.render() == (
        f"{path}:2:{column}: preheader: contains an invisible {name} (retype the text or "
        f"delete the character at column {column}; it often comes from text pasted from Word "
        "or a web page)"
    )


def test_every_single_line_field_is_covered_and_reported_at_once(tmp_path: Path) -> None:
    text = (
        GOOD.replace('"First"', '"Fi\\u2028rst"')
        .replace('alt: "A picture"', 'alt: "A\u2029picture", width: 300')
        .replace("    url: https://", "    category: Labour\x0bmobility\n    url: https://")
        + '    button: "Read\\Nmore"\n    location: "Puerto\\vCortés"\n'
    )
    problems = found(write(tmp_path, text))
    assert located(problems) == [
        (5, 15, "articles[1].title"),
        (10, 21, "articles[1].category"),
        (12, 56, "articles[1].image.alt"),
        (13, 18, "articles[1].button"),
        (14, 22, "articles[1].location"),
    ]


def test_raw_line_separators_do_not_shift_later_line_numbers(tmp_path: Path) -> None:
    """ruamel counts U+2028/U+2029/U+0085 as line breaks; an editor does not."""
    text = GOOD.replace("Some *text*.", "Some\u2028*text*.\u2029\x85").replace(
        "    url: https://www.example.org/a", "    ulr: https://www.example.org/a"
    )
    problems = found(write(tmp_path, text))
    assert [(p.line, p.column, p.field, p.code) for p in problems] == [
        (7, 11, "articles[1].summary", "control_character"),
        (7, 19, "articles[1].summary", "control_character"),
        (7, 20, "articles[1].summary", "control_character"),
        (5, 5, "articles[1].url", "missing"),
        (10, 5, "articles[1].ulr", "extra_forbidden"),  # line 10 in the editor, too
    ]


def test_character_in_a_url_is_caught_before_it_is_percent_encoded(tmp_path: Path) -> None:
    url = '    url: "https://www.example.org/a\\u2028b"\n'
    path = write(tmp_path, GOOD.replace("    url: https://www.example.org/a\n", url))
    assert located(found(path)) == [(10, 36, "articles[1].url")]


def test_character_in_a_comment_is_located_without_a_field(tmp_path: Path) -> None:
    path = write(tmp_path, "# notes\u2028 for the editor\n" + GOOD)
    [problem] = found(path)
    assert (problem.line, problem.column, problem.field) == (1, 8, None)


def test_character_next_to_a_yaml_error_is_reported_with_it(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace('"First"', '"Fi\x0brst"') + "subject: again\n")
    problems = found(path)
    assert [(p.line, p.field, p.code) for p in problems] == [
        (5, "articles[1].title", "control_character"),
        (12, None, "duplicate_key"),
    ]


def test_escaped_backslash_before_a_letter_is_not_a_character(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("Digest — September", "Digest \\\\v \\\\L September"))
    assert read_issue(path).issue.subject == "Digest \\v \\L September 2019"


def test_ordinary_text_with_tabs_and_line_breaks_still_reads(tmp_path: Path) -> None:
    text = GOOD.replace("More text.", "More\ttext, über € and emoji 😀.\r\n")
    assert "über" in read_issue(write(tmp_path, text)).issue.articles[0].summary


def test_a_pasted_document_full_of_them_lists_twenty_and_counts_the_rest(tmp_path: Path) -> None:
    summary = "      " + "word\x0b" * 1500 + "\n"
    problems = found(write(tmp_path, GOOD.replace("      Some *text*.\n", summary)))
    assert len(problems) == 21 and problems[0].field == "articles[1].summary"
    assert problems[-1].render() == (
        f"{tmp_path / '2019-09.yaml'}: and 1,480 more invisible characters "
        "(paste the text again as plain text with Ctrl+Shift+V, then check again)"
    )
