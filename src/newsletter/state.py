"""The state database, ``.newsletter/state.db``: how it is opened, and what its failures mean.

The send ledger, the delivery events and the durable copy of the suppressions
share this one SQLite file.  Every connection to it is made here, with the same
settings (WAL so `newsletter serve` reads while a send writes; ``synchronous=FULL``
so a committed mark survives a power cut; a 30-second wait for a busy file), and
every SQLite failure becomes one :class:`~newsletter.errors.StateDatabaseError`
that says what happened and what to do: wait, free space, restore.  A raw
``sqlite3.OperationalError`` traceback tells a communications officer nothing,
and "delete the file" would be the worst advice: it records who already has
each issue.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .errors import StateDatabaseError

BUSY_TIMEOUT_ENV = "NEWSLETTER_DB_TIMEOUT"


def _busy_timeout() -> float:
    """Seconds to wait for another process's write to finish (30 unless the environment
    variable says otherwise, e.g. for a script that would rather fail fast)."""
    raw = os.environ.get(BUSY_TIMEOUT_ENV, "").strip()
    try:
        return max(0.0, float(raw)) if raw else 30.0
    except ValueError:
        return 30.0


_KEEP = (
    "do not delete it: it records who has already received each issue; "
    "a send that stopped resumes where it was (`newsletter status` shows it)"
)


def explain(path: Path | str | None, exc: BaseException) -> StateDatabaseError:
    """A SQLite (or file-system) failure as the user can act on it."""
    where = str(path) if path else "the state database"
    name = getattr(exc, "sqlite_errorname", "") or ""
    text = str(exc)
    low = text.lower()
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "locked" in low:
        return StateDatabaseError(
            f"{where} is busy: another newsletter command (a send, `serve`, an import) "
            f"held it for more than {_busy_timeout():.0f} seconds",
            path=Path(where),
            hint="wait for that command to finish, then run this one again",
        )
    if name == "SQLITE_FULL" or "disk is full" in low or getattr(exc, "errno", None) == 28:
        return StateDatabaseError(
            f"the disk holding {where} is full",
            path=Path(where),
            hint="free some space, then run the command again; " + _KEEP,
        )
    if name in ("SQLITE_CORRUPT", "SQLITE_NOTADB") or "malformed" in low or "not a database" in low:
        return StateDatabaseError(
            f"{where} is damaged ({text})",
            path=Path(where),
            hint="restore .newsletter/state.db from your latest backup; " + _KEEP,
        )
    if name.startswith(("SQLITE_READONLY", "SQLITE_CANTOPEN", "SQLITE_PERM")) or isinstance(
        exc, PermissionError
    ):
        return StateDatabaseError(
            f"{where} cannot be written ({text})",
            path=Path(where),
            hint="the .newsletter folder and the file in it must be writable by you",
        )
    return StateDatabaseError(
        f"{where}: the state database failed ({text})",
        path=Path(where),
        hint="run the command again; if it fails the same way, restore the file from a "
        "backup; " + _KEEP,
    )


class Connection(sqlite3.Connection):
    """A connection whose statements fail as :class:`StateDatabaseError`, naming the file."""

    where: str = "the state database"

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        try:
            return super().execute(sql, parameters)
        except sqlite3.Error as exc:
            raise explain(self.where, exc) from exc

    def executemany(self, sql: str, parameters: Iterable[Any], /) -> sqlite3.Cursor:
        try:
            return super().executemany(sql, parameters)
        except sqlite3.Error as exc:
            raise explain(self.where, exc) from exc

    def executescript(self, script: str, /) -> sqlite3.Cursor:
        try:
            return super().executescript(script)
        except sqlite3.Error as exc:
            raise explain(self.where, exc) from exc


def connect(path: Path | str, *, readonly: bool = False) -> Connection:
    """Open the state database (``":memory:"`` for a throw-away one) the one way we do.

    ``readonly``: for readers that must not create the file (it must exist).
    """
    memory = str(path) == ":memory:"
    try:
        if readonly:
            target = f"{Path(path).resolve().as_uri()}?mode=ro"
            conn = sqlite3.connect(
                target,
                uri=True,
                timeout=_busy_timeout(),
                isolation_level=None,
                check_same_thread=False,
                factory=Connection,
            )
        else:
            if not memory:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                str(path),
                timeout=_busy_timeout(),
                isolation_level=None,
                check_same_thread=False,
                factory=Connection,
            )
    except (OSError, sqlite3.Error) as exc:
        raise explain(path, exc) from exc
    assert isinstance(conn, Connection)
    conn.where = str(path)
    if not readonly:
        if not memory:
            conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
    return conn
