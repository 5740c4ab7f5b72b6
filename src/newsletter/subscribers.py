"""Subscriber lists: which lists there are, their rows in order, and a send's audience.

A list is `subscribers/<list>.csv`, read by :mod:`newsletter.csvfile`; each row is
judged by :mod:`newsletter.addresses` and built by :class:`~newsletter.rows.RowBuilder`.
Nothing here holds a whole list in memory: rows are yielded one by one, and only a
dictionary of the addresses already seen (for duplicates) grows with the list.

Merging an export into a list is :mod:`newsletter.importing`; the lock that keeps an
import and a send from meeting mid-file is :mod:`newsletter.list_locks`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from .addresses import normalise_recipient
from .config import Workspace
from .csvfile import iter_rows, list_error
from .rows import RowBuilder, RowProblem, Subscriber, TooLong, same_as
from .suppressions import SuppressionList
from .words import plural

SUPPRESSIONS_FILE = "suppressions.csv"


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
        raise list_error(
            path,
            None,
            f"{name!r} is not a list name",
            hint="use the file name in subscribers/ without '.csv', e.g. 'members'",
        )
    if path.name == SUPPRESSIONS_FILE:
        raise list_error(
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
        raise list_error(
            path,
            None,
            f"no subscriber list named {path.stem!r}",
            hint=f"lists in {ws.subscribers_dir}: {available}",
        )
    return path


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
    builder: RowBuilder | None = None
    file_mask = (1 << (_FILE_BITS - 1)) - 1
    for layout, line, fields in iter_rows(path):
        if builder is None:
            builder = RowBuilder(layout, list_name)
        raw = builder.raw_email(fields)
        extra = builder.extra_values(fields)
        if extra:
            yield RowProblem(
                path,
                line,
                "invalid",
                raw,
                f"the row has {plural(extra, 'more value')} than the header has columns "
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
            yield RowProblem(path, line, "duplicate", raw, same_as(first), first)
            continue
        try:
            subscriber = builder.build(email, fields, line)
        except TooLong as exc:  # invalid, so not registered: a later row may be used
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
        if not list_names:
            raise list_error(
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
