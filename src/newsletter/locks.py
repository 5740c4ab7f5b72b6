"""OS locks that say "a process is working on this": they vanish when that process dies."""

from __future__ import annotations

from pathlib import Path
from typing import IO


class SendLock:
    """An OS lock that says "a process is sending this"; it vanishes when that process dies.

    ``flock`` is released by the kernel on SIGKILL, so a crashed send never looks
    alive.  On systems without ``fcntl`` the lock is a no-op (sends are never
    detected as running from another process).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fh: IO[bytes] | None = None

    def acquire(self) -> bool:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.path, "ab")  # noqa: SIM115 - held until release()
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.close()
            return False
        self._fh = fh
        return True

    def release(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def held_elsewhere(self) -> bool:
        if self._fh is not None:
            return False
        if not self.path.exists():
            return False
        if self.acquire():
            self.release()
            return False
        return True
