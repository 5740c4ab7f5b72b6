"""The suppression list, `subscribers/suppressions.csv`: who must never be sent to.

It is the one place that decides exclusion, whichever list a send uses.  Several
processes touch it at once (the web server appends an unsubscribe while a send
reads), so writers append under an exclusive `flock` and fsync before returning,
and readers take a shared lock, so nobody ever reads half a row.  A send calls
:meth:`SuppressionList.refresh` before every batch; it re-reads only when the file
changed, so an unsubscribe that arrives mid-send is honoured by the next batch.

A file that cannot be read fully stops the caller with the line at fault, because
a suppression silently skipped is an email sent to someone who asked not to get it.
Writers are the exception: staff edit the file by hand, and one mistyped row must
never stop a reader's unsubscribe from being added, so :func:`add_suppressions`
skips invalid rows it finds (they are not suppressions; the send still reports
them) and refuses only a file it cannot safely append to (unreadable header,
encoding, an unclosed quote that would swallow the new row).

The server records what it could not append in the state database first
(:mod:`newsletter.events`, ``pending_suppressions``) and merges it later
(:func:`merge_pending`); a :class:`SuppressionList` for a workspace's file counts
those pending entries as suppressed too.

The file is not the only copy: every entry written by :func:`add_suppressions` and
every entry read from a workspace's file is also kept in the state database
(:mod:`newsletter.suppression_store`), and a workspace's :class:`SuppressionList`
is the union of both, so a file that vanishes (a `git checkout`, a sync script
that deletes and recreates it) never un-suppresses anyone.
"""

from __future__ import annotations

import csv
import fcntl
import io
import os
from collections.abc import Iterable, Iterator
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from .config import Workspace
from .errors import Problem, StateDatabaseError, SubscriberListError
from .events import EventStore, PendingSuppression, pending_keys
from .subscribers import email_key, iter_rows, normalise_email, read_layout, suppression_key
from .suppression_store import StoredSuppression, SuppressionStore

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

    def stored(self) -> StoredSuppression:
        return StoredSuppression(self.key, self.email, self.reason, self.source, self.at)


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
    return _entries(path, None)


def readable_suppressions(path: Path, skipped: list[Problem]) -> Iterator[Suppression]:
    """Like :func:`read_suppressions`, but an invalid row is appended to ``skipped``.

    Problems with the file as a whole (encoding, header, an unclosed quote) still
    raise SubscriberListError: past them no row can be trusted.
    """
    return _entries(path, skipped)


def _entries(path: Path, skipped: list[Problem] | None) -> Iterator[Suppression]:
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
        problem: Problem | None = None
        try:
            email = normalise_email(raw)
        except ValueError as exc:
            problem = Problem(
                message=f"{raw!r} is not a valid address: {exc}",
                path=path,
                line=line,
                field="email",
                hint="correct or delete this row",
            )
        reason = get("reason").lower() or "manual"
        if problem is None and reason not in REASONS:
            problem = Problem(
                message=f"unknown reason {get('reason')!r}",
                path=path,
                line=line,
                field="reason",
                hint="use one of: " + ", ".join(REASONS),
            )
        if problem is not None:
            if skipped is None:
                raise SubscriberListError(problem)
            skipped.append(problem)
            continue
        yield Suppression(email=email, reason=reason, source=get("source"), at=get("at"))


def _stamp(stat: os.stat_result) -> tuple[int, int, int]:
    return (stat.st_ino, stat.st_mtime_ns, stat.st_size)


class _Auto:
    """Marker: find the state database of the workspace the file belongs to."""


AUTO = _Auto()


def workspace_state_db(path: Path) -> Path | None:
    """The state database beside a workspace's suppressions.csv, or None for any other file."""
    ws = Workspace(path.parent.parent)
    return ws.state_db if ws.suppressions_path == path else None


class SuppressionList:
    """The set of suppressed addresses, re-read only when the file changes.

    ``pending_db``: the state database whose pending suppressions (accepted by the
    server, not yet in the CSV) also count; by default that of the workspace the
    file belongs to, so a send honours an unsubscribe the CSV could not take.

    ``strict=False`` (the server's cache) skips invalid rows and notes in ``problem``
    why a file could not be read (fully): it only ever answers "already suppressed"
    for addresses really in the file, and a caller that hears "no" takes the slow,
    careful path.
    """

    def __init__(
        self, path: Path, *, strict: bool = True, pending_db: Path | None | _Auto = AUTO
    ) -> None:
        self.path = path
        self.strict = strict
        self.pending_db = workspace_state_db(path) if isinstance(pending_db, _Auto) else pending_db
        self.store = SuppressionStore(self.pending_db) if self.pending_db is not None else None
        self.problem: str | None = None
        self.skipped: list[Problem] = []
        self.vanished = False  # the file was read once, then went missing
        self._file_keys: frozenset[str] = frozenset()
        self._pending: frozenset[str] = frozenset()
        self._stored: frozenset[str] = frozenset()
        self._stored_mark = 0
        self._keys: frozenset[str] = frozenset()
        self._stamp: tuple[int, int, int] | None = None
        self.refresh()

    @property
    def stored_count(self) -> int:
        """Addresses kept in the state database (whatever the file says now)."""
        return len(self._stored)

    @property
    def file_exists(self) -> bool:
        return self._stamp is not None

    def refresh(self) -> bool:
        """Re-read if the file changed (inode, mtime_ns or size); True if it re-read the
        file or the pending entries changed.

        Pending entries are read first: one merged into the CSV meanwhile is then
        in the file when the file is read, so no entry falls between the two.
        """
        pending = pending_keys(self.pending_db) if self.pending_db is not None else frozenset()
        changed = pending != self._pending
        self._pending = pending
        if self.store is not None:
            new, self._stored_mark = self.store.keys_since(self._stored_mark)
            if new - self._stored:
                self._stored |= new
                changed = True
        if self._refresh_file():
            changed = True
        if changed:
            self._keys = self._file_keys | self._pending | self._stored
        return changed

    def _refresh_file(self) -> bool:
        try:
            if _stamp(os.stat(self.path)) == self._stamp:  # the usual case: no lock, no read
                return False
            handle = self.path.open("rb")
        except FileNotFoundError:
            changed = self._stamp is not None
            self.vanished = self.vanished or changed
            self._file_keys, self._stamp, self.problem, self.skipped = frozenset(), None, None, []
            return changed
        except OSError as exc:
            if self.strict:
                raise
            # Whatever the file held is unknown now: answer "not suppressed" for all, so
            # every request takes the careful path (which records it in the state database).
            changed = bool(self._file_keys)
            self._file_keys, self._stamp = frozenset(), None
            self.problem = f"cannot read {self.path}: {exc.strerror or exc}"
            return changed
        with handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_SH)  # no half-appended row
            stamp = _stamp(os.fstat(handle.fileno()))
            if stamp == self._stamp:
                return False
            entries = list(read_suppressions(self.path)) if self.strict else self._read_leniently()
            self._file_keys = frozenset(e.key for e in entries)
            self._stamp = stamp
        self._mirror(entries)
        return True

    def _mirror(self, entries: list[Suppression]) -> None:
        """Keep what the file holds in the state database too (see the module docstring).

        A lenient reader (the server) must answer even when the database is busy:
        the next strict reader mirrors the same rows.
        """
        if self.store is None:
            return
        try:
            self.store.mirror_file(self.path, [e.stored() for e in entries])
        except StateDatabaseError:
            if self.strict:
                raise

    def _read_leniently(self) -> list[Suppression]:
        skipped: list[Problem] = []
        entries: list[Suppression] = []
        self.problem = None
        try:
            entries.extend(readable_suppressions(self.path, skipped))
        except SubscriberListError as exc:  # keep the rows before the fault
            self.problem = exc.message
        self.skipped = skipped
        return entries

    def adopt(
        self, path: Path, keys: Iterable[str], stamp: tuple[int, int, int], skipped: list[Problem]
    ) -> None:
        """Take the keys a writer read under its lock (lenient lists of this file only)."""
        if self.strict or path != self.path:
            return
        self._file_keys, self._stamp = frozenset(keys), stamp
        self.problem, self.skipped = None, skipped
        self._keys = self._file_keys | self._pending | self._stored

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
    wanted = _validated(entries)
    db = workspace_state_db(path)
    if db is not None and wanted:
        # First the durable copy, so that a file lost later cannot take these with it.
        # A busy database does not stop the append: the next read of the file keeps them.
        with suppress(StateDatabaseError):
            SuppressionStore(db).record(e.stored() for e in wanted)
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
            return _append_locked(path, handle, wanted, cache)
        finally:
            handle.close()  # also releases the lock


_mirrored: dict[Path, tuple[int, int, int]] = {}  # file -> the version last copied to the db


def _append_locked(
    path: Path,
    handle: io.BufferedRandom,
    wanted: list[Suppression],
    cache: SuppressionList | None,
) -> list[Suppression]:
    size = os.fstat(handle.fileno()).st_size
    created = size == 0
    skipped: list[Problem] = []  # someone else's typo must not block this append
    on_file = [] if created else list(readable_suppressions(path, skipped))
    existing: set[str] = {s.key for s in on_file}
    db = workspace_state_db(path)
    stamp = _stamp(os.fstat(handle.fileno()))
    if db is not None and on_file and _mirrored.get(path) != stamp:
        # The rows read here are kept in the database too (once per version of the file
        # in this process: a server appending one unsubscribe at a time does not copy
        # the whole file each time).
        with suppress(StateDatabaseError):
            SuppressionStore(db).record(e.stored() for e in on_file)
    added: list[Suppression] = []
    for entry in wanted:
        if entry.key not in existing:
            existing.add(entry.key)
            added.append(entry)
    if not added:
        if cache is not None:
            cache.adopt(path, existing, _stamp(os.fstat(handle.fileno())), skipped)
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
    if db is not None:  # this process's own append: what the database already holds
        _mirrored[path] = _stamp(os.fstat(handle.fileno()))
    if cache is not None:  # still under the lock: this is exactly what the file holds
        cache.adopt(path, existing, _stamp(os.fstat(handle.fileno())), skipped)
    if created:
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
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
            rows.extend(_validated([_suppression(item)]))
        except ValueError:  # cannot happen for rows the server wrote; never block the rest
            continue
    added = add_suppressions(path, rows, cache=cache) if rows else []
    store.forget_pending(item.key for item in pending)
    return added


def _suppression(item: PendingSuppression) -> Suppression:
    return Suppression(email=item.email, reason=item.reason, source=item.source, at=item.at)


def pending_entry(entry: Suppression) -> PendingSuppression:
    """A validated suppression as the state database holds it until it is merged."""
    (valid,) = _validated([entry])
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
    while True:
        handle = path.open("rb")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                if os.stat(path).st_ino != os.fstat(handle.fileno()).st_ino:
                    continue  # replaced while we waited: lock the new file instead
            except FileNotFoundError:
                return set()
            lines = handle.read().decode("utf-8").splitlines(keepends=True)
            rows = [(line, fields) for _, line, fields in iter_rows(path)]
            if not rows:
                return set()
            column = _columns(read_layout(path).header).get("email", 0)
            ends = [line - 1 for line, _ in rows[1:]] + [len(lines)]
            gone: set[str] = set()
            drop: set[int] = set()
            for (line, fields), end in zip(rows, ends, strict=True):
                key = suppression_key(fields[column] if column < len(fields) else "")
                if key in wanted:
                    gone.add(key)
                    drop.update(range(line, end + 1))
            if drop:
                tmp = path.with_name(f".{path.name}.remove.tmp")
                with tmp.open("w", encoding="utf-8", newline="") as out:
                    out.write("".join(t for n, t in enumerate(lines, 1) if n not in drop))
                    out.flush()
                    os.fsync(out.fileno())
                os.replace(tmp, path)
            return gone
        finally:
            handle.close()
