"""The ledger: state machine, commit-before-post, unknown outcomes, lookups, the OS lock."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from newsletter import state as state_db
from newsletter.errors import LedgerError, StateDatabaseError
from newsletter.ledger import (
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
    PAUSED,
    PLANNED,
    SCHEDULED,
    SENDING,
    TRANSITIONS,
    Ledger,
    RecipientRow,
)


def rows(n: int, list_name: str = "main", start: int = 0) -> list[RecipientRow]:
    return [
        RecipientRow(f"p{i}@example.org", f"P {i}", "P", "en", list_name)
        for i in range(start, start + n)
    ]


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    with Ledger(tmp_path / ".newsletter" / "state.db") as led:
        yield led


def test_database_is_wal_with_full_sync(ledger: Ledger, tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / ".newsletter" / "state.db")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert ledger._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_only_valid_transitions(ledger: Ledger) -> None:
    send = ledger.create_send("2019-09", ["main"], "sendgrid")
    with pytest.raises(LedgerError, match="planned; it cannot become done"):
        ledger.transition(send, DONE)
    for state in (SENDING, PAUSED, SENDING, FAILED, SENDING, DONE):
        ledger.transition(send, state, note=f"to {state}")
    with pytest.raises(LedgerError, match="done; it cannot become sending"):
        ledger.transition(send, SENDING)
    assert [to for _, _, to, _ in ledger.log(send)] == [
        PLANNED,
        SENDING,
        PAUSED,
        SENDING,
        FAILED,
        SENDING,
        DONE,
    ]
    assert TRANSITIONS[DONE] == frozenset() and TRANSITIONS[CANCELLED] == frozenset()
    with pytest.raises(LedgerError, match="no send #99"):
        ledger.transition(99, SENDING)


def test_batch_is_committed_as_ready_then_posting_before_any_request(
    ledger: Ledger, tmp_path: Path
) -> None:
    send = ledger.create_send("2019-09", ["main"], "sendgrid")
    ledger.transition(send, SENDING)
    batch = ledger.open_batch(send, rows(3), issue_id="2019-09")
    # another connection (another process, after a crash) already sees it all
    other = sqlite3.connect(tmp_path / ".newsletter" / "state.db")
    assert other.execute("SELECT state, recipients FROM batches").fetchall() == [(B_READY, 3)]
    assert (
        other.execute("SELECT count(*) FROM recipients WHERE batch_id=?", (batch.id,)).fetchone()[0]
        == 3
    )
    ledger.mark_posting(batch.id)  # the request is about to leave
    assert other.execute("SELECT state FROM batches").fetchall() == [(B_POSTING,)]
    ledger.mark_sent(batch.id, status=202, provider_id="abc")
    assert other.execute("SELECT state, status, provider_id FROM batches").fetchall() == [
        (B_SENT, 202, "abc")
    ]


def test_unsent_batch_is_failed_or_unknown_by_its_attempts(ledger: Ledger) -> None:
    send = ledger.create_send("2019-09", ["main"], "sendgrid")
    ledger.transition(send, SENDING)
    definite = ledger.open_batch(send, rows(2), issue_id="2019-09")
    ledger.note_attempt(definite.id, ambiguous=False, status=503, error="unavailable")
    ledger.mark_unsent(definite.id)
    maybe = ledger.open_batch(send, rows(2, start=2), issue_id="2019-09")
    ledger.note_attempt(maybe.id, ambiguous=True, status=None, error="timeout")
    ledger.mark_unsent(maybe.id)
    crashed = ledger.open_batch(send, rows(2, start=4), issue_id="2019-09")
    ledger.mark_posting(crashed.id)  # the process died with this request out
    waiting = ledger.open_batch(send, rows(2, start=6), issue_id="2019-09")
    ledger.mark_posting(waiting.id)
    ledger.note_attempt(waiting.id, ambiguous=False, status=429, error="rate limited")
    states = {b.id: b.state for b in ledger.batches(send)}
    assert states == {
        definite.id: B_FAILED,
        maybe.id: B_UNKNOWN,
        crashed.id: B_POSTING,
        waiting.id: B_READY,  # a crash while it waits to retry: it never left
    }
    assert [b.id for b in ledger.unknown_batches(send)] == [maybe.id, crashed.id]
    assert [b.id for b in ledger.batches_to_repost(send, resend_unknown=False)] == [
        definite.id,
        waiting.id,
    ]
    assert len(ledger.batches_to_repost(send, resend_unknown=True)) == 4
    with pytest.raises(LedgerError, match="cannot be posted again"):
        ledger.begin_repost(maybe.id, resend_unknown=False)
    ledger.begin_repost(maybe.id, resend_unknown=True)
    assert ledger.batch(maybe.id).resent  # type: ignore[union-attr]
    assert ledger.skip_unknown(send) == 2  # maybe (posting again) and crashed
    summary = ledger.send(send)
    assert (summary.batches_failed, summary.batches_skipped, summary.recipients_skipped) == (
        1,
        2,
        4,
    )
    assert (summary.batches_ready, summary.recipients_ready) == (1, 2)


def test_recipients_sent_counts_accepted_batches_of_real_sends_only(ledger: Ledger) -> None:
    real = ledger.create_send("2019-09", ["main"], "sendgrid", planned_recipients=5)
    ledger.transition(real, SENDING)
    ok = ledger.open_batch(real, rows(3), issue_id="2019-09")
    ledger.mark_sent(ok.id, status=202, provider_id=None)
    waiting = ledger.open_batch(real, rows(2, start=3), issue_id="2019-09")
    ledger.mark_posting(waiting.id)  # no answer yet
    test = ledger.create_send("2019-09", ["main"], "sendgrid", test=True)
    ledger.transition(test, SENDING)
    t = ledger.open_batch(test, rows(1, start=50), issue_id=None)
    ledger.mark_sent(t.id, status=202, provider_id=None)
    other = ledger.create_send("2019-10", ["main"], "sendgrid")
    ledger.transition(other, SENDING)
    o = ledger.open_batch(other, rows(4), issue_id="2019-10")
    ledger.mark_sent(o.id, status=202, provider_id=None)
    assert ledger.recipients_sent("2019-09") == 3
    assert ledger.recipients_sent("2019-10") == 4
    assert [s.id for s in ledger.sends("2019-09")] == [real, test]
    assert len(ledger.sends()) == 3
    s = ledger.send(real)
    assert (s.recipients_sent, s.recipients_unknown, s.pending) == (3, 2, 0)  # unknown apart
    # test copies never count as having received the issue
    assert not ledger.already_batched("2019-09", "p50@example.org", backend="sendgrid")


def test_batch_lookup_for_webhook_events(ledger: Ledger) -> None:
    send = ledger.create_send("2019-09", ["b", "a"], "sendgrid")
    ledger.transition(send, SENDING)
    batch = ledger.open_batch(send, rows(2, "a"), issue_id="2019-09")
    info = ledger.batch(batch.id)
    assert info is not None
    assert (info.issue_id, info.lists, info.send_id, info.seq, info.recipients) == (
        "2019-09",
        ("a", "b"),
        send,
        1,
        2,
    )
    assert ledger.batch(12345) is None
    assert [r.email for r in ledger.batch_recipients(batch.id)] == [
        "p0@example.org",
        "p1@example.org",
    ]


def test_already_batched_is_case_insensitive_and_per_backend(ledger: Ledger) -> None:
    send = ledger.create_send("2019-09", ["main"], "sendgrid")
    ledger.transition(send, SENDING)
    ledger.open_batch(
        send, [RecipientRow("Ana@Example.org", None, None, None, "main")], issue_id="2019-09"
    )
    assert ledger.already_batched("2019-09", "ana@example.org", backend="sendgrid")
    assert not ledger.already_batched("2019-09", "ana@example.org", backend="outbox")
    assert not ledger.already_batched("2019-10", "ana@example.org", backend="sendgrid")
    assert not ledger.already_batched(
        "2019-09", "ana@example.org", backend="sendgrid", only_send=send + 1
    )


def test_cancelling_a_scheduled_send_cancels_its_batches(ledger: Ledger) -> None:
    send = ledger.create_send("2019-09", ["main"], "sendgrid")
    ledger.set_schedule(send, "sg-batch-1", 1_900_000_000)
    ledger.transition(send, SENDING)
    b = ledger.open_batch(send, rows(2), issue_id="2019-09")
    ledger.mark_sent(b.id, status=202, provider_id=None)
    ledger.transition(send, SCHEDULED)
    assert ledger.recipients_sent("2019-09") == 2
    ledger.transition(send, CANCELLED)
    assert ledger.batch(b.id).state == B_CANCELLED  # type: ignore[union-attr]
    assert ledger.recipients_sent("2019-09") == 0
    assert not ledger.already_batched("2019-09", "p0@example.org", backend="sendgrid")
    assert ledger.blocking_sends("2019-09", ["main"], "sendgrid") == []


def test_blocking_sends_by_list_and_backend(ledger: Ledger) -> None:
    send = ledger.create_send("2019-09", ["a", "b"], "sendgrid")
    assert [s.id for s in ledger.blocking_sends("2019-09", ["b", "c"], "sendgrid")] == [send]
    assert ledger.blocking_sends("2019-09", ["c"], "sendgrid") == []
    assert ledger.blocking_sends("2019-09", ["a"], "outbox") == []
    ledger.create_send("2019-09", ["c"], "sendgrid", test=True)
    assert ledger.blocking_sends("2019-09", ["c"], "sendgrid") == []


def test_lock_marks_a_running_send_and_dies_with_its_process(tmp_path: Path) -> None:
    path = tmp_path / ".newsletter" / "state.db"
    with Ledger(path) as ledger:
        send = ledger.create_send("2019-09", ["main"], "sendgrid")
        with Ledger(path) as other:
            ledger.claim(send)
            assert other.is_running_elsewhere(send)
            assert other.send(send).running
            with pytest.raises(LedgerError, match="running in another process"):
                other.claim(send)
            ledger.release(send)
            assert not other.is_running_elsewhere(send)
    script = textwrap.dedent(f"""
        import sys, time
        from newsletter.ledger import Ledger
        led = Ledger({str(path)!r}); led.claim({send}); print("claimed", flush=True)
        time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "claimed"
        with Ledger(path) as ledger:
            assert ledger.is_running_elsewhere(send)
            proc.kill()
            proc.wait(timeout=10)
            assert not ledger.is_running_elsewhere(send)
    finally:
        if proc.poll() is None:
            proc.kill()


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    Ledger(path).close()
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version=99")
    db.close()
    with pytest.raises(StateDatabaseError, match="newer version"):
        Ledger(path)


def test_who_has_the_issue_failed_batches_count_only_while_resumable(ledger: Ledger) -> None:
    send = ledger.create_send("2019-09", ["main"], "sendgrid")
    ledger.transition(send, SENDING)
    sent = ledger.open_batch(send, rows(2), issue_id="2019-09")
    ledger.mark_sent(sent.id, status=202, provider_id=None)
    failed = ledger.open_batch(send, rows(2, start=2), issue_id="2019-09")
    ledger.note_attempt(failed.id, ambiguous=False, status=503, error="unavailable")
    ledger.mark_unsent(failed.id)
    unknown = ledger.open_batch(send, rows(2, start=4), issue_id="2019-09")
    ledger.note_attempt(unknown.id, ambiguous=True, status=None, error="timeout")
    ledger.mark_unsent(unknown.id)
    ledger.transition(send, PAUSED)

    def has(i: int) -> bool:
        return ledger.already_batched("2019-09", f"p{i}@example.org", backend="sendgrid")

    # paused: the failed batch will be posted by a resume, so a new send leaves them out
    assert [has(i) for i in range(6)] == [True] * 6
    ledger.transition(send, CANCELLED, note="abandoned")
    assert ledger.batch(failed.id).state == B_CANCELLED  # type: ignore[union-attr]
    # abandoned: the failed batch's people never got it; the unknown ones may have
    assert [has(i) for i in range(6)] == [True, True, False, False, True, True]


def test_cancel_without_sendgrid_keeps_what_it_accepted(ledger: Ledger) -> None:
    """A scheduled send SendGrid could no longer cancel: accepted batches still go out."""
    send = ledger.create_send("2019-09", ["main"], "sendgrid")
    ledger.set_schedule(send, "sg-batch-1", 1_900_000_000)
    ledger.transition(send, SENDING)
    b = ledger.open_batch(send, rows(2), issue_id="2019-09")
    ledger.mark_sent(b.id, status=202, provider_id=None)
    ledger.transition(send, PAUSED)
    ledger.transition(send, CANCELLED, schedule_cancelled=False)
    assert ledger.batch(b.id).state == B_SENT  # type: ignore[union-attr]
    assert ledger.recipients_sent("2019-09") == 2
    assert ledger.already_batched("2019-09", "p0@example.org", backend="sendgrid")


def test_drop_recipients_before_a_repost(ledger: Ledger) -> None:
    send = ledger.create_send("2019-09", ["main"], "sendgrid", planned_recipients=6)
    ledger.transition(send, SENDING)
    failed = ledger.open_batch(send, rows(3), issue_id="2019-09")
    ledger.note_attempt(failed.id, ambiguous=False, status=500, error="x")
    ledger.mark_unsent(failed.id)
    info = ledger.drop_recipients(failed.id, ["P1@Example.org", "nobody@example.org"])
    assert (info.state, info.recipients) == (B_FAILED, 2)
    assert [r.email for r in ledger.batch_recipients(failed.id)] == [
        "p0@example.org",
        "p2@example.org",
    ]
    s = ledger.send(send)
    assert (s.recipients_failed, s.recipients_dropped, s.planned_recipients) == (2, 1, 5)
    info = ledger.drop_recipients(failed.id, ["p0@example.org", "p2@example.org"])
    assert (info.state, info.recipients) == (B_SKIPPED, 0)  # nobody left: never posted
    assert not ledger.already_batched("2019-09", "p1@example.org", backend="sendgrid")
    with pytest.raises(LedgerError, match="final"):
        ledger.drop_recipients(failed.id, ["p0@example.org"])
    # from a batch that may already have reached them: they keep counting as having it
    maybe = ledger.open_batch(send, rows(2, start=10), issue_id="2019-09")
    ledger.mark_posting(maybe.id)
    ledger.drop_recipients(maybe.id, ["p10@example.org"])  # posting: outcome unknown
    assert ledger.already_batched("2019-09", "p10@example.org", backend="sendgrid")


def test_issue_lock_is_exclusive_and_released_on_close(tmp_path: Path) -> None:
    path = tmp_path / ".newsletter" / "state.db"
    with Ledger(path) as first, Ledger(path) as second:
        first.lock_issue("2019-09")
        first.lock_issue("2019-09")  # again in the same ledger: fine
        with pytest.raises(LedgerError, match="another send of 2019-09 is running"):
            second.lock_issue("2019-09")
        second.lock_issue("2019-10")  # other issues are free
        first.close()
        second.lock_issue("2019-09")
    assert (tmp_path / ".newsletter" / "issue-2019-09.lock").exists()


def test_schema_1_is_upgraded_in_place(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    db = sqlite3.connect(path)
    db.executescript(
        state_db._LEDGER.replace(",\n    dropped INTEGER NOT NULL DEFAULT 0", "")
        .replace(",\n    audience TEXT", "")
        .replace("\n    content TEXT,", "")
        .replace("\n    send_tz TEXT,", "")
        .replace(",\n    languages TEXT", "")
        .replace("finished_at TEXT,\n    language TEXT,", "finished_at TEXT,")
    )
    db.execute(
        "INSERT INTO sends (issue_id, lists, tags, backend, state, created_at, updated_at)"
        " VALUES ('2019-09', '[\"main\"]', '[]', 'sendgrid', 'paused', 'x', 'x')"
    )
    db.execute(
        "INSERT INTO batches (send_id, seq, state, recipients, created_at)"
        " VALUES (1, 1, 'failed', 1, 'x')"
    )
    db.execute(
        "INSERT INTO recipients (rowid, batch_id, send_id, issue_id, email, email_key, list_name)"
        " VALUES (4096, 1, 1, '2019-09', 'a@example.org', 'a@example.org', 'main')"
    )
    db.execute("PRAGMA user_version=1")
    db.commit()
    db.close()
    with Ledger(path) as ledger:
        assert ledger._db.execute("PRAGMA user_version").fetchone()[0] == state_db.SCHEMA_VERSION
        tables = {r[0] for r in ledger._db.execute("SELECT name FROM sqlite_master")}
        assert {"audience", "esp_events", "pending_suppressions", "suppressions"} <= tables
        [s] = ledger.sends("2019-09")
        assert (s.recipients_failed, s.recipients_dropped) == (1, 0)
        assert ledger.already_batched("2019-09", "a@example.org", backend="sendgrid")
        ledger.drop_recipients(1, ["a@example.org"])
        assert ledger.send(1).recipients_dropped == 1
