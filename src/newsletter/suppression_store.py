"""The durable copy of the suppression list, kept in the state database.

`subscribers/suppressions.csv` is a file people and tools touch: a `git checkout`
or `pull`, a sync script that deletes and recreates it, someone moving it.  If it
vanished during a send and the send believed it, everybody who unsubscribed would
be mailed.  So every suppression any path records (one-click, webhook, `suppressions
add`, `sync`) and every row read from the file is also kept here, and a send honours
the union of the two.  Nothing here is ever forgotten except by
`newsletter suppressions remove`, which takes an address out of both places.

The table also remembers that the workspace has had its suppressions file, so that
a send planned while the file is missing stops with a message instead of reporting
"0 suppressed".

Readers poll cheaply: :meth:`SuppressionStore.keys_since` returns only the rows
added after the last row a reader has seen (rows are only ever appended, so the
rowid is a high-water mark).  A removal is not seen by a send already running,
which errs on the safe side.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from . import state
from .clock import utc_now_iso as _now


@dataclass(frozen=True, slots=True)
class StoredSuppression:
    """A suppression as the state database keeps it (``key``: its match key)."""

    key: str
    email: str
    reason: str
    source: str
    at: str


@dataclass(frozen=True, slots=True)
class FileSeen:
    """The last time a suppressions file was read in full, and how many entries it had."""

    last_seen: str
    rows: int


class SuppressionStore:
    """The ``suppressions`` table of one state database.

    A short-lived connection per call: readers of the suppression list live in
    several processes (a send, the server, `subscribers check`), and none of them
    may hold the file open for longer than a statement.  ``create=False`` (readers)
    never creates the database: a workspace that has none has nothing stored.
    """

    def __init__(self, db: Path) -> None:
        self.db = db

    def _connect(self, *, create: bool) -> state.Connection | None:
        """``create``: make the database if missing (readers never do)."""
        if not create and not self.db.exists():
            return None
        return state.open_db(self.db)

    def record(self, entries: Iterable[StoredSuppression]) -> int:
        """Keep these suppressions (the first record of an address wins); returns how
        many were new.  Creates the database if needed: a suppression must not wait."""
        rows = [(e.key, e.email, e.reason, e.source, e.at, _now()) for e in entries]
        if not rows:
            return 0
        conn = self._connect(create=True)
        assert conn is not None
        try:
            conn.execute("BEGIN IMMEDIATE")
            before = conn.total_changes
            conn.executemany(
                "INSERT OR IGNORE INTO suppressions (key, email, reason, source, at, recorded_at)"
                " VALUES (?,?,?,?,?,?)",
                rows,
            )
            new = conn.total_changes - before
            conn.execute("COMMIT")
            return new
        finally:
            conn.close()

    def mirror_file(self, path: Path, entries: Iterable[StoredSuppression]) -> None:
        """A full read of the suppressions file: keep its entries and note that the
        workspace has the file (for the "missing file" check).  Only into an existing
        database: reading never creates one (a dry run leaves no `.newsletter/`)."""
        rows = [(e.key, e.email, e.reason, e.source, e.at, _now()) for e in entries]
        conn = self._connect(create=False)
        if conn is None:
            return
        try:
            now = _now()
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(
                "INSERT OR IGNORE INTO suppressions (key, email, reason, source, at, recorded_at)"
                " VALUES (?,?,?,?,?,?)",
                rows,
            )
            conn.execute(
                "INSERT INTO suppression_files (path, first_seen, last_seen, rows)"
                " VALUES (?,?,?,?) ON CONFLICT(path) DO UPDATE SET last_seen=excluded.last_seen,"
                " rows=excluded.rows",
                (str(path), now, now, len(rows)),
            )
            conn.execute("COMMIT")
        finally:
            conn.close()

    def file_seen(self, path: Path) -> FileSeen | None:
        """When this workspace last had ``path``, if ever."""
        conn = self._connect(create=False)
        if conn is None:
            return None
        try:
            row = conn.execute(
                "SELECT last_seen, rows FROM suppression_files WHERE path=?", (str(path),)
            ).fetchone()
        finally:
            conn.close()
        return None if row is None else FileSeen(str(row[0]), int(row[1]))

    def keys_since(self, mark: int) -> tuple[frozenset[str], int]:
        """Keys recorded after row ``mark`` (0: all), and the new mark."""
        conn = self._connect(create=False)
        if conn is None:
            return frozenset(), mark
        try:
            rows = conn.execute(
                "SELECT rowid, key FROM suppressions WHERE rowid > ? ORDER BY rowid", (mark,)
            ).fetchall()
        finally:
            conn.close()
        if not rows:
            return frozenset(), mark
        return frozenset(str(r[1]) for r in rows), int(rows[-1][0])

    def entries(self) -> list[StoredSuppression]:
        """Everything stored, oldest first (to write the file back)."""
        conn = self._connect(create=False)
        if conn is None:
            return []
        try:
            rows = conn.execute(
                "SELECT key, email, reason, source, at FROM suppressions ORDER BY rowid"
            ).fetchall()
        finally:
            conn.close()
        return [StoredSuppression(*map(str, r)) for r in rows]

    def remove(self, keys: Iterable[str]) -> int:
        """Forget these addresses (the user re-subscribes someone on purpose)."""
        wanted = [(k,) for k in keys]
        conn = self._connect(create=False)
        if conn is None or not wanted:
            return 0
        try:
            conn.execute("BEGIN IMMEDIATE")
            before = conn.total_changes
            conn.executemany("DELETE FROM suppressions WHERE key=?", wanted)
            gone = conn.total_changes - before
            conn.execute("COMMIT")
            return gone
        finally:
            conn.close()
