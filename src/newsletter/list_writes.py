"""Changing one reader's row in a list: a confirmed sign-up, a preferences page's changes.

Every change holds the list's lock exclusively (:func:`~newsletter.list_locks.list_lock`,
the one `subscribers import` takes), so a confirmation, a preferences change and an
import into one list run one after the other and none loses another's rows.  The file is
replaced all at once (:mod:`newsletter.atomic`), keeping its bytes except the row that
changes: its BOM, delimiter, line endings, quoting and column order.  A column the new
row needs (``consent``, ``subscribed_at`` ...) that the list lacks is added at the end of
the header; existing rows are left shorter, which reads as empty.
"""

from __future__ import annotations

import csv
import io
import os
import stat
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from .addresses import email_key, normalise_recipient
from .atomic import AtomicFile
from .config import Workspace
from .csvfile import CsvLayout, read_layout
from .errors import SubscriberListError
from .list_locks import list_lock
from .rows import FORMULA_NEUTRALISER, Subscriber, formula_start
from .subscribers import iter_list, list_file, list_names

# The columns a sign-up writes, in the order they are added to a list that lacks them.
SIGNUP_COLUMNS = ("name", "language", "tags", "subscribed_at", "consent")
_TMP_PREFIX = "import-"  # .newsletter/tmp/import-<list>.<random>.tmp: cleaned like an import's


@dataclass(frozen=True)
class _Row:
    start: int  # character offsets of the row's text (every physical line of it)
    end: int
    fields: list[str]


def _split_lines(text: str, start: int) -> Iterator[tuple[int, str]]:
    """(offset, line) from ``start``, each line with its ending (split at "\\n" only)."""
    pos = start
    while pos < len(text):
        nl = text.find("\n", pos)
        end = len(text) if nl < 0 else nl + 1
        yield pos, text[pos:end]
        pos = end


def _header_end(text: str) -> tuple[int, int]:
    """(start, end) of the header line: the first non-blank line."""
    for pos, line in _split_lines(text, 0):
        if line.lstrip("\ufeff").strip():
            return pos, pos + len(line)
    return 0, len(text)


def _rows(text: str, layout: CsvLayout) -> Iterator[_Row]:
    """Each data row with the span of text it occupies (quoted values may span lines)."""
    _, body = _header_end(text)
    lines = _split_lines(text, body)
    ends: list[int] = []

    def feed() -> Iterator[str]:
        for pos, line in lines:
            ends.append(pos + len(line))
            yield line

    start = body
    for fields in csv.reader(feed(), delimiter=layout.delimiter):
        end = ends[-1]
        yield _Row(start, end, [f.strip() for f in fields])
        start = end


def _key_of(fields: list[str], layout: CsvLayout) -> str | None:
    at = layout.index("email")
    if at is None or at >= len(fields):
        return None
    try:
        return email_key(normalise_recipient(fields[at]))
    except ValueError:
        return None


def _line(values: list[str], layout: CsvLayout) -> str:
    out = io.StringIO()
    csv.writer(out, delimiter=layout.delimiter, lineterminator=layout.line_ending).writerow(values)
    return out.getvalue()


def _safe(value: str) -> str:
    """A value a spreadsheet would run as a formula is written with a leading apostrophe."""
    return FORMULA_NEUTRALISER + value if formula_start(value) else value


def _write(ws: Workspace, path: Path, text: str) -> None:
    mode = stat.S_IMODE(os.stat(path).st_mode) if path.exists() else 0o644
    with AtomicFile(
        path, mode=mode, tmp_dir=ws.tmp_dir, prefix=f"{_TMP_PREFIX}{path.stem}."
    ) as out:
        out.text().write(text)
        out.commit()


def _with_columns(text: str, layout: CsvLayout, wanted: list[str]) -> tuple[str, CsvLayout]:
    """The text with ``wanted`` columns added to its header (if missing), and its layout."""
    missing = [c for c in wanted if layout.index(c) is None]
    if not missing:
        return text, layout
    start, end = _header_end(text)
    header = [*layout.header, *missing]
    bom = "\ufeff" if text[start:].startswith("\ufeff") else ""
    new = CsvLayout(
        layout.path,
        layout.delimiter,
        tuple(header),
        (*layout.canonical, *missing),
        layout.line_ending,
        layout.bom,
    )
    return text[:start] + bom + _line(header, layout) + text[end:], new


def _read(path: Path) -> tuple[str, CsvLayout]:
    layout = read_layout(path)  # UTF-8 checked, header found (SubscriberListError if not)
    with path.open(encoding="utf-8", newline="") as handle:
        return handle.read(), layout


def add_member(ws: Workspace, list_name: str, values: Mapping[str, str]) -> bool:
    """Append a row for ``values["email"]`` unless the address is on the list; True if added.

    ``values``: column (a known name: email, name, language, tags, subscribed_at,
    consent) -> value.  Raises SubscriberListError for a list that cannot be read.
    """
    path = list_file(ws, list_name)
    key = email_key(values["email"])
    with list_lock(ws, list_name):
        text, layout = _read(path)
        if any(_key_of(row.fields, layout) == key for row in _rows(text, layout)):
            return False
        wanted = [c for c in SIGNUP_COLUMNS if values.get(c)]
        text, layout = _with_columns(text, layout, wanted)
        row = [""] * len(layout.header)
        for column, value in values.items():
            at = layout.index(column)
            if at is not None:
                row[at] = value if column == "email" else _safe(value)
        if text and not text.endswith("\n"):
            text += layout.line_ending
        _write(ws, path, text + _line(row, layout))
        return True


def change_member(
    ws: Workspace, list_name: str, email: str, changes: Mapping[str, str] | None
) -> bool:
    """Change columns of the address's row (``None``: remove the row); True if it was there."""
    path = list_file(ws, list_name)
    key = email_key(email)
    with list_lock(ws, list_name):
        text, layout = _read(path)
        found = next((r for r in _rows(text, layout) if _key_of(r.fields, layout) == key), None)
        if found is None:
            return False
        if changes is None:
            _write(ws, path, text[: found.start] + text[found.end :])
            return True
        wanted = [c for c in changes if changes[c]]
        shift = len(text)
        text, layout = _with_columns(text, layout, wanted)
        shift = len(text) - shift  # the header grew by this much
        row = found.fields + [""] * max(0, len(layout.header) - len(found.fields))
        for column, value in changes.items():
            at = layout.index(column)
            if at is not None:
                row[at] = _safe(value)
        if row == found.fields:
            return True
        ending = text[found.end + shift - 2 : found.end + shift]
        line = _line(row, layout)
        if not ending.endswith("\n"):  # the last row, without a line break
            line = line.rstrip("\r\n")
        _write(ws, path, text[: found.start + shift] + line + text[found.end + shift :])
        return True


@dataclass(frozen=True)
class Membership:
    """One list the reader is on, as the preferences page shows it."""

    list_name: str
    name: str
    language: str
    tags: frozenset[str]


def memberships(ws: Workspace, email: str) -> list[Membership]:
    """Every list that has the address (lists that cannot be read are skipped)."""
    key = email_key(email)
    found: list[Membership] = []
    for name in list_names(ws):
        try:
            for item in iter_list(list_file(ws, name), name):
                if isinstance(item, Subscriber) and item.key == key:
                    found.append(Membership(name, item.name or "", item.language or "", item.tags))
                    break
        except (SubscriberListError, OSError):  # one broken list must not hide the others
            continue
    return found


def has_member(ws: Workspace, list_name: str, email: str) -> bool:
    """Whether the list has the address (a list that cannot be read: no)."""
    key = email_key(email)
    try:
        return any(
            isinstance(item, Subscriber) and item.key == key
            for item in iter_list(list_file(ws, list_name), list_name)
        )
    except (SubscriberListError, OSError):
        return False
