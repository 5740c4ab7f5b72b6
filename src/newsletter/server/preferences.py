"""``/p/{token}``: the reader's preferences page, linked from every issue's footer.

``GET`` shows the lists the address is on, the topics (``[signup.topics]``) it follows,
its language and its name; ``POST`` with ``action=save`` writes the changes to each
list (under its lock, :mod:`newsletter.list_writes`); a list unticked is left (its row
removed); ``action=leave`` (or every list unticked) records an ``unsubscribed``
suppression, as one-click unsubscribe does, so no list sends to the address again.
Tags that are not topics (a CRM's own) are kept as they are.  A test copy's link shows
the "test copy" page and changes nothing.  The address is never shown whole.
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from ..errors import NewsletterError, TokenError
from ..link_tokens import PREFERENCES, Reader, clean_field, open_reader
from ..list_writes import Membership, change_member, memberships
from ..logmask import masked
from ..signup_store import LEFT
from ..signup_store import PREFERENCES as CHANGED
from ..tokens import Unsubscribe
from .bodies import CLOSE, BodyTooLarge, form_values, read_body
from .context import ServerContext, context
from .logs import client, log
from .pages import language
from .readers import Readers
from .unsubscribe import one_click

FORM_MAX_BYTES = 16_384


def _reader(ctx: ServerContext, request: Request) -> Reader | None:
    try:
        return open_reader(PREFERENCES, str(request.path_params.get("token", "")), ctx.keys)
    except TokenError:
        return None


def _topics(readers: Readers, lang: str) -> list[tuple[str, str]]:
    settings = readers.settings
    if settings is None:
        return []
    return [(tag, settings.topic_name(tag, lang)) for tag in settings.topics]


def _show(
    ctx: ServerContext, readers: Readers, who: Reader, lang: str, lists: list[Membership]
) -> Response:
    first = lists[0] if lists else None
    followed = set().union(*(m.tags for m in lists)) if lists else set()
    return ctx.pages.render(
        "preferences.html",
        lang,
        address=masked(who.email),
        lists=[m.list_name for m in lists],
        topics=_topics(readers, lang),
        followed=followed,
        reader_name=first.name if first else "",
        reader_language=ctx.pages.pick_language(first.language if first else None, lang),
    )


async def preferences_page(request: Request) -> Response:
    ctx = context(request)
    readers = ctx.readers
    lang = language(ctx.pages, request)
    who = _reader(ctx, request)
    if who is None or readers is None:
        log.info("preferences page: 404 invalid link from %s", client(request))
        return ctx.pages.render("link_invalid.html", lang, status=404, signup_url="")
    if who.test:
        return ctx.pages.render("test_copy.html", lang, email=masked(who.email))
    lists = await run_in_threadpool(memberships, readers.ws, who.email)
    return _show(ctx, readers, who, lang, lists)


def save(
    ctx: ServerContext, readers: Readers, who: Reader, form: dict[str, list[str]], lang: str
) -> str:
    """Apply the form; "left" (suppressed) or "saved".  A list is left only when it is
    unticked while another is kept; none ticked is "leave everything"."""
    tag = ctx.tag(who.email)
    current = memberships(readers.ws, who.email)
    keep = set(form.get("list", []))
    action = (form.get("action") or ["save"])[0]
    if action == "leave" or not keep:  # "leave everything", or every list unticked
        one_click(
            ctx.keeper,
            Unsubscribe(email=who.email, list_name=who.list_name),
            source="preferences",
        )
        for m in current or [Membership(who.list_name, "", "", frozenset())]:
            readers.store.record(m.list_name, LEFT, tag)
        log.info("preferences: %s left every list", tag)
        return "left"
    topics = set(readers.settings.topics) if readers.settings is not None else set()
    chosen = {t for t in form.get("topic", []) if t in topics}
    name = clean_field((form.get("name") or [""])[0], 100)
    new_lang = ctx.pages.pick_language((form.get("language") or [""])[0], lang)
    stale = not any(m.list_name in keep for m in current)  # a page older than the lists
    for m in current:
        if m.list_name not in keep and not stale:
            change_member(readers.ws, m.list_name, who.email, None)
            readers.store.record(m.list_name, CHANGED, tag)
            log.info("preferences: %s left list %s", tag, m.list_name)
            continue
        changes: dict[str, str] = {}
        if name != m.name:
            changes["name"] = name
        if new_lang != m.language:
            changes["language"] = new_lang
        tags = (set(m.tags) - topics) | chosen
        if tags != set(m.tags):
            changes["tags"] = ";".join(sorted(tags))
        if changes:
            change_member(readers.ws, m.list_name, who.email, changes)
            readers.store.record(m.list_name, CHANGED, tag)
            log.info("preferences: %s changed %s on list %s", tag, ", ".join(changes), m.list_name)
    return "saved"


async def preferences_post(request: Request) -> Response:
    ctx = context(request)
    readers = ctx.readers
    who = _reader(ctx, request)
    if who is None or readers is None:
        log.warning("preferences: 404 invalid link from %s", client(request))
        lang = language(ctx.pages, request)
        return ctx.pages.render("link_invalid.html", lang, status=404, signup_url="")
    if who.test:
        log.info("preferences: test copy link from %s, nothing changed", client(request))
        return ctx.pages.render(
            "test_copy.html", language(ctx.pages, request), email=masked(who.email)
        )
    try:
        body = await read_body(request, FORM_MAX_BYTES, ctx.body_seconds)
    except BodyTooLarge:
        return PlainTextResponse("request body too large", 413, headers=CLOSE)
    form = form_values(request.headers.get("content-type"), body)
    lang = language(ctx.pages, request, (form.get("lang") or [""])[0])
    try:
        outcome = await run_in_threadpool(save, ctx, readers, who, form, lang)
    except (NewsletterError, OSError) as exc:
        log.error("preferences: 503 for %s: %s", ctx.tag(who.email), getattr(exc, "message", exc))
        return ctx.pages.render("error.html", lang, status=503)
    if outcome == "left":
        return ctx.pages.render("done.html", lang, email=masked(who.email))
    lists = await run_in_threadpool(memberships, readers.ws, who.email)
    page_lang = ctx.pages.pick_language((form.get("language") or [""])[0], lang)
    return ctx.pages.render("preferences_saved.html", page_lang, lists=[m.list_name for m in lists])
