"""Delivery events (delivered, bounce, open, click, ...) kept in the workspace's SQLite state.

Events arrive from the provider's webhook, in batches, more than once (providers
retry until they get a 2xx), and out of order.  They are stored under the
provider's own event id with ``INSERT OR IGNORE`` so a batch posted twice is
stored once, and a whole batch is one transaction so a crash never leaves half
of it.  Each row keeps the provider's raw JSON beside our normalised fields, so
a question nobody thought of today can still be answered from the data later.

The tables live in the same file as the send ledger (``ws.state_db``) but are
our own: this module never writes the ledger's tables.

``pending_suppressions`` holds suppressions the server has promised (it answered
200) but could not yet append to ``suppressions.csv``: they are committed in the
same transaction as the events, so an unwritable CSV costs nothing, and
:func:`newsletter.suppression_writes.merge_pending` moves them into the CSV later.
Readers of the suppression list include them meanwhile (:func:`pending_keys`).

Nothing here knows a provider's field names; ``esp/sendgrid_events.py``
translates them into :class:`Event`.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from . import state
from .clock import utc_now_iso
from .errors import StateDatabaseError
from .suppression_store import StoredSuppression

# Normalised event kinds.  "bounced" is a permanent bounce; "blocked" a temporary
# refusal by the receiving server (SendGrid's bounce type "blocked"), which does
# not suppress the address.
KINDS = (
    "processed",
    "delivered",
    "deferred",
    "bounced",
    "blocked",
    "dropped",
    "open",
    "click",
    "spamreport",
    "unsubscribe",
    "group_unsubscribe",
    "group_resubscribe",
    "other",
)


_COLUMNS = (
    "event_id, provider, kind, email, at, issue_id, list_name, send_id, batch_id,"
    " url, reason, machine, raw, received_at"
)


class EventStoreError(StateDatabaseError):
    """The state database cannot be opened or written (disk full, locked too long, corrupt)."""


@dataclass(frozen=True, slots=True)
class Event:
    """One provider event in our own vocabulary.

    ``suppress`` is the suppression reason this event implies (one of
    suppressions.REASONS) or None; the provider translation decides it because
    only it knows, e.g., which drop reasons mean a dead address.
    """

    event_id: str
    provider: str
    kind: str
    email: str
    at: int  # unix seconds, as the provider reported it
    issue_id: str | None = None
    list_name: str | None = None
    send_id: str | None = None
    batch_id: str | None = None
    url: str | None = None
    reason: str | None = None
    machine: bool = False  # an open by a machine (e.g. Apple Mail Privacy Protection)
    suppress: str | None = None
    raw: str = "{}"


# A suppression recorded in SQLite, not yet in suppressions.csv (``key``: its match key):
# the same record as the durable copy keeps.
PendingSuppression = StoredSuppression


@dataclass(frozen=True, slots=True)
class EventRow:
    """What the report needs of a stored event (the raw JSON stays in the database)."""

    kind: str
    email: str
    at: int
    url: str | None
    machine: bool


class EventStore:
    """The events tables in ``ws.state_db``; safe to share between threads.

    One connection guarded by a lock: SQLite serialises writers anyway, and a
    single connection keeps ``executemany`` fast.  ``synchronous=FULL`` makes a
    committed batch survive a power cut, which is what answering 200 to the
    provider promises.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None

    def _connect(self) -> sqlite3.Connection:
        if self._conn is None:
            try:
                conn = state.open_db(self.path)
            except StateDatabaseError as exc:
                raise EventStoreError(
                    f"{self.path}: cannot open the state database: {exc.message}",
                    path=self.path,
                    hint=exc.hint,
                ) from exc
            self._conn = conn
        return self._conn

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def add(self, events: Sequence[Event], pending: Sequence[PendingSuppression] = ()) -> int:
        """Store events not seen before and pending suppressions, in one transaction.

        Returns how many events were new.  A pending suppression already recorded
        for the same key is kept as it was.
        """
        if not events and not pending:
            return 0
        received = utc_now_iso()
        rows = [
            (
                e.event_id,
                e.provider,
                e.kind,
                e.email,
                e.at,
                e.issue_id,
                e.list_name,
                e.send_id,
                e.batch_id,
                e.url,
                e.reason,
                int(e.machine),
                e.raw,
                received,
            )
            for e in events
        ]
        held = [(p.key, p.email, p.reason, p.source, p.at, received) for p in pending]
        with self._lock:
            conn = self._connect()
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    before = conn.total_changes
                    conn.executemany(
                        f"INSERT OR IGNORE INTO esp_events ({_COLUMNS})"
                        " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                        rows,
                    )
                    new = conn.total_changes - before
                    conn.executemany(
                        "INSERT OR IGNORE INTO pending_suppressions"
                        " (key, email, reason, source, at, received_at) VALUES (?,?,?,?,?,?)",
                        held,
                    )
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
                return new
            except sqlite3.Error as exc:
                raise EventStoreError(f"{self.path}: cannot store events: {exc}") from exc

    def pending(self) -> list[PendingSuppression]:
        """Suppressions recorded here but not yet merged into suppressions.csv, oldest first."""
        with self._lock:
            try:
                cur = self._connect().execute(
                    "SELECT key, email, reason, source, at FROM pending_suppressions ORDER BY rowid"
                )
                return [PendingSuppression(*map(str, row)) for row in cur]
            except sqlite3.Error as exc:
                raise EventStoreError(
                    f"{self.path}: cannot read pending suppressions: {exc}"
                ) from exc

    def pending_count(self) -> int:
        with self._lock:
            try:
                row = (
                    self._connect().execute("SELECT count(*) FROM pending_suppressions").fetchone()
                )
            except sqlite3.Error as exc:
                raise EventStoreError(
                    f"{self.path}: cannot read pending suppressions: {exc}"
                ) from exc
        return int(row[0])

    def forget_pending(self, keys: Iterable[str]) -> None:
        """Drop pending suppressions that are now in suppressions.csv."""
        params = [(k,) for k in keys]
        if not params:
            return
        with self._lock:
            conn = self._connect()
            try:
                conn.execute("BEGIN IMMEDIATE")  # one transaction, one sync to disk
                try:
                    conn.executemany("DELETE FROM pending_suppressions WHERE key = ?", params)
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                raise EventStoreError(
                    f"{self.path}: cannot update pending suppressions: {exc}"
                ) from exc

    def count(self) -> int:
        with self._lock:
            row = self._connect().execute("SELECT count(*) FROM esp_events").fetchone()
        return int(row[0])

    def rows(self, issue_id: str) -> list[EventRow]:
        """Every stored event of one issue, oldest first."""
        with self._lock:
            cur = self._connect().execute(
                "SELECT kind, email, at, url, machine FROM esp_events"
                " WHERE issue_id = ? ORDER BY at, event_id",
                (issue_id,),
            )
            return [EventRow(k, e, int(a), u, bool(m)) for k, e, a, u, m in cur]

    def raw_events(self, issue_id: str | None = None) -> Iterator[tuple[str, str]]:
        """(event_id, raw JSON) pairs, for re-processing or export."""
        with self._lock:
            conn = self._connect()
            if issue_id is None:
                cur = conn.execute("SELECT event_id, raw FROM esp_events ORDER BY at")
            else:
                cur = conn.execute(
                    "SELECT event_id, raw FROM esp_events WHERE issue_id = ? ORDER BY at",
                    (issue_id,),
                )
            found = cur.fetchall()
        yield from ((str(a), str(b)) for a, b in found)

    def issues(self) -> list[str]:
        """Issue ids that have events, newest activity last."""
        with self._lock:
            cur = self._connect().execute(
                "SELECT issue_id FROM esp_events WHERE issue_id IS NOT NULL"
                " GROUP BY issue_id ORDER BY max(at)"
            )
            return [str(r[0]) for r in cur]

    def one_click_unsubscribes_for(
        self, issue_id: str, spellings: Callable[[str], Sequence[str]] | None = None
    ) -> list[tuple[str, int]]:
        """(address, time) of one-click unsubscribes whose latest issue received was this one.

        Our unsubscribe links carry the address and list, not the issue, so the
        issue is inferred: the one whose first event for that address came last
        before the unsubscribe.  ``spellings`` gives every form an address may be
        stored under (e.g. an IDN domain as Unicode and as xn--), default just itself.
        """
        with self._lock:
            conn = self._connect()
            clicks = conn.execute(
                "SELECT email, at FROM esp_events WHERE provider = 'one-click'"
            ).fetchall()
            out: list[tuple[str, int]] = []
            for email, at in clicks:
                forms = list(dict.fromkeys(spellings(email) if spellings else [email]))
                marks = ",".join("?" * len(forms))
                firsts = conn.execute(
                    f"SELECT issue_id, min(at) FROM esp_events WHERE email IN ({marks})"
                    " AND issue_id IS NOT NULL GROUP BY issue_id",
                    forms,
                ).fetchall()
                before = [(int(first), str(iss)) for iss, first in firsts if int(first) <= at]
                if before and max(before)[1] == issue_id:
                    out.append((str(email), int(at)))
        return out

    def get_state(self, key: str) -> str | None:
        with self._lock:
            row = (
                self._connect()
                .execute("SELECT value FROM loop_state WHERE key = ?", (key,))
                .fetchone()
            )
        return None if row is None else str(row[0])

    def set_state(self, key: str, value: str) -> None:
        with self._lock:
            try:
                self._connect().execute(
                    "INSERT INTO loop_state (key, value, updated_at) VALUES (?, ?, ?)"
                    " ON CONFLICT (key) DO UPDATE SET value = excluded.value,"
                    " updated_at = excluded.updated_at",
                    (key, value, utc_now_iso()),
                )
            except sqlite3.Error as exc:
                raise EventStoreError(f"{self.path}: cannot save {key}: {exc}") from exc


def pending_keys(db: Path) -> frozenset[str]:
    """Keys of the pending suppressions in a state database, read-only (none if it is absent).

    For readers of the suppression list (a send, `subscribers check`): they must
    honour what the server accepted even while suppressions.csv cannot take it.
    Raises EventStoreError if the database exists but cannot be read, because
    skipping a suppression would mail someone who asked not to be mailed.
    """
    if not db.exists():
        return frozenset()
    conn = state.connect(db, readonly=True)
    try:
        if not conn.execute(
            "SELECT 1 FROM sqlite_master WHERE name='pending_suppressions'"
        ).fetchone():  # written by the ledger only, never by the server
            return frozenset()
        return frozenset(str(r[0]) for r in conn.execute("SELECT key FROM pending_suppressions"))
    finally:
        conn.close()


def suppressing(events: Iterable[Event]) -> list[Event]:
    """The events that must stop further mail to their address, one per (address, reason)."""
    seen: set[tuple[str, str]] = set()
    out: list[Event] = []
    for e in events:
        if e.suppress and e.email and (e.email, e.suppress) not in seen:
            seen.add((e.email, e.suppress))
            out.append(e)
    return out
