"""Scheduled sends: when a send may be scheduled for, and cancelling one.

The limits (how far ahead, how late a schedule can be cancelled) are the backend's:
:attr:`newsletter.esp.base.Capabilities.scheduling`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo

from .config import (
    Workspace,
    zone_info,
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

# Languages whose words --send-at understands ("tomorrow", "mañana", "demain", "amanhã").
SEND_AT_LANGUAGES = ["en", "es", "fr", "pt"]
SEND_AT_EXAMPLE = "2019-10-01 08:00 or tomorrow 08:00"


def time_zone(name: str | None, key: str = "--timezone") -> ZoneInfo | None:
    """The zone --timezone (or `send.timezone`) names; a ConfigError naming ``key`` if
    it is not a time zone."""
    if name is None:
        return None
    try:
        return zone_info(name)
    except ValueError as exc:
        raise ConfigError(f"{key}: {exc}", key=key) from None


def parse_send_at(
    text: str,
    now: datetime | None = None,
    backend: str | None = None,
    timezone: str | None = None,
) -> datetime:
    """--send-at -> an aware datetime in the future, no further ahead than the backend
    (by default: any backend) can schedule, in ``timezone`` when one is given.

    It takes ISO 8601 ("2019-10-01T08:00-06:00", "2019-10-01 08:00") and, through
    dateparser (imported only here), the forms people type: "tomorrow 08:00",
    "monday 9:00", "in 2 hours", "mañana 08:00".  A time that names no zone needs
    ``timezone`` (--timezone or `send.timezone`): this computer's zone is often not the
    readers' (a server in UTC), so it is never guessed.  A form whose time of day
    cannot be told ("tomorrow", "next week", "tomorrow at 8") is refused rather than
    read as the current time of day.

    The CLI parses --send-at before it knows which backend auto picks, so it checks
    against the furthest any backend allows; the send checks its own backend's limit
    again (:func:`newsletter.esp.registry.check_support`).
    """
    now = now or datetime.now(UTC)
    zone = time_zone(timezone)
    raw = text.strip()
    when = _iso(raw)
    if when is None:
        when = _words(raw, text, now, zone)
    if when.tzinfo is None:
        if zone is None:
            raise ConfigError(
                f"--send-at {text!r} does not say in which time zone it is",
                key="--send-at",
                hint="add the zone, e.g. --timezone America/Costa_Rica (or set "
                '`timezone = "America/Costa_Rica"` under [send] in newsletter.toml), or '
                "write the offset, e.g. 2019-10-01T08:00-06:00",
            )
        when = when.replace(tzinfo=zone)
    elif zone is not None:
        when = when.astimezone(zone)
    if when <= now:
        raise ConfigError(f"--send-at {text!r} is in the past: {shown_time(when)}", key="--send-at")
    classes = [backend_class(name) for name in ([backend] if backend else BACKENDS)]
    furthest, ahead = classes[0], timedelta(0)
    for cls in classes:
        scheduling = cls.capabilities.scheduling
        if scheduling is not None and scheduling.max_ahead > ahead:
            furthest, ahead = cls, scheduling.max_ahead
    furthest.check_send_at(when, now, text)
    return when


_BARE_TIME = re.compile(r"(?:at\s+)?\d{1,2}(?:[:.h]\d{2})?\s*(?:[ap]\.?m\.?)?", re.IGNORECASE)


def _iso(raw: str) -> datetime | None:
    """ISO 8601, aware or naive; None for anything else.  (No dateparser needed.)"""
    try:
        return datetime.fromisoformat(raw.replace("Z", "+00:00") if raw.endswith("Z") else raw)
    except ValueError:
        return None


def _words(raw: str, text: str, now: datetime, zone: ZoneInfo | None) -> datetime:
    """A time in words, read by dateparser twice, from two moments one second apart on
    the same day: an absolute time ("tomorrow 08:00") comes out the same both times, a
    relative one ("in 2 hours") moves with the moment, and anything else took its time
    of day from the moment itself ("tomorrow"), so it is refused.  Naive unless the
    text named a zone."""
    if _BARE_TIME.fullmatch(raw):
        raise ConfigError(
            f"--send-at {text!r} gives a time but not the day",
            key="--send-at",
            hint=f"say which day, e.g. today {raw} or tomorrow {raw}",
        )
    import dateparser

    base = now.astimezone(zone or UTC).replace(tzinfo=None)
    other = base + timedelta(seconds=1)  # the same day as base: "tomorrow" must agree
    if other.date() != base.date():
        other = base - timedelta(seconds=1)
    settings = {"PREFER_DATES_FROM": "future", "DATE_ORDER": "DMY"}
    found: list[datetime | None] = [
        dateparser.parse(
            raw, languages=SEND_AT_LANGUAGES, settings={**settings, "RELATIVE_BASE": b}
        )
        for b in (base, other)
    ]
    first, second = found
    if first is None or second is None:
        raise ConfigError(
            f"--send-at {text!r} is not a date and time",
            key="--send-at",
            hint=f"write it like {SEND_AT_EXAMPLE} (with --timezone), or 2019-10-01T08:00-06:00",
        )
    a, b = first.replace(tzinfo=None), second.replace(tzinfo=None)
    if a == b:
        return first
    span = a - base
    # "in 2 hours" is the same span from any moment; "tomorrow" or "next week" is too,
    # but a whole number of days names a day, not a time.
    if span == b - other and span % timedelta(days=1):
        return now + span
    raise ConfigError(
        f"--send-at {text!r} is not a date and time: it gives no time of day that can be "
        "read for certain",
        key="--send-at",
        hint=f"give the time as hours and minutes, e.g. {SEND_AT_EXAMPLE}",
    )


def local_zone() -> tzinfo:
    """This computer's zone, as the system reports it."""
    zone = datetime.now().astimezone().tzinfo
    assert zone is not None
    return zone


def shown_time(when: datetime, zone: tzinfo | None = None) -> str:
    """A scheduled time as a person checks it: in their zone, and in UTC.

    "Tue 01 Oct 2019 08:00 America/Costa_Rica (14:00 UTC)": the weekday and the
    month's name make a day and month read the wrong way round obvious.  ``zone``
    defaults to the zone ``when`` carries, else this computer's.
    """
    if zone is None:
        zone = when.tzinfo if when.tzinfo is not None and when.utcoffset() else local_zone()
    here = when.astimezone(zone)
    utc = when.astimezone(UTC)
    name = zone.key if isinstance(zone, ZoneInfo) else here.strftime("%Z") or here.strftime("%z")
    if not here.utcoffset() and name.upper() in ("UTC", "UTC+00:00", "Z", "+0000", "GMT"):
        return f"{utc:%a %d %b %Y %H:%M} UTC"
    in_utc = f"{utc:%H:%M} UTC" if utc.date() == here.date() else f"{utc:%a %d %b %Y %H:%M} UTC"
    return f"{here:%a %d %b %Y %H:%M} {name} ({in_utc})"


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
