"""Issue 9, points 6, 15 and 16: messages about an issue file in plain words.

YAML syntax errors say what is wrong with the line in words staff act on, never ruamel's
("expected <block end>, but found '?'"); an empty subject says so; a date that no calendar
has says why; article positions count from 1 everywhere.
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
    summary: "Some *text*."
    url: https://www.example.org/a
  - title: "Second"
    summary: "More text."
    url: https://www.example.org/b
closing: "Thank you for reading."
"""

RUAMEL_WORDS = ("expected <block end>", "but found", "while parsing", "while scanning", "token")


def edit(tmp_path: Path, old: str, new: str, name: str = "2019-09.yaml") -> Path:
    assert old in GOOD, old
    path = tmp_path / name
    path.write_text(GOOD.replace(old, new, 1), "utf-8")
    return path


def only_problem(path: Path) -> Problem:
    with pytest.raises(IssueError) as info:
        read_issue(path)
    assert len(info.value.problems) == 1, info.value.problems
    problem = info.value.problems[0]
    assert not any(w in problem.render() for w in RUAMEL_WORDS), problem.render()
    return problem


def test_a_line_indented_less_than_the_one_above(tmp_path: Path) -> None:
    p = only_problem(edit(tmp_path, '    summary: "Some', '   summary: "Some'))
    assert (p.line, p.column) == (6, 4)
    assert p.message == "this line is indented less than the one above (3 spaces; line 5 has 4)"
    assert p.hint is not None and p.hint.startswith("start it at 4, 2 or 0 spaces")


def test_a_line_indented_more_than_the_one_above(tmp_path: Path) -> None:
    p = only_problem(edit(tmp_path, '    summary: "Some', '      summary: "Some'))
    assert (p.line, p.message) == (
        6,
        "this line is indented more than the one above (6 spaces; line 5 has 4)",
    )
    assert p.hint is not None and p.hint.startswith("start it at 4 spaces like the line above")


def test_an_unclosed_quote_points_at_where_it_opens(tmp_path: Path) -> None:
    p = only_problem(edit(tmp_path, '"First"', '"First'))
    assert (p.line, p.column, p.code) == (5, 12, "unclosed_quote")
    assert p.message == (
        "the quote that opens here is not closed on this line, so the text runs on to line 6"
    )
    assert p.hint == 'end the text with " on line 5'
    last = only_problem(edit(tmp_path, 'closing: "Thank you for reading."', 'closing: "Thanks'))
    assert (last.line, last.message) == (11, "the quote that opens here is never closed")


@pytest.mark.parametrize(
    ("title", "fix"),
    [
        ('"The "First" story"', "put it in single quotes: 'The \"First\" story'"),
        ("'Women's rights'", 'put the text in double quotes: "Women\'s rights"'),
    ],
)
def test_a_quote_that_closes_before_the_end_of_the_text(
    tmp_path: Path, title: str, fix: str
) -> None:
    p = only_problem(edit(tmp_path, '"First"', title))
    assert (p.line, p.code) == (5, "early_quote")
    assert p.message.startswith("a quote closes before the end of the text")
    assert p.hint is not None and p.hint.endswith(fix)


def test_a_colon_inside_an_unquoted_value(tmp_path: Path) -> None:
    p = only_problem(edit(tmp_path, '"First"', "Labour migration: a new deal"))
    assert (p.line, p.code) == (5, "colon_in_text")
    assert p.render().endswith(
        ':5:28: this line has ": " inside a text that is not in quotes, so it reads as the '
        "start of another field (put the whole text in quotes: "
        'title: "Labour migration: a new deal")'
    )


def test_a_tab_used_for_indentation(tmp_path: Path) -> None:
    p = only_problem(edit(tmp_path, '    summary: "Some', '  \t  summary: "Some'))
    assert (p.line, p.column, p.code) == (6, 3, "tab")
    assert p.message == "a tab character is used for indentation"


def test_a_missing_dash_before_an_article(tmp_path: Path) -> None:
    p = only_problem(edit(tmp_path, '  - title: "Second"', '    title: "Second"'))
    assert (p.line, p.code) == (8, "duplicate_key")
    assert p.message == '"title" appears twice in the same article (lines 5 and 8)'
    assert p.hint == (
        'if a new article starts on line 8, begin it with a dash: `  - title: "Second"`'
    )
    p = only_problem(edit(tmp_path, '  - title: "Second"', '  title: "Second"'))
    assert (p.line, p.code) == (8, "missing_dash")
    assert p.message == (
        "this line lines up with the dashes of the list above (`articles`) but has no dash"
    )


def test_a_dash_without_a_space(tmp_path: Path) -> None:
    p = only_problem(edit(tmp_path, '  - title: "Second"', '  -title: "Second"'))
    assert (p.line, p.message) == (8, "a dash that starts a list entry needs a space after it")


@pytest.mark.parametrize("start", ["@IOM news", "*New* data", "`code`", "%20 more"])
def test_a_text_starting_with_a_special_character(tmp_path: Path, start: str) -> None:
    p = only_problem(edit(tmp_path, '"First"', start))
    assert p.line == 5 and p.message.startswith("a text that starts with")
    assert p.hint == f'write title: "{start}"'


def test_a_colon_without_a_space(tmp_path: Path) -> None:
    p = only_problem(edit(tmp_path, "date: 2019-09-30", "date:2019-09-30"))
    assert (p.line, p.hint) == (3, "write `date: 2019-09-30`")


def test_a_comment_that_lost_its_hash_at_the_top(tmp_path: Path) -> None:
    path = tmp_path / "2019-09.yaml"
    path.write_text("# The September issue\n The draft, checked by Ana\n" + GOOD, "utf-8")
    p = only_problem(path)
    assert (p.line, p.column) == (2, 1)
    assert (
        p.message == 'this line is not a "field: value" line, so the lines after it cannot be read'
    )
    assert p.hint is not None and p.hint.startswith("if it is a comment, start it with #")


@pytest.mark.parametrize("line", ["subject:", 'subject: ""', 'subject: "   "'])
def test_an_empty_subject_says_so(tmp_path: Path, line: str) -> None:
    with pytest.raises(IssueError) as info:
        read_issue(edit(tmp_path, 'subject: "Digest — September 2019"', line))
    [p] = info.value.problems
    assert p.render().endswith(
        ":1:1: subject: is empty (write the email's subject line after `subject:`)"
    )


@pytest.mark.parametrize(
    ("date", "why"),
    [
        ("2019-10-32", "October has 31 days"),
        ("2019-02-29", "February 2019 has 28 days"),
        ("2019-04-31", "April has 30 days"),
        ("2019-13-01", "there is no month 13; months go 1 to 12"),
    ],
)
def test_a_date_no_calendar_has_says_why(tmp_path: Path, date: str, why: str) -> None:
    with pytest.raises(IssueError) as info:
        read_issue(edit(tmp_path, "date: 2019-09-30", f"date: {date}"))
    assert [p.render().split(".yaml:", 1)[1] for p in info.value.problems] == [
        f"3:1: date: is not a real date ({why})"
    ]
    assert read_issue(edit(tmp_path, "date: 2019-09-30", "date: 2020-02-29")).issue.date.day == 29


def test_article_positions_count_from_1(tmp_path: Path) -> None:
    path = edit(
        tmp_path, "    url: https://www.example.org/b", "    ulr: https://www.example.org/b"
    )
    with pytest.raises(IssueError) as info:
        read_issue(path)
    assert [(p.field, p.line) for p in info.value.problems] == [
        ("articles[2].url", 8),
        ("articles[2].ulr", 10),
    ]
    assert read_issue(edit(tmp_path, "", "")).where("articles[1].title") == (5, 5)
