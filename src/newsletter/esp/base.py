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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, ClassVar

from ..errors import ConfigError, ProviderUnavailable

if TYPE_CHECKING:
    from ..config import Workspace
    from .settings import ProviderSettings

# Correlation keys attached to every message (SendGrid: custom_args); values are strings
# and carry no personal data.  Webhook events come back with them, which is how an event
# finds its issue, list, send and batch in the ledger.
KEY_ISSUE = "nl_issue"
KEY_LIST = "nl_list"
KEY_SEND = "nl_send"
KEY_BATCH = "nl_batch"
CORRELATION_KEYS = (KEY_ISSUE, KEY_LIST, KEY_SEND, KEY_BATCH)

# The most recipients the send engine puts in one batch (it holds them in memory and in
# one ledger transaction).  A backend may take fewer per request: Capabilities.max_batch.
MAX_BATCH = 1000


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
    dry_run: bool = False  # a rehearsal: a backend that writes files keeps them apart


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


def duration(span: timedelta) -> str:
    """72 hours, 10 minutes, 90 seconds: a provider's limit in a message."""
    seconds = int(span.total_seconds())
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0 and (unit != "day" or seconds > 3 * 86400):
            count = seconds // size
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{seconds} second{'s' if seconds != 1 else ''}"


@dataclass(frozen=True)
class Scheduling:
    """A provider that holds messages until a given time, and can call them off."""

    max_ahead: timedelta  # how far ahead a send may be scheduled
    cancel_margin: timedelta  # a schedule cannot be cancelled later than this before its time


@dataclass(frozen=True)
class Capabilities:
    """What a backend can do.  A setting that asks for something its backend cannot do is
    a configuration error naming the setting (:func:`newsletter.esp.registry.check_support`),
    never silently ignored: a send that the user believes is scheduled, sandboxed or
    tracked must be exactly that."""

    max_batch: int  # recipients per request at most
    scheduling: Scheduling | None = None  # None: cannot schedule (--send-at)
    substitutions: bool = False  # per-recipient placeholder values within one request
    sandbox: bool = False  # a mode in which the provider accepts messages but delivers none
    tracking: bool = False  # open and click tracking (send.open_tracking, send.click_tracking)
    delivers: bool = True  # False: nothing leaves this machine (the outbox writes files)

    def __post_init__(self) -> None:
        if not 1 <= self.max_batch <= MAX_BATCH:
            raise ValueError(f"max_batch must be 1..{MAX_BATCH} (the engine's largest batch)")


class Backend(ABC):
    """Posts batches of one issue; may schedule and cancel a send for later.

    A backend class is found by name in :mod:`newsletter.esp.registry`, declares its
    :class:`Capabilities` and, if it has settings of its own, the model of its table in
    ``newsletter.toml`` (``settings_model``), and builds itself with :meth:`from_workspace`.
    """

    name: str = "backend"  # as the user names it (--backend, the ledger)
    label: str = "the provider"  # as messages name it: "SendGrid may or may not have it"
    capabilities: ClassVar[Capabilities] = Capabilities(max_batch=1)
    # The model of the backend's own table in newsletter.toml ([sendgrid]), if it has one.
    settings_model: ClassVar[type[ProviderSettings] | None] = None

    @classmethod
    @abstractmethod
    def from_workspace(cls, ws: Workspace) -> Backend:
        """The backend as the workspace configures it (settings, secrets from the environment)."""

    @classmethod
    def chosen_by_auto(cls) -> bool:
        """Whether `send.backend = "auto"` picks this backend (e.g. its API key is set);
        auto takes the first such backend in the registry's order."""
        return False

    @classmethod
    def check_send_at(cls, when: datetime, now: datetime, shown: str | None = None) -> None:
        """Refuse a time this backend cannot schedule (ConfigError naming --send-at);
        ``shown``: the time as the user wrote it."""
        scheduling = cls.capabilities.scheduling
        if scheduling is None:
            raise ConfigError(
                f"--send-at: {cls.label} cannot schedule a send",
                key="--send-at",
                hint="leave out --send-at and run the send when it should go out, or use a "
                "backend that can schedule (--backend)",
            )
        if when - now > scheduling.max_ahead:
            ahead = duration(scheduling.max_ahead)
            raise ConfigError(
                f"--send-at {shown or when.isoformat()!r} is more than {ahead} ahead",
                key="--send-at",
                hint=f"{cls.label} schedules at most {ahead} in advance",
            )

    def clear(self, issue_id: str) -> None:  # noqa: B027 - optional hook
        """Forget what an earlier run of a new send (or dry run) of the issue left on this
        machine (the outbox's files); a provider keeps nothing here."""

    @abstractmethod
    def describe(self) -> str:
        """One line for the send plan: where the messages go."""

    @abstractmethod
    def send_batch(self, content: IssueContent, batch: Batch) -> Outcome:
        """Post one batch; raise a ProviderError subclass if it was not accepted."""

    def prepare(self, content: IssueContent, batch: Batch) -> Prepared:
        """Everything before the request leaves (encoding); the default does nothing."""
        return Prepared(content, batch)

    def post(self, prepared: Prepared, leaving: Callable[[], None] | None = None) -> Outcome:
        """Post a prepared batch; the default posts it with :meth:`send_batch`.

        ``leaving`` is called once, at the last moment before the request can reach the
        provider (a backend that talks to a server calls it when the connection is open
        and the request is about to be written), so that the send records a batch as
        "may have been received" only from then on: a crash while connecting, or a
        refused connection, leaves nothing in doubt.
        """
        if leaving is not None:
            leaving()
        return self.send_batch(prepared.content, prepared.batch)

    @abstractmethod
    def create_schedule(self) -> str:
        """Reserve an id that groups the requests of a scheduled send (for cancelling it)."""

    @abstractmethod
    def cancel_schedule(self, schedule_id: str) -> None:
        """Cancel every message of a scheduled send before its time."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections or files."""
