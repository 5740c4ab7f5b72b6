"""The state database, ``.newsletter/state.db``: how it is opened, and what its failures mean.

The send ledger, the delivery events and the durable copy of the suppressions
share this one SQLite file, and this module owns its schema: one list of tables,
one version number (``PRAGMA user_version``), one set of upgrades, applied by
whichever command opens the file first (:func:`open_db`).  Every connection to
it is made here, with the same
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


# --------------------------------------------------------------------------- the schema

SCHEMA_VERSION = 6
# 2: recipients.dropped, batches.dropped; 3: sends.audience, audience;
# 4: the events and suppression tables joined the versioned schema;
# 5: sends.content, sends.send_tz; 6: batches.language, sends.languages (issue 12).

_LEDGER = """
CREATE TABLE IF NOT EXISTS sends (
    id INTEGER PRIMARY KEY,
    issue_id TEXT NOT NULL,
    lists TEXT NOT NULL,
    tags TEXT NOT NULL,
    backend TEXT NOT NULL,
    state TEXT NOT NULL,
    test INTEGER NOT NULL DEFAULT 0,
    force_resend INTEGER NOT NULL DEFAULT 0,
    subject TEXT NOT NULL DEFAULT '',
    content TEXT,
    send_tz TEXT,
    planned_recipients INTEGER NOT NULL DEFAULT 0,
    send_at INTEGER,
    schedule_id TEXT,
    error TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    audience TEXT,
    languages TEXT
);
CREATE INDEX IF NOT EXISTS sends_issue ON sends(issue_id);
CREATE TABLE IF NOT EXISTS send_log (
    send_id INTEGER NOT NULL REFERENCES sends(id),
    at TEXT NOT NULL,
    from_state TEXT,
    to_state TEXT NOT NULL,
    note TEXT
);
CREATE TABLE IF NOT EXISTS batches (
    id INTEGER PRIMARY KEY,
    send_id INTEGER NOT NULL REFERENCES sends(id),
    seq INTEGER NOT NULL,
    state TEXT NOT NULL,
    recipients INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    ambiguous_attempts INTEGER NOT NULL DEFAULT 0,
    resent INTEGER NOT NULL DEFAULT 0,
    status INTEGER,
    provider_id TEXT,
    error TEXT,
    created_at TEXT NOT NULL,
    finished_at TEXT,
    dropped INTEGER NOT NULL DEFAULT 0,
    language TEXT,
    UNIQUE (send_id, seq)
);
-- rowid = batch id * ROWS_PER_BATCH_ID + position: a batch's recipients are one range
-- of the table (no second index to maintain on the hot path).
CREATE TABLE IF NOT EXISTS recipients (
    batch_id INTEGER NOT NULL REFERENCES batches(id),
    send_id INTEGER NOT NULL,
    issue_id TEXT,
    email TEXT NOT NULL,
    email_key TEXT NOT NULL,
    name TEXT,
    first_name TEXT,
    language TEXT,
    list_name TEXT NOT NULL,
    dropped INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS recipients_issue_email ON recipients(issue_id, email_key);
-- Who a send is for, frozen when it is planned (rowid: see AUDIENCE_ID_BITS).
CREATE TABLE IF NOT EXISTS audience (
    send_id INTEGER NOT NULL,
    email TEXT NOT NULL,
    name TEXT,
    first_name TEXT,
    language TEXT,
    list_name TEXT NOT NULL
);
"""

_EVENTS = """
CREATE TABLE IF NOT EXISTS esp_events (
    event_id    TEXT PRIMARY KEY,
    provider    TEXT NOT NULL,
    kind        TEXT NOT NULL,
    email       TEXT NOT NULL,
    at          INTEGER NOT NULL,
    issue_id    TEXT,
    list_name   TEXT,
    send_id     TEXT,
    batch_id    TEXT,
    url         TEXT,
    reason      TEXT,
    machine     INTEGER NOT NULL DEFAULT 0,
    raw         TEXT NOT NULL,
    received_at TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS esp_events_issue ON esp_events (issue_id, kind);
CREATE INDEX IF NOT EXISTS esp_events_email ON esp_events (email, at);
CREATE TABLE IF NOT EXISTS pending_suppressions (
    key         TEXT PRIMARY KEY,
    email       TEXT NOT NULL,
    reason      TEXT NOT NULL,
    source      TEXT NOT NULL,
    at          TEXT NOT NULL,
    received_at TEXT NOT NULL
);  -- a rowid table: merged in arrival order
CREATE TABLE IF NOT EXISTS loop_state (
    key        TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
"""

_SUPPRESSIONS = """
CREATE TABLE IF NOT EXISTS suppressions (
    key         TEXT PRIMARY KEY,
    email       TEXT NOT NULL,
    reason      TEXT NOT NULL,
    source      TEXT NOT NULL,
    at          TEXT NOT NULL,
    recorded_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS suppression_files (
    path       TEXT PRIMARY KEY,
    first_seen TEXT NOT NULL,
    last_seen  TEXT NOT NULL,
    rows       INTEGER NOT NULL
);
"""

SCHEMA = _LEDGER + _EVENTS + _SUPPRESSIONS


def _statements(script: str) -> list[str]:
    """The statements of a script (a chunk holding only comments is not one)."""
    out = []
    for chunk in script.split(";"):
        code = [line for line in chunk.splitlines() if not line.strip().startswith("--")]
        if "".join(code).strip():
            out.append(chunk)
    return out


# From one schema version to the next (the key is the version being left).
_UPGRADES: dict[int, tuple[str, ...]] = {
    1: (
        "ALTER TABLE batches ADD COLUMN dropped INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE recipients ADD COLUMN dropped INTEGER NOT NULL DEFAULT 0",
    ),
    2: (
        "ALTER TABLE sends ADD COLUMN audience TEXT",
        "CREATE TABLE IF NOT EXISTS audience (send_id INTEGER NOT NULL, email TEXT NOT NULL,"
        " name TEXT, first_name TEXT, language TEXT, list_name TEXT NOT NULL)",
    ),
    3: tuple(_statements(_EVENTS + _SUPPRESSIONS)),
    4: (
        "ALTER TABLE sends ADD COLUMN content TEXT",
        "ALTER TABLE sends ADD COLUMN send_tz TEXT",
    ),
    # A batch carries one language of the issue; a send, the languages it sends (JSON).
    5: (
        "ALTER TABLE batches ADD COLUMN language TEXT",
        "ALTER TABLE sends ADD COLUMN languages TEXT",
    ),
}


def migrate(conn: Connection) -> None:
    """Bring the file to :data:`SCHEMA_VERSION` (a new file gets every table at once).

    Done inside one IMMEDIATE transaction, reading the version again under the write
    lock, so two commands opening an old file at once upgrade it once.  A file from a
    newer version of newsletter is refused rather than written in a shape it does
    not know.
    """
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if version == SCHEMA_VERSION:
        return
    if version > SCHEMA_VERSION:
        raise StateDatabaseError(
            f"{conn.where} was written by a newer version of newsletter (schema {version})",
            path=Path(conn.where),
            hint="upgrade newsletter before using this workspace",
        )
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if version == 0:  # new (or only ever opened by an older events-only reader)
            for statement in _statements(SCHEMA):
                conn.execute(statement)
        else:
            for v in range(version, SCHEMA_VERSION):
                for statement in _UPGRADES[v]:
                    conn.execute(statement)
        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def open_db(path: Path | str) -> Connection:
    """A connection to the state database with its schema up to date."""
    conn = connect(path)
    try:
        migrate(conn)
    except BaseException:
        conn.close()
        raise
    return conn
