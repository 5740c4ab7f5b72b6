"""``/u/{token}``: one-click unsubscribe (RFC 8058) and the page a person sees.

* ``GET`` shows a confirmation page in the reader's language; a GET never
  unsubscribes, because mail scanners and link previews follow every link.
* ``POST`` with the body ``List-Unsubscribe=One-Click`` (urlencoded or multipart),
  from a mailbox provider or the page's button, unsubscribes: the suppression is on
  disk (fsynced) before the 200.  Any other POST shows the page with the button.

An invalid token, known address or not, gets the same 404 page, so nothing tells
one from the other.  A test copy's token (``--test-to``) gets a page saying so, to a
GET and a POST alike, and nothing is recorded anywhere: the colleague who checks the
link stays subscribed to every list.
"""

from __future__ import annotations

import json
import time

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from ..addresses import suppression_key
from ..errors import NewsletterError, TokenError
from ..events import Event
from ..logmask import masked
from ..tokens import Unsubscribe, verify_token
from .bodies import CLOSE, BodyTooLarge, form_fields, read_body
from .context import ServerContext, context
from .keeper import SuppressionKeeper
from .logs import client, log
from .pages import language

FORM_MAX_BYTES = 16_384  # the one-click body is 26 bytes; the page's form a few more
ONE_CLICK_SOURCE = "one-click"


def _token_of(ctx: ServerContext, request: Request) -> Unsubscribe | None:
    try:
        return verify_token(str(request.path_params.get("token", "")), ctx.keys)
    except TokenError:
        return None


def one_click(keeper: SuppressionKeeper, who: Unsubscribe, source: str = ONE_CLICK_SOURCE) -> bool:
    """Record an unsubscribe; True if the address was not already suppressed.
    ``source``: "one-click", or "preferences" ("leave everything" on /p/)."""
    email = suppression_key(who.email)
    event = Event(
        event_id=f"{source}:{who.list_name}:{email}",
        provider=source,
        kind="unsubscribe",
        email=email,
        at=int(time.time()),
        list_name=who.list_name,
        raw=json.dumps({"list": who.list_name, "email": email}),
    )
    return keeper.add_unsubscribe(event, who.email, source)


async def unsubscribe_page(request: Request) -> Response:
    ctx = context(request)
    lang = language(ctx.pages, request)
    who = _token_of(ctx, request)
    if who is None:
        log.info("unsubscribe page: 404 invalid token from %s", client(request))
        return ctx.pages.render("not_found.html", lang, status=404)
    if who.test:
        log.info("unsubscribe page: test copy link, nothing to do")
        return ctx.pages.render("test_copy.html", lang, email=masked(who.email))
    return ctx.pages.render("confirm.html", lang, email=masked(who.email))


async def unsubscribe_post(request: Request) -> Response:
    ctx = context(request)
    pages = ctx.pages
    who = _token_of(ctx, request)
    if who is None:
        log.warning("unsubscribe: 404 invalid token from %s", client(request))
        return pages.render("not_found.html", language(pages, request), status=404)
    if who.test:  # a test copy's link: say so, record nothing (not even a one-click POST)
        log.info("unsubscribe: test copy link from %s, nothing recorded", client(request))
        lang = language(pages, request)
        return pages.render("test_copy.html", lang, email=masked(who.email))
    try:
        body = await read_body(request, FORM_MAX_BYTES, ctx.body_seconds)
    except BodyTooLarge:
        log.warning("unsubscribe: 413 body over %d bytes", FORM_MAX_BYTES)
        return PlainTextResponse("request body too large", 413, headers=CLOSE)
    form = form_fields(request.headers.get("content-type"), body)
    lang = language(pages, request, form.get("lang"))
    if form.get("list-unsubscribe", "").lower() != "one-click":
        # RFC 8058: only this body unsubscribes.  A person who got here some other
        # way sees the page with the button that sends it.
        log.info("unsubscribe: 400 no List-Unsubscribe=One-Click from %s", client(request))
        return pages.render("confirm.html", lang, email=masked(who.email), status=400)
    try:
        added = await run_in_threadpool(one_click, ctx.keeper, who)
    except (NewsletterError, OSError) as exc:
        log.error(
            "unsubscribe: 503 could not save suppression for %s: %s",
            ctx.tag(who.email),
            getattr(exc, "message", exc),
        )
        return pages.render("error.html", lang, status=503)
    log.info(
        "unsubscribe: %s on list %s (%s)",
        ctx.tag(who.email),
        who.list_name,
        "new" if added else "already suppressed",
    )
    return pages.render("done.html", lang, email=masked(who.email))
