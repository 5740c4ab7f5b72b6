"""The suppression list, `subscribers/suppressions.csv`: who must never be sent to.

It is the one place that decides exclusion, whichever list a send uses.  Several
processes touch it at once (the web server appends an unsubscribe while a send
reads), so writers append under an exclusive `flock` and fsync before returning,
and readers take a shared lock, so nobody ever reads half a row.  A send calls
:meth:`SuppressionList.refresh` before every batch; it re-reads only when the file
changed, so an unsubscribe that arrives mid-send is honoured by the next batch.

A file that cannot be read fully stops the caller with the line at fault, because
a suppression silently skipped is an email sent to someone who asked not to get it.
"""

from __future__ import annotations

import csv
import fcntl
import io
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from .errors import Problem, SubscriberListError
from .subscribers import email_key, iter_rows, normalise_email, read_layout, suppression_key

REASONS = ("unsubscribed", "bounced", "spam", "manual")
HEADER = ("email", "reason", "source", "at")


@dataclass(frozen=True)
class Suppression:
    email: str
    reason: str
    source: str
    at: str  # ISO 8601, UTC

    @property
    def key(self) -> str:
        return email_key(self.email)


def now_iso() -> str:
    """The `at` stamp: UTC, to the second, with an explicit offset."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def _columns(header: Iterable[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    for i, name in enumerate(header):
        key = name.strip().lower()
        if key in ("e-mail", "email address", "email_address"):
            key = "email"
        found.setdefault(key, i)
    return found


def read_suppressions(path: Path) -> Iterator[Suppression]:
    """Every entry in file order; a missing file has none.

    Raises SubscriberListError naming the line for an invalid address or an unknown
    reason.  An empty reason is read as "manual" (a row added by hand); an empty
    `at` stays empty.
    """
    try:
        if path.stat().st_size == 0:  # created by `touch`, or a writer's first instant
            return
    except FileNotFoundError:
        return
    columns: dict[str, int] = {}
    for layout, line, fields in iter_rows(path):
        if not columns:
            columns = _columns(layout.header)
        values = {name: fields[i] for name, i in columns.items() if i < len(fields)}

        def get(name: str, values: dict[str, str] = values) -> str:
            return values.get(name, "")

        raw = get("email")
        try:
            email = normalise_email(raw)
        except ValueError as exc:
            raise SubscriberListError(
                Problem(
                    message=f"{raw!r} is not a valid address: {exc}",
                    path=path,
                    line=line,
                    field="email",
                    hint="correct or delete this row",
                )
            ) from None
        reason = get("reason").lower() or "manual"
        if reason not in REASONS:
            raise SubscriberListError(
                Problem(
                    message=f"unknown reason {get('reason')!r}",
                    path=path,
                    line=line,
                    field="reason",
                    hint="use one of: " + ", ".join(REASONS),
                )
            )
        yield Suppression(email=email, reason=reason, source=get("source"), at=get("at"))


def _stamp(stat: os.stat_result) -> tuple[int, int, int]:
    return (stat.st_ino, stat.st_mtime_ns, stat.st_size)


class SuppressionList:
    """The set of suppressed addresses, re-read only when the file changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._keys: frozenset[str] = frozenset()
        self._stamp: tuple[int, int, int] | None = None
        self.refresh()

    def refresh(self) -> bool:
        """Re-read if the file changed (inode, mtime_ns or size); True if it re-read."""
        try:
            handle = self.path.open("rb")
        except FileNotFoundError:
            changed = self._stamp is not None
            self._keys, self._stamp = frozenset(), None
            return changed
        with handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_SH)  # no half-appended row
            stamp = _stamp(os.fstat(handle.fileno()))
            if stamp == self._stamp:
                return False
            self._keys = frozenset(s.key for s in read_suppressions(self.path))
            self._stamp = stamp
            return True

    def contains(self, email: str) -> bool:
        """Whether an address (any spelling: case, spaces, IDN form) is suppressed."""
        return suppression_key(email) in self._keys

    def contains_key(self, key: str) -> bool:
        """For callers that already hold the normalised key (``Subscriber.key``)."""
        return key in self._keys

    def __contains__(self, email: object) -> bool:
        return isinstance(email, str) and self.contains(email)

    def __len__(self) -> int:
        return len(self._keys)


def _validated(entries: Iterable[Suppression]) -> list[Suppression]:
    out: list[Suppression] = []
    for entry in entries:
        email = normalise_email(entry.email)  # ValueError names the reason
        reason = entry.reason.strip().lower()
        if reason not in REASONS:
            raise ValueError(f"unknown reason {entry.reason!r}; use one of: {', '.join(REASONS)}")
        out.append(
            Suppression(
                email=email,
                reason=reason,
                source=entry.source.strip(),
                at=entry.at.strip() or now_iso(),
            )
        )
    return out


def add_suppressions(path: Path, entries: Iterable[Suppression]) -> list[Suppression]:
    """Append the entries not already suppressed; return those actually added.

    Durable and safe across processes: the read of existing entries and the append
    happen under one exclusive lock, and the data is fsynced before returning, so a
    web server and a CLI adding at the same moment lose nothing and add nothing
    twice.  The file is created with a header if missing; an existing file keeps its
    delimiter, column order and line endings.  Raises ValueError for an invalid
    address or reason (nothing is written then).
    """
    wanted = _validated(entries)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        handle = path.open("a+b")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                same = os.stat(path).st_ino == os.fstat(handle.fileno()).st_ino
            except FileNotFoundError:
                same = False
            if not same:  # replaced or removed while we waited: lock the new file instead
                continue
            return _append_locked(path, handle, wanted)
        finally:
            handle.close()  # also releases the lock


def _append_locked(
    path: Path, handle: io.BufferedRandom, wanted: list[Suppression]
) -> list[Suppression]:
    size = os.fstat(handle.fileno()).st_size
    created = size == 0
    existing: set[str] = set() if created else {s.key for s in read_suppressions(path)}
    added: list[Suppression] = []
    for entry in wanted:
        if entry.key not in existing:
            existing.add(entry.key)
            added.append(entry)
    if not added:
        return []
    header: tuple[str, ...] = HEADER
    if created:
        delimiter, ending = ",", "\n"
    else:
        layout = read_layout(path)
        delimiter, header, ending = layout.delimiter, layout.header, layout.line_ending
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, lineterminator=ending)
    if created:
        writer.writerow(header)
    elif os.pread(handle.fileno(), 1, size - 1) not in (b"\n", b"\r"):
        out.write(ending)
    columns = _columns(header)
    for entry in added:
        row = [""] * len(header)
        for name, value in (
            ("email", entry.email),
            ("reason", entry.reason),
            ("source", entry.source),
            ("at", entry.at),
        ):
            if name in columns:
                row[columns[name]] = value
        writer.writerow(row)
    handle.write(out.getvalue().encode("utf-8"))
    handle.flush()
    os.fsync(handle.fileno())
    if created:
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    return added
