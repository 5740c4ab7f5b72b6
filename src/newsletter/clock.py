"""Time, in one place: the wall clock for records, the monotonic clock and sleep for waits.

The send engine, the pacer and the planner take a :class:`Clock`, so a test can pass
hours in an instant (and check a 429 wait or a scheduled time) without sleeping
and without editing the state database.  ``utc_now_iso`` is the one spelling of
"now" that the state database, the CSV files and the logs record.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware (UTC)."""
        ...

    def monotonic(self) -> float:
        """Seconds from an arbitrary point; only differences mean anything."""
        ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The real clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


SYSTEM = SystemClock()


def utc_now_iso(clock: Clock = SYSTEM) -> str:
    """Now, in UTC, to the second, with an explicit offset: 2019-09-01T08:00:00+00:00."""
    return clock.now().isoformat(timespec="seconds")
