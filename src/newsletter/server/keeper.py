"""Getting every suppression the server accepts into suppressions.csv, whatever the file's state.

Where a suppression goes first: the state database (SQLite), in the same
transaction as the request's events, then suppressions.csv.  A CSV that cannot
take it (a folder, read-only, a broken header) therefore costs neither the
reader's unsubscribe nor a provider's batch: the entry waits in
``pending_suppressions``, a send counts it as suppressed, and the keeper retries
the merge at start, whenever the file changes and every 30 s while requests come
(so a hammering client cannot make it re-read a large file on every request).

An address already known to be suppressed (a cached :class:`SuppressionList`,
re-read only when the file changes) is answered without touching the file's lock.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

from ..config import Workspace
from ..errors import NewsletterError
from ..events import Event, EventStore, PendingSuppression, suppressing
from ..suppression_file import Suppression
from ..suppression_writes import add_suppressions, merge_pending, pending_entry
from ..suppressions import SuppressionList
from ..words import plural
from .logs import log

RETRY_SECONDS = 30.0  # how often an unwritable suppressions.csv is tried again (if unchanged)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).replace(microsecond=0).isoformat()


def _file_stamp(path: Path) -> tuple[int, ...] | None:
    """What changes when someone fixes the file (replaces, edits, chmods it), or None."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_mode)


class SuppressionKeeper:
    """The server's events and suppressions: stored first, merged into the CSV when it can."""

    def __init__(self, ws: Workspace, tag: Callable[[str], str]) -> None:
        self.ws = ws
        self.tag = tag  # an address as log lines show it
        self.store = EventStore(ws.state_db)
        # Who is already suppressed, to answer repeats without the file's exclusive lock.
        self.known = SuppressionList(ws.suppressions_path, strict=False, pending_db=None)
        self._known_lock = threading.Lock()  # one thread re-reads a changed file, not all
        self._merge_lock = threading.Lock()
        self._maybe_pending = True  # unknown until the first merge
        self._failed: tuple[tuple[int, ...] | None, float] | None = None
        self.merge_problem: str | None = None
        self.merge_pending()  # whatever an earlier run could not write

    def _short(self, text: str) -> str:
        """A message for the public health check: paths relative to the workspace."""
        return text.replace(f"{self.ws.root}{os.sep}", "")

    # --- the suppression list ---------------------------------------------------------

    def refresh_known(self) -> None:
        """Follow the file; while another thread re-reads it, use what we knew (never wait).

        The cache only answers "already suppressed" for rows that were on file, and a
        "no" takes the careful path, so a moment's staleness costs nothing.
        """
        if self._known_lock.acquire(blocking=False):
            try:
                self.known.refresh()
            finally:
                self._known_lock.release()

    def forget_known(self) -> None:
        """Start the cache again after a suppression was lifted (a confirmed sign-up): it
        only ever adds addresses, and must not answer "already suppressed" for this one."""
        with self._known_lock:
            self.known = SuppressionList(self.ws.suppressions_path, strict=False, pending_db=None)

    def merge_due(self) -> bool:
        """Whether a merge should run now: cheap (a stat at most), so every request asks."""
        if not self._maybe_pending:
            return False
        if self._failed is None:
            return True
        stamp, when = self._failed
        changed = _file_stamp(self.ws.suppressions_path) != stamp
        return changed or time.monotonic() - when >= RETRY_SECONDS

    def merge_pending(self, *, new: bool = False) -> None:
        """Move pending suppressions into the CSV, if due; never raises (the rows stay safe).

        ``new``: the caller has just recorded one, so there is something to merge.
        """
        with self._merge_lock:
            if new:
                self._maybe_pending = True
            if not self.merge_due():
                return
            path = self.ws.suppressions_path
            stamp = _file_stamp(path)
            retry = self._failed is not None or not new  # not just this request's own row
            try:
                added = merge_pending(self.store, path, cache=self.known)
            except (NewsletterError, OSError) as exc:
                if isinstance(exc, NewsletterError):
                    reason = exc.message
                else:
                    reason = exc.strerror or str(exc)
                self._failed = (stamp, time.monotonic())
                self.merge_problem = reason
                log.error(
                    "suppressions: waiting suppressions not merged into %s (they stay in %s,"
                    " tried again when the file changes or in %d s): %s",
                    path,
                    self.ws.state_db,
                    RETRY_SECONDS,
                    reason,
                )
                return
            self._failed, self._maybe_pending, self.merge_problem = None, False, None
            if added and retry:
                log.info("suppressions: %d waiting suppression(s) added to %s", len(added), path)

    def health(self) -> str | None:
        """None when every accepted suppression is in suppressions.csv, else why not."""
        self.merge_pending(new=True)  # another process may have left some
        try:
            waiting = self.store.pending_count()
        except NewsletterError as exc:
            return self._short(exc.message)
        if not waiting:
            return None
        why = self.merge_problem or "not merged yet"
        return self._short(
            f"{plural(waiting, 'suppression')} {'waits' if waiting == 1 else 'wait'} in "
            f"{self.ws.state_db} (sends honour them) and"
            f" cannot be added to {self.ws.suppressions_path}: {why}"
        )

    def _entry(self, email: str, reason: str, source: str, at: float) -> PendingSuppression | None:
        try:
            return pending_entry(
                Suppression(email=email, reason=reason, source=source, at=_iso(at))
            )
        except ValueError as exc:  # we never send to it, so there is nothing to stop
            log.warning("not suppressing %s (%s): %s", self.tag(email), source, exc)
            return None

    def _csv_only(self, entries: Sequence[PendingSuppression]) -> int:
        """When the state database is down, the CSV alone (the old way); raises if it fails."""
        rows = [Suppression(p.email, p.reason, p.source, p.at) for p in entries]
        if not rows:
            return 0
        return len(add_suppressions(self.ws.suppressions_path, rows, cache=self.known))

    # --- what requests record ------------------------------------------------------------

    def add_batch(self, events: Sequence[Event], source: str) -> tuple[int, int]:
        """Store a provider's events and the suppressions they call for; (stored, new
        suppressions).  Each suppression's source is ``<source>:<kind>``.

        Raises when the state database cannot take them (the provider will retry the
        batch), after stopping mail to these addresses through the CSV if it can.
        """
        entries: dict[str, PendingSuppression] = {}
        for e in suppressing(events):
            entry = self._entry(e.email, e.suppress or "", f"{source}:{e.kind}", e.at)
            if entry is not None:
                entries.setdefault(entry.key, entry)
        if entries:  # most batches suppress nobody: leave the file alone then
            self.refresh_known()
        new = [p for p in entries.values() if not self.known.contains_key(p.key)]
        try:
            stored = self.store.add(events, new)
        except NewsletterError:
            try:  # the provider will retry the batch; meanwhile stop mail to these addresses
                self._csv_only(new)
            except (NewsletterError, OSError) as exc:
                log.error("webhook: cannot write suppressions either: %s", exc)
            raise
        if new:
            self.merge_pending(new=True)
        return stored, len(new)

    def add_unsubscribe(self, event: Event, email: str, source: str) -> bool:
        """Record a reader's unsubscribe (``email`` as they gave it); True if the address
        was not already suppressed.

        Raises (the caller answers 503) only when neither the state database nor the
        CSV can take it.
        """
        self.refresh_known()
        entry = None
        if not self.known.contains_key(event.email):
            entry = self._entry(email, "unsubscribed", source, event.at)
        try:
            self.store.add([event], [entry] if entry else [])
        except NewsletterError as exc:
            if entry is None:  # nothing to suppress: the event is only for the report
                log.warning("one-click: event not recorded: %s", exc.message)
                return False
            log.warning("one-click: state database unavailable (%s); writing the CSV", exc.message)
            return self._csv_only([entry]) > 0
        if entry is None:
            return False
        self.merge_pending(new=True)
        return True


class RetryPending:
    """Before any request, merge waiting suppressions if that is due (usually: a flag test)."""

    def __init__(self, app: ASGIApp, keeper: SuppressionKeeper) -> None:
        self.app = app
        self.keeper = keeper

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.keeper.merge_due():
            await run_in_threadpool(self.keeper.merge_pending)
        await self.app(scope, receive, send)
