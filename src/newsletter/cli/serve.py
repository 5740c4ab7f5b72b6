"""`newsletter serve`: the unsubscribe pages, the providers' event webhooks and the archive.

The command only sets up logging (every line through the token mask), binds the
socket and prints where it listens; the server itself is :mod:`newsletter.server`.
"""

from __future__ import annotations

import logging
import socket
from typing import Annotated

import typer

from ..errors import NewsletterError
from . import app, err_console, state


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


@app.command()
def serve(
    host: Annotated[
        str | None, typer.Option(help="Address to listen on (default: server.host, 127.0.0.1).")
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(
            min=0,
            max=65535,
            help="Port to listen on (default: server.port, 8000; 0: any free port, printed).",
        ),
    ] = None,
) -> None:
    """Run the one-click unsubscribe pages, the SendGrid event webhook and the archive."""
    from ..server import TokenMask, context_of, create_app, serve_forever

    ws = state.workspace()
    cfg = ws.config.server
    host = host or cfg.host
    port = cfg.port if port is None else port
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # Unsubscribe URLs carry the reader's address (inside the token): every line that
    # reaches the log, ours or uvicorn's, goes through the mask.  No access log at all.
    for handler in logging.getLogger().handlers:
        handler.addFilter(TokenMask())
    application = create_app(ws)
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
