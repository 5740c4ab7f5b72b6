"""When to retry a request, how long to wait, and how fast to post: the send's pacing.

Kept apart from the engine so that the policy (exponential backoff with jitter, a
request rate) is one small thing to read and to test.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .clock import SYSTEM, Clock
from .config import (
    Send,
)

if TYPE_CHECKING:
    pass

# A clearly-labelled key for the outbox when NEWSLETTER_SECRET is unset: its links are
# for looking at, and will not be accepted by a server that has the real secret.


@dataclass(frozen=True)
class RetryPolicy:
    """When to retry, how long to wait, and when to give up and pause."""

    max_retries: int = 6
    pause_after_failures: int = 5
    backoff_base: float = 1.0
    backoff_max: float = 60.0
    max_rate_limit_waits: int = 100
    max_wait: float = 900.0  # the longest a 429 may make us wait for one batch

    @classmethod
    def from_config(cls, send: Send) -> RetryPolicy:
        return cls(
            max_retries=send.max_retries,
            pause_after_failures=send.pause_after_failures,
            backoff_base=send.backoff_base,
            backoff_max=send.backoff_max,
        )

    def backoff(self, failures: int) -> float:
        """Exponential with "equal jitter": half fixed, half random, so retries spread out."""
        ceiling = min(self.backoff_max, self.backoff_base * 2.0 ** max(0, failures - 1))
        return ceiling / 2 + random.uniform(0, ceiling / 2)


class Pacer:
    """At most ``rate`` requests per second (None: as fast as answers come)."""

    def __init__(self, rate: float | None, clock: Clock = SYSTEM) -> None:
        self.interval = 1.0 / rate if rate else 0.0
        self._clock = clock
        self._last: float | None = None

    def wait(self) -> None:
        delay = self.delay()
        if delay > 0:
            self._clock.sleep(delay)
        self.mark()

    def delay(self) -> float:
        """Seconds to wait before the next request may leave."""
        if not self.interval or self._last is None:
            return 0.0
        return max(0.0, self._last + self.interval - self._clock.monotonic())

    def mark(self) -> None:
        """A request leaves now."""
        if self.interval:
            self._last = self._clock.monotonic()
