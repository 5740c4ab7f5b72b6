"""Scheduled sends: when a send may be scheduled for, and cancelling one.

The limits (how far ahead, how late a schedule can be cancelled) are the backend's:
:attr:`newsletter.esp.base.Capabilities.scheduling`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from .config import (
    Workspace,
)
from .errors import (
    ConfigError,
    LedgerError,
    ProviderRejected,
)
from .esp.base import Backend, duration
from .esp.registry import BACKENDS, backend_class, open_backend
from .ledger import (
    CANCELLED,
    PAUSED,
    SCHEDULED,
    SENDING,
    UNFINISHED,
    Ledger,
    SendSummary,
)


def parse_send_at(text: str, now: datetime | None = None, backend: str | None = None) -> datetime:
    """ISO 8601 -> an aware datetime in the future (no zone = this computer's), and no
    further ahead than the backend (by default: any backend) can schedule.

    The CLI parses --send-at before it knows which backend auto picks, so it checks
    against the furthest any backend allows; the send checks its own backend's limit
    again (:func:`newsletter.esp.registry.check_support`).
    """
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
    classes = [backend_class(name) for name in ([backend] if backend else BACKENDS)]
    furthest, ahead = classes[0], timedelta(0)
    for cls in classes:
        scheduling = cls.capabilities.scheduling
        if scheduling is not None and scheduling.max_ahead > ahead:
            furthest, ahead = cls, scheduling.max_ahead
    furthest.check_send_at(when, now, text)
    return when


def _cancel_limit(s: SendSummary, backend: Backend | None) -> tuple[str, timedelta]:
    """(label, cancel margin) of the backend a send went through."""
    where = backend if backend is not None else backend_class(s.backend)
    scheduling = where.capabilities.scheduling
    return where.label, scheduling.cancel_margin if scheduling else timedelta(0)


@dataclass(frozen=True)
class Cancelled:
    """What :func:`cancel_send` did to one send."""

    send: SendSummary  # as it is now (cancelled)
    at_provider: bool  # the provider called off the messages it held for the scheduled time
    why_not: str = ""  # a scheduled send the provider could not cancel: why
    provider: str = "the provider"  # as messages name it ("SendGrid", "the outbox")


def cancel_send(
    ws: Workspace,
    issue_id: str,
    *,
    backend: Backend | None = None,
    ledger: Ledger | None = None,
    now: datetime | None = None,
) -> list[Cancelled]:
    """Cancel the scheduled sends of an issue and abandon its unfinished ones.

    A send scheduled at the provider, earlier than its cancel margin before its time
    (SendGrid: 10 minutes), is cancelled there: nobody receives any of it.  An
    unfinished send that the provider can no longer cancel (its time has passed or is
    too close, the provider refused, or it never got a schedule there) is abandoned
    here: the batches the provider accepted go (or went) out
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
        label, margin = _cancel_limit(s, backend)
        if s.state == SCHEDULED and due(s) - now < margin:
            raise LedgerError(
                f"send #{s.id} of {issue_id} is due at {due(s).isoformat()}; {label} can "
                f"only cancel a scheduled send until {duration(margin)} before its time",
                hint="it is going out as scheduled",
            )
    done = []
    for s in targets:
        at_provider, why_not = False, ""
        label, margin = _cancel_limit(s, backend)
        if s.schedule_id:
            if due(s) - now >= margin:
                be = backend or open_backend(ws, s.backend)
                try:
                    be.cancel_schedule(s.schedule_id)
                    at_provider = True
                except ProviderRejected as exc:
                    if s.state == SCHEDULED:
                        raise
                    why_not = f"{label} could not cancel it: {exc.message}"
                finally:
                    if be is not backend:
                        be.close()
            elif due(s) <= now:
                why_not = f"its time ({due(s).isoformat()}) has passed"
            else:
                why_not = (
                    f"it is due at {due(s).isoformat()}, and {label} can only cancel a "
                    f"scheduled send until {duration(margin)} before its time"
                )
        elif s.send_at:
            why_not = f"it never got as far as {label}'s schedule"
        if s.state == SENDING:
            ledger.transition(s.id, PAUSED, note="the sending process stopped")
        note = "cancelled by the user" + (f" (abandoned here only: {why_not})" if why_not else "")
        ledger.transition(s.id, CANCELLED, note=note, schedule_cancelled=at_provider)
        done.append(Cancelled(ledger.send(s.id), at_provider, why_not, label))
    return done
