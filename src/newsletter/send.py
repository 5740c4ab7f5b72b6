"""Sending an issue: plan, form batches lazily, post them, record every step in the ledger.

The flow (:class:`SendSession`)::

    plan()     one streaming pass over the audience: counts, refusals, resume checks
    execute()  create (or resume) the ledger's send, then SendEngine.run():
                 repost batches that failed (and, if the user chose, unknown ones)
                 loop: refresh suppressions -> take the next <=1,000 subscribers
                       -> commit them as a 'posting' batch -> post -> 'sent'

What makes it safe:

- A batch's recipients are committed before its request leaves; 'sent' only after
  the 2xx.  A crash leaves at most one batch whose outcome is unknown, and such a
  batch is never resent without the user's say (``--resend-unknown`` / ``--skip-unknown``).
- Batches are formed when they are about to be posted, right after the suppression
  list is re-read, so someone who unsubscribes during a send misses the later batches.
- Nobody is held in memory beyond the batch being posted: the audience is a stream.
- 429 waits as long as the provider says; 5xx, timeouts and broken connections back
  off exponentially with jitter; ``send.pause_after_failures`` failures in a row pause
  the send; a refusal (400/401/403/413) fails it with the provider's reason.
"""

from __future__ import annotations

import math
import os
import random
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Literal, Protocol

from . import message, tokens
from .config import (
    SECRET_ENV,
    SENDGRID_HOST_ENV,
    SENDGRID_KEY_ENV,
    Send,
    Workspace,
    env_secret,
    newsletter_secrets,
)
from .errors import ConfigError, LedgerError, ProviderRejected, ProviderUnavailable
from .esp.base import MAX_BATCH, Backend, Batch, DeliveryUnknown, IssueContent, Recipient
from .ledger import (
    CANCELLED,
    DONE,
    FAILED,
    PAUSED,
    PLANNED,
    SCHEDULED,
    SENDING,
    UNFINISHED,
    BatchInfo,
    Ledger,
    RecipientLike,
    RecipientRow,
    SendSummary,
)

if TYPE_CHECKING:
    from .build import BuiltIssue
    from .subscribers import RowProblem

# A clearly-labelled key for the outbox when NEWSLETTER_SECRET is unset: its links are
# for looking at, and will not be accepted by a server that has the real secret.
DEV_SECRET = b"newsletter-DEVELOPMENT-key-not-secret"
DEV_SECRET_WARNING = (
    f"warning: {SECRET_ENV} is not set; the outbox uses a development key, so its "
    "unsubscribe links are for looking at only"
)

MAX_SCHEDULE_AHEAD = timedelta(hours=72)  # SendGrid's limit for send_at
CANCEL_MARGIN = timedelta(minutes=10)  # SendGrid cannot cancel later than this before send_at

UnknownChoice = Literal["ask", "resend", "skip"]


# --------------------------------------------------------------------------- pieces


class Progress(Protocol):
    """What the send loop reports while it works (the CLI draws a rich progress bar)."""

    def batch_done(self, seq: int, recipients: int) -> None: ...
    def waiting(self, seconds: float, reason: str) -> None: ...


class _NoProgress:
    def batch_done(self, seq: int, recipients: int) -> None:
        pass

    def waiting(self, seconds: float, reason: str) -> None:
        pass


@dataclass(frozen=True)
class RetryPolicy:
    """When to retry, how long to wait, and when to give up and pause."""

    max_retries: int = 6
    pause_after_failures: int = 5
    backoff_base: float = 1.0
    backoff_max: float = 60.0
    max_rate_limit_waits: int = 100
    max_wait: float = 900.0  # the longest a 429 may make us wait for one batch

    @classmethod
    def from_config(cls, send: Send) -> RetryPolicy:
        return cls(
            max_retries=send.max_retries,
            pause_after_failures=send.pause_after_failures,
            backoff_base=send.backoff_base,
            backoff_max=send.backoff_max,
        )

    def backoff(self, failures: int) -> float:
        """Exponential with "equal jitter": half fixed, half random, so retries spread out."""
        ceiling = min(self.backoff_max, self.backoff_base * 2.0 ** max(0, failures - 1))
        return ceiling / 2 + random.uniform(0, ceiling / 2)


class Pacer:
    """At most ``rate`` requests per second (None: as fast as answers come)."""

    def __init__(
        self,
        rate: float | None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.interval = 1.0 / rate if rate else 0.0
        self._sleep = sleep
        self._clock = clock
        self._last: float | None = None

    def wait(self) -> None:
        if not self.interval:
            return
        if self._last is not None:
            delay = self._last + self.interval - self._clock()
            if delay > 0:
                self._sleep(delay)
        self._last = self._clock()


class Personalizer:
    """A subscriber -> their Recipient: unsubscribe URL (HMAC token), placeholder values,
    List-Unsubscribe headers.  Cheap enough to run for every recipient of every batch."""

    def __init__(
        self, keys: Sequence[bytes], unsubscribe_base: str, mailto: str | None, language: str
    ) -> None:
        self.keys = list(keys)
        self.sign = tokens.Signer(self.keys)
        self.base = unsubscribe_base if unsubscribe_base.endswith("/") else unsubscribe_base + "/"
        self.mailto = mailto
        self.language = language

    def url(self, email: str, list_name: str) -> str:
        return f"{self.base}u/{self.sign(email, list_name)}"

    def __call__(self, s: RecipientLike) -> Recipient:
        return self.batch([s])[0]

    def batch(self, people: Sequence[RecipientLike]) -> list[Recipient]:
        """Many at once: the per-recipient loop is the hot path of a large send."""
        base, language, mailto = self.base + "u/", self.language, self.mailto
        sign = self.sign
        substitutions = message.substitutions
        headers = message.list_unsubscribe_headers
        out = []
        for s in people:
            email, list_name = s.email, s.list_name
            url = base + sign(email, list_name)
            out.append(
                Recipient(
                    email,
                    s.name,
                    list_name,
                    substitutions(s.first_name, url, language),
                    headers(url, mailto),
                )
            )
        return out


def row_of(s: RecipientLike) -> RecipientRow:
    return RecipientRow(s.email, s.name, s.first_name, s.language, s.list_name)


# --------------------------------------------------------------------------- the engine


@dataclass
class SendReport:
    send_id: int
    state: str
    batches_sent: int = 0
    recipients_sent: int = 0
    batches_reposted: int = 0
    message: str = ""
    maybe_twice: list[int] = field(default_factory=list)  # batch seqs retried after no answer
    error: Exception | None = None

    @property
    def ok(self) -> bool:
        return self.state in (DONE, SCHEDULED)


class _Stop(Exception):
    def __init__(self, state: str, reason: str, error: Exception | None = None) -> None:
        super().__init__(reason)
        self.state = state
        self.reason = reason
        self.error = error


class SendEngine:
    """Posts the batches of one send; knows nothing of CSV files, SendGrid or the terminal."""

    def __init__(
        self,
        *,
        ledger: Ledger,
        backend: Backend,
        content: IssueContent,
        personalize: Personalizer,
        policy: RetryPolicy,
        batch_size: int = MAX_BATCH,
        pacer: Pacer | None = None,
        progress: Progress | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not 1 <= batch_size <= MAX_BATCH:
            raise ValueError(f"batch size must be 1..{MAX_BATCH}")
        self.ledger = ledger
        self.backend = backend
        self.content = content
        self.personalize = personalize
        self.policy = policy
        self.batch_size = batch_size
        self.pacer = pacer or Pacer(None)
        self.progress: Progress = progress or _NoProgress()
        self._sleep = sleep
        self.stop_requested = False
        self._consecutive_failures = 0

    def request_stop(self) -> None:
        """Pause after the batch in flight (Ctrl-C)."""
        self.stop_requested = True

    def run(
        self,
        send_id: int,
        subscribers: Iterable[RecipientLike],
        *,
        refresh: Callable[[], object] | None = None,
        exclude: Callable[[RecipientLike], bool] | None = None,
        resend_unknown: bool = False,
    ) -> SendReport:
        summary = self.ledger.send(send_id)
        self.ledger.claim(send_id)
        try:
            return self._run(summary, subscribers, refresh, exclude, resend_unknown)
        finally:
            self.ledger.release(send_id)

    def _run(
        self,
        summary: SendSummary,
        subscribers: Iterable[RecipientLike],
        refresh: Callable[[], object] | None,
        exclude: Callable[[RecipientLike], bool] | None,
        resend_unknown: bool,
    ) -> SendReport:
        send_id = summary.id
        unknown = self.ledger.unknown_batches(send_id)
        if unknown and not resend_unknown:
            raise unknown_batches_error(summary, unknown)
        self.ledger.transition(send_id, SENDING)
        report = SendReport(send_id=send_id, state=SENDING)
        issue_key = None if summary.test else summary.issue_id
        try:
            for info in self.ledger.batches_to_repost(send_id, resend_unknown=resend_unknown):
                self._check_stop()
                self.ledger.begin_repost(info.id, resend_unknown=resend_unknown)
                current = self.ledger.batch(info.id)
                assert current is not None
                stored = self.ledger.batch_recipients(info.id)
                self._deliver(summary, current, stored, report)
                report.batches_reposted += 1
            iterator = iter(subscribers)
            while True:
                self._check_stop()
                if refresh is not None:
                    refresh()
                rows = self._take(iterator, exclude)
                if not rows:
                    break
                info = self.ledger.open_batch(send_id, rows, issue_id=issue_key)
                self._deliver(summary, info, rows, report)
        except _Stop as stop:
            self.ledger.transition(send_id, stop.state, note=stop.reason)
            report.state = stop.state
            report.message = stop.reason
            report.error = stop.error
            return report
        final = SCHEDULED if summary.schedule_id else DONE
        self.ledger.transition(send_id, final)
        report.state = final
        return report

    def _check_stop(self) -> None:
        if self.stop_requested:
            raise _Stop(PAUSED, "paused by the user")

    def _take(
        self, iterator: Iterator[RecipientLike], exclude: Callable[[RecipientLike], bool] | None
    ) -> list[RecipientLike]:
        """The next batch's subscribers: pulled from the stream only now, so that the
        suppression list read just before applies to them."""
        rows: list[RecipientLike] = []
        size = self.batch_size
        if exclude is None:
            for s in iterator:
                rows.append(s)
                if len(rows) >= size:
                    break
            return rows
        for s in iterator:
            if not exclude(s):
                rows.append(s)
                if len(rows) >= size:
                    break
        return rows

    def _wait(self, seconds: float, reason: str) -> None:
        """Sleep in short steps so that Ctrl-C pauses without waiting out a long backoff."""
        self.progress.waiting(seconds, reason)
        end = time.monotonic() + seconds
        while not self.stop_requested:
            left = end - time.monotonic()
            if left <= 0:
                return
            self._sleep(min(left, 0.25))

    def _deliver(
        self,
        summary: SendSummary,
        info: BatchInfo,
        rows: Sequence[RecipientLike],
        report: SendReport,
    ) -> None:
        batch = Batch(
            issue_id=summary.issue_id,
            send_ref=str(summary.id),
            batch_ref=str(info.id),
            seq=info.seq,
            recipients=self.personalize.batch(rows),
            send_at=summary.send_at if summary.schedule_id else None,
            schedule_id=summary.schedule_id,
        )
        failures = 0
        rate_limited = 0
        ambiguous = info.ambiguous_attempts > 0 or info.resent
        while True:
            self.pacer.wait()
            try:
                outcome = self.backend.send_batch(self.content, batch)
            except ProviderRejected as exc:
                self.ledger.note_attempt(
                    info.id, ambiguous=False, status=exc.status, error=exc.message
                )
                self.ledger.mark_unsent(info.id)
                raise _Stop(FAILED, exc.message, exc) from None
            except ProviderUnavailable as exc:
                unknown = isinstance(exc, DeliveryUnknown)
                ambiguous = ambiguous or unknown
                self.ledger.note_attempt(
                    info.id, ambiguous=unknown, status=exc.status, error=exc.message
                )
                if exc.status == 429:
                    rate_limited += 1
                    if rate_limited > self.policy.max_rate_limit_waits:
                        self.ledger.mark_unsent(info.id)
                        raise _Stop(
                            PAUSED,
                            f"rate limited {rate_limited} times in a row on batch {info.seq}",
                            exc,
                        ) from None
                    wait = exc.retry_after
                    if wait is None:
                        wait = self.policy.backoff(rate_limited)
                    self._wait(min(wait, self.policy.max_wait), "rate limit (429)")
                else:
                    failures += 1
                    self._consecutive_failures += 1
                    if (
                        self._consecutive_failures >= self.policy.pause_after_failures
                        or failures > self.policy.max_retries
                    ):
                        self.ledger.mark_unsent(info.id)
                        raise _Stop(
                            PAUSED,
                            f"paused after {self._consecutive_failures} failed attempts in a "
                            f"row (batch {info.seq}): {exc.message}",
                            exc,
                        ) from None
                    self._wait(self.policy.backoff(failures), exc.message)
                if self.stop_requested:
                    self.ledger.mark_unsent(info.id)
                    raise _Stop(PAUSED, "paused by the user") from None
                continue
            self.ledger.mark_sent(info.id, status=outcome.status, provider_id=outcome.provider_id)
            self._consecutive_failures = 0
            report.batches_sent += 1
            report.recipients_sent += len(rows)
            if ambiguous:
                report.maybe_twice.append(info.seq)
            self.progress.batch_done(info.seq, len(rows))
            return


def unknown_batches_error(summary: SendSummary, unknown: Sequence[BatchInfo]) -> LedgerError:
    listing = ", ".join(f"batch {b.seq} ({b.recipients} recipients)" for b in unknown)
    return LedgerError(
        f"send #{summary.id} of {summary.issue_id}: {listing} posted without an answer; "
        "SendGrid may or may not have accepted " + ("it" if len(unknown) == 1 else "them"),
        hint="run again with --skip-unknown (never send those recipients this issue) or "
        "--resend-unknown (post them again: some may get the issue twice)",
    )


# --------------------------------------------------------------------------- set-up helpers


def open_backend(ws: Workspace, requested: str | None = None) -> Backend:
    """The backend named (or config send.backend); auto = SendGrid if its API key is set."""
    cfg = ws.config.send
    name = requested or cfg.backend
    key = env_secret(SENDGRID_KEY_ENV, required=False)
    if name == "auto":
        name = "sendgrid" if key else "outbox"
    if name == "sendgrid":
        from .esp.sendgrid import SendGridBackend

        if not key:
            env_secret(SENDGRID_KEY_ENV)  # raises the ConfigError naming the variable
        host = os.environ.get(SENDGRID_HOST_ENV, "").strip() or (
            str(cfg.api_host) if cfg.api_host else None
        )
        if host and not host.startswith(("http://", "https://")):
            raise ConfigError(
                f"{SENDGRID_HOST_ENV}={host!r} is not a URL",
                key=SENDGRID_HOST_ENV,
                hint="e.g. http://127.0.0.1:4010",
            )
        assert key is not None
        return SendGridBackend(key, cfg, host=host)
    if name == "outbox":
        from .esp.outbox import OutboxBackend

        return OutboxBackend(ws.outbox_dir, cfg)
    raise ConfigError(
        f"unknown backend {name!r}", key="send.backend", hint="use auto, sendgrid or outbox"
    )


def unsubscribe_keys(backend: Backend) -> tuple[list[bytes], bool]:
    """(keys, is_development_key): the outbox may use a labelled development key."""
    if env_secret(SECRET_ENV, required=False) is None and backend.name == "outbox":
        return [DEV_SECRET], True
    return newsletter_secrets(), False


def issue_content(ws: Workspace, built: BuiltIssue, *, test: bool = False) -> IssueContent:
    sender = ws.config.sender
    return IssueContent(
        issue_id=built.issue_id,
        subject=f"[TEST] {built.subject}" if test else built.subject,
        html=built.html,
        text=built.text,
        from_email=sender.from_email,
        from_name=sender.from_name,
        reply_to=sender.reply_to,
        test=test,
    )


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


def validate_test_addresses(text: str) -> list[str]:
    from email_validator import EmailNotValidError, validate_email

    out = []
    for part in (p.strip() for p in text.replace(";", ",").split(",")):
        if not part:
            continue
        try:
            out.append(validate_email(part, check_deliverability=False).normalized)
        except EmailNotValidError as exc:
            raise ConfigError(f"--test-to: {part!r}: {exc}", key="--test-to") from None
    if not out:
        raise ConfigError("--test-to needs at least one address", key="--test-to")
    return out


# --------------------------------------------------------------------------- session


@dataclass
class SendOptions:
    lists: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    backend: str | None = None
    dry_run: bool = False
    send_at: datetime | None = None
    rate: float | None = None
    force_resend: bool = False
    resume: bool = False
    unknown: UnknownChoice = "ask"
    test_to: list[str] = field(default_factory=list)


@dataclass
class Plan:
    issue_id: str
    lists: list[str]
    tags: list[str]
    backend: str
    destination: str
    batch_size: int
    recipients: int = 0
    invalid: int = 0
    duplicates: int = 0
    suppressed: int = 0
    filtered_out: int = 0
    already_sent: int = 0
    first: list[str] = field(default_factory=list)
    problems: list[RowProblem] = field(default_factory=list)
    resume: SendSummary | None = None
    repost_batches: int = 0
    repost_recipients: int = 0
    unknown: list[BatchInfo] = field(default_factory=list)
    send_at: datetime | None = None
    test: bool = False
    dev_key: bool = False

    @property
    def batches(self) -> int:
        return math.ceil(self.recipients / self.batch_size) + self.repost_batches

    @property
    def total_recipients(self) -> int:
        return self.recipients + self.repost_recipients


class SendSession:
    """One `newsletter send`: plan it, then execute it (or stop at the plan for a dry run)."""

    def __init__(
        self,
        ws: Workspace,
        built: BuiltIssue,
        options: SendOptions,
        *,
        ledger: Ledger | None = None,
        backend: Backend | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.ws = ws
        self.built = built
        self.options = options
        self.backend = backend or open_backend(ws, options.backend)
        self.keys, self.dev_key = unsubscribe_keys(self.backend)
        self._ledger = ledger
        self._sleep = sleep
        self._engine: SendEngine | None = None
        self._plan: Plan | None = None
        self.audience_counts: dict[str, int] = {}
        if options.send_at is not None and options.test_to:
            raise ConfigError("--send-at and --test-to cannot be combined", key="--send-at")

    @property
    def ledger(self) -> Ledger:
        """The workspace's ledger; a dry run with no state yet reads an empty one and so
        creates no `.newsletter/` folder."""
        if self._ledger is None:
            if self.options.dry_run and not self.ws.state_db.exists():
                self._ledger = Ledger(":memory:")
            else:
                self._ledger = Ledger(self.ws.state_db)
        return self._ledger

    def close(self) -> None:
        if self._ledger is not None:
            self._ledger.close()
        self.backend.close()

    # -- planning ---------------------------------------------------------------------------

    def _new_plan(self, lists: list[str], tags: list[str]) -> Plan:
        return Plan(
            issue_id=self.built.issue_id,
            lists=lists,
            tags=tags,
            backend=self.backend.name,
            destination=self.backend.describe(),
            batch_size=self.ws.config.send.batch_size,
            send_at=self.options.send_at,
            dev_key=self.dev_key,
        )

    def plan(self) -> Plan:
        opts = self.options
        if opts.test_to:
            plan = self._new_plan(opts.lists[:1] or ["test"], [])
            plan.test = True
            plan.recipients = len(opts.test_to)
            plan.first = opts.test_to[:3]
            self._plan = plan
            return plan
        if opts.resume:
            plan = self._resume_plan()
        else:
            if not opts.lists:
                raise ConfigError(
                    "name at least one list with --list",
                    key="--list",
                    hint="e.g. --list sample (subscribers/sample.csv)",
                )
            self._refuse_repeat(opts.lists)
            plan = self._new_plan(list(dict.fromkeys(opts.lists)), list(opts.tags))
        self._count(plan)
        self._plan = plan
        return plan

    def _refuse_repeat(self, lists: Sequence[str]) -> None:
        earlier = self.ledger.blocking_sends(self.built.issue_id, lists, self.backend.name)
        for s in earlier:
            if s.state in UNFINISHED:
                raise LedgerError(
                    f"send #{s.id} of {s.issue_id} to {', '.join(s.lists)} is {s.state} "
                    f"({s.recipients_sent} recipients sent)",
                    hint=f"continue it with `newsletter send {self.built.source} --resume`, or "
                    f"abandon it with `newsletter cancel {s.issue_id}`",
                )
        if self.options.force_resend:
            return
        for s in earlier:
            common = sorted(set(lists).intersection(s.lists))
            raise LedgerError(
                f"{s.issue_id} was already sent to list {', '.join(common)} "
                f"(send #{s.id}, {s.created_at}, {s.recipients_sent} recipients, {s.state})",
                hint="use --force-resend to send it again to everyone on the list",
            )

    def _resume_plan(self) -> Plan:
        issue_id = self.built.issue_id
        candidates = [
            s
            for s in self.ledger.sends(issue_id)
            if not s.test
            and s.backend == self.backend.name
            and s.state in UNFINISHED
            and (not self.options.lists or set(self.options.lists).intersection(s.lists))
        ]
        if not candidates:
            raise LedgerError(
                f"no paused, failed or interrupted send of {issue_id} "
                f"through {self.backend.name} to resume",
                hint="`newsletter status` lists the sends",
            )
        s = candidates[-1]
        if self.ledger.is_running_elsewhere(s.id):
            raise LedgerError(
                f"send #{s.id} of {issue_id} is running in another process",
                hint="wait for it, or press Ctrl-C there to pause it",
            )
        plan = self._new_plan(list(s.lists), list(s.tags))
        plan.resume = s
        if self.options.send_at is not None:
            raise ConfigError(
                "--send-at cannot be changed when resuming",
                key="--send-at",
                hint="cancel the send and start a new one to change its time",
            )
        if s.send_at:
            plan.send_at = datetime.fromtimestamp(s.send_at, UTC)
            if plan.send_at <= datetime.now(UTC):
                raise LedgerError(
                    f"send #{s.id} was scheduled for {plan.send_at.isoformat()}, which has "
                    "passed; resuming it would send at once",
                    hint=f"`newsletter cancel {issue_id}`, then send again with a new --send-at",
                )
        plan.unknown = self.ledger.unknown_batches(s.id)
        if plan.unknown and self.options.unknown == "ask":
            raise unknown_batches_error(s, plan.unknown)
        repost = self.ledger.batches_to_repost(
            s.id, resend_unknown=self.options.unknown == "resend"
        )
        plan.repost_batches = len(repost)
        plan.repost_recipients = sum(b.recipients for b in repost)
        return plan

    def _exclusion(self, plan: Plan) -> Callable[[RecipientLike], bool] | None:
        """Who must not be batched again: already in a batch of this issue (this backend)."""
        issue_id = plan.issue_id
        if not self.ledger.has_recipients(issue_id):
            return None
        backend = self.backend.name
        only: int | None = None
        force = plan.resume.force_resend if plan.resume else self.options.force_resend
        if force:
            if plan.resume is None:
                return None
            only = plan.resume.id
        already = self.ledger.already_batched

        def exclude(s: RecipientLike) -> bool:
            return already(issue_id, s.email, backend=backend, only_send=only)

        return exclude

    def _audience(self, plan: Plan) -> tuple[Iterable[RecipientLike], Callable[[], object]]:
        from .subscribers import Audience
        from .suppressions import SuppressionList

        suppressions = SuppressionList(self.ws.suppressions_path)
        self._audience_obj = Audience(self.ws, plan.lists, plan.tags, suppressions=suppressions)
        return self._audience_obj, suppressions.refresh

    def _count(self, plan: Plan) -> None:
        audience, _ = self._audience(plan)
        exclude = self._exclusion(plan)
        for s in audience:
            if exclude is not None and exclude(s):
                plan.already_sent += 1
                continue
            plan.recipients += 1
            if len(plan.first) < 3:
                plan.first.append(s.email)
        a = self._audience_obj
        plan.invalid = a.invalid
        plan.duplicates = a.duplicates + a.overlap
        plan.suppressed = a.suppressed
        plan.filtered_out = a.filtered_out
        plan.problems = list(a.problems)

    # -- executing --------------------------------------------------------------------------

    def request_stop(self) -> None:
        if self._engine is not None:
            self._engine.request_stop()

    def _engine_for(
        self, ledger: Ledger, content: IssueContent, progress: Progress | None
    ) -> SendEngine:
        cfg = self.ws.config.send
        personalize = Personalizer(
            self.keys, str(cfg.unsubscribe_url), cfg.unsubscribe_mailto, self.built.language
        )
        rate = self.options.rate if self.options.rate is not None else cfg.rate
        self._engine = SendEngine(
            ledger=ledger,
            backend=self.backend,
            content=content,
            personalize=personalize,
            policy=RetryPolicy.from_config(cfg),
            batch_size=cfg.batch_size,
            pacer=Pacer(rate, self._sleep),
            progress=progress,
            sleep=self._sleep,
        )
        return self._engine

    def execute(self, progress: Progress | None = None) -> SendReport:
        plan = self._plan or self.plan()
        opts = self.options
        if opts.test_to:
            return self._execute_test(plan, progress)
        if opts.dry_run:
            return self._execute_dry(plan, progress)
        ledger = self.ledger
        if plan.resume is not None:
            send_id = plan.resume.id
            current = ledger.send(send_id)
            if current.state == SENDING:  # the process that ran it has gone
                ledger.transition(send_id, PAUSED, note="the sending process stopped")
            if opts.unknown == "skip":
                ledger.skip_unknown(send_id)
            ledger.set_planned(send_id, current.recipients_batched + plan.recipients)
            if current.send_at and not current.schedule_id:  # scheduling failed last time
                ledger.set_schedule(send_id, self.backend.create_schedule(), current.send_at)
        else:
            send_at = int(plan.send_at.timestamp()) if plan.send_at else None
            send_id = ledger.create_send(
                plan.issue_id,
                plan.lists,
                self.backend.name,
                tags=plan.tags,
                subject=self.built.subject,
                planned_recipients=plan.recipients,
                send_at=send_at,
                force_resend=opts.force_resend,
            )
            if send_at is not None:
                try:
                    schedule_id = self.backend.create_schedule()
                except (ProviderRejected, ProviderUnavailable) as exc:
                    ledger.transition(send_id, FAILED, note=exc.message)
                    raise
                ledger.set_schedule(send_id, schedule_id, send_at)
            if self.backend.name == "outbox":
                self._clear_outbox()
        engine = self._engine_for(ledger, issue_content(self.ws, self.built), progress)
        audience, refresh = self._audience(plan)
        report = engine.run(
            send_id,
            audience,
            refresh=refresh,
            exclude=self._exclusion(plan),
            resend_unknown=opts.unknown == "resend",
        )
        self.audience_counts = self._audience_obj.counts()
        return report

    def _clear_outbox(self) -> None:
        from .esp.outbox import OutboxBackend

        if isinstance(self.backend, OutboxBackend):
            self.backend.clear(self.built.issue_id)

    def _execute_dry(self, plan: Plan, progress: Progress | None) -> SendReport:
        """A dry run posts nothing; through the outbox it writes the files, with a throw-away
        ledger so the real one is untouched."""
        if self.backend.name != "outbox":
            return SendReport(send_id=0, state=PLANNED, message="dry run: nothing was sent")
        self._clear_outbox()
        with Ledger(":memory:") as scratch:
            send_id = scratch.create_send(
                plan.issue_id,
                plan.lists,
                self.backend.name,
                tags=plan.tags,
                planned_recipients=plan.recipients,
            )
            engine = self._engine_for(scratch, issue_content(self.ws, self.built), progress)
            audience, refresh = self._audience(plan)
            report = engine.run(send_id, audience, refresh=refresh, exclude=self._exclusion(plan))
        report.message = "dry run: files written, nothing was emailed"
        return report

    def _execute_test(self, plan: Plan, progress: Progress | None) -> SendReport:
        """A test copy: recorded as a test send, never counted as the issue being sent."""
        ledger = self.ledger
        send_id = ledger.create_send(
            plan.issue_id,
            plan.lists,
            self.backend.name,
            test=True,
            subject=self.built.subject,
            planned_recipients=plan.recipients,
        )
        list_name = plan.lists[0]
        rows = [RecipientRow(e, None, None, None, list_name) for e in self.options.test_to]
        engine = self._engine_for(ledger, issue_content(self.ws, self.built, test=True), progress)
        return engine.run(send_id, rows)


# --------------------------------------------------------------------------- cancel


def cancel_send(
    ws: Workspace,
    issue_id: str,
    *,
    backend: Backend | None = None,
    ledger: Ledger | None = None,
    now: datetime | None = None,
) -> list[SendSummary]:
    """Cancel the scheduled sends of an issue (and abandon unfinished ones); returns them."""
    ledger = ledger or Ledger(ws.state_db)
    now = now or datetime.now(UTC)
    targets = [
        s for s in ledger.sends(issue_id) if s.state in (SCHEDULED, *UNFINISHED) and not s.test
    ]
    if not targets:
        raise LedgerError(
            f"{issue_id} has no scheduled or unfinished send to cancel",
            hint="`newsletter status` lists the sends",
        )
    done = []
    for s in targets:
        if ledger.is_running_elsewhere(s.id):
            raise LedgerError(f"send #{s.id} is running; press Ctrl-C there first")
        if s.schedule_id:
            when = datetime.fromtimestamp(s.send_at or 0, UTC)
            if when - now < CANCEL_MARGIN:
                raise LedgerError(
                    f"send #{s.id} of {issue_id} is due at {when.isoformat()}; SendGrid can "
                    "only cancel a scheduled send until 10 minutes before its time",
                )
            be = backend or open_backend(ws, s.backend)
            be.cancel_schedule(s.schedule_id)
        if s.state == SENDING:
            ledger.transition(s.id, PAUSED, note="the sending process stopped")
        ledger.transition(s.id, CANCELLED, note="cancelled by the user")
        done.append(ledger.send(s.id))
    return done


__all__ = [
    "CANCELLED",
    "DEV_SECRET",
    "Pacer",
    "Personalizer",
    "Plan",
    "RetryPolicy",
    "SendEngine",
    "SendOptions",
    "SendReport",
    "SendSession",
    "cancel_send",
    "issue_content",
    "open_backend",
    "parse_send_at",
    "row_of",
    "unsubscribe_keys",
    "validate_test_addresses",
]
