"""The email backend interface, in the project's own words: issues, recipients and batches.

A backend turns one :class:`Batch` of an issue into whatever its provider
wants (a SendGrid v3 request, files in an outbox folder) and reports an
:class:`Outcome` or raises one of the provider errors from
:mod:`newsletter.errors`.  Nothing outside ``esp/`` knows a provider's field
names, so the send loop can be tested against any backend and a new provider
is one new module.

Errors a backend raises, and what the send loop does with them:

- :class:`~newsletter.errors.ProviderRejected`: stop the send; repeating cannot help.
- :class:`~newsletter.errors.ProviderUnavailable`: a definite "not now" (429, 5xx, or
  the request never left: connection refused, DNS, connect timeout): nothing was
  accepted, retry after a backoff.
- :class:`DeliveryUnknown` (a ProviderUnavailable): the request left and no answer came
  (timeout waiting for it, connection dropped after sending): the provider may have
  accepted it.  Retrying may deliver twice, so it is never retried automatically: the
  batch is recorded as unknown and the send pauses until the user chooses.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..errors import ProviderUnavailable

# Correlation keys attached to every message (SendGrid: custom_args); values are strings
# and carry no personal data.  Webhook events come back with them, which is how an event
# finds its issue, list, send and batch in the ledger.
KEY_ISSUE = "nl_issue"
KEY_LIST = "nl_list"
KEY_SEND = "nl_send"
KEY_BATCH = "nl_batch"
CORRELATION_KEYS = (KEY_ISSUE, KEY_LIST, KEY_SEND, KEY_BATCH)

MAX_BATCH = 1000  # recipients per request: SendGrid's limit on personalizations


class DeliveryUnknown(ProviderUnavailable):
    """The request left and no answer came back: the provider may have accepted it."""


@dataclass(frozen=True)
class IssueContent:
    """What is the same for every recipient of an issue."""

    issue_id: str
    subject: str
    html: str
    text: str
    from_email: str
    from_name: str
    reply_to: str | None = None
    test: bool = False


@dataclass(slots=True)
class Recipient:
    """One person in a batch, with their placeholder values and their own headers.

    Not frozen only because a frozen dataclass is four times slower to create, and a
    large send creates one per recipient; nothing modifies it.
    """

    email: str
    name: str | None
    list_name: str
    values: Mapping[str, str]  # placeholder -> value (first name, unsubscribe URL, ...)
    headers: Mapping[str, str]  # List-Unsubscribe and List-Unsubscribe-Post


@dataclass(frozen=True)
class Batch:
    """Up to :data:`MAX_BATCH` recipients posted as one request."""

    issue_id: str
    send_ref: str  # the ledger's send id, as a string
    batch_ref: str  # the ledger's batch id, as a string
    seq: int  # 1-based position in the send, for file names and messages
    recipients: Sequence[Recipient]
    send_at: int | None = None  # unix time for a scheduled send
    schedule_id: str | None = None  # the provider's id that lets a scheduled send be cancelled

    def correlation(self, recipient: Recipient) -> dict[str, str]:
        return {
            KEY_ISSUE: self.issue_id,
            KEY_LIST: recipient.list_name,
            KEY_SEND: self.send_ref,
            KEY_BATCH: self.batch_ref,
        }


@dataclass(frozen=True)
class Outcome:
    """The provider accepted a batch."""

    status: int
    provider_id: str | None = None  # e.g. SendGrid's X-Message-Id
    detail: str = ""


@dataclass(frozen=True)
class Prepared:
    """A batch made ready to post (a backend may keep its encoded request in ``body``).

    Preparing is separate from posting so that the send marks a batch as leaving
    only when nothing but the network is left to do: the window in which a crash
    makes a batch "unknown" is as short as it can be.
    """

    content: IssueContent
    batch: Batch
    body: bytes | None = None


class Backend(ABC):
    """Posts batches of one issue; may schedule and cancel a send for later."""

    name: str = "backend"  # as the user names it (--backend, the ledger)
    label: str = "the provider"  # as messages name it: "SendGrid may or may not have it"

    @abstractmethod
    def describe(self) -> str:
        """One line for the send plan: where the messages go."""

    @abstractmethod
    def send_batch(self, content: IssueContent, batch: Batch) -> Outcome:
        """Post one batch; raise a ProviderError subclass if it was not accepted."""

    def prepare(self, content: IssueContent, batch: Batch) -> Prepared:
        """Everything before the request leaves (encoding); the default does nothing."""
        return Prepared(content, batch)

    def post(self, prepared: Prepared) -> Outcome:
        """Post a prepared batch; the default posts it with :meth:`send_batch`."""
        return self.send_batch(prepared.content, prepared.batch)

    @abstractmethod
    def create_schedule(self) -> str:
        """Reserve an id that groups the requests of a scheduled send (for cancelling it)."""

    @abstractmethod
    def cancel_schedule(self, schedule_id: str) -> None:
        """Cancel every message of a scheduled send before its time."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections or files."""
