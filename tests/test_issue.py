"""issue.py: every problem names file, line, column and field, and all are reported at once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import SAMPLE, SAMPLE_ISSUE, SHARED
from newsletter.errors import IssueError
from newsletter.issue import json_schema, read_issue

GOOD = """\
subject: "Digest — September 2019"
preheader: "Labour migration, cross-border networks, e-learning and more"
date: 2019-09-30
articles:
  - title: "First"
    summary: "Some *text*."
    url: https://www.example.org/a
"""


def write(tmp_path: Path, text: str | bytes, name: str = "2019-09.yaml") -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, "utf-8")
    return path


def problems(path: Path) -> list[str]:
    with pytest.raises(IssueError) as info:
        read_issue(path)
    return [p.render() for p in info.value.problems]


def test_sample_issue_has_all_eight_articles_from_the_digest() -> None:
    located = read_issue(SAMPLE / SAMPLE_ISSUE)
    issue = located.issue
    assert len(issue.articles) == 8
    source = (SHARED / "examples" / "regional-digest-2019-09.txt").read_text("utf-8")
    for article in issue.articles:
        assert article.title in source  # titles verbatim
        assert article.url.host and article.url.host.endswith("example.org")
    assert located.issue_id == "2019-09"


def test_minimal_issue_reads(tmp_path: Path) -> None:
    located = read_issue(write(tmp_path, GOOD))
    assert located.issue.articles[0].title == "First"
    assert str(located.issue.date) == "2019-09-30"
    assert located.where("articles[1].url") == (7, 5)


def test_unknown_key_suggests_the_right_one_with_line_and_field(tmp_path: Path) -> None:
    text = GOOD.replace("  - title:", "  - titel:")
    got = problems(write(tmp_path, text))
    assert any(
        "2019-09.yaml:5:5: articles[1].titel: unknown field (did you mean `title`?)" in p
        for p in got
    ), got
    assert any("articles[1].title: required field is missing" in p for p in got), got


def test_missing_alt_points_at_the_image(tmp_path: Path) -> None:
    text = GOOD + "    image:\n      src: https://www.example.org/a.png\n"
    got = problems(write(tmp_path, text))
    assert len(got) == 1
    assert ":8:5: articles[1].image.alt: required field is missing" in got[0]
    assert "describe the picture" in got[0]


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    text = GOOD.replace("2019-09-30", "2019-13-01").replace(
        "https://www.example.org/a", "not a url"
    )
    got = problems(write(tmp_path, text))
    assert any(":3:1: date: is not a real date (there is no month 13" in p for p in got), got
    assert any(":7:5: articles[1].url: is not a web address" in p for p in got), got


def test_wrong_types(tmp_path: Path) -> None:
    got = problems(
        write(tmp_path, GOOD.replace("date: 2019-09-30", "date: 2019-09-30\nnumber: many"))
    )
    assert any("number: must be a whole number" in p for p in got), got
    got = problems(write(tmp_path, GOOD.replace('  - title: "First"', '  - title: ["a", "b"]')))
    assert any("articles[1].title: must be text" in p for p in got), got


def test_zero_articles(tmp_path: Path) -> None:
    text = GOOD.split("articles:")[0] + "articles: []\n"
    got = problems(write(tmp_path, text))
    assert got == [f"{tmp_path / '2019-09.yaml'}:4:1: articles: needs at least one entry"]


def test_duplicate_key_names_both_the_key_and_line(tmp_path: Path) -> None:
    got = problems(write(tmp_path, GOOD + 'subject: "again"\n'))
    assert len(got) == 1
    assert ':8:1: the key "subject" appears twice (lines 1 and 8)' in got[0]


def test_tab_indentation(tmp_path: Path) -> None:
    got = problems(write(tmp_path, GOOD.replace("    summary:", "\tsummary:")))
    assert "a tab character is used for indentation" in got[0]
    assert ":6:" in got[0]


def test_not_utf8_names_line_and_column(tmp_path: Path) -> None:
    data = GOOD.replace("First", "Caf\u00e9").replace("\u2014", "-").encode("latin-1")
    got = problems(write(tmp_path, data))
    assert got == [
        f"{tmp_path / '2019-09.yaml'}:5:16: not UTF-8 text (byte 0xe9 cannot be read) "
        "(save the file as UTF-8 in your editor)"
    ]


def test_utf8_bom_is_fine(tmp_path: Path) -> None:
    assert read_issue(write(tmp_path, b"\xef\xbb\xbf" + GOOD.encode())).issue.subject


@pytest.mark.parametrize("text", ["", "   \n", "# only a comment\n"])
def test_empty_file(tmp_path: Path, text: str) -> None:
    got = problems(write(tmp_path, text))
    assert got[0].endswith(
        ":1: the file is empty (start from `newsletter new`, which writes a commented skeleton)"
    )


def test_a_list_instead_of_fields(tmp_path: Path) -> None:
    got = problems(write(tmp_path, "- subject: x\n"))
    assert "must be a set of `key: value` lines" in got[0]


def test_unquoted_colon_is_a_syntax_error_with_a_hint(tmp_path: Path) -> None:
    got = problems(write(tmp_path, GOOD.replace('"First"', "Labour: a new deal: now")))
    assert ':5:18: this line has ": " inside a text that is not in quotes' in got[0]
    assert got[0].endswith('(put the whole text in quotes: title: "Labour: a new deal: now")')


def test_five_megabyte_summary_is_refused_with_its_line(tmp_path: Path) -> None:
    big = "    summary: |\n" + ("      " + "word " * 15 + "\n") * 64_000
    text = GOOD.replace('    summary: "Some *text*."\n', big)
    path = write(tmp_path, text)
    assert path.stat().st_size > 5_000_000
    got = problems(path)
    assert len(got) == 1
    assert ":6:5: articles[1].summary: is too long (" in got[0]
    assert "at most 10,000" in got[0]


def test_missing_file(tmp_path: Path) -> None:
    got = problems(tmp_path / "nope.yaml")
    assert "nope.yaml: file not found" in got[0]


def test_multiline_subject_is_refused(tmp_path: Path) -> None:
    got = problems(
        write(tmp_path, GOOD.replace('subject: "Digest — September 2019"', 'subject: "one\\ntwo"'))
    )
    assert any("subject: must be a single line" in p for p in got), got


def test_json_schema_describes_the_format() -> None:
    schema = json_schema()
    assert schema["title"] == "newsletter issue"
    assert set(schema["required"]) == {"subject", "date", "articles"}
    article = schema["$defs"]["Article"]
    assert "title" in article["properties"] and article["additionalProperties"] is False
    json.dumps(schema)  # serialisable


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("date: 0", "date: is not a date; write it as YYYY-MM-DD"),
        ("date: 20191030", "date: is not a date; write it as YYYY-MM-DD"),
        ("date: 2019-09-30 10:00:00", "date: is not a date; write it as YYYY-MM-DD"),
    ],
)
def test_numbers_are_not_dates(tmp_path: Path, line: str, message: str) -> None:
    got = problems(write(tmp_path, GOOD.replace("date: 2019-09-30", line)))
    assert any(f":3:1: {message}" in p for p in got), got


def test_booleans_are_not_numbers(tmp_path: Path) -> None:
    got = problems(
        write(tmp_path, GOOD.replace("date: 2019-09-30", "date: 2019-09-30\nnumber: true"))
    )
    assert any("number: must be a whole number" in p for p in got), got


def test_control_character_from_word_is_located(tmp_path: Path) -> None:
    got = problems(write(tmp_path, GOOD.replace('"First"', '"Fi\x0brst"')))
    assert got == [
        f"{tmp_path / '2019-09.yaml'}:5:15: articles[1].title: contains an invisible line break "
        "from Word's Shift+Enter (U+000B) (retype the text or delete the character at column 15; "
        "it often comes from text pasted from Word or a web page)"
    ]


def test_alias_bomb_is_refused_quickly(tmp_path: Path) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 8)]
    got = problems(write(tmp_path, GOOD + "\n".join(lines) + "\n"))
    assert got[0].endswith(
        "the file expands to more than 20,000 values (remove repeated "
        "`*alias` references; write each article out in full)"
    )


def test_missing_top_level_field_points_at_line_1(tmp_path: Path) -> None:
    text = "\n".join(ln for ln in GOOD.splitlines() if not ln.startswith("date:")) + "\n"
    got = problems(write(tmp_path, text))
    assert got == [
        f"{tmp_path / '2019-09.yaml'}:1:1: date: required field is missing (add `date:`)"
    ]


def test_image_wider_than_the_column_is_refused(tmp_path: Path) -> None:
    text = GOOD + "    image: {src: https://www.example.org/a.png, alt: a, width: 600}\n"
    got = problems(write(tmp_path, text))
    assert any("articles[1].image.width: must be 552 or less" in p for p in got), got


@pytest.mark.parametrize(
    "address",
    [
        '"javascript:alert(1)"',
        '"JaVaScRiPt:alert(1)"',
        '"java\\tscript:alert(1)"',
        '"jav%09ascript:alert(1)"',
        '"&#106;avascript:alert(1)"',
        '"\\x01javascript:alert(1)"',
        '" javascript:alert(1)"',
        '"vbscript:msgbox(1)"',
        '"data:text/html;base64,PHNjcmlwdD4="',
        "//www.example.org/a",
    ],
)
def test_script_and_scheme_less_addresses_in_url_fields_are_errors(
    tmp_path: Path, address: str
) -> None:
    text = GOOD.replace("url: https://www.example.org/a", f"url: {address}")
    got = problems(write(tmp_path, text + f"    image: {{src: {address}, alt: a}}\n"))
    path = tmp_path / "2019-09.yaml"
    url_errors = [p for p in got if "web address" in p]
    assert len(url_errors) == 2, got
    assert url_errors[0].startswith(f"{path}:7:5: articles[1].url: ")
    assert url_errors[1].startswith(f"{path}:8:13: articles[1].image.src: ")
    if "\\x01" in address:  # and the invisible character itself, at its escape
        assert got[0].startswith(f"{path}:7:11: articles[1].url: contains an invisible control")


def test_protocol_relative_url_gets_the_full_address_as_hint(tmp_path: Path) -> None:
    text = GOOD.replace("url: https://www.example.org/a", "url: //www.example.org/a")
    assert problems(write(tmp_path, text)) == [
        f"{tmp_path / '2019-09.yaml'}:7:5: articles[1].url: is not a web address (it must "
        "start with https://) (write the full address: https://www.example.org/a)"
    ]
