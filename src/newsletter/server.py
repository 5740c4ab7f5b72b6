"""`newsletter serve`: one small ASGI app that closes the loop after a send.

* ``GET  /u/{token}``  a confirmation page in the reader's language; a GET never
  unsubscribes, because mail scanners and link previews follow every link.
* ``POST /u/{token}``  RFC 8058 one-click (``List-Unsubscribe=One-Click``) and the
  confirmation page's button: the suppression is on disk (fsynced) before the 200.
* ``POST /webhooks/sendgrid``  SendGrid's signed Event Webhook.  Verify first,
  parse second: nothing of an unsigned, stale or altered body is even decoded.
  Events are stored once each; bounces, spam reports and unsubscribes become
  suppressions before the answer, so SendGrid's retry covers any crash.
* ``GET  /archive/…``  the static archive, if `newsletter archive` built it.
* ``GET  /healthz``  for monitoring.

A request we cannot handle gets a 4xx and one log line; storage trouble gets a
503 so the sender (SendGrid, or a reader's mail provider) tries again later.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from jinja2 import Environment, FileSystemLoader, StrictUndefined, TemplateError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

from .config import WEBHOOK_KEY_ENV, Workspace, env_secret, newsletter_secrets
from .errors import ConfigError, NewsletterError, TokenError
from .esp.sendgrid_events import BatchError, parse_batch
from .events import Event, EventStore, suppressing
from .subscribers import normalise_email, suppression_key
from .suppressions import Suppression, add_suppressions
from .tokens import Unsubscribe, verify_token

log = logging.getLogger("newsletter.server")

SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"
MAX_SKEW_SECONDS = 300  # SendGrid's timestamp may be this old (or this far ahead) at most
FORM_MAX_BYTES = 16_384  # the one-click body is 26 bytes; the page's form a few more
ONE_CLICK_SOURCE = "one-click"
WEBHOOK_SOURCE = "sendgrid-webhook"

# The pages carry the token in their URL: keep it out of Referer headers, caches and frames.
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Robots-Tag": "noindex, nofollow",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self';"
        " form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
}


class BodyTooLarge(Exception):
    pass


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing more than ``limit`` bytes whatever Content-Length claims."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.strip().isdigit():
            raise HTTPException(400, "bad Content-Length")
        if int(declared) > limit:
            raise BodyTooLarge
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def _mask(email: str) -> str:
    """An address for a log line: enough to tell two apart, not enough to harvest."""
    digest = hashlib.sha256(email.encode("utf-8")).hexdigest()[:10]
    return f"<{digest}>"


def _client(request: Request) -> str:
    return request.client.host if request.client else "?"


# --- pages -------------------------------------------------------------------------------

_FIELD = re.compile(r"\{(org|website|email)\}")
_FONT_SAFE = re.compile(r"[^A-Za-z0-9 ,\-]")


def _fill(text: str, values: Mapping[str, str]) -> str:
    """Fill {org}/{website}/{email} in one pass, so a value is never read as a placeholder."""
    return _FIELD.sub(lambda m: values.get(m.group(1), m.group(0)), text)


@dataclass(frozen=True)
class Pages:
    """The unsubscribe pages: Jinja2 (autoescaped) templates and their words per language."""

    env: Environment
    labels: dict[str, dict[str, str]]
    default_language: str
    common: dict[str, Any]

    @classmethod
    def load(cls, ws: Workspace) -> Pages:
        folder = ws.pages_dir
        labels_path = folder / "labels.toml"
        try:
            raw = tomllib.loads(labels_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(
                f"{labels_path}: cannot read the page words: {exc}",
                key="templates/pages/labels.toml",
            ) from None
        english = {k: str(v) for k, v in raw.get("en", {}).items()}
        labels: dict[str, dict[str, str]] = {}
        for lang, table in raw.items():
            if not isinstance(table, dict):
                raise ConfigError(
                    f"{labels_path}: `{lang}` must be a table like [en]", key=f"labels.{lang}"
                )
            labels[lang.lower()] = {**english, **{k: str(v) for k, v in table.items()}}
        if not labels:
            raise ConfigError(f"{labels_path}: no languages defined", key="labels")
        cfg = ws.config
        env = Environment(
            loader=FileSystemLoader(str(folder)),
            autoescape=True,
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        brand = cfg.brand
        font = _FONT_SAFE.sub("", brand.font_family).strip() or "Helvetica, Arial, sans-serif"
        common: dict[str, Any] = {
            "org": cfg.organisation.name,
            "postal_address": cfg.organisation.postal_address,
            "website": str(cfg.organisation.website),
            "brand": brand,
            "font_family": font,
        }
        default = cfg.language.split("-")[0].lower()
        pages = cls(env, labels, default if default in labels else next(iter(labels)), common)
        for name in ("confirm.html", "done.html", "not_found.html", "error.html"):
            try:
                env.get_template(name)
            except TemplateError as exc:
                raise ConfigError(
                    f"{folder / name}: {exc}", key=f"templates/pages/{name}"
                ) from None
        return pages

    def pick_language(self, *wanted: str | None, accept: str | None = None) -> str:
        """The first wanted language we have, else the best of Accept-Language, else the default."""
        for item in wanted:
            if item:
                code = item.strip().lower().split("-")[0]
                if code in self.labels:
                    return code
        if accept:
            ranked: list[tuple[float, int, str]] = []
            for index, part in enumerate(accept.split(",")[:20]):
                tag, _, params = part.strip().partition(";")
                q = 1.0
                params = params.strip()
                if params.startswith("q="):
                    try:
                        q = float(params[2:])
                    except ValueError:
                        q = 0.0
                ranked.append((-q, index, tag.strip().lower().split("-")[0]))
            for neg_q, _, code in sorted(ranked):
                if neg_q < 0 and code in self.labels:
                    return code
        return self.default_language

    def render(self, name: str, lang: str, *, email: str = "", status: int = 200) -> HTMLResponse:
        words = self.labels[lang]
        values = {"org": self.common["org"], "website": self.common["website"], "email": email}
        t: dict[str, str] = {}
        for key, text in words.items():
            t[key] = _fill(text, values)
            before, sep, after = text.partition("{email}")
            if sep:
                t[key + "_before"] = _fill(before, values)
                t[key + "_after"] = _fill(after, values)
            else:
                t[key + "_before"], t[key + "_after"] = t[key], ""
        others = [
            (code, w.get("language_name", code)) for code, w in self.labels.items() if code != lang
        ]
        html = self.env.get_template(name).render(
            **self.common,
            lang=lang,
            t=t,
            title=t.get(name.removesuffix(".html") + "_title", self.common["org"]),
            email=email,
            other_languages=others,
        )
        return HTMLResponse(html, status_code=status, headers=PAGE_HEADERS)


# --- archive -----------------------------------------------------------------------------


class ArchiveFiles:
    """Serve ws.root/archive-site when it exists; a 404 (not a crash) before the first build."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.static = StaticFiles(directory=str(folder), html=True, check_dir=False)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self.folder.is_dir():
            raise HTTPException(404, "the archive has not been built (run `newsletter archive`)")
        await self.static(scope, receive, send)


# --- webhook verification ------------------------------------------------------------------


class WebhookVerifier:
    """SendGrid's ECDSA check, done by the `sendgrid` package, plus our freshness rule."""

    def __init__(self, public_key_b64: str | None) -> None:
        from sendgrid.helpers.eventwebhook import EventWebhook

        self._helper = EventWebhook()
        self._key: Any = None
        if public_key_b64:
            try:
                self._key = self._helper.convert_public_key_to_ecdsa(public_key_b64.strip())
            except (ValueError, TypeError) as exc:
                raise ConfigError(
                    f"{WEBHOOK_KEY_ENV} is not a valid public key ({exc.__class__.__name__})",
                    key=WEBHOOK_KEY_ENV,
                    hint="copy the verification key from SendGrid: Settings > Mail Settings >"
                    " Event Webhook > Signature Verification (base64, no PEM lines)",
                ) from None

    @property
    def configured(self) -> bool:
        return self._key is not None

    def check(
        self, body: bytes, signature: str | None, timestamp: str | None, now: float | None = None
    ) -> str | None:
        """None when the request is genuine and fresh, else the reason for refusing it."""
        if not signature or not timestamp:
            return "unsigned request"
        ts = timestamp.strip()
        if not ts.isdigit() or len(ts) > 12:
            return "malformed timestamp"
        skew = (time.time() if now is None else now) - int(ts)
        if abs(skew) > MAX_SKEW_SECONDS:
            return f"timestamp {int(skew)} s off"
        try:
            payload = body.decode("utf-8")
        except UnicodeDecodeError:
            return "body is not UTF-8"
        try:
            ok = self._helper.verify_signature(
                payload, signature.strip(), timestamp, public_key=self._key
            )
        except (ValueError, TypeError):  # binascii.Error is a ValueError
            return "malformed signature"
        return None if ok else "bad signature"


# --- the app -----------------------------------------------------------------------------


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).replace(microsecond=0).isoformat()


class Loop:
    """State shared by the handlers: where to write, which keys to trust."""

    def __init__(self, ws: Workspace) -> None:
        cfg = ws.config
        self.ws = ws
        self.keys = newsletter_secrets()
        self.verifier = WebhookVerifier(env_secret(WEBHOOK_KEY_ENV, required=False))
        self.max_body = cfg.server.max_body_bytes
        self.pages = Pages.load(ws)
        self.store = EventStore(ws.state_db)

    # One place that writes suppressions: durable before anyone is told "done".
    def suppress(self, entries: list[tuple[str, str, str, float]]) -> int:
        rows: list[Suppression] = []
        for email, reason, source, at in entries:
            try:
                address = normalise_email(email)
            except ValueError as exc:  # we never send to it, so there is nothing to stop
                log.warning(
                    "not suppressing %s (%s): not a valid address: %s", _mask(email), source, exc
                )
                continue
            rows.append(Suppression(email=address, reason=reason, source=source, at=_iso(at)))
        if not rows:
            return 0
        return len(add_suppressions(self.ws.suppressions_path, rows))

    def ingest(self, body: bytes) -> tuple[int, int, int, list[str]]:
        """Parse a verified batch, suppress, store; (received, stored, suppressed, skipped)."""
        data = json.loads(body)
        batch = parse_batch(data)
        worst = suppressing(batch.events)
        added = 0
        if worst:
            added = self.suppress(
                [
                    (e.email, e.suppress or "", f"{WEBHOOK_SOURCE}:{e.kind}", float(e.at))
                    for e in worst
                ]
            )
        stored = self.store.add(batch.events)
        return len(batch.events), stored, added, batch.skipped

    def one_click(self, who: Unsubscribe) -> int:
        now = time.time()
        added = self.suppress([(who.email, "unsubscribed", ONE_CLICK_SOURCE, now)])
        email = suppression_key(who.email)
        try:
            self.store.add(
                [
                    Event(
                        event_id=f"one-click:{who.list_name}:{email}",
                        provider=ONE_CLICK_SOURCE,
                        kind="unsubscribe",
                        email=email,
                        at=int(now),
                        list_name=who.list_name,
                        raw=json.dumps({"list": who.list_name, "email": email}),
                    )
                ]
            )
        except NewsletterError as exc:  # the suppression is what matters; it is on disk
            log.warning("one-click: suppression saved but event not recorded: %s", exc.message)
        return added


def create_app(ws: Workspace) -> Starlette:
    """The ASGI app for `newsletter serve`; raises ConfigError for a bad setting or key."""
    loop = Loop(ws)
    pages = loop.pages

    def language(request: Request, form_lang: str | None = None) -> str:
        return pages.pick_language(
            form_lang,
            request.query_params.get("lang"),
            accept=request.headers.get("accept-language"),
        )

    def token_of(request: Request) -> Unsubscribe | None:
        try:
            return verify_token(str(request.path_params.get("token", "")), loop.keys)
        except TokenError:
            return None

    async def unsubscribe_page(request: Request) -> Response:
        lang = language(request)
        who = token_of(request)
        if who is None:
            log.info("unsubscribe page: 404 invalid token from %s", _client(request))
            return pages.render("not_found.html", lang, status=404)
        return pages.render("confirm.html", lang, email=who.email)

    async def unsubscribe_post(request: Request) -> Response:
        who = token_of(request)
        if who is None:
            log.warning("unsubscribe: 404 invalid token from %s", _client(request))
            return pages.render("not_found.html", language(request), status=404)
        try:
            body = await read_body(request, FORM_MAX_BYTES)
        except BodyTooLarge:
            log.warning("unsubscribe: 413 body over %d bytes", FORM_MAX_BYTES)
            return PlainTextResponse("request body too large", status_code=413)
        try:
            form = parse_qs(body.decode("utf-8", "replace"), max_num_fields=20)
        except ValueError:  # too many fields: ignore the form, the token is what counts
            form = {}
        lang = language(request, form.get("lang", [""])[0])
        try:
            added = await run_in_threadpool(loop.one_click, who)
        except (NewsletterError, OSError) as exc:
            log.error(
                "unsubscribe: 503 could not save suppression for %s: %s",
                _mask(who.email),
                getattr(exc, "message", exc),
            )
            return pages.render("error.html", lang, status=503)
        log.info(
            "unsubscribe: %s on list %s (%s)",
            _mask(who.email),
            who.list_name,
            "new" if added else "already suppressed",
        )
        return pages.render("done.html", lang, email=who.email)

    async def sendgrid_webhook(request: Request) -> Response:
        peer = _client(request)
        if not loop.verifier.configured:
            log.error(
                "webhook: 503 %s is not set; cannot verify SendGrid's signature", WEBHOOK_KEY_ENV
            )
            return JSONResponse({"error": "webhook verification key not configured"}, 503)
        try:
            body = await read_body(request, loop.max_body)
        except BodyTooLarge:
            log.warning("webhook: 413 body over %d bytes from %s", loop.max_body, peer)
            return JSONResponse({"error": "body too large"}, 413)
        refusal = loop.verifier.check(
            body, request.headers.get(SIGNATURE_HEADER), request.headers.get(TIMESTAMP_HEADER)
        )
        if refusal:
            log.warning("webhook: 403 %s from %s", refusal, peer)
            return JSONResponse({"error": "forbidden"}, 403)
        try:
            received, stored, added, skipped = await run_in_threadpool(loop.ingest, body)
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
            log.warning("webhook: 400 malformed JSON from %s: %s", peer, exc)
            return JSONResponse({"error": "malformed JSON"}, 400)
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

    async def healthz(request: Request) -> Response:
        return JSONResponse(
            {"status": "ok", "webhook_key": loop.verifier.configured},
            headers={"Cache-Control": "no-store"},
        )

    async def http_error(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        if status == 404 and not request.url.path.startswith("/webhooks/"):
            return pages.render("not_found.html", language(request), status=404)
        detail = exc.detail if isinstance(exc, HTTPException) else "error"
        log.info("%s %s: %d %s", request.method, request.url.path, status, detail)
        return PlainTextResponse(str(detail), status_code=status)

    async def server_error(request: Request, exc: Exception) -> Response:
        log.exception("%s %s: 500", request.method, request.url.path, exc_info=exc)
        return PlainTextResponse("internal error", status_code=500)

    routes = [
        Route("/u/{token}", unsubscribe_page, methods=["GET"]),
        Route("/u/{token}", unsubscribe_post, methods=["POST"]),
        Route("/webhooks/sendgrid", sendgrid_webhook, methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
        Mount("/archive", app=ArchiveFiles(ws.root / "archive-site")),
    ]
    app = Starlette(
        routes=routes, exception_handlers={HTTPException: http_error, 500: server_error}
    )
    app.state.loop = loop
    return app
