"""The batch half of the send ledger: a send's frozen audience, its batches and their people.

Mixed into :class:`newsletter.ledger.Ledger`, which owns the connection and the
transactions; see its module docstring for what each batch state promises.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any

from . import state
from .addresses import email_key
from .errors import LedgerError
from .records import (
    AUDIENCE_ID_BITS,
    B_FAILED,
    B_POSTING,
    B_READY,
    B_SENT,
    B_SKIPPED,
    B_UNKNOWN,
    CANCELLED,
    MAY_HAVE,
    NOT_LEFT,
    R_DROPPED,
    R_DROPPED_MAYBE,
    R_IN,
    ROWS_PER_BATCH_ID,
    Audience,
    BatchInfo,
    RecipientLike,
    RecipientRow,
)
from .records import now_iso as _now


class BatchRecords:
    """Batches and the frozen audience (needs ``_db`` and ``_tx`` from the Ledger)."""

    _db: state.Connection

    def _tx(self) -> AbstractContextManager[sqlite3.Connection]:
        raise NotImplementedError

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

    # -- batches ---------------------------------------------------------------------------

    def open_batch(
        self,
        send_id: int,
        recipients: Sequence[RecipientLike],
        *,
        issue_id: str | None,
        language: str | None = None,
    ) -> BatchInfo:
        """Record a new batch and its recipients as ``ready``, committed before any request.

        ``issue_id`` is None for test sends, so their recipients never count as having
        received the issue.  ``language``: the version of the issue it carries (one per batch).
        """
        now = _now()
        with self._tx() as db:
            row = db.execute(
                "SELECT COALESCE(MAX(seq), 0) + 1 FROM batches WHERE send_id=?", (send_id,)
            ).fetchone()
            seq = int(row[0])
            cur = db.execute(
                "INSERT INTO batches (send_id, seq, state, recipients, created_at, language)"
                " VALUES (?,?,?,?,?,?)",
                (send_id, seq, B_READY, len(recipients), now, language),
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
            if state in NOT_LEFT:
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
            if state not in (*NOT_LEFT, B_POSTING, B_UNKNOWN):
                raise LedgerError(f"batch #{batch_id} is {state}; its recipients are final")
            if maybe is None:
                maybe = (
                    state not in NOT_LEFT or bool(row["resent"]) or row["ambiguous_attempts"] > 0
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
        states = [*NOT_LEFT] + ([B_POSTING, B_UNKNOWN] if resend_unknown else [])
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
            language=r["language"],
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
            *MAY_HAVE,
            *NOT_LEFT,
            CANCELLED,
        )
        return self._db.execute(sql, params).fetchone() is not None

    def language_counts(self, send_id: int) -> dict[str, tuple[int, int]]:
        """(recipients sent, recipients batched) per language of a send's batches."""
        rows = self._db.execute(
            "SELECT language, SUM(CASE WHEN state=? THEN recipients ELSE 0 END),"
            " SUM(recipients) FROM batches WHERE send_id=? AND language IS NOT NULL"
            " GROUP BY language ORDER BY MIN(seq)",
            (B_SENT, send_id),
        ).fetchall()
        return {str(r[0]): (int(r[1] or 0), int(r[2] or 0)) for r in rows}

    def log(self, send_id: int) -> list[tuple[str, str | None, str, str | None]]:
        rows = self._db.execute(
            "SELECT at, from_state, to_state, note FROM send_log WHERE send_id=? ORDER BY rowid",
            (send_id,),
        ).fetchall()
        return [(r[0], r[1], r[2], r[3]) for r in rows]
