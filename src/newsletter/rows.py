"""One row of a list: what makes it a Subscriber, and what is said about a row that is not.

:class:`RowBuilder` is the one place rows become Subscribers (lists, sends, imports),
so the one place names are cleaned of line breaks and control characters, held to
SendGrid's size limit, and values a spreadsheet would run as formulas are noticed.
A row that is not used (or not used as written) becomes a :class:`RowProblem`.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from .addresses import email_key
from .csvfile import CsvLayout
from .errors import Problem
from .message import substitutions

_TAG_SPLIT = re.compile(r"[;,]")


@dataclass(frozen=True, slots=True)
class Subscriber:
    """One valid row of a list; `email` is normalised, `line` is where the row starts."""

    email: str
    name: str | None
    first_name: str | None
    language: str | None
    tags: frozenset[str]
    subscribed_at: str | None
    consent: str | None
    attributes: Mapping[str, str]
    list_name: str
    line: int

    @property
    def key(self) -> str:
        return email_key(self.email)


@dataclass(frozen=True, slots=True)
class RowProblem:
    """A row that will not be used (an invalid address, a repeat of an earlier row), or,
    with kind "warning", a row that is used but not exactly as written (a name with a
    line break, a value a spreadsheet would run as a formula)."""

    path: Path
    line: int
    kind: str  # "invalid" | "duplicate" | "warning" (and "suppressed" in an ImportReport)
    email: str  # as written in the file
    reason: str
    first_line: int | None = None  # duplicates: the line of the row that is used
    column: str | None = None  # the column concerned, as its header names it; None: email

    def render(self, path: str | None = None) -> str:
        """`file:line: kind: address: reason`; `path` replaces the file as shown."""
        shown = self.email if self.email.strip() else "(empty)"
        return f"{path or self.path}:{self.line}: {self.kind}: {shown}: {self.reason}"

    def as_problem(self) -> Problem:
        return Problem(
            message=f"{self.email!r}: {self.reason}",
            path=self.path,
            line=self.line,
            field=self.column or "email",
            code=self.kind,
        )

    def as_dict(self) -> dict[str, object]:
        return {
            "file": str(self.path),
            "line": self.line,
            "kind": self.kind,
            "email": self.email,
            "reason": self.reason,
            "first_line": self.first_line,
            "column": self.column,
        }


# --------------------------------------------------------------------------- values

# A run of whitespace, line breaks (\n \r \v \f U+0085 U+2028 U+2029 are all \s) or
# C0/C1 control characters; format characters (zero-width joiners) are left alone.
_BLANK_RUN = re.compile(r"[\s\x00-\x1f\x7f-\x9f]+")
_LINE_BREAKS = frozenset("\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")
_NUMBERISH = re.compile(r"[+-][\d\s().,/-]*")  # -5, +33 (0)1 23 45: not formulas
FORMULA_NEUTRALISER = "'"


def clean_name(value: str) -> str:
    """A name as it is sent: runs of whitespace, line breaks and control characters
    become one space, and an apostrophe that `import` put before a formula-like value
    is taken off again.

    A cell typed with Alt+Enter in a spreadsheet holds a line break, which no mail
    header may contain (the outbox crashed on it, SendGrid refuses it), so every
    backend must get the cleaned value; rows are built in one place, which calls this.
    """
    if not value.isprintable() or "  " in value:
        value = _BLANK_RUN.sub(" ", value).strip()
    if value[:1] == FORMULA_NEUTRALISER and formula_start(value[1:]):
        value = value[1:]
    return value


def formula_start(value: str) -> str | None:
    """The character that makes a spreadsheet run `value` as a formula, if any.

    OWASP's CSV-injection list is = + - @ (and tab or CR first, which the reader
    already strips).  A value that is only a number or a phone number (``-5``,
    ``+33 (0)1 23 45 67 89``) is left alone: a spreadsheet computes nothing
    harmful from it, and flagging every phone number would bury real warnings.
    """
    if not value or value[0] not in "=+-@":
        return None
    if value[0] != "=" and value[0] != "@" and _NUMBERISH.fullmatch(value):
        return None
    return value[0]


def _invisible(value: str) -> str | None:
    """What `clean_name` removes that a person should hear about (not double spaces)."""
    if value.isprintable():
        return None
    for char in value:
        if char in _LINE_BREAKS:
            return "a line break"
    if "\t" in value:
        return "a tab"
    for char in value:
        if unicodedata.category(char) == "Cc":
            return f"an invisible control character (U+{ord(char):04X})"
    return None


def _shown(value: str, limit: int = 60) -> str:
    return f"'{value}'" if len(value) <= limit else f"'{value[: limit - 1]}…'"


# SendGrid refuses a personalization whose substitutions (and custom args, headers)
# exceed 10,000 bytes; what a row contributes is its first name (twice: as text and
# HTML-escaped, see message.substitutions) and its name (the To display name).
SENDGRID_PERSONALIZATION_BYTES = 10_000
PERSONAL_VALUES_BYTES = 8_000
# At most 8 bytes per character (4 in UTF-8, twice; or 1 + 6 for '"' escaped): rows whose
# name and first name have at most this many characters together need no measuring.
_PERSONAL_FAST_CHARS = PERSONAL_VALUES_BYTES // 8


def personal_values_problem(name: str | None, first_name: str | None) -> str | None:
    """Why SendGrid would refuse this recipient's personal values, or None.

    The rule: the cleaned name and first name may use 8,000 bytes of a personalization
    (the first name counted as text and HTML-escaped, the name as the display name),
    which leaves 2,000 of SendGrid's 10,000 for what every recipient has: the
    placeholder keys and the unsubscribe link (about 600 bytes with a long address),
    which also goes into the List-Unsubscribe header.  In characters that is a
    name of about 2,500 (plain Latin letters) or 1,000 (Chinese), far beyond any
    real name: a row over it is a pasted paragraph, and one such row would make
    SendGrid refuse the whole batch of 1,000 people.
    """
    if len(name or "") + len(first_name or "") <= _PERSONAL_FAST_CHARS:
        return None
    size = len(name.encode()) if name else 0
    if first_name:
        size += sum(len(v.encode()) for v in substitutions(first_name, "", "en").values())
    if size <= PERSONAL_VALUES_BYTES:
        return None
    label, value = (
        ("name", name) if len(name or "") >= len(first_name or "") else ("first name", first_name)
    )
    return (
        f"the {label} is {len(value or ''):,} characters long; SendGrid refuses a recipient "
        f"whose personal values exceed {SENDGRID_PERSONALIZATION_BYTES:,} bytes "
        "(shorten it to the person's name)"
    )


_HALF_FAST = _PERSONAL_FAST_CHARS // 2


class TooLong(Exception):
    """A row's names pass SendGrid's limit (raised while building, caught by the callers)."""

    def __init__(self, column: str, reason: str) -> None:
        super().__init__(reason)
        self.column = column
        self.reason = reason


class RowBuilder:
    """Turns the fields of one row into a Subscriber; column positions are fixed per file.

    The one place rows become Subscribers (lists, sends, imports), so the one place
    names are cleaned (:func:`clean_name`) and held to SendGrid's size limit.
    """

    def __init__(self, layout: CsvLayout, list_name: str) -> None:
        self.list_name = list_name
        self.email = layout.index("email")
        self.name = layout.index("name")
        self.first_name = layout.index("first_name")
        self.language = layout.index("language")
        self.tags = layout.index("tags")
        self.subscribed_at = layout.index("subscribed_at")
        self.consent = layout.index("consent")
        self.attributes = [
            (name, i)
            for i, (name, known) in enumerate(zip(layout.header, layout.canonical, strict=True))
            if known is None and name
        ]
        self.width = len(layout.header)
        self.header = layout.header
        self.personal = tuple(i for i in (self.name, self.first_name) if i is not None)
        self.labels = {self.name: "the name", self.first_name: "the first name"}
        self.text_columns = [
            (i, name) for i, name in enumerate(layout.header) if i != self.email and name
        ]

    @staticmethod
    def _get(fields: list[str], index: int | None) -> str | None:
        if index is None or index >= len(fields):
            return None
        return fields[index] or None

    def raw_email(self, fields: list[str]) -> str:
        return self._get(fields, self.email) or ""

    def extra_values(self, fields: list[str]) -> int:
        """How many non-empty values lie beyond the header's columns."""
        return sum(1 for value in fields[self.width :] if value)

    def names(self, fields: list[str]) -> tuple[str | None, str | None]:
        """(name, first name) as sent: cleaned, the first name from the name if missing.

        Raises TooLong for names over :func:`personal_values_problem`'s budget.  The
        common case (short, printable, single spaces) costs a few comparisons: this
        runs for every row of every send.
        """
        name = self._get(fields, self.name)
        unusual = False
        if name is not None and (
            len(name) > _HALF_FAST or not name.isprintable() or "  " in name or name[0] == "'"
        ):
            name = clean_name(name) or None
            unusual = True
        first_name = self._get(fields, self.first_name)
        if first_name is not None and (
            len(first_name) > _HALF_FAST
            or not first_name.isprintable()
            or "  " in first_name
            or first_name[0] == "'"
        ):
            first_name = clean_name(first_name) or None
            unusual = True
        if first_name is None and name is not None:
            first_name = name.split()[0]
        if unusual:  # both at most _HALF_FAST characters otherwise: within the budget
            reason = personal_values_problem(name, first_name)
            if reason is not None:
                longest = max(self.personal, key=lambda i: len(fields[i]) if i < len(fields) else 0)
                raise TooLong(self.header[longest], reason)
        return name, first_name

    def too_long(self, fields: list[str]) -> tuple[str, str] | None:
        """(column, :func:`personal_values_problem`) for this row, or None."""
        try:
            self.names(fields)
        except TooLong as exc:
            return exc.column, exc.reason
        return None

    def notes(self, fields: list[str], written: bool = False) -> list[tuple[str, str]]:
        """(column, warning) for what is used but not as written: names with line breaks
        or control characters, and values a spreadsheet would run as formulas (which
        an import writes neutralised: `written`)."""
        notes: list[tuple[str, str]] = []
        for i in self.personal:
            value = fields[i] if i < len(fields) else ""
            what = _invisible(value) if value else None
            if what:
                cleaned = clean_name(value)
                sent = f"sent as {_shown(cleaned)}" if cleaned else "left empty"
                notes.append(
                    (self.header[i], f"{self.labels[i]} contains {what}; it will be {sent}")
                )
        for i, column in self.text_columns:
            char = formula_start(fields[i]) if i < len(fields) else None
            if char:
                note = (
                    f"column {column!r} starts with {char!r}, which a spreadsheet runs as a formula"
                )
                if written:
                    note += (
                        f"; written as {_shown(FORMULA_NEUTRALISER + fields[i])} so it stays text"
                    )
                notes.append((column, note))
        return notes

    def build(self, email: str, fields: list[str], line: int) -> Subscriber:
        get = self._get
        name, first_name = self.names(fields)
        language = get(fields, self.language)
        tags_value = get(fields, self.tags)
        tags = (
            frozenset(t for t in (p.strip() for p in _TAG_SPLIT.split(tags_value)) if t)
            if tags_value
            else frozenset()
        )
        if tags_value and FORMULA_NEUTRALISER in tags_value:  # written by import, see below
            tags = frozenset(
                t[1:] if t[0] == FORMULA_NEUTRALISER and formula_start(t[1:]) else t for t in tags
            )
        attributes: Mapping[str, str] = (
            {key: fields[i] for key, i in self.attributes if i < len(fields) and fields[i]}
            if self.attributes
            else {}
        )
        return Subscriber(
            email=email,
            name=name,
            first_name=first_name,
            language=language.lower() if language else None,
            tags=tags,
            subscribed_at=get(fields, self.subscribed_at),
            consent=get(fields, self.consent),
            attributes=attributes,
            list_name=self.list_name,
            line=line,
        )


@lru_cache(maxsize=4096)
def same_as(line: int) -> str:
    """One shared string per first line: a million repeats of one address cost no more."""
    return f"same address as line {line}"
