"""SendEngine on its own: its decisions after each answer, with an in-memory backend
(tests/fakebackend.py) and a fake clock (tests/fakeclock.py): no HTTP, no sleeping.

What is asserted is what the provider received (``backend.attempts``), when (the
fake clock's time), and what the ledger recorded.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator

import pytest

from fakebackend import FakeBackend, accept, no_answer, rate_limited, refused, unavailable
from fakeclock import FakeClock
from newsletter.engine import SendEngine, SendReport, StopReason
from newsletter.errors import ProviderRejected
from newsletter.esp.base import IssueContent
from newsletter.ledger import (
    B_FAILED,
    B_READY,
    B_SENT,
    B_UNKNOWN,
    DONE,
    FAILED,
    PAUSED,
    Ledger,
    RecipientRow,
)
from newsletter.personalize import Personalizer
from newsletter.retry import RetryPolicy

CONTENT = IssueContent(
    issue_id="2019-09",
    subject="Digest",
    html="<p>Dear %%first_name_html%%</p>",
    text="Dear %%first_name%%",
    from_email="digest@news.example.org",
    from_name="Digest",
)
POLICY = RetryPolicy(max_retries=6, pause_after_failures=5, backoff_base=2.0, backoff_max=60.0)


def people(n: int) -> list[RecipientRow]:
    return [
        RecipientRow(f"reader{i}@example.org", f"Reader {i}", "Reader", "en", "members")
        for i in range(n)
    ]


@pytest.fixture
def ledger() -> Iterator[Ledger]:
    with Ledger(":memory:") as db:
        yield db


class Waits:
    """Progress sink: the waits the engine announced; ``then`` runs at each."""

    def __init__(self) -> None:
        self.waits: list[tuple[float, str]] = []
        self.done: list[int] = []
        self.then: list[Callable[[], None]] = []

    def batch_done(self, seq: int, recipients: int) -> None:
        self.done.append(seq)

    def waiting(self, seconds: float, reason: str) -> None:
        self.waits.append((seconds, reason))
        for action in self.then:
            action()


def run(
    ledger: Ledger,
    backend: FakeBackend,
    clock: FakeClock,
    n: int,
    *,
    batch_size: int = 10,
    policy: RetryPolicy = POLICY,
    progress: Waits | None = None,
) -> tuple[SendReport, SendEngine, int]:
    send_id = ledger.create_send("2019-09", ["members"], backend.name, planned_recipients=n)
    engine = SendEngine(
        ledger=ledger,
        backend=backend,
        content=CONTENT,
        personalize=Personalizer([b"k" * 32], "https://news.example.org/", None, "en"),
        policy=policy,
        batch_size=batch_size,
        progress=progress,
        clock=clock,
    )
    return engine.run(send_id, people(n)), engine, send_id


def test_batches_are_formed_and_posted_in_order(ledger: Ledger) -> None:
    clock = FakeClock()
    backend = FakeBackend(clock=clock)
    report, _, send_id = run(ledger, backend, clock, 25)
    assert report.state == DONE and report.recipients_sent == 25
    assert [(a.seq, len(a.emails)) for a in backend.attempts] == [(1, 10), (2, 10), (3, 5)]
    assert backend.delivered() == [p.email for p in people(25)]
    assert [b.state for b in ledger.batches(send_id)] == [B_SENT] * 3
    assert clock.slept == []  # nothing made it wait


def test_5xx_is_retried_with_backoff_until_accepted(ledger: Ledger) -> None:
    clock = FakeClock()
    backend = FakeBackend(unavailable(503), unavailable(500), accept(), clock=clock)
    progress = Waits()
    report, _, send_id = run(ledger, backend, clock, 5, progress=progress)
    assert report.state == DONE and report.recipients_sent == 5
    assert [a.kind for a in backend.attempts] == ["unavailable", "unavailable", "accept"]
    first, second = (w for w, _ in progress.waits)
    assert 1.0 <= first <= 2.0 and 2.0 <= second <= 4.0  # equal jitter: half fixed, half random
    gaps = [b.at - a.at for a, b in itertools.pairwise(backend.attempts)]
    assert gaps == pytest.approx([first, second])  # the retries waited that long
    [batch] = ledger.batches(send_id)
    assert (batch.state, batch.attempts, batch.ambiguous_attempts) == (B_SENT, 3, 0)


def test_a_429_waits_as_long_as_the_provider_says(ledger: Ledger) -> None:
    clock = FakeClock()
    backend = FakeBackend(rate_limited(42.0), rate_limited(None), clock=clock)
    progress = Waits()
    report, _, _ = run(ledger, backend, clock, 3, progress=progress)
    assert report.state == DONE
    assert progress.waits[0] == (42.0, "rate limit (429)")
    first, second, third = backend.attempts
    assert second.at - first.at == pytest.approx(42.0)  # the wait was honoured, no more
    assert 2.0 <= third.at - second.at <= 4.0  # not said: backoff (2nd 429: 2 s x 2, jittered)
    assert sum(clock.slept) == pytest.approx(third.at - first.at)


def test_a_429_longer_than_the_policy_allows_is_capped(ledger: Ledger) -> None:
    clock = FakeClock()
    backend = FakeBackend(rate_limited(10_000.0), clock=clock)
    policy = RetryPolicy(max_wait=120.0)
    run(ledger, backend, clock, 1, policy=policy)
    assert backend.attempts[1].at - backend.attempts[0].at == pytest.approx(120.0)


def test_failures_in_a_row_pause_the_send(ledger: Ledger) -> None:
    clock = FakeClock()
    backend = FakeBackend(*[unavailable(503)] * 3, clock=clock)
    policy = RetryPolicy(pause_after_failures=3, backoff_base=1.0, backoff_max=1.0)
    report, _, send_id = run(ledger, backend, clock, 15, policy=policy)
    assert report.state == PAUSED and report.stop is StopReason.FAILURES
    assert "3 failed attempts in a row" in report.message
    assert len(backend.attempts) == 3 and backend.delivered() == []
    [batch] = ledger.batches(send_id)  # batch 2 was never formed
    assert (batch.state, batch.attempts) == (B_FAILED, 3)
    assert ledger.send(send_id).state == PAUSED


def test_a_refusal_fails_the_send_at_once(ledger: Ledger) -> None:
    clock = FakeClock()
    backend = FakeBackend(accept(), refused(400, "bad from address"), clock=clock)
    report, _, send_id = run(ledger, backend, clock, 25)
    assert report.state == FAILED and report.stop is StopReason.REFUSED
    assert isinstance(report.error, ProviderRejected) and "bad from address" in report.message
    assert [a.kind for a in backend.attempts] == ["accept", "refused"]  # not retried
    assert [b.state for b in ledger.batches(send_id)] == [B_SENT, B_FAILED]
    assert clock.slept == []


def test_no_answer_pauses_and_leaves_the_batch_unknown(ledger: Ledger) -> None:
    clock = FakeClock()
    backend = FakeBackend(accept(), no_answer(taken=True), clock=clock)
    report, _, send_id = run(ledger, backend, clock, 25)
    assert report.state == PAUSED and report.stop is StopReason.NO_ANSWER
    assert report.unknown == [2]
    assert "the fake provider may or may not have accepted it" in report.message
    assert [a.kind for a in backend.attempts] == ["accept", "no_answer"]  # never retried
    batches = ledger.batches(send_id)
    assert [(b.state, b.ambiguous_attempts) for b in batches] == [(B_SENT, 0), (B_UNKNOWN, 1)]
    assert ledger.unknown_batches(send_id)[0].seq == 2
    assert len(backend.delivered()) == 20  # the provider has batch 2: nobody gets it twice


def test_a_stop_during_a_wait_leaves_the_batch_ready(ledger: Ledger) -> None:
    """Ctrl-C while waiting out a 429: the retry never leaves, the batch is 'ready' (a
    plain --resume posts it), and the engine does not sleep out the rest of the wait."""
    clock = FakeClock()
    backend = FakeBackend(accept(), rate_limited(600.0), clock=clock)
    progress = Waits()
    holder: list[SendEngine] = []
    progress.then.append(lambda: holder[0].request_stop())
    send_id = ledger.create_send("2019-09", ["members"], backend.name, planned_recipients=15)
    engine = SendEngine(
        ledger=ledger,
        backend=backend,
        content=CONTENT,
        personalize=Personalizer([b"k" * 32], "https://news.example.org/", None, "en"),
        policy=POLICY,
        batch_size=10,
        progress=progress,
        clock=clock,
    )
    holder.append(engine)
    report = engine.run(send_id, people(15))
    assert report.state == PAUSED and report.stop is StopReason.BY_USER
    assert [a.kind for a in backend.attempts] == ["accept", "rate_limited"]
    assert sum(clock.slept) < 1.0  # did not wait out the 600 s
    assert [b.state for b in ledger.batches(send_id)] == [B_SENT, B_READY]
    assert [b.seq for b in ledger.batches_to_repost(send_id, resend_unknown=False)] == [2]
    assert ledger.unknown_batches(send_id) == []
