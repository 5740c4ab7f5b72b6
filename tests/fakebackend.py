"""An in-memory backend for tests: records every batch, answers as scripted.

It drives :class:`newsletter.engine.SendEngine` (and a whole send) without HTTP, so
the engine's decisions (retry, wait, pause, fail) are tested on their own, in
milliseconds, with tests/fakeclock.py's FakeClock instead of sleeping::

    backend = FakeBackend(unavailable(503), rate_limited(30), accept())
    ... SendEngine(backend=backend, clock=FakeClock(), ...).run(...)
    assert [a.kind for a in backend.attempts] == ["unavailable", "rate_limited", "accept"]

Each attempt to post a batch takes the next scripted step (then ``accept()`` for the
rest).  ``delivered()`` is what a real provider would have: the recipients of
accepted requests and of unanswered ones the provider took.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import ClassVar

from newsletter.clock import Clock
from newsletter.config import Workspace
from newsletter.errors import ProviderRejected, ProviderUnavailable
from newsletter.esp.base import (
    Backend,
    Batch,
    Capabilities,
    DeliveryUnknown,
    IssueContent,
    Outcome,
    Scheduling,
)

FAKE_CAPABILITIES = Capabilities(
    max_batch=1000,
    scheduling=Scheduling(max_ahead=timedelta(days=7), cancel_margin=timedelta(minutes=1)),
    substitutions=True,
    sandbox=False,
    tracking=True,
)


@dataclass(frozen=True)
class Step:
    """One scripted answer to one attempt."""

    kind: str  # accept | rate_limited | unavailable | refused | no_answer
    status: int = 202
    retry_after: float | None = None
    message: str = ""
    taken: bool = False  # no_answer: did the provider take the request anyway?


def accept() -> Step:
    return Step("accept")


def rate_limited(retry_after: float | None = 30.0) -> Step:
    """429; ``retry_after`` seconds as the provider's headers would say (None: not said)."""
    return Step("rate_limited", status=429, retry_after=retry_after)


def unavailable(status: int = 503) -> Step:
    """A definite "not now": nothing was accepted."""
    return Step("unavailable", status=status)


def refused(status: int = 400, message: str = "the from address is not verified") -> Step:
    return Step("refused", status=status, message=message)


def no_answer(*, taken: bool = True) -> Step:
    """The request left and no answer came (the provider may have it: ``taken``)."""
    return Step("no_answer", status=0, taken=taken)


@dataclass(frozen=True)
class Attempt:
    """One post of one batch, as the provider saw it."""

    seq: int
    batch_ref: str
    emails: tuple[str, ...]
    kind: str
    at: float  # the clock's monotonic time when it was posted
    taken: bool  # does the provider have it (accepted, or took it without answering)?
    send_at: int | None = None


class FakeBackend(Backend):
    """Records batches; answers with ``script`` in order, then accepts."""

    name = "fake"
    label = "the fake provider"
    capabilities: ClassVar[Capabilities] = FAKE_CAPABILITIES
    _ids: ClassVar[itertools.count[int]] = itertools.count(1)

    def __init__(
        self,
        *script: Step,
        clock: Clock | None = None,
        on_post: Callable[[Attempt], None] | None = None,
    ) -> None:
        self.script = list(script)
        self.clock = clock
        self.on_post = on_post  # called at each attempt, e.g. to press Ctrl-C mid-send
        self.attempts: list[Attempt] = []
        self.schedules: list[str] = []
        self.cancelled: list[str] = []
        self.closed = False

    @classmethod
    def from_workspace(cls, ws: Workspace) -> FakeBackend:
        return cls()

    @classmethod
    def with_capabilities(cls, **changes: object) -> type[FakeBackend]:
        """A FakeBackend class that can do less (or more): FakeBackend.with_capabilities(
        scheduling=None)."""
        caps = replace(cls.capabilities, **changes)  # type: ignore[arg-type]
        return type(f"{cls.__name__}Limited", (cls,), {"capabilities": caps})

    def describe(self) -> str:
        return "the fake provider (in memory; nothing is emailed)"

    def send_batch(self, content: IssueContent, batch: Batch) -> Outcome:
        step = self.script.pop(0) if self.script else accept()
        attempt = Attempt(
            seq=batch.seq,
            batch_ref=batch.batch_ref,
            emails=tuple(r.email for r in batch.recipients),
            kind=step.kind,
            at=self.clock.monotonic() if self.clock is not None else 0.0,
            taken=step.kind == "accept" or (step.kind == "no_answer" and step.taken),
            send_at=batch.send_at,
        )
        self.attempts.append(attempt)
        if self.on_post is not None:
            self.on_post(attempt)
        if step.kind == "accept":
            return Outcome(status=202, provider_id=f"fake-{next(self._ids)}")
        if step.kind == "rate_limited":
            raise ProviderUnavailable(
                "the fake provider's rate limit (429)", status=429, retry_after=step.retry_after
            )
        if step.kind == "unavailable":
            raise ProviderUnavailable(
                f"the fake provider is unavailable ({step.status})", status=step.status
            )
        if step.kind == "refused":
            raise ProviderRejected(
                f"the fake provider refused the request ({step.status}): {step.message}",
                status=step.status,
            )
        if step.kind == "no_answer":
            raise DeliveryUnknown("the fake provider did not answer")
        raise AssertionError(f"unknown step {step.kind!r}")

    def delivered(self) -> list[str]:
        """Who a real provider would be delivering to: accepted requests, and unanswered
        ones it took."""
        return [e for a in self.attempts if a.taken for e in a.emails]

    def create_schedule(self) -> str:
        schedule_id = f"fake-schedule-{len(self.schedules) + 1}"
        self.schedules.append(schedule_id)
        return schedule_id

    def cancel_schedule(self, schedule_id: str) -> None:
        self.cancelled.append(schedule_id)

    def close(self) -> None:
        self.closed = True
