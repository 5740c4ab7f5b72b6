"""Pausing a send on a signal: Ctrl-C, `kill` (SIGTERM) and a closed terminal (SIGHUP).

The first signal asks the send to stop after the batch in flight (a clean pause that
`--resume` continues); a second stops at once.  A closed terminal is handled with care:
from then on every write to it would fail, wherever the send happens to be.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from types import FrameType
from typing import Any

from .send_output import say

# Ctrl-C, `kill` (SIGTERM, also what a service manager or a CI runner sends) and a
# closed terminal or SSH session (SIGHUP) all pause the send the same clean way.
_PAUSE_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)


def _leave_a_closed_terminal() -> None:
    """After a hang-up, every write to the terminal fails (EIO) wherever the send happens
    to be, even mid-request; a send must still pause cleanly.  So if the terminal is
    gone, standard output and error go to /dev/null from now on: the ledger keeps the
    record, and `newsletter status` tells the rest."""
    for fd in (1, 2):
        try:
            os.write(fd, b"")
        except OSError:
            break
    else:
        return  # still writable (e.g. `kill -HUP` with the terminal open)
    try:
        null = os.open(os.devnull, os.O_WRONLY)
    except OSError:
        return
    for fd in (1, 2):
        with suppress(OSError):
            os.dup2(null, fd)
    os.close(null)


@contextmanager
def pause_on_signals(request_stop: Callable[[], None]) -> Iterator[None]:
    """First signal: finish the batch in flight, then pause.  Second: stop at once
    (a batch whose request is out is then left unknown; one waiting stays unposted)."""
    pressed = {"n": 0}

    def handler(signum: int, frame: FrameType | None) -> None:
        if signum == getattr(signal, "SIGHUP", None):
            _leave_a_closed_terminal()
        pressed["n"] += 1
        if pressed["n"] > 1:
            raise KeyboardInterrupt
        request_stop()
        what = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
        with suppress(OSError):
            say(
                f"{what}: pausing after the batch in flight ({what} again to stop at once)",
                err=True,
            )

    previous: dict[int, Callable[[int, FrameType | None], Any] | int | None] = {}
    try:
        for signum in _PAUSE_SIGNALS:
            previous[signum] = signal.signal(signum, handler)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)
