"""The backends a send can use, by name: the one place that knows which exist.

A new provider is a module in ``esp/`` and one line in :data:`BACKENDS`.  Modules are
imported only when a backend is used (or its settings table is read), so that the
CLI starts fast and a provider's dependencies cost nothing to those who do not use it.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING

from ..errors import ConfigError
from .base import Backend
from .settings import ProviderSettings

if TYPE_CHECKING:
    from ..config import Workspace

# name (as --backend, send.backend and the ledger say it) -> "module:class".  The order
# is auto's order of preference: the first whose chosen_by_auto() is true.
BACKENDS: dict[str, str] = {
    "sendgrid": "newsletter.esp.sendgrid:SendGridBackend",
    "outbox": "newsletter.esp.outbox:OutboxBackend",
}
AUTO = "auto"


def backend_choices() -> list[str]:
    """What --backend and send.backend accept."""
    return [AUTO, *BACKENDS]


def backend_class(name: str) -> type[Backend]:
    """The class of a registered backend (imports its module)."""
    target = BACKENDS.get(name)
    if target is None:
        raise ConfigError(
            f"unknown backend {name!r}",
            key="send.backend",
            hint=f"use {', '.join(backend_choices())}",
        )
    module, _, attr = target.partition(":")
    cls: type[Backend] = getattr(importlib.import_module(module), attr)
    return cls


def settings_models(only: Iterable[str] | None = None) -> list[type[ProviderSettings]]:
    """The settings models of the backends (``only`` these names), for reading their tables."""
    models: list[type[ProviderSettings]] = []
    for name in BACKENDS if only is None else only:
        model = backend_class(name).settings_model
        if model is not None and model not in models:
            models.append(model)
    return models


def resolve(requested: str | None, ws: Workspace) -> type[Backend]:
    """The backend class named (or by send.backend); auto: the first that is configured."""
    name = requested or ws.config.send.backend
    if name == AUTO:
        for candidate in BACKENDS:
            cls = backend_class(candidate)
            if cls.chosen_by_auto():
                return cls
        raise ConfigError("no backend is ready to send", key="send.backend")  # pragma: no cover
    return backend_class(name)


def open_backend(ws: Workspace, requested: str | None = None) -> Backend:
    """The backend named (or config send.backend), built from the workspace."""
    return resolve(requested, ws).from_workspace(ws)


def check_support(
    ws: Workspace, backend: Backend, *, send_at: datetime | None, now: datetime
) -> int:
    """Refuse, naming the setting, whatever the send asks that ``backend`` cannot do;
    returns the batch size to use (send.batch_size, or the backend's most).

    Never silently ignored: a batch size the provider refuses, a schedule it cannot
    keep, tracking it cannot do, or a sandbox switched on in another provider's table
    (the messages would really be delivered).
    """
    caps = backend.capabilities
    cfg = ws.config.send
    limit = caps.max_batch if caps.substitutions else 1
    size = cfg.batch_size or limit
    if size > limit:
        why = (
            f" is more than {backend.label} takes in one request ({limit:,} recipients)"
            if caps.substitutions
            else f", but {backend.label} cannot personalise several recipients in one request"
        )
        raise ConfigError(
            f"send.batch_size = {size:,}{why}",
            key="send.batch_size",
            hint=f"set batch_size = {limit} (or less) under [send] in newsletter.toml",
        )
    if send_at is not None:
        backend.check_send_at(send_at, now)
    if not caps.tracking and (cfg.open_tracking or cfg.click_tracking):
        key = "send.open_tracking" if cfg.open_tracking else "send.click_tracking"
        raise ConfigError(
            f"{key} is on, but {backend.label} cannot track opens or clicks",
            key=key,
            hint="set open_tracking = false and click_tracking = false under [send]",
        )
    if caps.delivers:
        own = backend.settings_model.table if backend.settings_model else None
        for table, settings in ws.config.provider_tables.items():
            if settings.sandbox_requested and table != own:
                key = f"{table}.{settings.sandbox_key}"
                raise ConfigError(
                    f"{key} is on, but the messages go through {backend.label}, which does not "
                    "read it: they would really be delivered",
                    key=key,
                    hint=f"set {settings.sandbox_key} = false under [{table}], or send "
                    f"through the backend [{table}] belongs to",
                )
    return size


# Event webhooks: provider -> "module:function", the function taking the workspace and
# returning the provider's WebhookAdapter (esp/webhooks.py).  `newsletter serve` mounts
# POST /webhooks/<provider> for each.
WEBHOOKS: dict[str, str] = {
    "sendgrid": "newsletter.esp.sendgrid_events:webhook_adapter",
}
