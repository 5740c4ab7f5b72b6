"""The suppression list, `subscribers/suppressions.csv`: who must never be sent to.

It is the one place that decides exclusion, whichever list a send uses.  Several
processes touch it at once (the web server appends an unsubscribe while a send
reads), so writers append under an exclusive `flock` and fsync before returning
(:mod:`newsletter.suppression_writes`), and readers take a shared lock, so nobody
ever reads half a row.  A send calls :meth:`SuppressionList.refresh` before every
batch; it re-reads only when the file changed, so an unsubscribe that arrives
mid-send is honoured by the next batch.

A file that cannot be read fully stops the caller with the line at fault, because
a suppression silently skipped is an email sent to someone who asked not to get it
(the rows are read by :mod:`newsletter.suppression_file`).  Writers are the
exception: one mistyped row must never stop a reader's unsubscribe from being added.

The server records what it could not append in the state database first
(:mod:`newsletter.events`, ``pending_suppressions``) and merges it later
(:func:`~newsletter.suppression_writes.merge_pending`); a :class:`SuppressionList`
for a workspace's file counts those pending entries as suppressed too.

The file is not the only copy: every entry written by
:func:`~newsletter.suppression_writes.add_suppressions` and every entry read from a
workspace's file is also kept in the state database
(:mod:`newsletter.suppression_store`), and a workspace's :class:`SuppressionList`
is the union of both, so a file that vanishes (a `git checkout`, a sync script
that deletes and recreates it) never un-suppresses anyone.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterable
from pathlib import Path

from .addresses import suppression_key
from .errors import Problem, StateDatabaseError, SubscriberListError
from .events import pending_keys
from .suppression_file import (
    Suppression,
    file_stamp,
    read_suppressions,
    readable_suppressions,
    workspace_state_db,
)
from .suppression_store import SuppressionStore


class _Auto:
    """Marker: find the state database of the workspace the file belongs to."""


AUTO = _Auto()


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
            if file_stamp(os.stat(self.path)) == self._stamp:  # the usual case: no lock, no read
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
            stamp = file_stamp(os.fstat(handle.fileno()))
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
