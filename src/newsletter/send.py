"""Sending an issue: plan, form batches lazily, post them, record every step in the ledger.

The flow (:class:`SendSession`)::

    plan()     take the issue's lock (held until close()), then one streaming pass
               over the audience: counts, refusals, resume checks
    execute()  create (or resume) the ledger's send, then SendEngine.run():
                 repost batches that failed (and, if the user chose, unknown ones),
                   each after re-reading the suppressions and taking out whoever left
                 loop: refresh suppressions -> take the next <=1,000 subscribers
                       -> commit them as a 'ready' batch -> pace -> 'posting' -> post
                       -> 'sent' (or back to 'ready' to wait and retry)

What makes it safe ("never reaches anyone twice, never loses anyone"):

- A batch's recipients are committed before its request leaves; 'posting' is marked
  after every wait, just before the request starts to leave; 'sent' only after the
  2xx.  A crash leaves at most one batch whose outcome is unknown (one killed while
  its request was out), and such a batch is never resent without the user's say
  (``--resend-unknown`` / ``--skip-unknown``); a batch killed while waiting provably
  never left and ``--resume`` posts it.
- Batches are formed when they are about to be posted, right after the suppression
  list is re-read, so someone who unsubscribes during a send misses the later batches;
  a batch posted again (a retry after a wait, or a repost by ``--resume``) leaves out,
  and records in the ledger, whoever has unsubscribed since it was formed.
- One process per issue (an OS lock), so two sends cannot both decide that nobody
  has the issue yet.
- Nobody is held in memory beyond the batch being posted: the audience is a stream.
- Retried automatically, with exponential backoff and jitter: 429 (as long as the
  provider says), 5xx, and connections that failed before the request was sent
  (refused, DNS, connect timeout).  ``send.pause_after_failures`` failures in a row
  pause the send.  A request that left and got no answer (a timeout waiting for the
  reply, a connection dropped after sending) may have been accepted: the batch is
  marked unknown and the send pauses for the user to choose ``--resume
  --skip-unknown`` or ``--resume --resend-unknown``.  A refusal (400/401/403/413)
  fails the send with the provider's reason.
"""

from __future__ import annotations

import math
import os
import random
import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, Protocol
from urllib.parse import quote

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
from .errors import (
    ConfigError,
    LedgerError,
    NewsletterError,
    Problem,
    ProviderRejected,
    ProviderUnavailable,
    SubscriberListError,
)
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
from .snapshot import FrozenAudience, Snapshots
from .subscribers import describe_path, email_key, normalise_recipient

if TYPE_CHECKING:
    from .build import BuiltIssue
    from .subscribers import Audience, RowProblem
    from .suppressions import SuppressionList

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

PAUSED_BY_USER = "paused by the user"


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
        delay = self.delay()
        if delay > 0:
            self._sleep(delay)
        self.mark()

    def delay(self) -> float:
        """Seconds to wait before the next request may leave."""
        if not self.interval or self._last is None:
            return 0.0
        return max(0.0, self._last + self.interval - self._clock())

    def mark(self) -> None:
        """A request leaves now."""
        if self.interval:
            self._last = self._clock()


_LANGUAGE = re.compile(r"[A-Za-z]{2,8}(?:-[A-Za-z0-9]{1,7})*")


def language_query(language: str | None) -> str:
    """``?lang=<code>`` for the unsubscribe URL, so its page speaks the reader's language;
    "" for anything that is not a short language code (2 to 8 characters, e.g. es, pt-BR).

    Lists are typed by people: a value such as "Spanish" or "es, en" is not passed on.
    """
    if not language:
        return ""
    code = language.strip().replace("_", "-")
    if len(code) > 8 or not _LANGUAGE.fullmatch(code):
        return ""
    return "?lang=" + quote(code, safe="")


class Personalizer:
    """A subscriber -> their Recipient: unsubscribe URL (HMAC token, and ``?lang=`` with
    the subscriber's language or else the issue's), placeholder values, List-Unsubscribe
    headers.  Cheap enough to run for every recipient of every batch."""

    def __init__(
        self, keys: Sequence[bytes], unsubscribe_base: str, mailto: str | None, language: str
    ) -> None:
        self.keys = list(keys)
        self.sign = tokens.Signer(self.keys)
        self.base = unsubscribe_base if unsubscribe_base.endswith("/") else unsubscribe_base + "/"
        self.mailto = mailto
        self.language = language

    def url(self, email: str, list_name: str, language: str | None = None) -> str:
        query = language_query(language) or language_query(self.language)
        return f"{self.base}u/{self.sign(email, list_name)}{query}"

    def __call__(self, s: RecipientLike) -> Recipient:
        return self.batch([s])[0]

    def batch(self, people: Sequence[RecipientLike]) -> list[Recipient]:
        """Many at once: the per-recipient loop is the hot path of a large send."""
        base, language, mailto = self.base + "u/", self.language, self.mailto
        sign = self.sign
        substitutions = message.substitutions
        headers = message.list_unsubscribe_headers
        fallback = language_query(language)
        queries: dict[str | None, str] = {}  # a list has a handful of languages
        out = []
        for s in people:
            email, list_name = s.email, s.list_name
            query = queries.get(s.language)
            if query is None:
                query = queries[s.language] = language_query(s.language) or fallback
            url = base + sign(email, list_name) + query
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
    dropped: int = 0  # taken out of batches posted again: they unsubscribed meanwhile
    message: str = ""
    maybe_twice: list[int] = field(default_factory=list)  # batch seqs resent by the user's choice
    unknown: list[int] = field(default_factory=list)  # batch seqs that got no answer (paused)
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
        self._refresh: Callable[[], object] | None = None
        self._suppressed: Callable[[RecipientLike], bool] | None = None

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
        suppressed: Callable[[RecipientLike], bool] | None = None,
        resend_unknown: bool = False,
    ) -> SendReport:
        """Post the send's batches to repost, then batches of ``subscribers``.

        ``refresh`` re-reads the suppressions (before each batch); ``suppressed`` says
        whether someone stored in a batch to post again has unsubscribed since;
        ``exclude`` whether a subscriber already has the issue.
        """
        summary = self.ledger.send(send_id)
        self.ledger.claim(send_id)
        try:
            return self._run(summary, subscribers, refresh, exclude, suppressed, resend_unknown)
        finally:
            self.ledger.release(send_id)

    def _run(
        self,
        summary: SendSummary,
        subscribers: Iterable[RecipientLike],
        refresh: Callable[[], object] | None,
        exclude: Callable[[RecipientLike], bool] | None,
        suppressed: Callable[[RecipientLike], bool] | None,
        resend_unknown: bool,
    ) -> SendReport:
        send_id = summary.id
        self._refresh, self._suppressed = refresh, suppressed
        unknown = self.ledger.unknown_batches(send_id)
        if unknown and not resend_unknown:
            raise unknown_batches_error(summary, unknown)
        self.ledger.transition(send_id, SENDING)
        report = SendReport(send_id=send_id, state=SENDING)
        issue_key = None if summary.test else summary.issue_id
        try:
            for info in self.ledger.batches_to_repost(send_id, resend_unknown=resend_unknown):
                self._check_stop()
                stored = self._still_subscribed(info, report)
                if not stored:
                    continue  # everyone in it unsubscribed: the ledger marked it skipped
                self.ledger.begin_repost(info.id, resend_unknown=resend_unknown)
                current = self.ledger.batch(info.id)
                assert current is not None
                self._deliver(summary, current, stored, report)
                report.batches_reposted += 1
            iterator = iter(subscribers)
            while True:
                self._check_stop()
                self._refresh_suppressions()
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

    def _refresh_suppressions(self) -> None:
        """Re-read the suppressions; if they cannot be read, pause: posting on without
        them could mail someone who asked not to be mailed."""
        if self._refresh is None:
            return
        try:
            self._refresh()
        except (NewsletterError, OSError) as exc:
            text = exc.message if isinstance(exc, NewsletterError) else str(exc)
            raise _Stop(
                PAUSED,
                f"the suppression list could not be read, so nothing more was sent: {text}",
                exc,
            ) from None

    def _check_stop(self) -> None:
        if self.stop_requested:
            raise _Stop(PAUSED, PAUSED_BY_USER)

    def _still_subscribed(self, info: BatchInfo, report: SendReport) -> list[RecipientLike]:
        """A stored batch's people minus whoever has unsubscribed since it was formed
        (recorded in the ledger, so the counts add up)."""
        return self._drop_suppressed(info, self.ledger.batch_recipients(info.id), report)

    def _drop_suppressed(
        self,
        info: BatchInfo,
        rows: Sequence[RecipientLike],
        report: SendReport,
        *,
        maybe: bool | None = None,
    ) -> list[RecipientLike]:
        """``rows`` minus whoever is suppressed now, taken out of the batch in the ledger
        (``maybe``: whether an earlier attempt may have reached them; None: the ledger
        judges by the batch's state)."""
        suppressed = self._suppressed
        if suppressed is None:
            return list(rows)
        self._refresh_suppressions()
        keep: list[RecipientLike] = []
        gone: list[RecipientLike] = []
        for r in rows:
            (gone if suppressed(r) else keep).append(r)
        if gone:
            self.ledger.drop_recipients(info.id, [r.email for r in gone], maybe=maybe)
            report.dropped += len(gone)
        return keep

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
        def make_batch() -> Batch:
            return Batch(
                issue_id=summary.issue_id,
                send_ref=str(summary.id),
                batch_ref=str(info.id),
                seq=info.seq,
                recipients=self.personalize.batch(rows),
                send_at=summary.send_at if summary.schedule_id else None,
                schedule_id=summary.schedule_id,
            )

        prepared = self.backend.prepare(self.content, make_batch())
        failures = 0
        rate_limited = 0
        ambiguous = info.ambiguous_attempts > 0 or info.resent
        while True:
            delay = self.pacer.delay()
            if delay > 0:
                self._wait(delay, "pacing (--rate)")
            if self.stop_requested:  # nothing of this batch is out: it stays ready
                raise _Stop(PAUSED, PAUSED_BY_USER)
            # Only now can the request leave: until the answer is recorded, a crash
            # leaves this batch unknown.  Every wait happens outside this window.
            self.ledger.mark_posting(info.id)
            self.pacer.mark()
            try:
                outcome = self.backend.post(prepared)
            except ProviderRejected as exc:
                self.ledger.note_attempt(
                    info.id, ambiguous=False, status=exc.status, error=exc.message
                )
                self.ledger.mark_unsent(info.id)
                raise _Stop(FAILED, exc.message, exc) from None
            except DeliveryUnknown as exc:
                # The request left; SendGrid may have it.  Posting it again could reach
                # these people twice, so that is the user's decision, not a retry's.
                self.ledger.note_attempt(
                    info.id, ambiguous=True, status=exc.status, error=exc.message
                )
                self.ledger.mark_unsent(info.id)  # -> unknown
                report.unknown.append(info.seq)
                raise _Stop(
                    PAUSED,
                    f"batch {info.seq} ({len(rows):,} recipients) got no answer: "
                    f"{exc.message}; SendGrid may or may not have accepted it",
                    exc,
                ) from None
            except ProviderUnavailable as exc:
                self.ledger.note_attempt(
                    info.id, ambiguous=False, status=exc.status, error=exc.message
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
                if self.stop_requested:  # the batch is ready (or unknown if resent)
                    raise _Stop(PAUSED, PAUSED_BY_USER) from None
                # A wait may be long (a 429 can ask for minutes): whoever unsubscribed
                # meanwhile is left out of the retry.
                kept = self._drop_suppressed(info, rows, report, maybe=ambiguous)
                if len(kept) != len(rows):
                    rows = kept
                    if not rows:
                        return  # everyone left; the ledger marked the batch skipped
                    prepared = self.backend.prepare(self.content, make_batch())
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
    key = env_secret(SENDGRID_KEY_ENV, required=False, header=True)
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
    """The --test-to addresses, held to the same rules as list rows."""
    out = []
    for part in (p.strip() for p in text.replace(";", ",").split(",")):
        if not part:
            continue
        try:
            out.append(normalise_recipient(part))
        except ValueError as exc:
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
    already_sent: int = 0  # have (or may have) the issue; not counting who is to be reposted
    first: list[str] = field(default_factory=list)
    problems: list[RowProblem] = field(default_factory=list)
    resume: SendSummary | None = None
    repost_batches: int = 0  # batches to post again that still have someone in them
    repost_recipients: int = 0
    repost_dropped: int = 0  # in batches to post again, but unsubscribed since
    repost_keys: set[str] = field(default_factory=set, repr=False)
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

    def nobody_left(self) -> str:
        """Why there is nobody to send to, in the words of the counts."""
        parts = []
        if self.already_sent:
            parts.append(f"{self.already_sent:,} already received this issue")
        if self.suppressed:
            parts.append(f"{self.suppressed:,} suppressed (unsubscribed, bounced or blocked)")
        if self.filtered_out:
            parts.append(f"{self.filtered_out:,} without the tags")
        if self.invalid:
            parts.append(f"{self.invalid:,} invalid")
        if not parts:
            return "nobody to send to: the lists have no subscribers"
        return "nobody left to send to: " + ", ".join(parts)


class SendSession:
    """One `newsletter send`: plan it, then execute it (or stop at the plan for a dry run).

    A real send holds the issue's lock (:meth:`Ledger.lock_issue`) from :meth:`plan`
    until :meth:`close`, so a second `newsletter send` of the issue stops at once.
    """

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
        self._suppressions: SuppressionList | None = None
        self.audience_counts: dict[str, int] = {}
        self._snapshots = Snapshots()
        self._frozen_send: int | None = None
        self._freeze_counts: dict[str, int] = {}
        self._audience_obj: Audience | FrozenAudience
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

    @property
    def suppressions(self) -> SuppressionList:
        """One suppression list for the session, re-read whenever its file changes."""
        if self._suppressions is None:
            from .suppressions import SuppressionList

            self._suppressions = SuppressionList(self.ws.suppressions_path)
        return self._suppressions

    def suppression_notes(self) -> list[str]:
        """What the user must know about the suppression list after a run."""
        sl = self._suppressions
        if sl is None or not sl.vanished:
            return []
        shown = describe_path(sl.path)
        state = "is still missing" if not sl.file_exists else "came back"
        return [
            f"{shown} disappeared during the send and {state}; the send carried on "
            f"with the {sl.stored_count:,} suppressions kept in .newsletter/state.db, "
            "so nobody who left was mailed"
            + (
                f" (`newsletter suppressions restore` writes {shown} back)"
                if not sl.file_exists
                else ""
            )
        ]

    def _is_suppressed(self, r: RecipientLike) -> bool:
        return self.suppressions.contains(r.email)

    def close(self) -> None:
        if self._ledger is not None:
            self._ledger.close()  # also lets go of the issue's lock
        self.backend.close()
        self._snapshots.close()

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
        if self.built.draft and not (opts.test_to or opts.dry_run):
            raise NewsletterError(
                f"{self.built.source} is marked as a draft, so it cannot be sent",
                hint="remove the `draft: true` line when it is ready, or send yourself a copy "
                "with --test-to",
            )
        if opts.test_to:
            plan = self._new_plan(opts.lists[:1] or ["test"], [])
            plan.test = True
            plan.recipients = len(opts.test_to)
            plan.first = opts.test_to[:3]
            self._plan = plan
            return plan
        self._check_suppressions_file()
        if opts.resume:
            if not opts.dry_run:
                self.ledger.lock_issue(self.built.issue_id)
            plan = self._resume_plan()
        else:
            if not opts.lists:
                raise ConfigError(
                    "name at least one list with --list",
                    key="--list",
                    hint="e.g. --list sample (subscribers/sample.csv)",
                )
            if not opts.dry_run:
                self.ledger.lock_issue(self.built.issue_id)
            self._refuse_repeat(opts.lists)
            plan = self._new_plan(list(dict.fromkeys(opts.lists)), list(opts.tags))
        self._count(plan)
        self._plan = plan
        return plan

    def _check_suppressions_file(self) -> None:
        """A suppressions file this workspace has had must be there: planning without it
        would show "0 suppressed" and, without the state database's copy, mail people
        who left.  (The copy is honoured anyway; the missing file is still a mistake
        the user must hear about before anything goes out.)"""
        from .suppression_store import SuppressionStore

        path = self.ws.suppressions_path
        if path.exists() or not self.ws.state_db.exists():
            return
        seen = SuppressionStore(self.ws.state_db).file_seen(path)
        if seen is None:
            return
        shown = describe_path(path)
        raise SubscriberListError(
            Problem(
                message=f"{shown} is missing, but this workspace had it (last read "
                f"{seen.last_seen}, with {seen.rows:,} addresses); without it the plan "
                "would show nobody as unsubscribed",
                path=path,
                hint=f"put it back (e.g. `git checkout -- {shown}`), or run "
                "`newsletter suppressions restore` to write it again from the copy kept "
                "in .newsletter/state.db; then send again",
            )
        )

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
                lists = " ".join(f"--list {name}" for name in s.lists)
                raise LedgerError(
                    f"send #{s.id} was scheduled for {plan.send_at.isoformat()}, which has "
                    "passed; resuming it would send at once",
                    hint=f"`newsletter cancel {issue_id}` abandons it (the "
                    f"{s.recipients_sent:,} recipients SendGrid accepted keep it); then "
                    f"`newsletter send {self.built.source} {lists}` sends the rest "
                    "(add --send-at to schedule them)",
                )
        plan.unknown = self.ledger.unknown_batches(s.id)
        if plan.unknown and self.options.unknown == "ask":
            raise unknown_batches_error(s, plan.unknown)
        repost = self.ledger.batches_to_repost(
            s.id, resend_unknown=self.options.unknown == "resend"
        )
        # Whoever has unsubscribed since a batch was formed is left out of its repost
        # (SendEngine does the same, and records it, just before posting).
        self.suppressions.refresh()
        for b in repost:
            keep = 0
            for r in self.ledger.batch_recipients(b.id):
                if self._is_suppressed(r):
                    plan.repost_dropped += 1
                else:
                    keep += 1
                    plan.repost_keys.add(email_key(r.email))
            if keep:
                plan.repost_batches += 1
                plan.repost_recipients += keep
        return plan

    def _exclusion(self, plan: Plan) -> Callable[[RecipientLike], bool] | None:
        """Who must not be batched again: already in a batch of this issue (this backend).

        None (nobody to exclude, and no query per subscriber) only when no recipient of
        the issue is recorded yet; decided again just before the run, with the issue's
        lock held, so no other send can record any meanwhile.
        """
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
        """Who the send is for: a resumed send's frozen audience; else the lists, read from
        their frozen copies (taken once per session, so the plan, the freeze and a dry
        run all see the same rows however the files change meanwhile)."""
        from .subscribers import Audience

        suppressions = self.suppressions
        frozen = plan.resume.id if plan.resume is not None else self._frozen_send
        if frozen is not None and self.ledger.audience_info(frozen) is not None:
            ledger = self.ledger
            self._audience_obj = FrozenAudience(
                lambda: ledger.audience(frozen), suppressions.contains
            )
            return self._audience_obj, suppressions.refresh
        audience = Audience(self.ws, plan.lists, plan.tags, suppressions=suppressions)
        copies = [
            self._snapshots.take(name, path)
            for name, path in zip(audience.list_names, audience.paths, strict=True)
        ]
        audience.paths = [c.copy for c in copies]
        self._audience_obj = audience
        return audience, suppressions.refresh

    def _problems(self) -> list[RowProblem]:
        """The audience's row problems, naming the list files, not their frozen copies."""
        files = {c.copy: c.source for c in self._snapshots.copies.values()}
        return [replace(p, path=files.get(p.path, p.path)) for p in self._audience_obj.problems]

    def _to_freeze(self, plan: Plan) -> tuple[Iterable[RecipientRow], dict[str, dict[str, Any]]]:
        """The audience of a new send, for the ledger: from the copies the plan read,
        with the suppressions as they are now."""
        audience, _ = self._audience(plan)
        root = self.ws.root
        lists: dict[str, dict[str, Any]] = {
            c.name: {
                "file": os.path.relpath(c.source, root),
                "sha256": c.sha256,
                "bytes": c.size,
            }
            for c in self._snapshots.copies.values()
        }
        return (row_of(r) for r in audience), lists

    def _count(self, plan: Plan) -> None:
        audience, _ = self._audience(plan)
        exclude = self._exclusion(plan)
        reposting = plan.repost_keys
        for s in audience:
            if exclude is not None and exclude(s):
                if not reposting or email_key(s.email) not in reposting:
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
        plan.problems = self._problems()

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
        return self._execute(progress, audience_wanted=True)

    def finish(self) -> SendReport:
        """Settle a resumed send that has nobody left to post to (the plan's batches is 0):
        it becomes done (or stays scheduled), with no new batch formed; batches to post
        again whose people have all unsubscribed are recorded as such."""
        plan = self._plan or self.plan()
        if plan.resume is None:
            raise LedgerError("only a resumed send can be finished without posting")
        return self._execute(None, audience_wanted=False)

    def _execute(self, progress: Progress | None, *, audience_wanted: bool) -> SendReport:
        plan = self._plan or self.plan()
        opts = self.options
        if opts.test_to:
            return self._execute_test(plan, progress)
        if opts.dry_run:
            return self._execute_dry(plan, progress)
        ledger = self.ledger
        ledger.lock_issue(plan.issue_id)  # already held since plan(); a no-op then
        if plan.resume is not None:
            send_id = plan.resume.id
            current = ledger.send(send_id)
            if current.state not in UNFINISHED:
                raise LedgerError(f"send #{send_id} is {current.state}; there is nothing to resume")
            if current.state == SENDING:  # the process that ran it has gone
                ledger.transition(send_id, PAUSED, note="the sending process stopped")
            if opts.unknown == "skip":
                ledger.skip_unknown(send_id)
            ledger.set_planned(send_id, current.recipients_batched + plan.recipients)
            if current.send_at and not current.schedule_id:  # scheduling failed last time
                ledger.set_schedule(send_id, self.backend.create_schedule(), current.send_at)
        else:
            self._refuse_repeat(plan.lists)  # again, now that nothing can change under us
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
                audience=self._to_freeze(plan),
            )
            self._freeze_counts = self._audience_obj.counts()
            self._frozen_send = send_id
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
            audience if audience_wanted else (),
            refresh=refresh,
            exclude=self._exclusion(plan),
            suppressed=self._is_suppressed,
            resend_unknown=opts.unknown == "resend",
        )
        if audience_wanted:
            counts = self._audience_obj.counts()
            if self._freeze_counts:  # a new send: as frozen, plus who left since
                counts = {
                    **self._freeze_counts,
                    "suppressed": self._freeze_counts["suppressed"] + counts["suppressed"],
                }
            self.audience_counts = counts
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


__all__ = [
    "CANCELLED",
    "Cancelled",
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
    "language_query",
    "open_backend",
    "parse_send_at",
    "row_of",
    "unsubscribe_keys",
    "validate_test_addresses",
]
