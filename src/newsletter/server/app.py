"""The Starlette app of `newsletter serve`: its routes, middleware and error answers.

Endpoints are module-level functions that read what they need from
``request.app.state.context`` (:mod:`.context`); ``create_app`` builds that once,
mounts the routes (one ``/webhooks/<provider>`` per adapter in the registry) and
adds the middleware: :class:`PinnedHost` outside, then the keeper's merge retry.

A request we cannot handle gets a 4xx and one log line; storage trouble gets a
503 so the sender (a provider, or a reader's mail provider) tries again later.
"""

from __future__ import annotations

import traceback
from collections.abc import Sequence
from functools import partial
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..config import Workspace, newsletter_secrets
from ..esp.webhooks import webhook_adapters
from ..logmask import address_tag, tag_key
from .archive import ArchiveFiles
from .bodies import CLOSE, BodyTimeout, ClientGone
from .context import ServerContext, context
from .keeper import RetryPending, SuppressionKeeper
from .logs import client, log, mask_tokens
from .pages import Pages, language
from .preferences import preferences_page, preferences_post
from .readers import Readers
from .signup import confirm_page, confirm_post, subscribe_page, subscribe_post
from .unsubscribe import unsubscribe_page, unsubscribe_post
from .webhooks import receive_webhook


class PinnedHost:
    """The client's Host header never reaches the app, and no redirect names a host.

    Starlette builds the URL of a redirect (``/archive`` to ``/archive/``, ``/healthz/``
    to ``/healthz``, a folder of the archive) from the Host header, so a forged
    ``Host: evil.example`` would send the reader, or poison a cache, to another site.
    Every request is given the host of ``send.unsubscribe_url`` instead, and a
    redirect to that host is sent as a relative path under that URL's path (where
    the reverse proxy puts the server), so it is right both behind the proxy and on
    127.0.0.1.
    """

    def __init__(self, app: ASGIApp, public_url: str) -> None:
        self.app = app
        parts = urlsplit(public_url)
        self.netloc = parts.netloc.rpartition("@")[2]  # pydantic gives an IDN host as punycode
        self.host = self.netloc.encode("ascii", "replace")
        self.prefix = parts.path.rstrip("/")

    def relative(self, location: str) -> str:
        parts = urlsplit(location)
        if not (parts.scheme or parts.netloc) or parts.netloc != self.netloc:
            return location  # already relative, or deliberately elsewhere (we make none)
        path = self.prefix + "/" + parts.path.lstrip("/")  # never "//host": that is absolute
        return path + (f"?{parts.query}" if parts.query else "")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = [(k, v) for k, v in scope["headers"] if k.lower() != b"host"]
        scope = {**scope, "headers": [*headers, (b"host", self.host)]}

        async def send_relative(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {
                    **message,
                    "headers": [
                        (k, self.relative(v.decode("latin-1")).encode("latin-1"))
                        if k.lower() == b"location"
                        else (k, v)
                        for k, v in message.get("headers", [])
                    ],
                }
            await send(message)

        await self.app(scope, receive, send_relative)


# --- endpoints and error answers -------------------------------------------------------------


async def healthz(request: Request) -> Response:
    """For monitoring: 503 while a promised suppression is not yet in suppressions.csv."""
    ctx = context(request)
    problem = await run_in_threadpool(ctx.keeper.health)
    body: dict[str, object] = {"status": "ok", "webhook_key": ctx.webhook_keys}
    if problem is None:
        return JSONResponse(body, headers={"Cache-Control": "no-store"})
    body.update(status="error", problem=problem)
    return JSONResponse(body, 503, headers={"Cache-Control": "no-store"})


async def http_error(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    if status == 404 and not request.url.path.startswith("/webhooks/"):
        pages = context(request).pages
        return pages.render("not_found.html", language(pages, request), status=404)
    detail = exc.detail if isinstance(exc, HTTPException) else "error"
    log.info("%s %s: %d %s", request.method, mask_tokens(request.url.path), status, detail)
    return PlainTextResponse(str(detail), status_code=status)


async def body_timeout(request: Request, exc: Exception) -> Response:
    received, seconds = (
        (exc.received, exc.seconds)
        if isinstance(exc, BodyTimeout)
        else (0, context(request).body_seconds)
    )
    log.warning(
        "%s %s: 408 body not complete after %g s (%d bytes received, Content-Length %s)"
        " from %s; connection closed (server.request_timeout)",
        request.method,
        mask_tokens(request.url.path),
        seconds,
        received,
        request.headers.get("content-length", "not given"),
        client(request),
    )
    if request.url.path.startswith("/webhooks/"):
        return JSONResponse({"error": "request body not received in time"}, 408, headers=CLOSE)
    return PlainTextResponse("request body not received in time", 408, headers=CLOSE)


async def client_gone(request: Request, exc: Exception) -> Response:
    received = f" after {exc.received} bytes" if isinstance(exc, ClientGone) else ""
    log.info(
        "%s %s: the client closed the connection%s, before its request was complete",
        request.method,
        mask_tokens(request.url.path),
        received,
    )
    return Response(status_code=400)  # never sent: there is nobody left to read it


async def server_error(request: Request, exc: Exception) -> Response:
    log.error(
        "%s %s: 500\n%s",
        request.method,
        mask_tokens(request.url.path),
        mask_tokens("".join(traceback.format_exception(exc)).rstrip()),
    )
    return PlainTextResponse("internal error", status_code=500)


# --- the app ---------------------------------------------------------------------------------


def create_app(ws: Workspace, keys: Sequence[bytes] | None = None) -> Starlette:
    """The ASGI app for `newsletter serve`; raises ConfigError for a bad setting or key.

    ``keys``: the unsubscribe keys to trust (default: NEWSLETTER_SECRET's; `serve
    --dev-key` adds the outbox's development key).  Merges the suppressions an earlier
    run could not write before it returns.
    """
    keys = list(keys) if keys is not None else newsletter_secrets()
    tag = partial(address_tag, key=tag_key(keys))  # a key derived from, never equal to, a token key
    webhooks = webhook_adapters(ws)
    pages = Pages.load(ws)
    ctx = ServerContext(
        keys=keys,
        tag=tag,
        pages=pages,
        keeper=SuppressionKeeper(ws, tag),
        webhooks=webhooks,
        max_body=ws.config.server.max_body_bytes,
        body_seconds=ws.config.server.request_timeout,
        readers=Readers.load(ws, keys, pages),
    )
    routes: list[BaseRoute] = [
        Route("/u/{token}", unsubscribe_page, methods=["GET"]),
        Route("/u/{token}", unsubscribe_post, methods=["POST"]),
        Route("/p/{token}", preferences_page, methods=["GET"]),
        Route("/p/{token}", preferences_post, methods=["POST"]),
        Route("/subscribe", subscribe_page, methods=["GET"]),
        Route("/subscribe", subscribe_post, methods=["POST"]),
        Route("/confirm/{token}", confirm_page, methods=["GET"]),
        Route("/confirm/{token}", confirm_post, methods=["POST"]),
        *(
            Route(
                f"/webhooks/{provider}",
                partial(receive_webhook, provider=provider),
                methods=["POST"],
            )
            for provider in webhooks
        ),
        Route("/healthz", healthz, methods=["GET"]),
        Mount("/archive", app=ArchiveFiles(ws.root / "archive-site")),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={
            HTTPException: http_error,
            BodyTimeout: body_timeout,
            ClientGone: client_gone,
            ClientDisconnect: client_gone,
            500: server_error,
        },
        middleware=[
            Middleware(PinnedHost, public_url=str(ws.config.send.unsubscribe_url)),
            Middleware(RetryPending, keeper=ctx.keeper),
        ],
    )
    app.state.context = ctx
    return app
