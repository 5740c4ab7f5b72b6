"""A clock for tests: time passes only when the code sleeps or the test says so."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


class FakeClock:
    """Implements newsletter.clock.Clock; ``slept`` records every sleep asked for."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2019, 9, 1, 8, 0, tzinfo=UTC)
        self._mono = 1000.0
        self.slept: list[float] = []

    def now(self) -> datetime:
        return self._now

    def monotonic(self) -> float:
        return self._mono

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.advance(seconds)

    def advance(self, seconds: float) -> None:
        self._now += timedelta(seconds=seconds)
        self._mono += seconds
