"""The send ledger: a SQLite record of every send, batch and recipient, kept so nothing goes twice.

A send is a state machine (:data:`TRANSITIONS`, enforced only in :meth:`Ledger.transition`)::

    planned ──► sending ──► done
                  │  ▲ ──► scheduled ──► cancelled
                  ▼  │
            paused / failed ──► cancelled

A batch's recipients are committed as ``ready`` before anything is posted; the
``posting`` mark is committed immediately before its HTTP request starts to leave
(after any pacing or backoff wait), and ``sent`` only after the provider's 2xx.
A definite "not accepted" (429, 5xx, a refused connection) puts it back to
``ready`` while the send waits to retry.  So after a crash, a kill or a power cut
every batch is in one of three knowable conditions: sent; provably never left
(``ready``, or ``failed``: every attempt got a definite "no"), which a resume
posts without asking; or *unknown* (``posting`` / ``unknown``: the process may
have died between the request leaving and its answer being recorded).  Unknown
batches are never resent silently; the user chooses (see
:meth:`Ledger.skip_unknown` and :meth:`Ledger.batches_to_repost`).

Before a batch is posted again, whoever has unsubscribed since is taken out of
it (:meth:`Ledger.drop_recipients`): their row stays, marked, so the counts add
up and a later send knows whether they may have had the issue.

Who "has the issue" (:meth:`Ledger.already_batched`, which later sends exclude):
people in batches that were accepted or may have been (``sent``, ``posting``,
``unknown``, ``skipped``), and people in ``ready`` or ``failed`` batches of a send
that is still to be resumed (its resume will reach them).  Not: such a batch of an
abandoned send, nor a batch SendGrid cancelled (``cancelled``).

Only one process works on an issue at a time (:meth:`Ledger.lock_issue`, an OS
lock on ``.newsletter/issue-<id>.lock``), so two `newsletter send` commands of
the same issue cannot both decide that nobody has it yet.

The database uses WAL so that `newsletter serve` can read batches (webhook
events name their batch in ``custom_args``) while a send writes, and
``synchronous=FULL`` so that a committed mark survives a power cut.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Protocol

from . import state
from .errors import LedgerError
from .subscribers import email_key

SCHEMA_VERSION = 3  # 2: recipients.dropped, batches.dropped; 3: sends.audience, audience
AUDIENCE_ID_BITS = 32  # audience rowid = send id << 32 | position: a send's audience is one range
ROWS_PER_BATCH_ID = 4096  # > the 1,000 recipients a batch may hold

# Send states.
PLANNED = "planned"
SENDING = "sending"
PAUSED = "paused"
FAILED = "failed"
DONE = "done"
SCHEDULED = "scheduled"
CANCELLED = "cancelled"

TRANSITIONS: dict[str, frozenset[str]] = {
    PLANNED: frozenset({SENDING, FAILED, CANCELLED}),
    SENDING: frozenset({PAUSED, FAILED, DONE, SCHEDULED}),
    PAUSED: frozenset({SENDING, CANCELLED}),
    FAILED: frozenset({SENDING, CANCELLED}),
    SCHEDULED: frozenset({CANCELLED}),
    DONE: frozenset(),
    CANCELLED: frozenset(),
}
UNFINISHED = frozenset({PLANNED, SENDING, PAUSED, FAILED})

# Batch states.
B_READY = "ready"  # recipients committed; no request of it is out (not yet, or a retry waits)
B_POSTING = "posting"  # its request is leaving or in flight
B_SENT = "sent"  # the provider answered 2xx
B_FAILED = "failed"  # every attempt got a definite "no" and the send stopped: post again
B_UNKNOWN = "unknown"  # an attempt left and got no answer: may have been accepted
B_SKIPPED = "skipped"  # unknown and the user chose not to resend; or emptied by unsubscribes
B_CANCELLED = "cancelled"  # will not be delivered: cancelled at SendGrid, or abandoned unposted

# recipients.dropped: why a person is no longer in their batch.
R_IN = 0  # in the batch
R_DROPPED = 1  # unsubscribed before any attempt that could have reached them
R_DROPPED_MAYBE = 2  # unsubscribed before a resend; an earlier attempt may have reached them

# Batch states whose recipients may have received the issue.
_MAY_HAVE = (B_SENT, B_POSTING, B_UNKNOWN, B_SKIPPED)
# Batch states that provably never reached the provider: a resume posts them without asking.
_NOT_LEFT = (B_READY, B_FAILED)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sends (
    id INTEGER PRIMARY KEY,
    issue_id TEXT NOT NULL,
    lists TEXT NOT NULL,
    tags TEXT NOT NULL,
    backend TEXT NOT NULL,
    state TEXT NOT NULL,
    test INTEGER NOT NULL DEFAULT 0,
    force_resend INTEGER NOT NULL DEFAULT 0,
    subject TEXT NOT NULL DEFAULT '',
    planned_recipients INTEGER NOT NULL DEFAULT 0,
    send_at INTEGER,
    schedule_id TEXT,
    error TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    audience TEXT
);
CREATE INDEX IF NOT EXISTS sends_issue ON sends(issue_id);
CREATE TABLE IF NOT EXISTS send_log (
    send_id INTEGER NOT NULL REFERENCES sends(id),
    at TEXT NOT NULL,
    from_state TEXT,
    to_state TEXT NOT NULL,
    note TEXT
);
CREATE TABLE IF NOT EXISTS batches (
    id INTEGER PRIMARY KEY,
    send_id INTEGER NOT NULL REFERENCES sends(id),
    seq INTEGER NOT NULL,
    state TEXT NOT NULL,
    recipients INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    ambiguous_attempts INTEGER NOT NULL DEFAULT 0,
    resent INTEGER NOT NULL DEFAULT 0,
    status INTEGER,
    provider_id TEXT,
    error TEXT,
    created_at TEXT NOT NULL,
    finished_at TEXT,
    dropped INTEGER NOT NULL DEFAULT 0,
    UNIQUE (send_id, seq)
);
-- rowid = batch id * ROWS_PER_BATCH_ID + position: a batch's recipients are one range
-- of the table (no second index to maintain on the hot path).
CREATE TABLE IF NOT EXISTS recipients (
    batch_id INTEGER NOT NULL REFERENCES batches(id),
    send_id INTEGER NOT NULL,
    issue_id TEXT,
    email TEXT NOT NULL,
    email_key TEXT NOT NULL,
    name TEXT,
    first_name TEXT,
    language TEXT,
    list_name TEXT NOT NULL,
    dropped INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS recipients_issue_email ON recipients(issue_id, email_key);
-- Who a send is for, frozen when it is planned (rowid: see AUDIENCE_ID_BITS).
CREATE TABLE IF NOT EXISTS audience (
    send_id INTEGER NOT NULL,
    email TEXT NOT NULL,
    name TEXT,
    first_name TEXT,
    language TEXT,
    list_name TEXT NOT NULL
);
"""

# From one schema version to the next (the key is the version being left).
_UPGRADES: dict[int, tuple[str, ...]] = {
    1: (
        "ALTER TABLE batches ADD COLUMN dropped INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE recipients ADD COLUMN dropped INTEGER NOT NULL DEFAULT 0",
    ),
    2: (
        "ALTER TABLE sends ADD COLUMN audience TEXT",
        "CREATE TABLE IF NOT EXISTS audience (send_id INTEGER NOT NULL, email TEXT NOT NULL,"
        " name TEXT, first_name TEXT, language TEXT, list_name TEXT NOT NULL)",
    ),
}


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class RecipientLike(Protocol):
    """What the ledger stores and a send needs of a recipient (subscribers.Subscriber and
    RecipientRow both fit)."""

    @property
    def email(self) -> str: ...
    @property
    def name(self) -> str | None: ...
    @property
    def first_name(self) -> str | None: ...
    @property
    def language(self) -> str | None: ...
    @property
    def list_name(self) -> str: ...


@dataclass(frozen=True, slots=True)
class RecipientRow:
    """What the ledger keeps of one recipient: enough to post their batch again identically."""

    email: str
    name: str | None
    first_name: str | None
    language: str | None
    list_name: str


@dataclass(frozen=True)
class BatchInfo:
    id: int
    send_id: int
    seq: int
    state: str
    recipients: int
    attempts: int
    ambiguous_attempts: int
    resent: bool
    status: int | None
    provider_id: str | None
    error: str | None
    issue_id: str
    lists: tuple[str, ...]
    test: bool
    created_at: str
    finished_at: str | None


@dataclass(frozen=True)
class SendSummary:
    id: int
    issue_id: str
    lists: tuple[str, ...]
    tags: tuple[str, ...]
    backend: str
    state: str
    test: bool
    force_resend: bool
    subject: str
    planned_recipients: int
    send_at: int | None
    schedule_id: str | None
    error: str | None
    created_at: str
    updated_at: str
    batches: int
    batches_sent: int
    batches_failed: int
    batches_ready: int  # formed, not posted (a crash came before their request left)
    batches_unknown: int
    batches_skipped: int
    recipients_sent: int
    recipients_failed: int
    recipients_ready: int
    recipients_unknown: int
    recipients_skipped: int
    recipients_dropped: int  # taken out of a batch before its repost: they unsubscribed
    resent_batches: int
    running: bool

    @property
    def recipients_batched(self) -> int:
        return (
            self.recipients_sent
            + self.recipients_failed
            + self.recipients_ready
            + self.recipients_unknown
            + self.recipients_skipped
        )

    @property
    def pending(self) -> int:
        """Recipients planned but not yet sent (an estimate: the lists may change meanwhile);
        none once the send is over."""
        if self.state in (DONE, SCHEDULED, CANCELLED):
            return 0
        return max(0, self.planned_recipients - self.recipients_sent - self.recipients_skipped)


# A send's frozen audience: the people, and {list name: {"file", "sha256", "bytes"}}.
Audience = tuple[Iterable[RecipientLike], dict[str, dict[str, Any]]]


class SendLock:
    """An OS lock that says "a process is sending this"; it vanishes when that process dies.

    ``flock`` is released by the kernel on SIGKILL, so a crashed send never looks
    alive.  On systems without ``fcntl`` the lock is a no-op (sends are never
    detected as running from another process).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fh: IO[bytes] | None = None

    def acquire(self) -> bool:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.path, "ab")  # noqa: SIM115 - held until release()
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.close()
            return False
        self._fh = fh
        return True

    def release(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def held_elsewhere(self) -> bool:
        if self._fh is not None:
            return False
        if not self.path.exists():
            return False
        if self.acquire():
            self.release()
            return False
        return True


class Ledger:
    """The state database; one instance per process, used from one thread."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path) if str(path) != ":memory:" else None
        self._locks: dict[int, SendLock] = {}
        self._issue_locks: dict[str, SendLock] = {}
        # Every SQLite failure (busy, disk full, damaged) is a StateDatabaseError.
        self._db = state.connect(path)
        try:
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA foreign_keys=ON")
            self._migrate()
        except BaseException:
            self._db.close()
            raise

    # -- plumbing ---------------------------------------------------------------------------

    def _migrate(self) -> None:
        version = int(self._db.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise LedgerError(
                f"{self.path}: written by a newer version of newsletter (schema {version})",
                hint="upgrade newsletter before sending from this workspace",
            )
        if version < SCHEMA_VERSION:
            with self._tx():
                # Again inside the write lock: another process may have just upgraded it.
                version = int(self._db.execute("PRAGMA user_version").fetchone()[0])
                if version == 0:
                    for statement in _SCHEMA.split(";"):
                        if statement.strip():
                            self._db.execute(statement)
                else:
                    for v in range(version, SCHEMA_VERSION):
                        for statement in _UPGRADES[v]:
                            self._db.execute(statement)
                self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken IMMEDIATE so two writers never deadlock on upgrade."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            if self._db.in_transaction:  # SQLite may have rolled back by itself (disk full)
                self._db.execute("ROLLBACK")
            raise
        try:
            self._db.execute("COMMIT")
        except BaseException:
            if self._db.in_transaction:  # a failed COMMIT (disk full) leaves it open
                with suppress(Exception):
                    self._db.execute("ROLLBACK")
            raise

    def close(self) -> None:
        for lock in [*self._locks.values(), *self._issue_locks.values()]:
            lock.release()
        self._locks.clear()
        self._issue_locks.clear()
        self._db.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _lock_for(self, send_id: int) -> SendLock | None:
        if self.path is None:
            return None
        return SendLock(self.path.parent / f"send-{send_id}.lock")

    def lock_issue(self, issue_id: str) -> None:
        """Hold the issue's lock until :meth:`unlock_issue` or :meth:`close` (or the process
        ends); raise LedgerError at once if another process holds it.

        Taken before a send is planned and kept until it ends, so the decisions "who
        already has this issue" and "is another send of it unfinished" cannot go
        stale while a second process sends the same issue.
        """
        if self.path is None or issue_id in self._issue_locks:
            return
        safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in issue_id)
        lock = SendLock(self.path.parent / f"issue-{safe}.lock")
        if not lock.acquire():
            raise LedgerError(
                f"another send of {issue_id} is running",
                hint="wait for it to finish (or press Ctrl-C there to pause it); "
                "`newsletter status` shows it",
            )
        self._issue_locks[issue_id] = lock

    def unlock_issue(self, issue_id: str) -> None:
        lock = self._issue_locks.pop(issue_id, None)
        if lock is not None:
            lock.release()

    # -- sends ------------------------------------------------------------------------------

    def create_send(
        self,
        issue_id: str,
        lists: Sequence[str],
        backend: str,
        *,
        tags: Sequence[str] = (),
        test: bool = False,
        subject: str = "",
        planned_recipients: int = 0,
        send_at: int | None = None,
        force_resend: bool = False,
        audience: Audience | None = None,
    ) -> int:
        """A new send, ``planned``; with its frozen ``audience`` in the same transaction,
        so no send ever exists without the people it is for."""
        now = _now()
        with self._tx() as db:
            cur = db.execute(
                "INSERT INTO sends (issue_id, lists, tags, backend, state, test, force_resend,"
                " subject, planned_recipients, send_at, created_at, updated_at)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    issue_id,
                    json.dumps(sorted(set(lists))),
                    json.dumps(list(tags)),
                    backend,
                    PLANNED,
                    int(test),
                    int(force_resend),
                    subject,
                    planned_recipients,
                    send_at,
                    now,
                    now,
                ),
            )
            send_id = int(cur.lastrowid or 0)
            db.execute(
                "INSERT INTO send_log (send_id, at, from_state, to_state, note) VALUES (?,?,?,?,?)",
                (send_id, now, None, PLANNED, None),
            )
            if audience is not None:
                self._freeze(db, send_id, audience)
        return send_id

    def transition(
        self,
        send_id: int,
        new_state: str,
        *,
        note: str | None = None,
        schedule_cancelled: bool | None = None,
    ) -> None:
        """Move a send to ``new_state``; the one place that knows which moves are allowed.

        Cancelling marks the batches that will not be delivered ``cancelled``: failed
        ones always; with ``schedule_cancelled`` (default: the send has a SendGrid
        schedule id) also every batch SendGrid held for later.  Without it, batches
        SendGrid accepted stay as they are: they go out (or went out).
        """
        with self._tx() as db:
            row = db.execute("SELECT state FROM sends WHERE id=?", (send_id,)).fetchone()
            if row is None:
                raise LedgerError(f"no send #{send_id} in the ledger")
            old = str(row["state"])
            if new_state not in TRANSITIONS.get(old, frozenset()):
                raise LedgerError(
                    f"send #{send_id} is {old}; it cannot become {new_state}",
                    hint="`newsletter status` shows every send and what can be done with it",
                )
            now = _now()
            error = note if new_state in (FAILED, PAUSED) else None
            db.execute(
                "UPDATE sends SET state=?, updated_at=?, error=? WHERE id=?",
                (new_state, now, error, send_id),
            )
            db.execute(
                "INSERT INTO send_log (send_id, at, from_state, to_state, note) VALUES (?,?,?,?,?)",
                (send_id, now, old, new_state, note),
            )
            if new_state == CANCELLED:
                if schedule_cancelled is None:
                    row2 = db.execute(
                        "SELECT schedule_id FROM sends WHERE id=?", (send_id,)
                    ).fetchone()
                    schedule_cancelled = bool(row2["schedule_id"])
                # Failed batches were never accepted; with the schedule called off at
                # SendGrid, nothing of this send is delivered.
                states = (*_NOT_LEFT, *_MAY_HAVE) if schedule_cancelled else _NOT_LEFT
                marks = ",".join("?" for _ in states)
                db.execute(
                    f"UPDATE batches SET state=? WHERE send_id=? AND state IN ({marks})",
                    (B_CANCELLED, send_id, *states),
                )

    def set_schedule(self, send_id: int, schedule_id: str, send_at: int) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE sends SET schedule_id=?, send_at=?, updated_at=? WHERE id=?",
                (schedule_id, send_at, _now(), send_id),
            )

    def set_planned(self, send_id: int, planned_recipients: int) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE sends SET planned_recipients=?, updated_at=? WHERE id=?",
                (planned_recipients, _now(), send_id),
            )

    def send(self, send_id: int) -> SendSummary:
        rows = self._summaries("WHERE s.id=?", (send_id,))
        if not rows:
            raise LedgerError(f"no send #{send_id} in the ledger")
        return rows[0]

    def sends(self, issue_id: str | None = None) -> list[SendSummary]:
        """Every send (of one issue, or all), oldest first, with batch and recipient counts."""
        if issue_id is None:
            return self._summaries("", ())
        return self._summaries("WHERE s.issue_id=?", (issue_id,))

    def _summaries(self, where: str, params: tuple[Any, ...]) -> list[SendSummary]:
        sql = f"""
            SELECT s.*,
              COUNT(b.id) AS n_batches,
              SUM(b.state='sent') AS n_sent,
              SUM(b.state='failed') AS n_failed,
              SUM(b.state='ready') AS n_ready,
              SUM(b.state IN ('posting','unknown')) AS n_unknown,
              SUM(b.state='skipped') AS n_skipped,
              SUM(CASE WHEN b.state='sent' THEN b.recipients ELSE 0 END) AS r_sent,
              SUM(CASE WHEN b.state='failed' THEN b.recipients ELSE 0 END) AS r_failed,
              SUM(CASE WHEN b.state='ready' THEN b.recipients ELSE 0 END) AS r_ready,
              SUM(CASE WHEN b.state IN ('posting','unknown') THEN b.recipients ELSE 0 END)
                AS r_unknown,
              SUM(CASE WHEN b.state='skipped' THEN b.recipients ELSE 0 END) AS r_skipped,
              SUM(b.dropped) AS r_dropped,
              SUM(b.resent) AS n_resent
            FROM sends s LEFT JOIN batches b ON b.send_id = s.id
            {where}
            GROUP BY s.id ORDER BY s.id
        """
        out = []
        for r in self._db.execute(sql, params).fetchall():
            send_id = int(r["id"])
            lock = self._locks.get(send_id) or self._lock_for(send_id)
            running = bool(lock and lock.held_elsewhere()) or send_id in self._locks
            out.append(
                SendSummary(
                    id=send_id,
                    issue_id=r["issue_id"],
                    lists=tuple(json.loads(r["lists"])),
                    tags=tuple(json.loads(r["tags"])),
                    backend=r["backend"],
                    state=r["state"],
                    test=bool(r["test"]),
                    force_resend=bool(r["force_resend"]),
                    subject=r["subject"],
                    planned_recipients=int(r["planned_recipients"]),
                    send_at=r["send_at"],
                    schedule_id=r["schedule_id"],
                    error=r["error"],
                    created_at=r["created_at"],
                    updated_at=r["updated_at"],
                    batches=int(r["n_batches"] or 0),
                    batches_sent=int(r["n_sent"] or 0),
                    batches_failed=int(r["n_failed"] or 0),
                    batches_ready=int(r["n_ready"] or 0),
                    batches_unknown=int(r["n_unknown"] or 0),
                    batches_skipped=int(r["n_skipped"] or 0),
                    recipients_sent=int(r["r_sent"] or 0),
                    recipients_failed=int(r["r_failed"] or 0),
                    recipients_ready=int(r["r_ready"] or 0),
                    recipients_unknown=int(r["r_unknown"] or 0),
                    recipients_skipped=int(r["r_skipped"] or 0),
                    recipients_dropped=int(r["r_dropped"] or 0),
                    resent_batches=int(r["n_resent"] or 0),
                    running=running,
                )
            )
        return out

    def recipients_sent(self, issue_id: str) -> int:
        """Recipients in batches the provider accepted (2xx), over every real send of the issue."""
        row = self._db.execute(
            "SELECT COALESCE(SUM(b.recipients), 0) FROM batches b JOIN sends s ON s.id=b.send_id"
            " WHERE s.issue_id=? AND s.test=0 AND b.state=?",
            (issue_id, B_SENT),
        ).fetchone()
        return int(row[0])

    def blocking_sends(
        self, issue_id: str, lists: Iterable[str], backend: str
    ) -> list[SendSummary]:
        """Earlier real sends of this issue to any of these lists through this backend."""
        wanted = set(lists)
        return [
            s
            for s in self.sends(issue_id)
            if not s.test
            and s.backend == backend
            and s.state != CANCELLED
            and wanted.intersection(s.lists)
        ]

    # -- the frozen audience ----------------------------------------------------------------

    @staticmethod
    def _freeze(db: sqlite3.Connection, send_id: int, audience: Audience) -> int:
        """Record who the send is for, with what was read of each list file (its SHA-256
        and size): from here on, edits to the lists neither add nor drop anyone."""
        people, lists = audience
        first = send_id << AUDIENCE_ID_BITS
        cur = db.executemany(
            "INSERT INTO audience (rowid, send_id, email, name, first_name, language,"
            " list_name) VALUES (?,?,?,?,?,?,?)",
            (
                (first + i, send_id, r.email, r.name, r.first_name, r.language, r.list_name)
                for i, r in enumerate(people, 1)
            ),
        )
        count = int(cur.rowcount)
        info = {"lists": lists, "recipients": count}
        db.execute(
            "UPDATE sends SET audience=? WHERE id=?", (json.dumps(info, sort_keys=True), send_id)
        )
        return count

    def audience_info(self, send_id: int) -> dict[str, Any] | None:
        """What :meth:`freeze_audience` recorded (None: a send older than frozen audiences)."""
        row = self._db.execute("SELECT audience FROM sends WHERE id=?", (send_id,)).fetchone()
        if row is None or not row[0]:
            return None
        info: dict[str, Any] = json.loads(row[0])
        return info

    def audience(self, send_id: int, chunk: int = 2000) -> Iterator[RecipientRow]:
        """The frozen audience in list order, read a chunk at a time (never one open
        cursor across the send's own writes)."""
        last = send_id << AUDIENCE_ID_BITS
        end = (send_id + 1) << AUDIENCE_ID_BITS
        while True:
            rows = self._db.execute(
                "SELECT rowid, email, name, first_name, language, list_name FROM audience"
                " WHERE rowid > ? AND rowid < ? ORDER BY rowid LIMIT ?",
                (last, end, chunk),
            ).fetchall()
            if not rows:
                return
            last = int(rows[-1][0])
            for r in rows:
                yield RecipientRow(r[1], r[2], r[3], r[4], r[5])

    # -- running a send ---------------------------------------------------------------------

    def claim(self, send_id: int) -> None:
        """Take the OS lock that marks this send as running in this process."""
        lock = self._lock_for(send_id)
        if lock is None or send_id in self._locks:
            return
        if not lock.acquire():
            raise LedgerError(
                f"send #{send_id} is running in another process",
                hint="wait for it to finish, or stop it with Ctrl-C there",
            )
        self._locks[send_id] = lock

    def release(self, send_id: int) -> None:
        lock = self._locks.pop(send_id, None)
        if lock is not None:
            lock.release()

    def is_running_elsewhere(self, send_id: int) -> bool:
        if send_id in self._locks:
            return False
        lock = self._lock_for(send_id)
        return bool(lock and lock.held_elsewhere())

    def open_batch(
        self, send_id: int, recipients: Sequence[RecipientLike], *, issue_id: str | None
    ) -> BatchInfo:
        """Record a new batch and its recipients as ``ready``, committed before any request.

        ``issue_id`` is None for test sends, so their recipients never count as having
        received the issue.
        """
        now = _now()
        with self._tx() as db:
            row = db.execute(
                "SELECT COALESCE(MAX(seq), 0) + 1 FROM batches WHERE send_id=?", (send_id,)
            ).fetchone()
            seq = int(row[0])
            cur = db.execute(
                "INSERT INTO batches (send_id, seq, state, recipients, created_at)"
                " VALUES (?,?,?,?,?)",
                (send_id, seq, B_READY, len(recipients), now),
            )
            batch_id = int(cur.lastrowid or 0)
            if len(recipients) > ROWS_PER_BATCH_ID:
                raise LedgerError(f"a batch holds at most {ROWS_PER_BATCH_ID} recipients")
            first = batch_id * ROWS_PER_BATCH_ID
            db.executemany(
                "INSERT INTO recipients (rowid, batch_id, send_id, issue_id, email, email_key,"
                " name, first_name, language, list_name) VALUES (?,?,?,?,?,?,?,?,?,?)",
                [
                    (
                        first + i,
                        batch_id,
                        send_id,
                        issue_id,
                        r.email,
                        email_key(r.email),
                        r.name,
                        r.first_name,
                        r.language,
                        r.list_name,
                    )
                    for i, r in enumerate(recipients)
                ],
            )
        info = self.batch(batch_id)
        assert info is not None
        return info

    def begin_repost(self, batch_id: int, *, resend_unknown: bool) -> None:
        """Take up a batch to post again: a failed one becomes ``ready``; an unknown one
        (by the user's choice) stays unknown, now marked ``resent``, until it leaves."""
        with self._tx() as db:
            row = db.execute("SELECT state FROM batches WHERE id=?", (batch_id,)).fetchone()
            state = str(row["state"])
            if state in _NOT_LEFT:
                db.execute("UPDATE batches SET state=? WHERE id=?", (B_READY, batch_id))
            elif state in (B_POSTING, B_UNKNOWN) and resend_unknown:
                db.execute("UPDATE batches SET state=?, resent=1 WHERE id=?", (B_UNKNOWN, batch_id))
            else:
                raise LedgerError(f"batch #{batch_id} is {state}; it cannot be posted again")

    def mark_posting(self, batch_id: int) -> None:
        """Committed immediately before the batch's request starts to leave: from here
        until its answer is recorded, a crash leaves the batch unknown."""
        with self._tx() as db:
            db.execute("UPDATE batches SET state=? WHERE id=?", (B_POSTING, batch_id))

    def drop_recipients(
        self, batch_id: int, emails: Iterable[str], *, maybe: bool | None = None
    ) -> BatchInfo:
        """Take people who unsubscribed out of a batch not yet accepted, before it is posted
        again; a batch left empty becomes ``skipped``.  Returns the batch as it now is.

        Their rows stay, marked :data:`R_DROPPED`, or :data:`R_DROPPED_MAYBE` when an
        earlier attempt of the batch may have reached them (``maybe``; by default
        judged from the batch: unknown or resent), and the batch's and the send's
        counts shrink, so that sent + dropped adds up to what was batched.
        """
        keys = sorted({email_key(e) for e in emails})
        with self._tx() as db:
            row = db.execute(
                "SELECT state, resent, ambiguous_attempts, send_id FROM batches WHERE id=?",
                (batch_id,),
            ).fetchone()
            if row is None:
                raise LedgerError(f"no batch #{batch_id} in the ledger")
            state = str(row["state"])
            if state not in (*_NOT_LEFT, B_POSTING, B_UNKNOWN):
                raise LedgerError(f"batch #{batch_id} is {state}; its recipients are final")
            if maybe is None:
                maybe = (
                    state not in _NOT_LEFT or bool(row["resent"]) or row["ambiguous_attempts"] > 0
                )
            dropped = 0
            first = batch_id * ROWS_PER_BATCH_ID
            for i in range(0, len(keys), 500):  # SQLite's limit on parameters
                chunk = keys[i : i + 500]
                marks = ",".join("?" for _ in chunk)
                cur = db.execute(
                    "UPDATE recipients SET dropped=? WHERE rowid BETWEEN ? AND ?"
                    f" AND dropped=? AND email_key IN ({marks})",
                    (
                        R_DROPPED_MAYBE if maybe else R_DROPPED,
                        first,
                        first + ROWS_PER_BATCH_ID - 1,
                        R_IN,
                        *chunk,
                    ),
                )
                dropped += int(cur.rowcount)
            if dropped:
                db.execute(
                    "UPDATE batches SET recipients=recipients-?, dropped=dropped+? WHERE id=?",
                    (dropped, dropped, batch_id),
                )
                db.execute(
                    "UPDATE sends SET planned_recipients=MAX(0, planned_recipients-?),"
                    " updated_at=? WHERE id=?",
                    (dropped, _now(), row["send_id"]),
                )
                db.execute(
                    "UPDATE batches SET state=?, finished_at=? WHERE id=? AND recipients=0",
                    (B_SKIPPED, _now(), batch_id),
                )
        info = self.batch(batch_id)
        assert info is not None
        return info

    def note_attempt(
        self, batch_id: int, *, ambiguous: bool, status: int | None, error: str | None
    ) -> None:
        """Record one failed attempt.  A definite "not accepted" (``ambiguous`` False) puts
        the batch back to ``ready`` while the send waits to retry, so a crash during the
        wait leaves nothing in doubt; unless an earlier attempt may have reached the
        provider, in which case it is ``unknown``.  An ambiguous attempt leaves it
        ``posting`` (the send stops and :meth:`mark_unsent` records it as unknown)."""
        with self._tx() as db:
            db.execute(
                "UPDATE batches SET attempts=attempts+1,"
                " ambiguous_attempts=ambiguous_attempts+?, status=?, error=?,"
                " state=CASE WHEN ? THEN state"
                " WHEN ambiguous_attempts>0 OR resent=1 THEN ? ELSE ? END WHERE id=?",
                (int(ambiguous), status, error, int(ambiguous), B_UNKNOWN, B_READY, batch_id),
            )

    def mark_sent(self, batch_id: int, *, status: int, provider_id: str | None) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE batches SET state=?, attempts=attempts+1, status=?, provider_id=?,"
                " error=NULL, finished_at=? WHERE id=?",
                (B_SENT, status, provider_id, _now(), batch_id),
            )

    def mark_unsent(self, batch_id: int) -> None:
        """The batch was not accepted: ``failed`` if every attempt got a definite answer,
        ``unknown`` if any attempt may have reached the provider."""
        with self._tx() as db:
            db.execute(
                "UPDATE batches SET state=CASE WHEN ambiguous_attempts>0 OR resent=1"
                " THEN ? ELSE ? END, finished_at=? WHERE id=?",
                (B_UNKNOWN, B_FAILED, _now(), batch_id),
            )

    def batches_to_repost(self, send_id: int, *, resend_unknown: bool) -> list[BatchInfo]:
        states = [*_NOT_LEFT] + ([B_POSTING, B_UNKNOWN] if resend_unknown else [])
        marks = ",".join("?" for _ in states)
        rows = self._db.execute(
            f"SELECT id FROM batches WHERE send_id=? AND state IN ({marks}) ORDER BY seq",
            (send_id, *states),
        ).fetchall()
        return [b for b in (self.batch(int(r[0])) for r in rows) if b is not None]

    def unknown_batches(self, send_id: int) -> list[BatchInfo]:
        """Batches posted without an answer (meaningful only when the send is not running)."""
        rows = self._db.execute(
            "SELECT id FROM batches WHERE send_id=? AND state IN (?,?) ORDER BY seq",
            (send_id, B_POSTING, B_UNKNOWN),
        ).fetchall()
        return [b for b in (self.batch(int(r[0])) for r in rows) if b is not None]

    def skip_unknown(self, send_id: int) -> int:
        """The user chose not to resend the unknown batches; returns how many were skipped."""
        with self._tx() as db:
            cur = db.execute(
                "UPDATE batches SET state=?, finished_at=? WHERE send_id=? AND state IN (?,?)",
                (B_SKIPPED, _now(), send_id, B_POSTING, B_UNKNOWN),
            )
            return int(cur.rowcount)

    # -- lookups ----------------------------------------------------------------------------

    def batch(self, batch_id: int) -> BatchInfo | None:
        """A batch by its id (the ``nl_batch`` custom arg), with its send's issue and lists."""
        r = self._db.execute(
            "SELECT b.*, s.issue_id, s.lists, s.test FROM batches b"
            " JOIN sends s ON s.id=b.send_id WHERE b.id=?",
            (batch_id,),
        ).fetchone()
        if r is None:
            return None
        return BatchInfo(
            id=int(r["id"]),
            send_id=int(r["send_id"]),
            seq=int(r["seq"]),
            state=r["state"],
            recipients=int(r["recipients"]),
            attempts=int(r["attempts"]),
            ambiguous_attempts=int(r["ambiguous_attempts"]),
            resent=bool(r["resent"]),
            status=r["status"],
            provider_id=r["provider_id"],
            error=r["error"],
            issue_id=r["issue_id"],
            lists=tuple(json.loads(r["lists"])),
            test=bool(r["test"]),
            created_at=r["created_at"],
            finished_at=r["finished_at"],
        )

    def batches(self, send_id: int) -> list[BatchInfo]:
        rows = self._db.execute(
            "SELECT id FROM batches WHERE send_id=? ORDER BY seq", (send_id,)
        ).fetchall()
        return [b for b in (self.batch(int(r[0])) for r in rows) if b is not None]

    def batch_recipients(self, batch_id: int, *, dropped: bool = False) -> list[RecipientRow]:
        """The people in a batch (those posted with it, or to post it again); with
        ``dropped``, those taken out of it instead."""
        rows = self._db.execute(
            "SELECT email, name, first_name, language, list_name FROM recipients"
            f" WHERE rowid BETWEEN ? AND ? AND dropped{'!=' if dropped else '='}? ORDER BY rowid",
            (batch_id * ROWS_PER_BATCH_ID, (batch_id + 1) * ROWS_PER_BATCH_ID - 1, R_IN),
        ).fetchall()
        return [RecipientRow(r[0], r[1], r[2], r[3], r[4]) for r in rows]

    def has_recipients(self, issue_id: str) -> bool:
        row = self._db.execute(
            "SELECT 1 FROM recipients WHERE issue_id=? LIMIT 1", (issue_id,)
        ).fetchone()
        return row is not None

    def already_batched(
        self, issue_id: str, email: str, *, backend: str, only_send: int | None = None
    ) -> bool:
        """Has this address had the issue, or may it have, or will a resume post it to them
        (by any real send through this backend, or only by ``only_send``)?

        Counted: batches accepted or possibly accepted, failed batches of a send that
        can still be resumed, and people taken out of a resend who may have had an
        earlier attempt.  Not counted: failed batches of an abandoned send, batches
        cancelled at SendGrid, people taken out before anything could reach them.
        """
        sql = (
            "SELECT 1 FROM recipients r JOIN batches b ON b.id=r.batch_id"
            " JOIN sends s ON s.id=r.send_id"
            " WHERE r.issue_id=? AND r.email_key=? AND s.backend=?"
            + (" AND r.send_id=?" if only_send is not None else "")
            + " AND (r.dropped=? OR (r.dropped=? AND (b.state IN (?,?,?,?)"
            " OR (b.state IN (?,?) AND s.state!=?)))) LIMIT 1"
        )
        params: tuple[Any, ...] = (
            issue_id,
            email_key(email),
            backend,
            *(() if only_send is None else (only_send,)),
            R_DROPPED_MAYBE,
            R_IN,
            *_MAY_HAVE,
            *_NOT_LEFT,
            CANCELLED,
        )
        return self._db.execute(sql, params).fetchone() is not None

    def log(self, send_id: int) -> list[tuple[str, str | None, str, str | None]]:
        rows = self._db.execute(
            "SELECT at, from_state, to_state, note FROM send_log WHERE send_id=? ORDER BY rowid",
            (send_id,),
        ).fetchall()
        return [(r[0], r[1], r[2], r[3]) for r in rows]
