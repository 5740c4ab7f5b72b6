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
events name their batch in their correlation keys) while a send writes, and
``synchronous=FULL`` so that a committed mark survives a power cut.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from . import state
from .batches import BatchRecords
from .errors import LedgerError
from .locks import SendLock
from .records import (
    AUDIENCE_ID_BITS,
    B_CANCELLED,
    B_FAILED,
    B_POSTING,
    B_READY,
    B_SENT,
    B_SKIPPED,
    B_UNKNOWN,
    CANCELLED,
    DONE,
    FAILED,
    MAY_HAVE,
    NOT_LEFT,
    PAUSED,
    PLANNED,
    R_DROPPED,
    R_DROPPED_MAYBE,
    R_IN,
    ROWS_PER_BATCH_ID,
    SCHEDULED,
    SENDING,
    TRANSITIONS,
    UNFINISHED,
    Audience,
    BatchInfo,
    RecipientLike,
    RecipientRow,
    SendSummary,
)
from .records import now_iso as _now


class Ledger(BatchRecords):
    """The state database; one instance per process, used from one thread."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path) if str(path) != ":memory:" else None
        self._locks: dict[int, SendLock] = {}
        self._issue_locks: dict[str, SendLock] = {}
        # Every SQLite failure (busy, disk full, damaged) is a StateDatabaseError.
        # The schema is state.py's (it upgrades an older file as it opens it).
        self._db = state.open_db(path)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA foreign_keys=ON")

    # -- plumbing ---------------------------------------------------------------------------

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
        content: str | None = None,
        send_tz: str | None = None,
        planned_recipients: int = 0,
        send_at: int | None = None,
        force_resend: bool = False,
        audience: Audience | None = None,
        languages: Sequence[str] = (),
    ) -> int:
        """A new send, ``planned``; with its frozen ``audience`` in the same transaction,
        so no send ever exists without the people it is for; ``languages``: the versions of
        the issue it sends."""
        now = _now()
        with self._tx() as db:
            cur = db.execute(
                "INSERT INTO sends (issue_id, lists, tags, backend, state, test, force_resend,"
                " subject, content, send_tz, planned_recipients, send_at, created_at,"
                " updated_at, languages) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    issue_id,
                    json.dumps(sorted(set(lists))),
                    json.dumps(list(tags)),
                    backend,
                    PLANNED,
                    int(test),
                    int(force_resend),
                    subject,
                    content,
                    send_tz,
                    planned_recipients,
                    send_at,
                    now,
                    now,
                    json.dumps(list(languages)) if languages else None,
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
                states = (*NOT_LEFT, *MAY_HAVE) if schedule_cancelled else NOT_LEFT
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
                    content=r["content"],
                    send_tz=r["send_tz"],
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
                    languages=tuple(json.loads(r["languages"])) if r["languages"] else (),
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


__all__ = [
    "AUDIENCE_ID_BITS",
    "B_CANCELLED",
    "B_FAILED",
    "B_POSTING",
    "B_READY",
    "B_SENT",
    "B_SKIPPED",
    "B_UNKNOWN",
    "CANCELLED",
    "DONE",
    "FAILED",
    "PAUSED",
    "PLANNED",
    "R_DROPPED",
    "R_DROPPED_MAYBE",
    "R_IN",
    "ROWS_PER_BATCH_ID",
    "SCHEDULED",
    "SENDING",
    "TRANSITIONS",
    "UNFINISHED",
    "Audience",
    "BatchInfo",
    "Ledger",
    "RecipientLike",
    "RecipientRow",
    "SendLock",
    "SendSummary",
]
