"""``/subscribe`` and ``/confirm/{token}``: sign-up with double opt-in, consent on record.

* ``GET /subscribe?list=members&lang=es``: the form (email, name, language, topics, an
  unticked consent checkbox, a honeypot field nobody sees).
* ``POST /subscribe``: the same "check your inbox" page whatever the address's state, and
  as fast: the state is looked at after the answer (a background task), so neither the
  page nor its timing tells whether someone subscribes.  A new or pending address, or one
  that had unsubscribed, gets one confirmation email (at most
  ``signup.confirmations_per_hour``); a subscriber, a bounced or spam-reporting address
  gets none.  Per client, ``signup.signups_per_minute`` posts, then 429 + Retry-After.
* ``GET /confirm/{token}``: a page with a button (mail scanners follow links: a GET
  changes nothing); ``POST`` writes the row (:mod:`newsletter.list_writes`) with its
  consent record (:mod:`newsletter.consent`) and lifts an earlier ``unsubscribed``
  suppression; a bounce or spam report is kept for an administrator to review.
"""

from __future__ import annotations

import re
import time
from typing import Any
from urllib.parse import quote

from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response

from ..addresses import normalise_recipient, suppression_key
from ..consent import consent_record, iso
from ..errors import NewsletterError, TokenError
from ..link_tokens import SignupRequest, clean_field, confirm_token, open_confirm
from ..list_writes import add_member, has_member
from ..signup_store import CONFIRMED, SIGNUP
from ..suppression_writes import remove_suppressions
from .bodies import CLOSE, BodyTooLarge, form_values, read_body
from .context import ServerContext, context
from .logs import client, log
from .pages import language
from .readers import Readers, blocking_reasons, left_after, suppressions_of

HONEYPOT = "website"  # a field people never see; software that fills every field fills it


def _readers(ctx: ServerContext) -> Readers | None:
    readers = ctx.readers
    return readers if readers is not None and readers.settings is not None else None


def base_url(readers: Readers) -> str:
    """The public address of `newsletter serve` (``send.unsubscribe_url``), ending in /."""
    return str(readers.ws.config.send.unsubscribe_url).rstrip("/") + "/"


def form_values_for(readers: Readers, lang: str, list_name: str, form: str) -> dict[str, Any]:
    """What subscribe.html (and `signup-form`) show: topics, consent text, languages."""
    settings = readers.settings
    assert settings is not None
    org = str(readers.mailer.pages.common["org"])
    return {
        "list_name": list_name,
        "topics": [(tag, settings.topic_name(tag, lang)) for tag in settings.topics],
        "consent_text": settings.consent_text(lang).replace("{org}", org),
        "form_kind": form,
    }


def _page(
    ctx: ServerContext,
    readers: Readers,
    lang: str,
    list_name: str,
    *,
    status: int = 200,
    error: str = "",
    reader_name: str = "",
) -> Response:
    values = form_values_for(readers, lang, list_name, "page")
    return ctx.pages.render(
        "subscribe.html",
        lang,
        status=status,
        action="subscribe",
        error=error,
        reader_name=reader_name,
        **values,
    )


async def subscribe_page(request: Request) -> Response:
    ctx = context(request)
    readers = _readers(ctx)
    lang = language(ctx.pages, request)
    if readers is None or readers.settings is None:
        return ctx.pages.render("not_found.html", lang, status=404)
    list_name = request.query_params.get("list") or readers.settings.lists[0]
    if list_name not in readers.settings.lists:
        return ctx.pages.render("not_found.html", lang, status=404)
    return _page(ctx, readers, lang, list_name, error="")


async def subscribe_post(request: Request) -> Response:
    ctx = context(request)
    readers = _readers(ctx)
    pages = ctx.pages
    if readers is None or readers.settings is None or readers.limiter is None:
        return pages.render("not_found.html", language(pages, request), status=404)
    settings = readers.settings
    peer = client(request)
    wait = readers.limiter.hit(peer)
    if wait is not None:
        log.warning(
            "signup: 429 more than %d sign-ups a minute from %s", settings.signups_per_minute, peer
        )
        lang = language(pages, request)
        return pages.render("too_many.html", lang, status=429, headers={"Retry-After": str(wait)})
    try:
        body = await read_body(request, settings.max_form_bytes, ctx.body_seconds)
    except BodyTooLarge:
        log.warning("signup: 413 form over %d bytes from %s", settings.max_form_bytes, peer)
        return PlainTextResponse("request body too large", 413, headers=CLOSE)
    form = form_values(request.headers.get("content-type"), body)

    def one(name: str) -> str:
        return (form.get(name) or [""])[0]

    lang = language(pages, request, one("lang"))
    list_name = one("list") or settings.lists[0]
    if list_name not in settings.lists:
        log.info("signup: 404 list not open to sign-ups from %s", peer)
        return pages.render("not_found.html", lang, status=404)
    if one(HONEYPOT):
        log.info("signup: honeypot filled from %s; no email", peer)
        return pages.render("subscribe_sent.html", lang)
    reader_lang = pages.pick_language(one("language"), lang)
    name = clean_field(one("name"), 100)
    try:
        email = normalise_recipient(one("email"))
    except ValueError:
        return _page(ctx, readers, lang, list_name, status=400, error="bad_email", reader_name=name)
    if one("consent").lower() not in ("yes", "on", "true", "1"):
        return _page(
            ctx, readers, lang, list_name, status=400, error="no_consent", reader_name=name
        )
    chosen = [t for t in settings.topics if t in form.get("topic", [])]
    signup = SignupRequest(
        email=email,
        list_name=list_name,
        name=name,
        language=reader_lang,
        tags=tuple(chosen),
        consent_version=settings.consent_version,
        form="embedded" if one("form") == "embedded" else "page",
        at=int(time.time()),
    )
    response = pages.render("subscribe_sent.html", lang)
    response.background = BackgroundTask(run_in_threadpool, deliver, ctx, readers, signup)
    return response


def deliver(ctx: ServerContext, readers: Readers, signup: SignupRequest) -> None:
    """After the answer: look at the address's state; email it if it may sign up."""
    settings = readers.settings
    assert settings is not None
    tag = ctx.tag(signup.email)
    try:
        readers.store.record(signup.list_name, SIGNUP, tag)
        if has_member(readers.ws, signup.list_name, signup.email):
            log.info("signup: %s is already on list %s; no email", tag, signup.list_name)
            return
        blocked = blocking_reasons(suppressions_of(readers.ws, signup.email))
        if blocked:
            log.info("signup: %s is suppressed (%s); no email", tag, ", ".join(sorted(blocked)))
            return
        if not readers.store.may_mail(tag, settings.confirmations_per_hour):
            log.info("signup: %s had a confirmation email this hour; no other", tag)
            return
    except (NewsletterError, OSError) as exc:
        log.error("signup: %s not handled: %s", tag, getattr(exc, "message", exc))
        return
    url = base_url(readers) + "confirm/" + confirm_token(signup, readers.keys)
    try:
        readers.mailer.send(signup.email, signup.name, signup.list_name, signup.language, url)
    except (NewsletterError, OSError) as exc:
        readers.store.forget_mail(tag)
        why = str(getattr(exc, "message", exc))
        why = re.sub(re.escape(signup.email), tag, why, flags=re.I)  # a path may hold it
        log.error("signup: confirmation email to %s not sent: %s", tag, why)
        return
    log.info("signup: confirmation email sent to %s for list %s", tag, signup.list_name)


# --- /confirm/{token} ------------------------------------------------------------------------


def _signup_of(ctx: ServerContext, readers: Readers, request: Request) -> SignupRequest | None:
    try:
        signup = open_confirm(str(request.path_params.get("token", "")), ctx.keys)
    except TokenError:
        return None
    assert readers.settings is not None
    return signup if signup.list_name in readers.settings.lists else None


def _invalid(ctx: ServerContext, readers: Readers | None, lang: str) -> Response:
    target = "subscribe" if readers is not None else ""
    return ctx.pages.render("link_invalid.html", lang, status=404, signup_url=target)


async def confirm_page(request: Request) -> Response:
    ctx = context(request)
    readers = _readers(ctx)
    signup = _signup_of(ctx, readers, request) if readers else None
    if readers is None or signup is None:
        lang = language(ctx.pages, request)
        log.info("confirm page: 404 invalid or expired link from %s", client(request))
        return _invalid(ctx, readers, lang)
    lang = language(ctx.pages, request, signup.language)
    return ctx.pages.render("signup_confirm.html", lang, list_name=signup.list_name)


def confirm(ctx: ServerContext, readers: Readers, signup: SignupRequest) -> str:
    """Write the row and lift an older unsubscribe: "done", "review" or "left-since"."""
    ws = readers.ws
    found = suppressions_of(ws, signup.email)
    if left_after(found, signup.at):
        return "left-since"
    now = time.time()
    values = {
        "email": signup.email,
        "name": signup.name,
        "language": signup.language,
        "tags": ";".join(signup.tags),
        "subscribed_at": iso(now),
        "consent": consent_record(signup, now),
    }
    added = add_member(ws, signup.list_name, values)
    blocked = blocking_reasons(found)
    if not blocked and any(s.reason == "unsubscribed" for s in found):
        remove_suppressions(ws, [suppression_key(signup.email)])
        ctx.keeper.forget_known()
        log.info("confirm: earlier unsubscribe of %s lifted", ctx.tag(signup.email))
    readers.store.record(signup.list_name, CONFIRMED, ctx.tag(signup.email))
    log.info(
        "confirm: %s %s list %s",
        ctx.tag(signup.email),
        "added to" if added else "already on",
        signup.list_name,
    )
    return "review" if blocked else "done"


async def confirm_post(request: Request) -> Response:
    ctx = context(request)
    readers = _readers(ctx)
    signup = _signup_of(ctx, readers, request) if readers else None
    if readers is None or signup is None:
        log.warning("confirm: 404 invalid or expired link from %s", client(request))
        return _invalid(ctx, readers, language(ctx.pages, request))
    lang = language(ctx.pages, request, signup.language)
    try:
        await read_body(request, 4096, ctx.body_seconds)
    except BodyTooLarge:
        return PlainTextResponse("request body too large", 413, headers=CLOSE)
    try:
        outcome = await run_in_threadpool(confirm, ctx, readers, signup)
    except (NewsletterError, OSError) as exc:
        log.error(
            "confirm: 503 could not write %s to %s: %s",
            ctx.tag(signup.email),
            signup.list_name,
            getattr(exc, "message", exc),
        )
        return ctx.pages.render("error.html", lang, status=503)
    if outcome == "left-since":
        log.info("confirm: %s unsubscribed after this link was sent", ctx.tag(signup.email))
        return _invalid(ctx, readers, lang)
    if outcome == "review":
        return ctx.pages.render("signup_review.html", lang, status=200)
    assert readers.settings is not None
    after = readers.settings.after_confirm_url
    if after is not None:
        return RedirectResponse(str(after), status_code=303)
    return ctx.pages.render("signup_done.html", lang, list_name=signup.list_name)


def subscribe_link(readers: Readers, list_name: str, lang: str) -> str:
    return f"{base_url(readers)}subscribe?list={quote(list_name)}&lang={quote(lang)}"
