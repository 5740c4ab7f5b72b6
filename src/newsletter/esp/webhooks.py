"""What `newsletter serve` needs from a provider's event webhook, and which providers have one.

The server knows no provider's headers, signature scheme or field names: for each
adapter that :func:`webhook_adapters` returns it mounts ``POST /webhooks/<provider>``,
and a request there goes through the same steps whatever the provider:

1. ``configured`` false: 503 before anything is read (the provider retries later);
2. the body is read (size and time limits are the server's);
3. :meth:`WebhookAdapter.verify` raises :class:`WebhookRefused` for anything not
   genuine and fresh: 403, and nothing of the body is even decoded;
4. :meth:`WebhookAdapter.parse` turns it into events (:class:`BatchError`: 400);
   items it cannot use are listed in ``skipped``, never fatal to the batch;
5. the server stores the events once each and turns those with ``suppress`` set into
   suppressions (source ``<provider>-webhook:<kind>``) before it answers.

Adding a provider: a module in ``esp/`` with a function that takes the workspace and
returns its adapter (``webhook_adapter(ws)``), and one line in ``registry.WEBHOOKS``.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from ..config import Workspace
from ..events import Event


class WebhookRefused(Exception):
    """Not a genuine, fresh request from the provider (answered 403); the reason is logged."""


class BatchError(ValueError):
    """A verified body that is not a batch of events at all (answered 400)."""


@dataclass
class ParsedBatch:
    events: list[Event] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # one line per item we could not use


class WebhookAdapter(Protocol):
    """One provider's event webhook, as the server uses it."""

    @property
    def provider(self) -> str:
        """The provider's name: the route ``/webhooks/<provider>``, Event.provider."""

    @property
    def label(self) -> str:
        """The provider as messages name it ("SendGrid")."""

    @property
    def key_env(self) -> str:
        """The environment variable holding the verification key (named when it is missing)."""

    @property
    def configured(self) -> bool:
        """Whether requests can be verified; if not, the route answers 503."""

    def verify(self, headers: Mapping[str, str], body: bytes) -> None:
        """Return if the request is genuine and fresh, else raise WebhookRefused(reason)."""

    def parse(self, body: bytes) -> ParsedBatch:
        """The events of a verified body; raise BatchError if it is not a batch."""


def webhook_adapters(ws: Workspace) -> dict[str, WebhookAdapter]:
    """An adapter for every provider in ``registry.WEBHOOKS``, by provider name.

    Raises ConfigError for a provider whose setting is wrong (a key that is not a
    key): the server must not start half able to verify.
    """
    from .registry import WEBHOOKS

    adapters: dict[str, WebhookAdapter] = {}
    for provider, target in WEBHOOKS.items():
        module, _, function = target.partition(":")
        adapter: WebhookAdapter = getattr(importlib.import_module(module), function)(ws)
        if adapter.provider != provider:  # the route and the stored events must agree
            raise ValueError(f"{target}: an adapter for {adapter.provider!r}, not {provider!r}")
        adapters[provider] = adapter
    return adapters
