"""Subscriber lists: stream `subscribers/<list>.csv`, validate and normalise addresses.

Lists come from spreadsheets and CRM exports, so the reader accepts what Excel and
friends write (UTF-8 with or without BOM, `,` or `;` or tab, quoted fields, CRLF,
blank lines, stray spaces) and refuses, with the line and byte, what it cannot read
without guessing (another encoding, an unclosed quote that would swallow rows).

Nothing here holds a whole list in memory: rows are yielded one by one, and only a
dictionary of the addresses already seen (for duplicates) grows with the list.

Validation is email-validator's (syntax only, no DNS).  Because real lists repeat a
few hundred domains, the domain part is judged once per distinct domain and the
common ASCII local part by the same regular expression email-validator uses; every
address outside that fast path goes to `validate_email` itself, so the verdicts and
messages are email-validator's in all cases.  List rows are held to one more rule
(:func:`normalise_recipient`): the part before the @ must be ASCII, because SendGrid
refuses anything else; suppressions accept such addresses.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import errno
import fcntl
import os
import re
import shutil
import tempfile
import time
import unicodedata
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from email_validator import EmailNotValidError, validate_email
from email_validator.rfc_constants import CASE_INSENSITIVE_MAILBOX_NAMES, DOT_ATOM_TEXT

from .config import Workspace
from .errors import Problem, SubscriberListError
from .message import substitutions

if TYPE_CHECKING:
    from .suppressions import SuppressionList

SUPPRESSIONS_FILE = "suppressions.csv"
EMAIL_MAX_BYTES = 254  # RFC 3696 errata 1690, the limit email-validator applies
DELIMITERS = (",", ";", "\t")
RESAVE_HINT = "open it in your spreadsheet and save it again as 'CSV UTF-8 (comma delimited)'"

# Header spellings seen in exports (Mailchimp "Email Address", Excel "E-mail", ...),
# compared after lower-casing and turning spaces and hyphens into underscores.
_ALIASES: dict[str, str] = {
    "email": "email",
    "e_mail": "email",
    "email_address": "email",
    "e_mail_address": "email",
    "name": "name",
    "full_name": "name",
    "first_name": "first_name",
    "firstname": "first_name",
    "given_name": "first_name",
    "language": "language",
    "lang": "language",
    "tags": "tags",
    "tag": "tags",
    "subscribed_at": "subscribed_at",
    "consent": "consent",
}
# The columns with a meaning; any other column becomes a Subscriber attribute.
KNOWN_COLUMNS = ("email", "name", "first_name", "language", "tags", "subscribed_at", "consent")
_TAG_SPLIT = re.compile(r"[;,]")
_CASE_INSENSITIVE = frozenset(CASE_INSENSITIVE_MAILBOX_NAMES)
_NOT_FAST = re.compile(r'[<>"(),:\[\]\\\s]')
_CsvWriter = Any  # csv.writer's type is private (_csv._writer)


# --------------------------------------------------------------------------- addresses

_DOMAIN_CACHE_MAX = 100_000
_domain_cache: dict[str, tuple[str, str] | None] = {}


def _judge_domain(domain: str) -> tuple[str, str] | None:
    """(unicode domain, ASCII domain) if email-validator accepts `x@domain`, else None.

    Cached per distinct domain: this is where the time goes (IDNA, UTS-46), and a
    list of a million addresses has a few hundred domains.  A rejected domain is not
    given a reason here: the caller re-runs the whole address through
    email-validator so the message is exactly the one it would give.
    """
    try:
        return _domain_cache[domain]
    except KeyError:
        pass
    try:
        probe = validate_email("x@" + domain, check_deliverability=False)
        verdict: tuple[str, str] | None = (probe.domain, probe.ascii_domain)
    except EmailNotValidError:
        verdict = None
    if len(_domain_cache) >= _DOMAIN_CACHE_MAX:  # keep memory bounded on pathological lists
        _domain_cache.clear()
    _domain_cache[domain] = verdict
    return verdict


def normalise_email(raw: str) -> str:
    """The canonical form of an address: trimmed, NFC, domain lower-cased (Unicode IDN form).

    Raises ValueError whose message is email-validator's human reason.  The local
    part keeps its case (mailboxes may be case-sensitive); compare with
    :func:`email_key`.
    """
    text = raw.strip()
    if not text:
        raise ValueError("the email address is empty")
    if not text.isascii():
        text = unicodedata.normalize("NFC", text)
    if text.count("@") == 1 and not _NOT_FAST.search(text):
        local, _, domain = text.partition("@")
        if DOT_ATOM_TEXT.match(local):
            judged = _judge_domain(domain)
            if judged is not None:
                if local.lower() in _CASE_INSENSITIVE:
                    local = local.lower()
                uni_domain, ascii_domain = judged
                normalised = f"{local}@{uni_domain}"
                if (
                    len(text.encode()) <= EMAIL_MAX_BYTES
                    and len(normalised.encode()) <= EMAIL_MAX_BYTES
                    and len(local) + 1 + len(ascii_domain) <= EMAIL_MAX_BYTES
                ):
                    return normalised
    try:
        return validate_email(text, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise ValueError(str(exc)) from None


NON_ASCII_LOCAL = "the part before the @ has non-ASCII characters, which SendGrid does not accept"


def normalise_recipient(raw: str) -> str:
    """:func:`normalise_email` for an address we are to send to: also refuses a local
    part (before the @) that is not ASCII.

    Such addresses (SMTPUTF8) are valid, and email-validator accepts them, but
    SendGrid rejects them, and with them the whole request of up to 1,000 people.
    International *domains* are fine: they go to SendGrid in their xn-- form.
    An address starting with ``=``, ``+`` or ``-`` is refused too: it is legal in
    RFC 5322 but practically never a real mailbox, while in a list that is opened in
    a spreadsheet it is a formula (CSV injection).  Suppressions keep using
    :func:`normalise_email`, which accepts both kinds, so an entry for such an
    address can still be read and matched.
    """
    email = normalise_email(raw)
    if email[0] in "=+-":  # "@" at the start is already invalid
        raise ValueError(
            f"the address starts with {email[0]!r}, which a spreadsheet runs as a formula; "
            "lists refuse such addresses"
        )
    if not email.isascii() and not email.rpartition("@")[0].isascii():
        raise ValueError(NON_ASCII_LOCAL)
    return email


def email_key(email: str) -> str:
    """The comparison key of a normalised address: duplicates are found case-insensitively."""
    return email.lower()


def suppression_key(raw: str) -> str:
    """Key for matching any string against suppressions, valid address or not."""
    try:
        return email_key(normalise_email(raw))
    except ValueError:
        return raw.strip().lower()


# --------------------------------------------------------------------------- models


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


# --------------------------------------------------------------------------- CSV reading


@dataclass(frozen=True)
class CsvLayout:
    """What the header line told us; `import` writes new rows in the same shape."""

    path: Path
    delimiter: str
    header: tuple[str, ...]  # as written (trimmed)
    canonical: tuple[str | None, ...]  # known column name or None (an attribute)
    line_ending: str
    bom: bool

    def index(self, column: str) -> int | None:
        try:
            return self.canonical.index(column)
        except ValueError:
            return None


def _error(
    path: Path, line: int | None, message: str, hint: str | None = None, field: str | None = None
) -> SubscriberListError:
    return SubscriberListError(
        Problem(message=message, path=path, line=line, field=field, hint=hint)
    )


def _check_encoding(path: Path) -> None:
    """Refuse anything that is not UTF-8 before a single row is used.

    Done up front (a fast C-level pass) so that a send never starts on the first
    half of a list and then stops on a Latin-1 byte in the second half.
    """
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    lines_before = 0
    with path.open("rb") as handle:
        first = handle.read(4)
        if first.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            raise _error(
                path, 1, "the file is UTF-16 ('Unicode text'), not UTF-8", hint=RESAVE_HINT
            )
        handle.seek(0)
        while True:
            chunk = handle.read(1 << 20)
            try:
                decoder.decode(chunk, final=not chunk)
            except UnicodeDecodeError as exc:
                line = lines_before + chunk.count(b"\n", 0, exc.start) + 1
                line_start = chunk.rfind(b"\n", 0, exc.start) + 1
                byte = chunk[exc.start]
                column = exc.start - line_start + 1 if line_start or lines_before else None
                where = f"byte {column} of the line" if column else "this line"
                guess = _guess_encoding(byte)
                raise _error(
                    path,
                    line,
                    f"the file is not UTF-8: {where} is 0x{byte:02X}{guess}",
                    hint=RESAVE_HINT,
                ) from None
            if not chunk:
                return
            lines_before += chunk.count(b"\n")


def _guess_encoding(byte: int) -> str:
    if 0x80 <= byte <= 0x9F:
        return " (probably Windows-1252, e.g. from Excel 'CSV (comma delimited)')"
    if byte >= 0xA0:
        return f" (in Latin-1 that is {bytes([byte]).decode('latin-1')!r})"
    return ""


def _canonical(name: str) -> str | None:
    key = re.sub(r"[\s\-]+", "_", name.strip().lower())
    return _ALIASES.get(key)


def _read_header(path: Path, first_line: str, number: int = 1) -> CsvLayout:
    """Pick the delimiter whose split of the header has an `email` column."""
    line_ending = "\r\n" if first_line.endswith("\r\n") else "\n"
    text = first_line.lstrip("\ufeff").rstrip("\r\n")
    best: list[str] = []
    for delimiter in DELIMITERS:
        try:
            names = next(csv.reader([text], delimiter=delimiter, strict=True), [])
        except csv.Error:
            continue
        names = [n.strip() for n in names]
        canonical = [_canonical(n) for n in names]
        if "email" in canonical:
            _check_unique_columns(path, number, names, canonical)
            return CsvLayout(
                path,
                delimiter,
                tuple(names),
                tuple(canonical),
                line_ending,
                first_line.startswith("\ufeff"),
            )
        if len(names) > len(best):
            best = names
    if not text.strip():
        raise _error(
            path,
            1,
            "the file is empty: the first line must be a header such as 'email,name,language'",
            field="email",
        )
    found = ", ".join(repr(n) for n in best) if best else "none"
    hint = "the first line must name the columns and one of them must be 'email'"
    if "@" in text:
        hint = (
            "the first line looks like an address, not a header: insert a first line "
            "such as 'email,name'"
        )
    elif len(best) <= 1:
        hint += "; columns must be separated by ',' or ';'"
    raise _error(
        path, number, f"no 'email' column; columns found: {found}", hint=hint, field="email"
    )


def _check_unique_columns(
    path: Path, number: int, names: list[str], canonical: list[str | None]
) -> None:
    seen: dict[str, int] = {}
    for i, (name, known) in enumerate(zip(names, canonical, strict=True)):
        key = known or name
        if not key:
            continue
        if key in seen:
            j = seen[key]
            raise _error(
                path,
                number,
                f"columns {j + 1} ({names[j]!r}) and {i + 1} ({name!r}) both mean {key!r}",
                hint="rename or delete one of them",
                field=key,
            )
        seen[key] = i


def _header(path: Path, handle: TextIO) -> tuple[int, CsvLayout]:
    """The header is the first non-blank line (some exports start with an empty one)."""
    number = 1
    line = handle.readline()
    while line and not line.lstrip("\ufeff").strip():
        number += 1
        line = handle.readline()
    if number > 1 and line.startswith("\ufeff"):
        line = line[1:]
    return number, _read_header(path, line, number)


def read_layout(path: Path) -> CsvLayout:
    """The header of a list (encoding checked first); raises SubscriberListError."""
    _check_encoding(path)
    with path.open(encoding="utf-8", newline="") as handle:
        return _header(path, handle)[1]


def iter_rows(path: Path) -> Iterator[tuple[CsvLayout, int, list[str]]]:
    """(layout, first line of the row, trimmed fields) for every non-blank data row.

    Raises SubscriberListError for an unreadable file before yielding anything
    (encoding, header), and for an unclosed quote at the row where it opens.
    """
    try:
        _check_encoding(path)
        handle = path.open(encoding="utf-8", newline="")
    except FileNotFoundError:
        raise _error(path, None, "file not found") from None
    except IsADirectoryError:
        raise _error(path, None, "is a folder, not a CSV file") from None
    with handle:
        header_line, layout = _header(path, handle)
        reader = csv.reader(handle, delimiter=layout.delimiter, strict=True)
        last = header_line
        while True:
            start = last + 1
            try:
                fields = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                raise _error(
                    path,
                    start,
                    f"cannot read the row that starts here ({exc})",
                    hint='a double quote (") opened in this row is not closed where it should '
                    'be; quote whole values, and write a quote inside a value as ""',
                ) from None
            last = reader.line_num + header_line
            if last > start:
                _check_runaway_quote(path, start, fields, layout)
            stripped = [f.strip() for f in fields]
            if any(stripped):
                yield layout, start, stripped


_LOOKS_LIKE_ADDRESS = re.compile(r'\s*"?[^\s@"]+@[^\s@"]+\.[^\s@"]+"?\s*')


def _check_runaway_quote(path: Path, line: int, fields: list[str], layout: CsvLayout) -> None:
    """A multi-line value whose lines look like whole rows (an address in the email
    column) is a quote left open: refuse rather than lose those subscribers."""
    email_at = layout.canonical.index("email")
    for value in fields:
        if "\n" in value or "\r" in value:
            rest = value.splitlines()[1:]
            if any(
                len(parts) > email_at and _LOOKS_LIKE_ADDRESS.fullmatch(parts[email_at])
                for parts in (part.split(layout.delimiter) for part in rest)
            ):
                raise _error(
                    path,
                    line,
                    "a quoted value that starts in this row runs over the next "
                    f"{len(rest)} line(s), which look like other subscribers",
                    hint='a double quote (") is missing or extra in this row; fix it so no '
                    "subscriber is swallowed",
                )


# --------------------------------------------------------------------------- lists


def list_names(ws: Workspace) -> list[str]:
    """Every list in subscribers/ (file stems), sorted; suppressions.csv is not a list."""
    folder = ws.subscribers_dir
    if not folder.is_dir():
        return []
    return sorted(
        p.stem for p in folder.glob("*.csv") if p.name != SUPPRESSIONS_FILE and p.is_file()
    )


def list_file(ws: Workspace, name: str) -> Path:
    """subscribers/<name>.csv, whether or not it exists; refuses names that are not lists."""
    name = name.strip().removesuffix(".csv")
    path = ws.subscribers_dir / f"{name}.csv"
    if not name or "/" in name or "\\" in name or name.startswith("."):
        raise _error(
            path,
            None,
            f"{name!r} is not a list name",
            hint="use the file name in subscribers/ without '.csv', e.g. 'members'",
        )
    if path.name == SUPPRESSIONS_FILE:
        raise _error(
            path,
            None,
            "suppressions.csv is not a subscriber list",
            hint="it lists who must never be sent to; choose another list",
        )
    return path


def list_path(ws: Workspace, name: str) -> Path:
    """subscribers/<name>.csv; a missing list names the lists that exist."""
    path = list_file(ws, name)
    if not path.is_file():
        names = list_names(ws)
        available = ", ".join(names) if names else "none yet"
        raise _error(
            path,
            None,
            f"no subscriber list named {path.stem!r}",
            hint=f"lists in {ws.subscribers_dir}: {available}",
        )
    return path


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


class _TooLong(Exception):
    """A row's names pass SendGrid's limit (raised while building, caught by the callers)."""

    def __init__(self, column: str, reason: str) -> None:
        super().__init__(reason)
        self.column = column
        self.reason = reason


class _RowBuilder:
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

        Raises _TooLong for names over :func:`personal_values_problem`'s budget.  The
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
                raise _TooLong(self.header[longest], reason)
        return name, first_name

    def too_long(self, fields: list[str]) -> tuple[str, str] | None:
        """(column, :func:`personal_values_problem`) for this row, or None."""
        try:
            self.names(fields)
        except _TooLong as exc:
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
def _same_as(line: int) -> str:
    """One shared string per first line: a million repeats of one address cost no more."""
    return f"same address as line {line}"


_FILE_BITS = 20  # entries: key -> line << 20 | file number << 1 | selected flag


def _scan(
    path: Path, list_name: str, entries: dict[str, int], file_no: int, warnings: bool = False
) -> Iterator[Subscriber | RowProblem | tuple[str, Subscriber]]:
    """The shared loop of iter_list and Audience.

    `entries` maps each address met so far to one small int (line, file number,
    selected flag): a million-row list stays within budget, and a repeat inside the
    same file (a problem, reported with both lines) is told from the same person on
    an earlier list, yielded as ("overlap", subscriber) for Audience to decide.
    With `warnings`, a used row's warnings (RowProblem kind "warning") come just
    before its Subscriber; Audience does not ask for them.
    """
    builder: _RowBuilder | None = None
    file_mask = (1 << (_FILE_BITS - 1)) - 1
    for layout, line, fields in iter_rows(path):
        if builder is None:
            builder = _RowBuilder(layout, list_name)
        raw = builder.raw_email(fields)
        extra = builder.extra_values(fields)
        if extra:
            yield RowProblem(
                path,
                line,
                "invalid",
                raw,
                f"the row has {extra} more value(s) than the header has columns "
                f"({builder.width}); a value containing {layout.delimiter!r} must be "
                "in double quotes",
            )
            continue
        try:
            email = normalise_recipient(raw)
        except ValueError as exc:
            reason = str(exc) if raw else "the email column is empty"
            yield RowProblem(path, line, "invalid", raw, reason)
            continue
        key = email.lower()
        previous = entries.get(key)
        if previous is not None and (previous >> 1) & file_mask == file_no:
            first = previous >> _FILE_BITS
            yield RowProblem(path, line, "duplicate", raw, _same_as(first), first)
            continue
        try:
            subscriber = builder.build(email, fields, line)
        except _TooLong as exc:  # invalid, so not registered: a later row may be used
            yield RowProblem(path, line, "invalid", raw, exc.reason, column=exc.column)
            continue
        if previous is None:
            entries[key] = (line << _FILE_BITS) | (file_no << 1)
            if warnings:
                for column, note in builder.notes(fields):
                    yield RowProblem(path, line, "warning", raw, note, column=column)
            yield subscriber
        else:
            yield ("overlap", subscriber)


def iter_list(
    path: Path, list_name: str, *, warnings: bool = False
) -> Iterator[Subscriber | RowProblem]:
    """Every row of one list in file order: a Subscriber, or a RowProblem saying why not.

    With `warnings`, also RowProblems of kind "warning" (each just before the
    Subscriber it concerns) for values that are used, but not as written.
    Streaming; raises SubscriberListError for a file that cannot be read at all
    (encoding, header, unclosed quote) before yielding the row concerned.
    """
    for item in _scan(path, list_name, {}, 0, warnings):
        if not isinstance(item, tuple):  # overlaps need several files; there is one here
            yield item


class Audience:
    """The recipients of a send: unique, valid, not suppressed, matching the tags.

    Iterating streams the lists in the order given (the first list wins when an
    address is on several) and counts every row in exactly one bucket:
    ``rows == valid + invalid + duplicates + overlap + filtered_out + suppressed``.
    ``valid`` is the number of Subscribers yielded.  Tags select subscribers having
    at least one of them (case-insensitive).  A second iteration re-reads the files
    (and the suppression list, if it changed).
    """

    def __init__(
        self,
        ws: Workspace,
        list_names: Sequence[str],
        tags: Sequence[str] = (),
        suppressions: SuppressionList | None = None,
    ) -> None:
        from .suppressions import SuppressionList

        if not list_names:
            raise _error(
                ws.subscribers_dir,
                None,
                "no subscriber list given",
                hint="name at least one list, e.g. --list sample",
            )
        self.workspace = ws
        self.list_names = list(dict.fromkeys(list_names))
        self.paths = [list_path(ws, name) for name in self.list_names]
        self.tags = frozenset(t.strip().casefold() for t in tags if t.strip())
        self.suppression_list = (
            suppressions if suppressions is not None else SuppressionList(ws.suppressions_path)
        )
        self._reset()

    def _reset(self) -> None:
        self.rows = 0
        self.valid = 0
        self.invalid = 0
        self.duplicates = 0
        self.overlap = 0
        self.suppressed = 0
        self.filtered_out = 0
        self.problems: list[RowProblem] = []

    def _wanted(self, subscriber: Subscriber) -> bool:
        if not self.tags:
            return True
        return any(t.casefold() in self.tags for t in subscriber.tags)

    def __iter__(self) -> Iterator[Subscriber]:
        self._reset()
        suppressions = self.suppression_list
        suppressions.refresh()
        entries: dict[str, int] = {}
        for file_no, (name, path) in enumerate(zip(self.list_names, self.paths, strict=True)):
            for item in _scan(path, name, entries, file_no):
                self.rows += 1
                if isinstance(item, RowProblem):
                    self.problems.append(item)
                    if item.kind == "duplicate":
                        self.duplicates += 1
                    else:
                        self.invalid += 1
                    continue
                if isinstance(item, tuple):
                    subscriber = item[1]
                    key = subscriber.key
                    if entries[key] & 1:  # an earlier list's row was selected (or suppressed)
                        self.overlap += 1
                        continue
                    # the earlier row did not match the tags; this one may
                    entries[key] = (subscriber.line << _FILE_BITS) | (file_no << 1)
                else:
                    subscriber = item
                    key = subscriber.key
                if not self._wanted(subscriber):
                    self.filtered_out += 1
                    continue
                entries[key] |= 1
                if suppressions.contains_key(key):
                    self.suppressed += 1
                    continue
                self.valid += 1
                yield subscriber

    def counts(self) -> dict[str, int]:
        return {
            "rows": self.rows,
            "valid": self.valid,
            "invalid": self.invalid,
            "duplicates": self.duplicates,
            "overlap": self.overlap,
            "filtered_out": self.filtered_out,
            "suppressed": self.suppressed,
        }


def describe_path(path: Path) -> str:
    """A path relative to the current folder when possible, for messages."""
    try:
        relative = os.path.relpath(path)
    except ValueError:
        return str(path)
    return str(path) if relative.startswith("..") else relative


# --------------------------------------------------------------------------- locking

LOCK_QUIET_SECONDS = 0.5  # a wait shorter than this is not worth a message
_IMPORT_TMP_PREFIX = "import-"  # .newsletter/tmp/import-<list>.<random>.tmp
_TMP_IN_TMP_DIR = re.compile(r"import-(?P<list>.+)\.[a-z0-9_]{8}\.tmp")
_TMP_BESIDE_LIST = re.compile(r"\.(?P<list>.+)\.csv\.[a-z0-9_]{8}\.tmp")  # fallback, older versions


def _lock_path(ws: Workspace, name: str) -> Path:
    return ws.state_dir / f"list-{list_file(ws, name).stem}.lock"


def _open_lock(path: Path) -> int:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise _error(
            path,
            None,
            f"cannot create the lock file of the list: {exc.strerror or exc}",
            hint=f"the workspace's {path.parent.name}/ folder must be writable",
        ) from None


def _try_flock(fd: int, mode: int) -> bool:
    try:
        fcntl.flock(fd, mode | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


@contextlib.contextmanager
def list_lock(
    ws: Workspace,
    name: str,
    *,
    shared: bool = False,
    on_wait: Callable[[], None] | None = None,
) -> Iterator[None]:
    """Hold the lock of list `name` (`.newsletter/list-<name>.lock`, an ``fcntl.flock``).

    `subscribers import` holds it exclusively for its whole read-merge-rename, so
    two imports into one list run one after the other and the second merges on top
    of the first (before, both copied the same list and the last rename lost the
    other's rows).  Anything that must see the list stable without changing it (a
    send freezing its recipients, a dry-run import) takes it ``shared=True``:
    readers run together, and an import waits for them (and they for it).

    If the lock is not free within LOCK_QUIET_SECONDS, `on_wait` is called once
    (the CLI says what it is waiting for) and the wait goes on until it is free.
    The lock belongs to the open file, so it is released when the block ends or
    the process dies, even by SIGKILL; the lock file itself stays (deleting it
    would let two processes lock two different files).  Locks are not reentrant:
    do not take the same list's lock twice in one process.  Raises
    SubscriberListError if the lock file cannot be created (``.newsletter/`` not
    writable).
    """
    fd = _open_lock(_lock_path(ws, name))
    try:
        mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
        deadline = time.monotonic() + LOCK_QUIET_SECONDS
        while not _try_flock(fd, mode):
            if time.monotonic() >= deadline:
                if on_wait is not None:
                    on_wait()
                fcntl.flock(fd, mode)
                break
            time.sleep(0.02)
        yield
    finally:
        os.close(fd)


def _owner_is_idle(ws: Workspace, name: str) -> bool:
    """True if no import (or send) holds list `name` now; probed without waiting."""
    try:
        fd = _open_lock(_lock_path(ws, name))
    except SubscriberListError:
        return False
    try:
        return _try_flock(fd, fcntl.LOCK_EX)
    finally:
        os.close(fd)


def clean_stale_imports(ws: Workspace, holding: str) -> list[Path]:
    """Delete the temporary copies that killed imports left behind; returns them.

    Called by an import while it holds `holding`'s lock exclusively.  Only files
    this module creates (recognised by their names) are touched, and another
    list's only when nothing holds that list's lock, so a running import never
    loses its file.  A large list makes a large copy, and a killed import (SIGKILL,
    power cut) has no chance to remove its own.
    """
    removed: list[Path] = []
    candidates: list[tuple[Path, str]] = []
    for folder, pattern in ((ws.tmp_dir, _TMP_IN_TMP_DIR), (ws.subscribers_dir, _TMP_BESIDE_LIST)):
        if folder.is_dir():
            for path in folder.iterdir():
                match = pattern.fullmatch(path.name)
                if match and path.is_file():
                    candidates.append((path, match["list"]))
    idle: dict[str, bool] = {}
    for path, owner in candidates:
        if owner != holding:
            if owner not in idle:
                try:
                    idle[owner] = _owner_is_idle(ws, owner)
                except SubscriberListError:  # not a list name: not ours after all
                    idle[owner] = False
            if not idle[owner]:
                continue
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            removed.append(path)
    return removed


# --------------------------------------------------------------------------- import


@dataclass
class ImportReport:
    """What `subscribers import` did: counts by outcome and why each row was skipped.

    Rows already on the list are only counted (re-importing a whole CRM export is
    normal and would drown the rest); every other skipped row is kept with its line,
    and every warning about a row that was added (a value written neutralised, a
    name with a line break).  A million problems fit (RowProblem has slots); the CLI
    prints the first few of each kind and counts the rest.
    """

    source: Path
    target: Path
    created: bool = False
    written: bool = False
    added: int = 0
    already_listed: int = 0
    skipped: list[RowProblem] = field(default_factory=list)
    dropped_columns: list[tuple[str, int]] = field(default_factory=list)  # name, values lost
    warnings: list[RowProblem] = field(default_factory=list)
    neutralised: int = 0  # values written with a leading apostrophe
    stale_removed: int = 0  # temporary files of earlier, killed imports deleted

    def count(self, kind: str) -> int:
        return sum(1 for p in self.skipped if p.kind == kind)

    def head(self) -> dict[str, object]:
        """Everything but the per-row lists (which :meth:`as_dict` adds)."""
        return {
            "source": str(self.source),
            "target": str(self.target),
            "created": self.created,
            "written": self.written,
            "added": self.added,
            "already_listed": self.already_listed,
            "neutralised": self.neutralised,
            "dropped_columns": [{"column": c, "values": n} for c, n in self.dropped_columns],
        }

    def as_dict(self) -> dict[str, object]:
        return {
            **self.head(),
            "skipped": [p.as_dict() for p in self.skipped],
            "warnings": [p.as_dict() for p in self.warnings],
        }


def _column_map(source: CsvLayout, target: CsvLayout) -> list[int | None]:
    """For each target column, the source column feeding it (known names by meaning)."""
    by_meaning: dict[str, int] = {}
    for i, (name, known) in enumerate(zip(source.header, source.canonical, strict=True)):
        by_meaning.setdefault(known or name.strip().lower(), i)
    return [
        by_meaning.get(known or name.strip().lower())
        for name, known in zip(target.header, target.canonical, strict=True)
    ]


def import_list(
    source: Path,
    target: Path,
    *,
    suppressions: SuppressionList | None = None,
    create: bool = False,
    dry_run: bool = False,
    workspace: Workspace | None = None,
    on_wait: Callable[[], None] | None = None,
) -> ImportReport:
    """Merge a CRM export into a list: new, valid, unsuppressed addresses are appended.

    The target's existing bytes are kept as they are (BOM, quoting, invalid rows a
    person still has to fix) and new rows are written in its delimiter, line ending
    and column order.  Source columns the target has no column for are reported in
    ``dropped_columns``, never dropped silently.  The write is atomic (temporary
    file, fsync, rename), so an interrupted import leaves the list as it was.
    Suppressed addresses are skipped: importing must not re-subscribe anyone who
    asked to leave.  A value a spreadsheet would run as a formula is written with
    a leading apostrophe (OWASP's advice against CSV injection) and reported.

    With `workspace` (the CLI always passes it), the whole read-merge-rename holds
    :func:`list_lock` (shared for a dry run), so concurrent imports into one list
    add up; the temporary copy is made in ``.newsletter/tmp/``, never in
    ``subscribers/``, and the copies of earlier killed imports are removed first.
    """
    if workspace is None:
        return _import(source, target, suppressions, create, dry_run, None)
    with list_lock(workspace, target.stem, shared=dry_run, on_wait=on_wait):
        stale = [] if dry_run else clean_stale_imports(workspace, target.stem)
        report = _import(source, target, suppressions, create, dry_run, workspace.tmp_dir)
        report.stale_removed = len(stale)
        return report


def _import(
    source: Path,
    target: Path,
    suppressions: SuppressionList | None,
    create: bool,
    dry_run: bool,
    tmp_dir: Path | None,
) -> ImportReport:
    report = ImportReport(source=source, target=target)
    source_layout = read_layout(source)
    if target.exists():
        target_layout = read_layout(target)
        existing: dict[str, int] = {}
        for item in iter_list(target, target.stem):
            if isinstance(item, Subscriber):
                existing[item.key] = item.line
    elif create:
        report.created = True
        target_layout = CsvLayout(
            target, ",", source_layout.header, source_layout.canonical, "\n", False
        )
        existing = {}
    else:
        raise _error(
            target,
            None,
            "the list does not exist",
            hint="check the name, or add --create to start a new list",
        )
    columns = _column_map(source_layout, target_layout)
    used = {i for i in columns if i is not None}
    dropped = [i for i, name in enumerate(source_layout.header) if i not in used and name]
    dropped_values = dict.fromkeys(dropped, 0)
    rows = _RowBuilder(target_layout, target.stem)  # judges rows as the list will read them

    with _AtomicAppend(target, target_layout, enabled=not dry_run, tmp_dir=tmp_dir) as out:
        width = len(source_layout.header)
        email_in = source_layout.canonical.index("email")
        email_out = target_layout.index("email")
        for _, line, fields in iter_rows(source):
            raw = fields[email_in] if email_in < len(fields) else ""
            if any(fields[width:]):
                report.skipped.append(
                    RowProblem(
                        source,
                        line,
                        "invalid",
                        raw,
                        f"the row has more values than the header has columns ({width}); a value "
                        f"containing {source_layout.delimiter!r} must be in double quotes",
                    )
                )
                continue
            try:
                email = normalise_recipient(raw)
            except ValueError as exc:
                reason = str(exc) if raw else "the email column is empty"
                report.skipped.append(RowProblem(source, line, "invalid", raw, reason))
                continue
            key = email_key(email)
            known = existing.get(key)
            if known is not None and known > 0:
                report.already_listed += 1
                continue
            if known is not None:
                report.skipped.append(
                    RowProblem(source, line, "duplicate", raw, _same_as(-known), -known)
                )
                continue
            row = [fields[i] if i is not None and i < len(fields) else "" for i in columns]
            too_long = rows.too_long(row)
            if too_long is not None:
                report.skipped.append(
                    RowProblem(source, line, "invalid", raw, too_long[1], column=too_long[0])
                )
                continue
            existing[key] = -line  # one dict for both files: lines of the import are negative
            if suppressions is not None and suppressions.contains_key(key):
                report.skipped.append(
                    RowProblem(
                        source,
                        line,
                        "suppressed",
                        raw,
                        "on the suppression list (unsubscribed, bounced or blocked)",
                    )
                )
                continue
            for i in dropped:
                if i < len(fields) and fields[i]:
                    dropped_values[i] += 1
            if email_out is not None:
                row[email_out] = email
            for column, note in rows.notes(row, written=not dry_run):
                report.warnings.append(
                    RowProblem(source, line, "warning", raw, note, column=column)
                )
            for i, _column in rows.text_columns:
                if formula_start(row[i]):
                    row[i] = FORMULA_NEUTRALISER + row[i]
                    report.neutralised += 1
            out.write(row)
            report.added += 1
        out.commit = report.added > 0
    report.written = not dry_run and report.added > 0
    report.dropped_columns = [(source_layout.header[i], n) for i, n in dropped_values.items()]
    return report


class _AtomicAppend:
    """Copy the target to a temporary file, append rows, fsync and rename over it.

    The copy goes to `tmp_dir` (``.newsletter/tmp/``) when given, so that a killed
    import leaves no hidden multi-megabyte file among the lists; if that folder is
    on another file system (the rename fails with EXDEV), the copy is copied once
    more beside the target and renamed from there, which is still atomic.
    """

    def __init__(
        self, target: Path, layout: CsvLayout, *, enabled: bool, tmp_dir: Path | None = None
    ) -> None:
        self.target = target
        self.layout = layout
        self.enabled = enabled
        self.tmp_dir = tmp_dir
        self.commit = False
        self._tmp: Path | None = None
        self._handle: TextIO | None = None
        self._writer: _CsvWriter | None = None

    def __enter__(self) -> _AtomicAppend:
        if not self.enabled:
            return self
        self.target.parent.mkdir(parents=True, exist_ok=True)
        if self.tmp_dir is not None:
            self.tmp_dir.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(
                dir=self.tmp_dir, prefix=f"{_IMPORT_TMP_PREFIX}{self.target.stem}.", suffix=".tmp"
            )
        else:
            fd, name = self._beside()
        self._tmp = Path(name)
        handle = os.fdopen(fd, "w", encoding="utf-8", newline="")
        self._handle = handle
        if self.target.exists():
            with self.target.open("rb") as original:
                data_end = b""
                while chunk := original.read(1 << 20):
                    handle.buffer.write(chunk)
                    data_end = chunk[-1:]
            handle.flush()
            if data_end not in (b"", b"\n", b"\r"):
                handle.write(self.layout.line_ending)
            shutil.copymode(self.target, self._tmp)
        else:
            os.chmod(self._tmp, 0o644)
        self._writer = csv.writer(
            handle, delimiter=self.layout.delimiter, lineterminator=self.layout.line_ending
        )
        if not self.target.exists():
            self._writer.writerow(self.layout.header)
        return self

    def _beside(self) -> tuple[int, str]:
        return tempfile.mkstemp(
            dir=self.target.parent, prefix=f".{self.target.name}.", suffix=".tmp"
        )

    def write(self, row: list[str]) -> None:
        if self._writer is not None:
            self._writer.writerow(row)

    def __exit__(self, kind: object, value: object, traceback: object) -> None:
        if self._handle is None or self._tmp is None:
            return
        try:
            if kind is None and self.commit:
                self._handle.flush()
                os.fsync(self._handle.fileno())
                self._handle.close()
                try:
                    os.replace(self._tmp, self.target)
                except OSError as exc:
                    if exc.errno != errno.EXDEV:
                        raise
                    self._replace_across()
                directory = os.open(self.target.parent, os.O_RDONLY)
                try:
                    os.fsync(directory)
                finally:
                    os.close(directory)
                return
        finally:
            if not self._handle.closed:
                self._handle.close()
            if self._tmp.exists():
                self._tmp.unlink()

    def _replace_across(self) -> None:
        """`tmp_dir` is on another file system: copy beside the target, rename that."""
        assert self._tmp is not None
        fd, name = self._beside()
        beside = Path(name)
        try:
            with os.fdopen(fd, "wb") as out, self._tmp.open("rb") as copy:
                shutil.copyfileobj(copy, out, 1 << 20)
                out.flush()
                os.fsync(out.fileno())
            shutil.copymode(self._tmp, beside)
            os.replace(beside, self.target)
        finally:
            if beside.exists():
                beside.unlink()
