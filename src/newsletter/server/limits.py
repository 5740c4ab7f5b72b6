"""Per-client limits on the sign-up form: at most N posts a minute from one client address.

A sliding window in memory, per process: enough to slow a script that fills the form
with strangers' addresses (each of whom would get a confirmation email), while a
person who mistypes twice is never stopped.  Behind the reverse proxy, uvicorn takes
the client's address from ``X-Forwarded-For`` when the proxy is on 127.0.0.1.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque

MAX_CLIENTS = 50_000  # beyond this many remembered clients, the oldest are forgotten


class ClientLimiter:
    """``hit(client)``: None if allowed (and counted), else the seconds to wait."""

    def __init__(self, per_minute: int, window: float = 60.0) -> None:
        self.per_minute = per_minute
        self.window = window
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def hit(self, client: str, now: float | None = None) -> int | None:
        at = time.monotonic() if now is None else now
        with self._lock:
            hits = self._hits.pop(client, None) or deque()
            while hits and hits[0] <= at - self.window:
                hits.popleft()
            self._hits[client] = hits  # re-inserted: the dict stays in order of last use
            if len(hits) >= self.per_minute:
                return max(1, math.ceil(hits[0] + self.window - at))
            hits.append(at)
            if len(self._hits) > MAX_CLIENTS:
                del self._hits[next(iter(self._hits))]
            return None
