"""The send engine: posts the batches of one send and records every step in the ledger.

It knows nothing of CSV files, providers or the terminal; see :mod:`newsletter.send`
for how a send is planned and started, and :mod:`newsletter.ledger` for what the
records promise after a crash.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from .clock import SYSTEM, Clock
from .errors import (
    LedgerError,
    NewsletterError,
    ProviderError,
    ProviderRejected,
    ProviderUnavailable,
)
from .esp.base import MAX_BATCH, Backend, Batch, DeliveryUnknown, IssueContent, Prepared
from .ledger import (
    DONE,
    FAILED,
    PAUSED,
    SCHEDULED,
    SENDING,
    BatchInfo,
    Ledger,
    RecipientLike,
    SendSummary,
)
from .personalize import Personalizer
from .retry import Pacer, RetryPolicy


class StopReason(StrEnum):
    """Why a send stopped before it was done (the CLI's exit code and advice follow it)."""

    BY_USER = "paused by the user"  # Ctrl-C, SIGTERM, SIGHUP: exit 130
    NO_ANSWER = "a request got no answer"  # a batch is unknown: the user chooses
    REFUSED = "the provider refused the request"  # fix the cause, then resume
    RATE_LIMITED = "rate limited too many times in a row"
    FAILURES = "too many failed attempts in a row"
    SUPPRESSIONS = "the suppression list could not be read"


PAUSED_BY_USER = StopReason.BY_USER.value


class Progress(Protocol):
    """What the send loop reports while it works (the CLI draws a rich progress bar)."""

    def batch_done(self, seq: int, recipients: int) -> None: ...
    def waiting(self, seconds: float, reason: str) -> None: ...


class _NoProgress:
    def batch_done(self, seq: int, recipients: int) -> None:
        pass

    def waiting(self, seconds: float, reason: str) -> None:
        pass


@dataclass
class SendReport:
    send_id: int
    state: str
    batches_sent: int = 0
    recipients_sent: int = 0
    batches_reposted: int = 0
    dropped: int = 0  # taken out of batches posted again: they unsubscribed meanwhile
    message: str = ""
    stop: StopReason | None = None  # why it stopped, if it did
    maybe_twice: list[int] = field(default_factory=list)  # batch seqs resent by the user's choice
    unknown: list[int] = field(default_factory=list)  # batch seqs that got no answer (paused)
    error: Exception | None = None

    @property
    def ok(self) -> bool:
        return self.state in (DONE, SCHEDULED)


class _Stop(Exception):
    def __init__(
        self, state: str, why: StopReason, reason: str, error: Exception | None = None
    ) -> None:
        super().__init__(reason)
        self.state = state
        self.why = why
        self.reason = reason
        self.error = error

    @classmethod
    def by_user(cls) -> _Stop:
        return cls(PAUSED, StopReason.BY_USER, PAUSED_BY_USER)


@dataclass(frozen=True)
class _Retry:
    """Wait, then post the batch again."""

    seconds: float
    reason: str


@dataclass
class _Tries:
    """One batch's failed attempts so far, by kind."""

    failures: int = 0
    rate_limited: int = 0


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
        clock: Clock = SYSTEM,
        versions: Mapping[str, tuple[IssueContent, Personalizer]] | None = None,
        language_of: Callable[[RecipientLike], str] | None = None,
    ) -> None:
        """``versions``: the issue's languages, each with its content and personalizer
        (batches are formed per language, ``language_of`` telling each recipient's; without
        it everyone gets the first); without ``versions``, ``content`` for everyone."""
        limit = backend.capabilities.max_batch
        if not 1 <= batch_size <= limit:
            raise ValueError(f"batch size must be 1..{limit} for {backend.label}")
        self.ledger = ledger
        self.backend = backend
        self.content = content
        self.personalize = personalize
        self.policy = policy
        self.batch_size = batch_size
        self.pacer = pacer or Pacer(None)
        self.progress: Progress = progress or _NoProgress()
        self.clock = clock
        self.stop_requested = False
        self._consecutive_failures = 0
        self._refresh: Callable[[], object] | None = None
        self._suppressed: Callable[[RecipientLike], bool] | None = None
        self.versions = dict(versions or {})
        self.language_of = language_of

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
            raise unknown_batches_error(summary, unknown, self.backend.label)
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
            for language, stream in self._streams(subscribers):  # one language per batch
                iterator = iter(stream)
                while True:
                    self._check_stop()
                    self._refresh_suppressions()
                    rows = self._take(iterator, exclude)
                    if not rows:
                        break
                    info = self.ledger.open_batch(
                        send_id, rows, issue_id=issue_key, language=language
                    )
                    self._deliver(summary, info, rows, report)
        except _Stop as stop:
            self.ledger.transition(send_id, stop.state, note=stop.reason)
            report.state = stop.state
            report.message = stop.reason
            report.stop = stop.why
            report.error = stop.error
            return report
        final = SCHEDULED if summary.schedule_id else DONE
        self.ledger.transition(send_id, final)
        report.state = final
        return report

    def _streams(
        self, subscribers: Iterable[RecipientLike]
    ) -> Iterator[tuple[str | None, Iterable[RecipientLike]]]:
        """The audience once per language, each pass keeping that language's readers
        (a pass over the frozen audience is cheap; batches never mix languages)."""
        pick = self.language_of
        if pick is None or not self.versions:
            yield next(iter(self.versions), None), subscribers
            return
        for language in self.versions:
            yield language, (s for s in subscribers if pick(s) == language)

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
                StopReason.SUPPRESSIONS,
                f"the suppression list could not be read, so nothing more was sent: {text}",
                exc,
            ) from None

    def _check_stop(self) -> None:
        if self.stop_requested:
            raise _Stop.by_user()

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
        clock = self.clock
        end = clock.monotonic() + seconds
        while not self.stop_requested:
            left = end - clock.monotonic()
            if left <= 0:
                return
            clock.sleep(min(left, 0.25))

    def _decide(
        self, error: ProviderError, info: BatchInfo, size: int, tries: _Tries
    ) -> _Retry | _Stop:
        """What next for a batch whose attempt failed: wait and retry, or stop the send.

        Retried by themselves: a 429 (as long as the provider says, within limits) and
        a definite "not now" (5xx, a connection refused before the request left).
        Never retried: a refusal (repeating cannot help) and a request that left and
        got no answer (the provider may have it: posting again could reach these
        people twice, so that is the user's decision).
        """
        policy = self.policy
        if isinstance(error, ProviderRejected):
            return _Stop(FAILED, StopReason.REFUSED, error.message, error)
        if isinstance(error, DeliveryUnknown):
            return _Stop(
                PAUSED,
                StopReason.NO_ANSWER,
                f"batch {info.seq} ({size:,} recipients) got no answer: {error.message}; "
                f"{self.backend.label} may or may not have accepted it",
                error,
            )
        if error.status == 429:
            tries.rate_limited += 1
            if tries.rate_limited > policy.max_rate_limit_waits:
                return _Stop(
                    PAUSED,
                    StopReason.RATE_LIMITED,
                    f"rate limited {tries.rate_limited} times in a row on batch {info.seq}",
                    error,
                )
            wait = error.retry_after if isinstance(error, ProviderUnavailable) else None
            if wait is None:
                wait = policy.backoff(tries.rate_limited)
            return _Retry(min(wait, policy.max_wait), "rate limit (429)")
        tries.failures += 1
        self._consecutive_failures += 1
        if (
            self._consecutive_failures >= policy.pause_after_failures
            or tries.failures > policy.max_retries
        ):
            return _Stop(
                PAUSED,
                StopReason.FAILURES,
                f"paused after {self._consecutive_failures} failed attempts in a "
                f"row (batch {info.seq}): {error.message}",
                error,
            )
        return _Retry(policy.backoff(tries.failures), error.message)

    def _batch(
        self, summary: SendSummary, info: BatchInfo, rows: Sequence[RecipientLike]
    ) -> Prepared:
        content, personalize = self.content, self.personalize
        if info.language in self.versions:  # the batch's language (else: before issue 12)
            content, personalize = self.versions[info.language]
        batch = Batch(
            issue_id=summary.issue_id,
            send_ref=str(summary.id),
            batch_ref=str(info.id),
            seq=info.seq,
            recipients=personalize.batch(rows),
            send_at=summary.send_at if summary.schedule_id else None,
            schedule_id=summary.schedule_id,
        )
        return self.backend.prepare(content, batch)

    def _deliver(
        self,
        summary: SendSummary,
        info: BatchInfo,
        rows: Sequence[RecipientLike],
        report: SendReport,
    ) -> None:
        """Post one batch until it is accepted or the send must stop; the bookkeeping
        around :meth:`_decide`."""
        prepared = self._batch(summary, info, rows)
        batch_id = info.id

        def leaving() -> None:
            self.ledger.mark_posting(batch_id)

        tries = _Tries()
        ambiguous = info.ambiguous_attempts > 0 or info.resent
        while True:
            delay = self.pacer.delay()
            if delay > 0:
                self._wait(delay, "pacing (--rate)")
            self._check_stop()  # nothing of this batch is out: it stays ready
            # The batch is marked as leaving by the backend itself, once the connection
            # is open and the request is about to be written: from then until the answer
            # is recorded, a crash leaves it unknown.  Every wait, and the connecting,
            # happen outside this window.
            self.pacer.mark()
            try:
                outcome = self.backend.post(prepared, leaving=leaving)
            except ProviderError as exc:
                no_answer = isinstance(exc, DeliveryUnknown)
                self.ledger.note_attempt(
                    info.id, ambiguous=no_answer, status=exc.status, error=exc.message
                )
                step = self._decide(exc, info, len(rows), tries)
                if isinstance(step, _Stop):
                    self.ledger.mark_unsent(info.id)  # failed, or unknown if it may have left
                    if no_answer:
                        report.unknown.append(info.seq)
                    raise step from None
                self._wait(step.seconds, step.reason)
                self._check_stop()  # the batch is ready (or unknown if resent)
                # A wait may be long (a 429 can ask for minutes): whoever unsubscribed
                # meanwhile is left out of the retry.
                kept = self._drop_suppressed(info, rows, report, maybe=ambiguous)
                if len(kept) != len(rows):
                    rows = kept
                    if not rows:
                        return  # everyone left; the ledger marked the batch skipped
                    prepared = self._batch(summary, info, rows)
                continue
            self.ledger.mark_sent(info.id, status=outcome.status, provider_id=outcome.provider_id)
            self._consecutive_failures = 0
            report.batches_sent += 1
            report.recipients_sent += len(rows)
            if ambiguous:
                report.maybe_twice.append(info.seq)
            self.progress.batch_done(info.seq, len(rows))
            return


def unknown_batches_error(
    summary: SendSummary, unknown: Sequence[BatchInfo], provider: str = "the provider"
) -> LedgerError:
    listing = ", ".join(f"batch {b.seq} ({b.recipients} recipients)" for b in unknown)
    return LedgerError(
        f"send #{summary.id} of {summary.issue_id}: {listing} posted without an answer; "
        f"{provider} may or may not have accepted " + ("it" if len(unknown) == 1 else "them"),
        hint="run again with --skip-unknown (never send those recipients this issue) or "
        "--resend-unknown (post them again: some may get the issue twice)",
    )
