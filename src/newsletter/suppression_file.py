"""The suppression file's rows: what an entry is, and reading them from the CSV.

`subscribers/suppressions.csv` has the columns ``email,reason,source,at`` (any order;
the delimiters, quoting and encodings a list may have, see :mod:`newsletter.csvfile`).
A file that cannot be read fully stops a strict reader with the line at fault,
because a suppression silently skipped is an email sent to someone who asked not to
get it; a lenient reader (:func:`readable_suppressions`) collects the invalid rows
instead, for writers and the server, which must never be stopped by a typo.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from .addresses import email_key, normalise_email
from .config import Workspace
from .csvfile import iter_rows
from .errors import Problem, SubscriberListError
from .suppression_store import StoredSuppression

REASONS = ("unsubscribed", "bounced", "spam", "manual")
HEADER = ("email", "reason", "source", "at")


@dataclass(frozen=True)
class Suppression:
    email: str
    reason: str
    source: str
    at: str  # ISO 8601, UTC

    @property
    def key(self) -> str:
        return email_key(self.email)

    def stored(self) -> StoredSuppression:
        return StoredSuppression(self.key, self.email, self.reason, self.source, self.at)


def now_iso() -> str:
    """The `at` stamp: UTC, to the second, with an explicit offset."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def column_positions(header: Iterable[str]) -> dict[str, int]:
    """Column name -> index; an `email` column may be spelt as in the lists' exports."""
    found: dict[str, int] = {}
    for i, name in enumerate(header):
        key = name.strip().lower()
        if key in ("e-mail", "email address", "email_address"):
            key = "email"
        found.setdefault(key, i)
    return found


def read_suppressions(path: Path) -> Iterator[Suppression]:
    """Every entry in file order; a missing file has none.

    Raises SubscriberListError naming the line for an invalid address or an unknown
    reason.  An empty reason is read as "manual" (a row added by hand); an empty
    `at` stays empty.
    """
    return _entries(path, None)


def readable_suppressions(path: Path, skipped: list[Problem]) -> Iterator[Suppression]:
    """Like :func:`read_suppressions`, but an invalid row is appended to ``skipped``.

    Problems with the file as a whole (encoding, header, an unclosed quote) still
    raise SubscriberListError: past them no row can be trusted.
    """
    return _entries(path, skipped)


def _entries(path: Path, skipped: list[Problem] | None) -> Iterator[Suppression]:
    try:
        if path.stat().st_size == 0:  # created by `touch`, or a writer's first instant
            return
    except FileNotFoundError:
        return
    columns: dict[str, int] = {}
    for layout, line, fields in iter_rows(path):
        if not columns:
            columns = column_positions(layout.header)
        values = {name: fields[i] for name, i in columns.items() if i < len(fields)}

        def get(name: str, values: dict[str, str] = values) -> str:
            return values.get(name, "")

        raw = get("email")
        problem: Problem | None = None
        try:
            email = normalise_email(raw)
        except ValueError as exc:
            problem = Problem(
                message=f"{raw!r} is not a valid address: {exc}",
                path=path,
                line=line,
                field="email",
                hint="correct or delete this row",
            )
        reason = get("reason").lower() or "manual"
        if problem is None and reason not in REASONS:
            problem = Problem(
                message=f"unknown reason {get('reason')!r}",
                path=path,
                line=line,
                field="reason",
                hint="use one of: " + ", ".join(REASONS),
            )
        if problem is not None:
            if skipped is None:
                raise SubscriberListError(problem)
            skipped.append(problem)
            continue
        yield Suppression(email=email, reason=reason, source=get("source"), at=get("at"))


def file_stamp(stat: os.stat_result) -> tuple[int, int, int]:
    """What tells one version of the file from the next without reading it."""
    return (stat.st_ino, stat.st_mtime_ns, stat.st_size)


def workspace_state_db(path: Path) -> Path | None:
    """The state database beside a workspace's suppressions.csv, or None for any other file."""
    ws = Workspace(path.parent.parent)
    return ws.state_db if ws.suppressions_path == path else None


def validated(entries: Iterable[Suppression]) -> list[Suppression]:
    """New entries in their one spelling, stamped now if they have no time; ValueError
    (with the reason) for an invalid address or reason, before anything is written."""
    out: list[Suppression] = []
    for entry in entries:
        email = normalise_email(entry.email)  # ValueError names the reason
        reason = entry.reason.strip().lower()
        if reason not in REASONS:
            raise ValueError(f"unknown reason {entry.reason!r}; use one of: {', '.join(REASONS)}")
        out.append(
            Suppression(
                email=email,
                reason=reason,
                source=entry.source.strip(),
                at=entry.at.strip() or now_iso(),
            )
        )
    return out
