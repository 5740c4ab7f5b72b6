"""When to retry a request, how long to wait, and how fast to post: the send's pacing.

Kept apart from the engine so that the policy (exponential backoff with jitter, a
request rate, how long a rate limit asks us to wait) is one small thing to read and
to test.  Every client of a provider (the send, `suppressions sync`) reads a rate
limit's wait through :func:`retry_after`, so they agree on it.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

from .clock import SYSTEM, Clock
from .config import Send

RETRY_AFTER = "Retry-After"
RATE_LIMIT_RESET = "X-RateLimit-Reset"


def _header(headers: Mapping[str, str] | None, name: str) -> str | None:
    """A header by name, whatever its case (httpx.Headers already ignores case; a dict may not)."""
    if not headers:
        return None
    value = headers.get(name)
    if value is None:
        lowered = name.lower()
        value = next((v for k, v in headers.items() if k.lower() == lowered), None)
    return None if value is None else str(value).strip()


def _seconds(value: str) -> float | None:
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def retry_after(headers: Mapping[str, str] | None, now: float | None = None) -> float | None:
    """Seconds a rate-limited client must wait, from the answer's headers; None if they do
    not say (the caller then backs off on its own).

    - ``Retry-After``: seconds (RFC 9110), or an HTTP date;
    - ``X-RateLimit-Reset``: the unix time at which the limit resets (SendGrid's 429).

    When both are present we wait for the later of the two moments: retrying before
    either allows it only earns another 429.  ``now`` is the unix time (default: this
    computer's clock; X-RateLimit-Reset is a wall-clock time, so a monotonic clock
    would be wrong here).  A value that is not a number or a date, or is not finite,
    counts as absent; a time already past means 0.
    """
    now = time.time() if now is None else now
    waits: list[float] = []
    after = _header(headers, RETRY_AFTER)
    if after:
        seconds = _seconds(after)
        if seconds is None:
            try:
                seconds = parsedate_to_datetime(after).timestamp() - now
            except (TypeError, ValueError, IndexError, OverflowError):
                seconds = None
        if seconds is not None:
            waits.append(seconds)
    reset = _header(headers, RATE_LIMIT_RESET)
    if reset:
        at = _seconds(reset)
        if at is not None:
            waits.append(at - now)
    return max(0.0, *waits) if waits else None


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
