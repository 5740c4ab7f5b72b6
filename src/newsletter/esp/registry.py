"""The backends a send can use, by name: the one place that knows which exist.

A new provider is a module in ``esp/`` and one line in :data:`BACKENDS`.
"""

from __future__ import annotations

import os

from ..config import SENDGRID_HOST_ENV, SENDGRID_KEY_ENV, Workspace, env_secret
from ..errors import ConfigError
from .base import Backend


def open_backend(ws: Workspace, requested: str | None = None) -> Backend:
    """The backend named (or config send.backend); auto = SendGrid if its API key is set."""
    cfg = ws.config.send
    name = requested or cfg.backend
    key = env_secret(SENDGRID_KEY_ENV, required=False, header=True)
    if name == "auto":
        name = "sendgrid" if key else "outbox"
    if name == "sendgrid":
        from .sendgrid import SendGridBackend

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
        from .outbox import OutboxBackend

        return OutboxBackend(ws.outbox_dir, cfg)
    raise ConfigError(
        f"unknown backend {name!r}", key="send.backend", hint="use auto, sendgrid or outbox"
    )
