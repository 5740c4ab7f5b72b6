"""What the sign-up side of `newsletter serve` remembers: `.newsletter/signup.db` (SQLite).

* ``mails``: when a confirmation email went to an address (by its keyed tag, never the
  address), so that one address gets at most ``signup.confirmations_per_hour``;
* ``activity``: sign-ups, confirmations and preference changes per list, for `report`.

A file of its own rather than a table in state.db: it holds no send's data, and losing
it costs only a counter.  Addresses appear only as tags (:mod:`newsletter.logmask`).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .config import Workspace

SIGNUP = "signup"  # a form accepted (an email may or may not have gone)
CONFIRMED = "confirmed"  # a confirmation link posted, the row written
PREFERENCES = "preferences"  # a change on the preferences page
LEFT = "left"  # "leave everything" on the preferences page
KINDS = (SIGNUP, CONFIRMED, PREFERENCES, LEFT)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS mails (who TEXT NOT NULL, at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS mails_who ON mails (who, at);
CREATE TABLE IF NOT EXISTS activity (
    list TEXT NOT NULL, kind TEXT NOT NULL, who TEXT NOT NULL, at REAL NOT NULL
);
"""


def signup_db(ws: Workspace) -> Path:
    return ws.state_dir / "signup.db"


class SignupStore:
    """One connection per call: the server calls it from its thread pool."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._db() as db:
            db.executescript(_SCHEMA)

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            yield db
        finally:
            db.close()

    def may_mail(self, who: str, per_hour: int, now: float | None = None) -> bool:
        """Whether ``who`` may get a confirmation email now; if so, it is counted as sent."""
        at = time.time() if now is None else now
        with self._db() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                (recent,) = db.execute(
                    "SELECT COUNT(*) FROM mails WHERE who = ? AND at > ?", (who, at - 3600)
                ).fetchone()
                if recent >= per_hour:
                    db.execute("ROLLBACK")
                    return False
                db.execute("DELETE FROM mails WHERE at <= ?", (at - 3600,))
                db.execute("INSERT INTO mails (who, at) VALUES (?, ?)", (who, at))
                db.execute("COMMIT")
                return True
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise

    def forget_mail(self, who: str) -> None:
        """The email could not be sent: let the reader try again at once."""
        with self._db() as db:
            db.execute(
                "DELETE FROM mails WHERE rowid = (SELECT MAX(rowid) FROM mails WHERE who = ?)",
                (who,),
            )

    def record(self, list_name: str, kind: str, who: str, now: float | None = None) -> None:
        with self._db() as db:
            db.execute(
                "INSERT INTO activity (list, kind, who, at) VALUES (?, ?, ?, ?)",
                (list_name, kind, who, time.time() if now is None else now),
            )

    def counts(self) -> dict[str, dict[str, int]]:
        """list -> kind -> how many addresses (each counted once per list and kind)."""
        out: dict[str, dict[str, int]] = {}
        if not self.path.exists():
            return out
        with self._db() as db:
            rows = db.execute(
                "SELECT list, kind, COUNT(DISTINCT who) FROM activity GROUP BY list, kind"
            ).fetchall()
        for list_name, kind, n in rows:
            out.setdefault(list_name, dict.fromkeys(KINDS, 0))[kind] = n
        return out


def signup_counts(ws: Workspace) -> dict[str, dict[str, object]]:
    """For `report`: per list, sign-ups, confirmations, confirm rate, preference changes."""
    path = signup_db(ws)
    if not path.exists():
        return {}
    out: dict[str, dict[str, object]] = {}
    for list_name, kinds in sorted(SignupStore(path).counts().items()):
        signups, confirmed = kinds[SIGNUP], kinds[CONFIRMED]
        out[list_name] = {
            "signups": signups,
            "confirmations": confirmed,
            "confirm_rate": confirmed / signups if signups else None,
            "preference_changes": kinds[PREFERENCES],
            "left": kinds[LEFT],
        }
    return out
