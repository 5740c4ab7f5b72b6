"""Commands that close the loop after a send: serve and report."""

from __future__ import annotations

import enum
import json
import logging
import socket
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from ..errors import NewsletterError
from . import app, console, err_console, state


class Format(enum.StrEnum):
    text = "text"
    json = "json"


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
    from ..server import TokenMask, create_app, serve_forever

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
    if not application.state.loop.verifier.configured:
        err_console.print(
            "warning: SENDGRID_WEBHOOK_PUBLIC_KEY is not set; /webhooks/sendgrid"
            " will answer 503 until it is",
            markup=False,
        )
    shown = f"[{host}]" if ":" in host else host
    err_console.print(  # one line, never wrapped: scripts read the URL (and port) from it
        f"serving {ws.root} on http://{shown}:{bound}/  (Ctrl+C to stop)",
        markup=False,
        soft_wrap=True,
    )
    serve_forever(application, sock, cfg)  # deadlines, connection cap: see server.py


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f} %"


@app.command()
def report(
    issue: Annotated[
        str | None,
        typer.Argument(
            help="Issue id or file (2019-09 or issues/2019-09.yaml); default: the"
            " issue with the latest events."
        ),
    ] = None,
    format: Annotated[
        Format, typer.Option("--format", help="text, or json for scripts.")
    ] = Format.text,
) -> None:
    """How an issue did: deliveries, bounces, opens, clicks, unsubscribes, with a chart."""
    from ..issue import issue_id_of
    from ..report import build_report, write_chart

    ws = state.workspace()
    result = build_report(ws, issue_id_of(issue) if issue else None)
    chart = write_chart(ws, result)
    if format is Format.json:
        data = result.as_dict()
        data["chart"] = str(chart)
        console.print_json(json.dumps(data, ensure_ascii=False))
        return
    rates = result.rates()
    table = Table(title=f"Issue {result.issue_id}", title_justify="left")
    table.add_column("", style="bold")
    table.add_column("addresses", justify="right")
    table.add_column("rate", justify="right")
    table.add_column("of", style="dim")
    table.add_row("sent", str(result.sent), "", "")
    for key, label, base in (
        ("delivered", "delivered", "sent"),
        ("deferred", "deferred (retried)", "sent"),
        ("bounced", "bounced", "sent"),
        ("blocked", "blocked (temporary)", "sent"),
        ("dropped", "dropped", "sent"),
        ("unique_opens", "opened", "delivered"),
        ("machine_opens", "machine opens only", "delivered"),
        ("unique_clicks", "clicked", "delivered"),
        ("unsubscribes", "unsubscribed", "delivered"),
        ("spam_reports", "reported as spam", "delivered"),
    ):
        table.add_row(label, str(getattr(result, key)), _percent(rates[key]), base)
    table.add_row("click-to-open", "", _percent(rates["click_to_open"]), "opened")
    console.print(table)
    if result.top_links:
        links = Table(title="Top links", title_justify="left")
        links.add_column("clicked by", justify="right")
        links.add_column("clicks", justify="right")
        links.add_column("link", overflow="fold")
        for link in result.top_links:
            links.add_row(str(link.unique), str(link.total), Text(link.url))  # no markup
        console.print(links)
    console.print(f"chart: {chart}", markup=False)
