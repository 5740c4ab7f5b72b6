"""`newsletter serve`: the unsubscribe pages, the providers' event webhooks and the archive.

The command only sets up logging (every line through the token mask), binds the
socket and prints where it listens; the server itself is :mod:`newsletter.server`.
"""

from __future__ import annotations

import logging
import socket
from typing import Annotated

import typer

from ..errors import ConfigError, NewsletterError
from . import app, err_console, state
from .plain_help import PlainHelp, check_port


def _listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket made the way asyncio makes its own.

    Its protocol must say TCP: asyncio sets TCP_NODELAY only on such sockets, and
    without it every answer waits ~40 ms for a delayed ACK.
    """
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    return sock


LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")

DEV_KEY_LOG = (
    "DEVELOPMENT KEY: unsubscribe links signed with the public development key (outbox "
    "sends made without NEWSLETTER_SECRET) are accepted. Anyone can make such links: "
    "never run --dev-key where readers' links arrive"
)


def _keys(dev_key: bool, host: str) -> list[bytes] | None:
    """The unsubscribe keys to trust: NEWSLETTER_SECRET's, plus the development key with
    --dev-key (only on this computer: the key is public, so anyone could forge links)."""
    from ..config import SECRET_ENV, env_secret, newsletter_secrets
    from ..personalize import DEV_SECRET

    if not dev_key:
        if env_secret(SECRET_ENV, required=False) is None:
            raise ConfigError(
                f"environment variable {SECRET_ENV} is not set: the server needs the key "
                "your sends signed their unsubscribe links with",
                key=SECRET_ENV,
                hint=f"export {SECRET_ENV}=... (the same as for `newsletter send`); to try the "
                "server on this computer with links from the outbox, run "
                "`newsletter serve --dev-key`",
            )
        return None
    if host not in LOOPBACK:
        raise ConfigError(
            f"--dev-key serves only this computer (--host 127.0.0.1), not {host}",
            key="--dev-key",
            hint="the development key is public: anyone could make links that unsubscribe "
            f"your readers; set {SECRET_ENV} instead",
        )
    real = newsletter_secrets() if env_secret(SECRET_ENV, required=False) else []
    return [*real, DEV_SECRET]


@app.command(cls=PlainHelp)
def serve(
    host: Annotated[
        str | None,
        typer.Option(
            metavar="ADDRESS", help="Address to listen on (default: server.host, 127.0.0.1)."
        ),
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(
            metavar="PORT",
            show_default=False,
            help="Port to listen on (default: server.port, 8000; 0: any free port, printed).",
        ),
    ] = None,
    dev_key: Annotated[
        bool,
        typer.Option(
            "--dev-key",
            help="Also accept links signed with the development key (outbox sends made "
            "without NEWSLETTER_SECRET); for trying it on this computer only.",
        ),
    ] = False,
) -> None:
    """Run the unsubscribe pages, webhooks and archive.

    One web app: one-click unsubscribe pages, the provider's event webhook, and the
    archive site. Needs NEWSLETTER_SECRET, or --dev-key to try it on this computer.
    """
    from ..server import TokenMask, context_of, create_app, serve_forever

    ws = state.workspace()
    cfg = ws.config.server
    host = host or cfg.host
    check_port(port)
    port = cfg.port if port is None else port
    keys = _keys(dev_key, host)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # Unsubscribe URLs carry the reader's address (inside the token): every line that
    # reaches the log, ours or uvicorn's, goes through the mask.  No access log at all.
    for handler in logging.getLogger().handlers:
        handler.addFilter(TokenMask())
    if dev_key:  # the first line of the log, so nobody misses it
        logging.getLogger("newsletter.server").warning(DEV_KEY_LOG)
    application = create_app(ws, keys)
    # We bind the socket ourselves and hand it to uvicorn: a clear message instead of
    # uvicorn's traceback-ish one, no gap between checking the port and using it, and
    # the real port when --port 0 let the system choose.
    try:
        sock = _listen(host, port)
    except OSError as exc:
        raise NewsletterError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}",
            hint="check --host (or server.host in newsletter.toml)"
            if isinstance(exc, socket.gaierror)
            else "another program may be using the port; choose another with --port",
        ) from None
    bound = int(sock.getsockname()[1])
    for provider, adapter in context_of(application).webhooks.items():
        if not adapter.configured:
            err_console.print(
                f"warning: {adapter.key_env} is not set; /webhooks/{provider}"
                " will answer 503 until it is",
                markup=False,
            )
    shown = f"[{host}]" if ":" in host else host
    err_console.print(  # one line, never wrapped: scripts read the URL (and port) from it
        f"serving {ws.root} on http://{shown}:{bound}/  (Ctrl+C to stop)",
        markup=False,
        soft_wrap=True,
    )
    serve_forever(application, sock, cfg)  # deadlines, connection cap: see server/http.py
