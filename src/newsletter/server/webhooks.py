"""``POST /webhooks/<provider>``: a provider's signed event batches, whichever provider.

Verify first, parse second: nothing of an unsigned, stale or altered body is even
decoded.  Events are stored once each; bounces, spam reports and unsubscribes
become suppressions before the answer, so the provider's retry covers any crash.
What a provider's headers, signature and fields are is its adapter's business
(:mod:`newsletter.esp.webhooks`); this module only runs the steps and answers.
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..errors import NewsletterError
from ..esp.webhooks import BatchError, WebhookAdapter, WebhookRefused
from .bodies import CLOSE, BodyTooLarge, read_body
from .context import ServerContext, context
from .logs import client, log


def ingest(
    ctx: ServerContext, adapter: WebhookAdapter, body: bytes
) -> tuple[int, int, int, list[str]]:
    """Parse a verified batch, store events and suppressions; (received, stored, new
    suppressions, skipped).  Raises BatchError for a body that is not a batch."""
    batch = adapter.parse(body)
    stored, added = ctx.keeper.add_batch(batch.events, f"{adapter.provider}-webhook")
    return len(batch.events), stored, added, batch.skipped


async def receive_webhook(request: Request, provider: str) -> Response:
    """The endpoint of every provider's route (``provider`` is bound when it is mounted)."""
    ctx = context(request)
    adapter = ctx.webhooks[provider]
    peer = client(request)
    if not adapter.configured:
        log.error(
            "webhook: 503 %s is not set; cannot verify %s's signature",
            adapter.key_env,
            adapter.label,
        )
        return JSONResponse({"error": "webhook verification key not configured"}, 503)
    try:
        body = await read_body(request, ctx.max_body, ctx.body_seconds)
    except BodyTooLarge:
        log.warning("webhook: 413 body over %d bytes from %s", ctx.max_body, peer)
        return JSONResponse({"error": "body too large"}, 413, headers=CLOSE)
    try:
        adapter.verify(request.headers, body)
    except WebhookRefused as refusal:
        log.warning("webhook: 403 %s from %s", refusal, peer)
        return JSONResponse({"error": "forbidden"}, 403)
    try:
        received, stored, added, skipped = await run_in_threadpool(ingest, ctx, adapter, body)
    except BatchError as exc:
        log.warning("webhook: 400 %s from %s", exc, peer)
        return JSONResponse({"error": str(exc)}, 400)
    except (NewsletterError, OSError) as exc:
        log.error("webhook: 503 could not store events: %s", getattr(exc, "message", exc))
        return JSONResponse({"error": "storage unavailable, retry later"}, 503)
    for line in skipped[:10]:
        log.warning("webhook: skipped event %s", line)
    log.info("webhook: %d events, %d new, %d new suppressions", received, stored, added)
    return JSONResponse(
        {"received": received, "stored": stored, "suppressed": added, "skipped": len(skipped)}
    )
