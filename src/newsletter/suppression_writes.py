"""Changing the suppression list: adding entries, merging the server's pending ones, removing.

Several processes write at once (the web server appends an unsubscribe while
`suppressions sync` adds bounces), so every writer works under an exclusive `flock`
of the file and fsyncs before returning.  Staff edit the file by hand, and one
mistyped row must never stop a reader's unsubscribe from being added, so
:func:`add_suppressions` skips invalid rows it finds (they are not suppressions; the
send still reports them) and refuses only a file it cannot safely append to
(unreadable header, encoding, an unclosed quote that would swallow the new row).
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import io
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING

from .addresses import suppression_key
from .atomic import fsync_dir, write_atomic
from .config import Workspace
from .csvfile import iter_rows, read_layout
from .errors import Problem, StateDatabaseError
from .events import EventStore, PendingSuppression
from .suppression_file import (
    HEADER,
    Suppression,
    column_positions,
    file_stamp,
    readable_suppressions,
    validated,
    workspace_state_db,
)
from .suppression_store import SuppressionStore

if TYPE_CHECKING:
    from .suppressions import SuppressionList


def add_suppressions(
    path: Path, entries: Iterable[Suppression], *, cache: SuppressionList | None = None
) -> list[Suppression]:
    """Append the entries not already suppressed; return those actually added.

    Durable and safe across processes: the read of existing entries and the append
    happen under one exclusive lock, and the data is fsynced before returning, so a
    web server and a CLI adding at the same moment lose nothing and add nothing
    twice.  The file is created with a header if missing; an existing file keeps its
    delimiter, column order and line endings.  Existing rows that are invalid (a
    typo by hand) are skipped, never a reason to refuse.  Raises ValueError for an
    invalid address or reason among ``entries`` (nothing is written then),
    SubscriberListError when the file cannot safely take a row (encoding, header,
    unclosed quote) and OSError when it cannot be written.

    ``cache``: a lenient :class:`SuppressionList` of this file that takes over what
    was read under the lock, so it need not read the whole file again.
    """
    wanted = validated(entries)
    db = workspace_state_db(path)
    if db is not None and wanted:
        # First the durable copy, so that a file lost later cannot take these with it.
        # A busy database does not stop the append: the next read of the file keeps them.
        with contextlib.suppress(StateDatabaseError):
            SuppressionStore(db).record(e.stored() for e in wanted)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _locked(path, create=True) as handle:
        assert handle is not None
        return _append_locked(path, handle, wanted, cache)


@contextlib.contextmanager
def _locked(path: Path, *, create: bool) -> Iterator[IO[bytes] | None]:
    """The file at `path` now, open (``a+b`` with `create`, else ``rb``) under an exclusive
    `flock`; None if it was removed while we waited (and not `create`).

    A writer that rewrites the file (:func:`remove_suppressions`) renames a new one
    over it, so the lock we waited for may be on a file that is no longer there:
    then the new file is locked instead.  Closing the file releases the lock.
    """
    while True:
        with path.open("a+b" if create else "rb") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                same = os.stat(path).st_ino == os.fstat(handle.fileno()).st_ino
            except FileNotFoundError:
                if create:
                    continue  # removed: open (and create) it again
                yield None
                return
            if same:
                yield handle
                return


_mirrored: dict[Path, tuple[int, int, int]] = {}  # file -> the version last copied to the db


def _append_locked(
    path: Path,
    handle: IO[bytes],
    wanted: list[Suppression],
    cache: SuppressionList | None,
) -> list[Suppression]:
    size = os.fstat(handle.fileno()).st_size
    created = size == 0
    skipped: list[Problem] = []  # someone else's typo must not block this append
    on_file = [] if created else list(readable_suppressions(path, skipped))
    existing: set[str] = {s.key for s in on_file}
    db = workspace_state_db(path)
    stamp = file_stamp(os.fstat(handle.fileno()))
    if db is not None and on_file and _mirrored.get(path) != stamp:
        # The rows read here are kept in the database too (once per version of the file
        # in this process: a server appending one unsubscribe at a time does not copy
        # the whole file each time).
        with contextlib.suppress(StateDatabaseError):
            SuppressionStore(db).record(e.stored() for e in on_file)
    added: list[Suppression] = []
    for entry in wanted:
        if entry.key not in existing:
            existing.add(entry.key)
            added.append(entry)
    if not added:
        if cache is not None:
            cache.adopt(path, existing, file_stamp(os.fstat(handle.fileno())), skipped)
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
    columns = column_positions(header)
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
    if db is not None:  # this process's own append: what the database already holds
        _mirrored[path] = file_stamp(os.fstat(handle.fileno()))
    if cache is not None:  # still under the lock: this is exactly what the file holds
        cache.adopt(path, existing, file_stamp(os.fstat(handle.fileno())), skipped)
    if created:
        fsync_dir(path.parent)
    return added


def merge_pending(
    store: EventStore, path: Path, *, cache: SuppressionList | None = None
) -> list[Suppression]:
    """Append the store's pending suppressions to the CSV, then forget them; return those added.

    Safe to run from several places at once (server, `suppressions sync`): the
    append dedupes under the file lock, and a crash between the append and the
    forget only leaves entries that the next merge finds already on file.
    Raises like :func:`add_suppressions` (then everything stays pending).
    """
    pending = store.pending()
    if not pending:
        return []
    rows: list[Suppression] = []
    for item in pending:
        try:
            rows.extend(validated([_suppression(item)]))
        except ValueError:  # cannot happen for rows the server wrote; never block the rest
            continue
    added = add_suppressions(path, rows, cache=cache) if rows else []
    store.forget_pending(item.key for item in pending)
    return added


def _suppression(item: PendingSuppression) -> Suppression:
    return Suppression(email=item.email, reason=item.reason, source=item.source, at=item.at)


def pending_entry(entry: Suppression) -> PendingSuppression:
    """A validated suppression as the state database holds it until it is merged."""
    (valid,) = validated([entry])
    return PendingSuppression(
        key=valid.key, email=valid.email, reason=valid.reason, source=valid.source, at=valid.at
    )


def stored_suppressions(ws: Workspace) -> list[Suppression]:
    """The suppressions kept in the workspace's state database (none if it has none)."""
    return [
        Suppression(email=e.email, reason=e.reason, source=e.source, at=e.at)
        for e in SuppressionStore(ws.state_db).entries()
    ]


def remove_suppressions(ws: Workspace, keys: Iterable[str]) -> set[str]:
    """Take addresses (by :func:`suppression_key`) off the suppression list for good: their
    rows in the file (rewritten under the same lock writers take, atomically), the state
    database's copy and any pending entry.  Returns the keys that were found anywhere."""
    wanted = set(keys)
    path = ws.suppressions_path
    found: set[str] = set()
    if path.exists():
        found |= _remove_rows(path, wanted)
    if ws.state_db.exists():
        store = SuppressionStore(ws.state_db)
        stored = {e.key for e in store.entries()}
        found |= wanted & stored
        store.remove(wanted)
        events = EventStore(ws.state_db)
        try:
            pending = {p.key for p in events.pending()}
            found |= wanted & pending
            events.forget_pending(wanted & pending)
        finally:
            events.close()
    return found


def _remove_rows(path: Path, wanted: set[str]) -> set[str]:
    """Rewrite the file without the rows of ``wanted`` (every physical line of a row, even a
    quoted value spanning lines), keeping everything else byte for byte."""
    with _locked(path, create=False) as handle:
        if handle is None:
            return set()
        lines = handle.read().decode("utf-8").splitlines(keepends=True)
        rows = [(line, fields) for _, line, fields in iter_rows(path)]
        if not rows:
            return set()
        column = column_positions(read_layout(path).header).get("email", 0)
        ends = [line - 1 for line, _ in rows[1:]] + [len(lines)]
        gone: set[str] = set()
        drop: set[int] = set()
        for (line, fields), end in zip(rows, ends, strict=True):
            key = suppression_key(fields[column] if column < len(fields) else "")
            if key in wanted:
                gone.add(key)
                drop.update(range(line, end + 1))
        if drop:
            kept = "".join(t for n, t in enumerate(lines, 1) if n not in drop)
            write_atomic(path, kept.encode("utf-8"))
        return gone
