"""What the send ledger records, in the project's words: states, and the rows it returns.

The meaning of every state is in :mod:`newsletter.ledger`'s docstring.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from .clock import utc_now_iso

AUDIENCE_ID_BITS = 32  # audience rowid = send id << 32 | position: a send's audience is one range
ROWS_PER_BATCH_ID = 4096  # > the 1,000 recipients a batch may hold

# Send states.
PLANNED = "planned"
SENDING = "sending"
PAUSED = "paused"
FAILED = "failed"
DONE = "done"
SCHEDULED = "scheduled"
CANCELLED = "cancelled"

TRANSITIONS: dict[str, frozenset[str]] = {
    PLANNED: frozenset({SENDING, FAILED, CANCELLED}),
    SENDING: frozenset({PAUSED, FAILED, DONE, SCHEDULED}),
    PAUSED: frozenset({SENDING, CANCELLED}),
    FAILED: frozenset({SENDING, CANCELLED}),
    SCHEDULED: frozenset({CANCELLED}),
    DONE: frozenset(),
    CANCELLED: frozenset(),
}
UNFINISHED = frozenset({PLANNED, SENDING, PAUSED, FAILED})

# Batch states.
B_READY = "ready"  # recipients committed; no request of it is out (not yet, or a retry waits)
B_POSTING = "posting"  # its request is leaving or in flight
B_SENT = "sent"  # the provider answered 2xx
B_FAILED = "failed"  # every attempt got a definite "no" and the send stopped: post again
B_UNKNOWN = "unknown"  # an attempt left and got no answer: may have been accepted
B_SKIPPED = "skipped"  # unknown and the user chose not to resend; or emptied by unsubscribes
B_CANCELLED = "cancelled"  # will not be delivered: cancelled at SendGrid, or abandoned unposted

# recipients.dropped: why a person is no longer in their batch.
R_IN = 0  # in the batch
R_DROPPED = 1  # unsubscribed before any attempt that could have reached them
R_DROPPED_MAYBE = 2  # unsubscribed before a resend; an earlier attempt may have reached them

# Batch states whose recipients may have received the issue.
MAY_HAVE = (B_SENT, B_POSTING, B_UNKNOWN, B_SKIPPED)
# Batch states that provably never reached the provider: a resume posts them without asking.
NOT_LEFT = (B_READY, B_FAILED)


def now_iso() -> str:
    """The time stamps the ledger records."""
    return utc_now_iso()


class RecipientLike(Protocol):
    """What the ledger stores and a send needs of a recipient (subscribers.Subscriber and
    RecipientRow both fit)."""

    @property
    def email(self) -> str: ...
    @property
    def name(self) -> str | None: ...
    @property
    def first_name(self) -> str | None: ...
    @property
    def language(self) -> str | None: ...
    @property
    def list_name(self) -> str: ...


@dataclass(frozen=True, slots=True)
class RecipientRow:
    """What the ledger keeps of one recipient: enough to post their batch again identically."""

    email: str
    name: str | None
    first_name: str | None
    language: str | None
    list_name: str


@dataclass(frozen=True)
class BatchInfo:
    id: int
    send_id: int
    seq: int
    state: str
    recipients: int
    attempts: int
    ambiguous_attempts: int
    resent: bool
    status: int | None
    provider_id: str | None
    error: str | None
    issue_id: str
    lists: tuple[str, ...]
    test: bool
    created_at: str
    finished_at: str | None
    language: str | None = None  # the issue's language it carries (None: sends before 12)


@dataclass(frozen=True)
class SendSummary:
    id: int
    issue_id: str
    lists: tuple[str, ...]
    tags: tuple[str, ...]
    backend: str
    state: str
    test: bool
    force_resend: bool
    subject: str
    content: str | None  # SHA-256 of what was sent (subject, HTML, text); None: older sends
    send_tz: str | None  # the time zone --send-at was given in (to show its time in it)
    planned_recipients: int
    send_at: int | None
    schedule_id: str | None
    error: str | None
    created_at: str
    updated_at: str
    batches: int
    batches_sent: int
    batches_failed: int
    batches_ready: int  # formed, not posted (a crash came before their request left)
    batches_unknown: int
    batches_skipped: int
    recipients_sent: int
    recipients_failed: int
    recipients_ready: int
    recipients_unknown: int
    recipients_skipped: int
    recipients_dropped: int  # taken out of a batch before its repost: they unsubscribed
    resent_batches: int
    running: bool
    languages: tuple[str, ...] = ()  # the languages it sends (empty: sends before issue 12)

    @property
    def recipients_batched(self) -> int:
        return (
            self.recipients_sent
            + self.recipients_failed
            + self.recipients_ready
            + self.recipients_unknown
            + self.recipients_skipped
        )

    @property
    def pending(self) -> int:
        """Recipients planned and not yet posted: neither sent, skipped, nor in a batch whose
        outcome is unknown (those are counted apart); none once the send is over."""
        if self.state in (DONE, SCHEDULED, CANCELLED):
            return 0
        settled = self.recipients_sent + self.recipients_skipped + self.recipients_unknown
        return max(0, self.planned_recipients - settled)


# A send's frozen audience: the people, and {list name: {"file", "sha256", "bytes"}}.
Audience = tuple[Iterable[RecipientLike], dict[str, dict[str, Any]]]
