"""Scheduled sends: when a send may be scheduled for, and cancelling one."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from .config import (
    Workspace,
)
from .errors import (
    ConfigError,
    LedgerError,
    ProviderRejected,
)
from .esp.base import Backend
from .esp.registry import open_backend
from .ledger import (
    CANCELLED,
    PAUSED,
    SCHEDULED,
    SENDING,
    UNFINISHED,
    Ledger,
    SendSummary,
)

if TYPE_CHECKING:
    pass

# A clearly-labelled key for the outbox when NEWSLETTER_SECRET is unset: its links are
# for looking at, and will not be accepted by a server that has the real secret.

MAX_SCHEDULE_AHEAD = timedelta(hours=72)  # SendGrid's limit for send_at


CANCEL_MARGIN = timedelta(minutes=10)  # SendGrid cannot cancel later than this before send_at


def parse_send_at(text: str, now: datetime | None = None) -> datetime:
    """ISO 8601 -> an aware datetime within SendGrid's 72 hours (no zone = this computer's)."""
    now = now or datetime.now(UTC)
    raw = text.strip()
    try:
        when = datetime.fromisoformat(raw.replace("Z", "+00:00") if raw.endswith("Z") else raw)
    except ValueError:
        raise ConfigError(
            f"--send-at {text!r} is not a date and time",
            key="--send-at",
            hint="write it as 2019-10-01T09:00+02:00 (ISO 8601)",
        ) from None
    if when.tzinfo is None:
        when = when.astimezone()  # local time of this computer
    if when <= now:
        raise ConfigError(f"--send-at {text!r} is in the past", key="--send-at")
    if when - now > MAX_SCHEDULE_AHEAD:
        raise ConfigError(
            f"--send-at {text!r} is more than 72 hours ahead",
            key="--send-at",
            hint="SendGrid schedules at most 72 hours in advance",
        )
    return when


@dataclass(frozen=True)
class Cancelled:
    """What :func:`cancel_send` did to one send."""

    send: SendSummary  # as it is now (cancelled)
    at_provider: bool  # SendGrid called off the messages it held for the scheduled time
    why_not: str = ""  # a scheduled send SendGrid could not cancel: why


def cancel_send(
    ws: Workspace,
    issue_id: str,
    *,
    backend: Backend | None = None,
    ledger: Ledger | None = None,
    now: datetime | None = None,
) -> list[Cancelled]:
    """Cancel the scheduled sends of an issue and abandon its unfinished ones.

    A send scheduled at SendGrid, more than 10 minutes before its time, is cancelled
    there: nobody receives any of it.  An unfinished send that SendGrid can no longer
    cancel (its time has passed or is too close, SendGrid refused, or it never got a
    schedule there) is abandoned here: the batches SendGrid accepted go (or went) out
    and stay counted as sent; nothing else of it will be posted, and its people who
    did not get it may be sent the issue by a new send.  A complete scheduled send
    too close to its time cannot be cancelled: it is going out.
    """
    own = ledger is None
    ledger = ledger or Ledger(ws.state_db)
    try:
        ledger.lock_issue(issue_id)
        try:
            return _cancel(ws, issue_id, ledger, backend, now or datetime.now(UTC))
        finally:
            ledger.unlock_issue(issue_id)
    finally:
        if own:
            ledger.close()


def _cancel(
    ws: Workspace, issue_id: str, ledger: Ledger, backend: Backend | None, now: datetime
) -> list[Cancelled]:
    def due(s: SendSummary) -> datetime:
        return datetime.fromtimestamp(s.send_at or 0, UTC)

    targets = [
        s
        for s in ledger.sends(issue_id)
        if not s.test and (s.state in UNFINISHED or (s.state == SCHEDULED and due(s) > now))
    ]
    if not targets:
        raise LedgerError(
            f"{issue_id} has no scheduled or unfinished send to cancel",
            hint="`newsletter status` lists the sends",
        )
    for s in targets:  # refuse before changing anything
        if ledger.is_running_elsewhere(s.id):
            raise LedgerError(f"send #{s.id} is running; press Ctrl-C there first")
        if s.state == SCHEDULED and due(s) - now < CANCEL_MARGIN:
            raise LedgerError(
                f"send #{s.id} of {issue_id} is due at {due(s).isoformat()}; SendGrid can "
                "only cancel a scheduled send until 10 minutes before its time",
                hint="it is going out as scheduled",
            )
    done = []
    for s in targets:
        at_provider, why_not = False, ""
        if s.schedule_id:
            if due(s) - now >= CANCEL_MARGIN:
                be = backend or open_backend(ws, s.backend)
                try:
                    be.cancel_schedule(s.schedule_id)
                    at_provider = True
                except ProviderRejected as exc:
                    if s.state == SCHEDULED:
                        raise
                    why_not = f"SendGrid could not cancel it: {exc.message}"
                finally:
                    if be is not backend:
                        be.close()
            elif due(s) <= now:
                why_not = f"its time ({due(s).isoformat()}) has passed"
            else:
                why_not = (
                    f"it is due at {due(s).isoformat()}, and SendGrid can only cancel a "
                    "scheduled send until 10 minutes before its time"
                )
        elif s.send_at:
            why_not = "it never got as far as SendGrid's schedule"
        if s.state == SENDING:
            ledger.transition(s.id, PAUSED, note="the sending process stopped")
        note = "cancelled by the user" + (f" (abandoned here only: {why_not})" if why_not else "")
        ledger.transition(s.id, CANCELLED, note=note, schedule_cancelled=at_provider)
        done.append(Cancelled(ledger.send(s.id), at_provider, why_not))
    return done
