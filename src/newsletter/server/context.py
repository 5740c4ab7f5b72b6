"""What every endpoint reads: made once by ``create_app``, kept as ``app.state.context``.

Endpoints are plain module-level functions; they find the workspace's keys, pages,
limits, webhook adapters and the :class:`SuppressionKeeper` here, through
:func:`context`, instead of closing over them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request

from ..esp.webhooks import WebhookAdapter
from .keeper import SuppressionKeeper
from .pages import Pages
from .readers import Readers


@dataclass(frozen=True)
class ServerContext:
    keys: Sequence[bytes]  # NEWSLETTER_SECRET's keys: which unsubscribe tokens to trust
    tag: Callable[[str], str]  # an address as log lines show it: a keyed tag (.logmask)
    pages: Pages
    keeper: SuppressionKeeper
    webhooks: Mapping[str, WebhookAdapter]  # provider -> adapter, one route each
    max_body: int  # server.max_body_bytes, for webhook batches
    body_seconds: float  # server.request_timeout, for every body
    readers: Readers | None = None  # sign-up and preferences (.readers)

    @property
    def webhook_keys(self) -> bool:
        """Whether every webhook can verify its requests (the health check's webhook_key)."""
        return all(adapter.configured for adapter in self.webhooks.values())


def context_of(app: Any) -> ServerContext:
    """The context of an app made by ``create_app``."""
    found = app.state.context
    if not isinstance(found, ServerContext):
        raise TypeError("not an app made by newsletter.server.create_app")
    return found


def context(request: Request) -> ServerContext:
    return context_of(request.app)
