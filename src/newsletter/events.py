"""Delivery events (delivered, bounce, open, click, ...) kept in the workspace's SQLite state.

Events arrive from the provider's webhook, in batches, more than once (providers
retry until they get a 2xx), and out of order.  They are stored under the
provider's own event id with ``INSERT OR IGNORE`` so a batch posted twice is
stored once, and a whole batch is one transaction so a crash never leaves half
of it.  Each row keeps the provider's raw JSON beside our normalised fields, so
a question nobody thought of today can still be answered from the data later.

The tables live in the same file as the send ledger (``ws.state_db``) but are
our own: this module never writes the ledger's tables.  Nothing here knows a
provider's field names; ``esp/sendgrid_events.py`` translates them into
:class:`Event`.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from .errors import NewsletterError

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

SCHEMA = """
CREATE TABLE IF NOT EXISTS esp_events (
    event_id    TEXT PRIMARY KEY,
    provider    TEXT NOT NULL,
    kind        TEXT NOT NULL,
    email       TEXT NOT NULL,
    at          INTEGER NOT NULL,
    issue_id    TEXT,
    list_name   TEXT,
    send_id     TEXT,
    batch_id    TEXT,
    url         TEXT,
    reason      TEXT,
    machine     INTEGER NOT NULL DEFAULT 0,
    raw         TEXT NOT NULL,
    received_at TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS esp_events_issue ON esp_events (issue_id, kind);
CREATE INDEX IF NOT EXISTS esp_events_email ON esp_events (email, at);
CREATE TABLE IF NOT EXISTS loop_state (
    key        TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
"""

_COLUMNS = (
    "event_id, provider, kind, email, at, issue_id, list_name, send_id, batch_id,"
    " url, reason, machine, raw, received_at"
)


class EventStoreError(NewsletterError):
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


@dataclass(frozen=True, slots=True)
class EventRow:
    """What the report needs of a stored event (the raw JSON stays in the database)."""

    kind: str
    email: str
    at: int
    url: str | None
    machine: bool


def utc_now_iso() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()


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
                self.path.parent.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(
                    self.path, timeout=30, isolation_level=None, check_same_thread=False
                )
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=FULL")
                conn.executescript(SCHEMA)
            except (OSError, sqlite3.Error) as exc:
                raise EventStoreError(
                    f"{self.path}: cannot open the state database: {exc}",
                    hint="check that the folder is writable and the disk is not full",
                ) from exc
            self._conn = conn
        return self._conn

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def add(self, events: Sequence[Event]) -> int:
        """Store events not seen before, in one transaction; return how many were new."""
        if not events:
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
        with self._lock:
            conn = self._connect()
            try:
                before = conn.total_changes
                conn.execute("BEGIN IMMEDIATE")
                try:
                    conn.executemany(
                        f"INSERT OR IGNORE INTO esp_events ({_COLUMNS})"
                        " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                        rows,
                    )
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
                return conn.total_changes - before
            except sqlite3.Error as exc:
                raise EventStoreError(f"{self.path}: cannot store events: {exc}") from exc

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

    def one_click_unsubscribes_for(self, issue_id: str) -> list[tuple[str, int]]:
        """(address, time) of one-click unsubscribes whose latest issue received was this one.

        Our unsubscribe links carry the address and list, not the issue, so the
        issue is inferred: the one whose first event for that address came last
        before the unsubscribe.
        """
        with self._lock:
            conn = self._connect()
            clicks = conn.execute(
                "SELECT email, at FROM esp_events WHERE provider = 'one-click'"
            ).fetchall()
            out: list[tuple[str, int]] = []
            for email, at in clicks:
                firsts = conn.execute(
                    "SELECT issue_id, min(at) FROM esp_events WHERE email = ?"
                    " AND issue_id IS NOT NULL GROUP BY issue_id",
                    (email,),
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


def suppressing(events: Iterable[Event]) -> list[Event]:
    """The events that must stop further mail to their address, one per (address, reason)."""
    seen: set[tuple[str, str]] = set()
    out: list[Event] = []
    for e in events:
        if e.suppress and e.email and (e.email, e.suppress) not in seen:
            seen.add((e.email, e.suppress))
            out.append(e)
    return out
