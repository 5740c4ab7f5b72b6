"""libyaml's reading of an issue (issue_yaml_fast.py) must be ruamel.yaml's, or step aside.

For every text below, either the fast reader says None (ruamel.yaml reads it) or it gives the
very values, positions and cut-short comments the round-trip loader gives: the sample, the
skeleton of `newsletter new`, and variants of both with a comment after each line and with
awkward values (`yes`, `0x10`, `1_000`, `007`, dates, empty values, quotes) in each field.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from newsletter.issue import read_issue
from newsletter.issue_yaml import (
    MAX_NODES,
    _Constructor,
    plain,
    record_positions,
    trailing_comments,
    yaml_loader,
)
from newsletter.issue_yaml_fast import fast_read

SAMPLE = Path(__file__).parent / "fixtures" / "workspace" / "issues" / "2019-09.yaml"


def _slow(text: str) -> tuple[Any, dict[str, tuple[int, int]], list[Any]] | str:
    """What ruamel.yaml's round-trip loader gives, as issue.py uses it (or its error)."""
    y = YAML(typ="rt")
    y.Constructor = _Constructor
    y.allow_duplicate_keys = False
    y.preserve_quotes = True
    try:
        data = y.load(text)
    except Exception as exc:  # a YAML error: ruamel words it
        return type(exc).__name__
    positions: dict[str, tuple[int, int]] = {}
    try:
        record_positions(data, "", positions)
    except Exception as exc:
        return type(exc).__name__
    return plain(data), positions, trailing_comments(data)


def _fast(text: str) -> tuple[Any, dict[str, tuple[int, int]], list[Any]] | None:
    """What issue.py gets through yaml_loader() when the fast reader answers, else None."""
    if fast_read(text, MAX_NODES) is None:
        return None
    data = yaml_loader().load(text)
    assert type(data).__name__ == "_FastDocument"
    positions: dict[str, tuple[int, int]] = {}
    record_positions(data, "", positions)
    return plain(data), positions, trailing_comments(data)


def _skeleton() -> str:
    text = resources.files("newsletter").joinpath("skeleton.yaml").read_text("utf-8")
    return text.format(month_name="October", year=2019, stem="2019-10", date="2019-10-28")


def _uncommented(text: str) -> str:
    """The skeleton with its optional fields written out (`# image:` -> `image:`)."""
    import re

    return re.sub(r"(?m)^(\s*)# (\s*[a-z_]+:(?:\s.*)?)$", r"\1\2", text)


def _bases() -> list[str]:
    return [SAMPLE.read_text("utf-8"), _skeleton(), _uncommented(_skeleton())]


AWKWARD = [
    "yes",
    "no",
    "on",
    "~",
    "null",
    "Null",
    "",
    "0x10",
    "0o17",
    "1_000",
    "007",
    "1.5",
    ".5",
    "1e3",
    ".inf",
    "+4",
    "-3",
    "12",
    "0",
    "true",
    "FALSE",
    "2019-10-28",
    "2019-10-28 10:00:00",
    "2019-1-2",
    "10 ways",
    "'single # quoted'",
    '"double # quoted"',
    "a#b",
    "<<",
    "=",
    "!!str 12",
    "&a x",
    "[a, b]",
    "{a: b}",
    "https://www.example.org/page#part",
]


def _variants() -> list[str]:
    """Each base with a comment after each line, and awkward values in every fourth field."""
    out: list[str] = []
    for base in _bases():
        lines = base.split("\n")
        fields = 0
        for i, line in enumerate(lines):
            if line.strip() and not line.lstrip().startswith("#"):
                out.append("\n".join(lines[:i] + [line + "  # note"] + lines[i + 1 :]))
            if ": " in line and not line.rstrip().endswith("|") and "#" not in line[:4]:
                fields += 1
                if fields % 4:
                    continue
                head = line.split(": ", 1)[0]
                for value in AWKWARD:
                    changed = f"{head}: {value}" if value else f"{head}:"
                    out.append("\n".join(lines[:i] + [changed] + lines[i + 1 :]))
                    out.append("\n".join(lines[:i] + [changed + "   # c"] + lines[i + 1 :]))
    return out


def test_the_sample_is_read_fast_and_alike() -> None:
    text = SAMPLE.read_text("utf-8")
    fast = _fast(text)
    assert fast is not None  # the fast path is taken for an ordinary issue
    assert fast == _slow(text)
    assert len(fast[1]) > 40


def test_the_skeleton_is_read_fast_and_alike() -> None:
    for text in (_skeleton(), _uncommented(_skeleton())):
        fast = _fast(text)
        assert fast is not None  # an issue made by `newsletter new`, comments and all
        assert fast == _slow(text)


def test_every_variant_is_read_alike_or_left_to_ruamel() -> None:
    variants = _variants()
    assert len(variants) > 300
    taken = 0
    for text in variants:
        fast = _fast(text)
        if fast is None:
            continue
        taken += 1
        assert fast == _slow(text), text
    assert taken > len(variants) // 2  # most files do not need ruamel


@pytest.mark.parametrize(
    "text",
    [
        "subject: a\nsubject: b\n",  # duplicate key: ruamel's words
        "subject: [a\n",  # syntax error: ruamel's words
        "- a\n- b\n",  # not a mapping
        "a: &x 1\nb: *x\n",
        "%YAML 1.1\n---\na: yes\n",
        "a: 1\n---\nb: 2\n",
        "a:\n\t- b\n",
        "a: 1\r\nb: 2\r\n",
    ],
)
def test_what_the_fast_reader_leaves_to_ruamel(text: str) -> None:
    assert fast_read(text, MAX_NODES) is None


def test_a_cut_comment_is_reported_from_the_fast_path(tmp_path: Path) -> None:
    issue = tmp_path / "2019-09.yaml"
    text = SAMPLE.read_text("utf-8")
    issue.write_text(text.replace("language: en", "language: en # es later", 1), "utf-8")
    assert fast_read(issue.read_text("utf-8"), MAX_NODES) is not None
    located = read_issue(issue)
    assert [(c.field, c.text, c.value) for c in located.comments] == [
        ("language", "# es later", "en")
    ]
