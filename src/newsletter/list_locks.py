"""The lock of one subscriber list: an import rewrites it alone, a send reads it whole.

`.newsletter/list-<name>.lock`, an ``fcntl.flock`` that the kernel releases when
its process dies, even by SIGKILL, so a killed import never blocks the next.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from .config import Workspace
from .csvfile import list_error
from .errors import SubscriberListError
from .subscribers import list_file

LOCK_QUIET_SECONDS = 0.5  # a wait shorter than this is not worth a message


def _lock_path(ws: Workspace, name: str) -> Path:
    return ws.state_dir / f"list-{list_file(ws, name).stem}.lock"


def _open_lock(path: Path) -> int:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise list_error(
            path,
            None,
            f"cannot create the lock file of the list: {exc.strerror or exc}",
            hint=f"the workspace's {path.parent.name}/ folder must be writable",
        ) from None


def _try_flock(fd: int, mode: int) -> bool:
    try:
        fcntl.flock(fd, mode | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


@contextlib.contextmanager
def list_lock(
    ws: Workspace,
    name: str,
    *,
    shared: bool = False,
    on_wait: Callable[[], None] | None = None,
) -> Iterator[None]:
    """Hold the lock of list `name` (`.newsletter/list-<name>.lock`, an ``fcntl.flock``).

    `subscribers import` holds it exclusively for its whole read-merge-rename, so
    two imports into one list run one after the other and the second merges on top
    of the first (before, both copied the same list and the last rename lost the
    other's rows).  Anything that must see the list stable without changing it (a
    send freezing its recipients, a dry-run import) takes it ``shared=True``:
    readers run together, and an import waits for them (and they for it).

    If the lock is not free within LOCK_QUIET_SECONDS, `on_wait` is called once
    (the CLI says what it is waiting for) and the wait goes on until it is free.
    The lock belongs to the open file, so it is released when the block ends or
    the process dies, even by SIGKILL; the lock file itself stays (deleting it
    would let two processes lock two different files).  Locks are not reentrant:
    do not take the same list's lock twice in one process.  Raises
    SubscriberListError if the lock file cannot be created (``.newsletter/`` not
    writable).
    """
    fd = _open_lock(_lock_path(ws, name))
    try:
        mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
        deadline = time.monotonic() + LOCK_QUIET_SECONDS
        while not _try_flock(fd, mode):
            if time.monotonic() >= deadline:
                if on_wait is not None:
                    on_wait()
                fcntl.flock(fd, mode)
                break
            time.sleep(0.02)
        yield
    finally:
        os.close(fd)


def list_is_idle(ws: Workspace, name: str) -> bool:
    """True if no import (or send) holds list `name` now; probed without waiting."""
    try:
        fd = _open_lock(_lock_path(ws, name))
    except SubscriberListError:
        return False
    try:
        return _try_flock(fd, fcntl.LOCK_EX)
    finally:
        os.close(fd)
