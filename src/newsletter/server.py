"""`newsletter serve`: one small ASGI app that closes the loop after a send.

* ``GET  /u/{token}``  a confirmation page in the reader's language; a GET never
  unsubscribes, because mail scanners and link previews follow every link.
* ``POST /u/{token}``  RFC 8058 one-click (body ``List-Unsubscribe=One-Click``,
  urlencoded or multipart) and the confirmation page's button: the suppression is
  on disk (fsynced) before the 200.
* ``POST /webhooks/sendgrid``  SendGrid's signed Event Webhook.  Verify first,
  parse second: nothing of an unsigned, stale or altered body is even decoded.
  Events are stored once each; bounces, spam reports and unsubscribes become
  suppressions before the answer, so SendGrid's retry covers any crash.
* ``GET  /archive/…``  the static archive, if `newsletter archive` built it.
* ``GET  /healthz``  for monitoring: 503 while a promised suppression is not yet
  in suppressions.csv.

Where a suppression goes first: the state database (SQLite), in the same
transaction as the request's events, then suppressions.csv.  A CSV that cannot
take it (a folder, read-only, a broken header) therefore costs neither the
reader's unsubscribe nor SendGrid's batch: the entry waits in
``pending_suppressions``, a send counts it as suppressed, and the server retries
the merge at start, whenever the file changes and every 30 s while requests come
(so a hammering client cannot make it re-read a large file on every request).

An address the server already knows to be suppressed (a cached
:class:`SuppressionList`, re-read only when the file changes) is answered
without touching the file's lock.

A request we cannot handle gets a 4xx and one log line; storage trouble gets a
503 so the sender (SendGrid, or a reader's mail provider) tries again later.
Log lines never carry an unsubscribe token (it holds the address): paths are
written as ``/u/<token>``, and an address as a keyed tag (:mod:`.logmask`).

Hostile clients (see :func:`serve_forever`): a request's headers, and then its
body, must each arrive within ``server.request_timeout`` (else the connection is
closed, or the request gets 408 and its partial body is dropped); at most
``server.max_connections`` connections are open (more get 503); a client that
hangs up mid-body costs one log line.  The client's Host header never reaches the
app, so no redirect can name a host a client chose (:class:`PinnedHost`).
"""

from __future__ import annotations

import asyncio
import ctypes
import email.policy
import json
import logging
import os
import re
import socket
import sys
import threading
import time
import tomllib
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.parser import BytesParser
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from jinja2 import Environment, FileSystemLoader, StrictUndefined, TemplateError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from .config import WEBHOOK_KEY_ENV, Workspace, env_secret, newsletter_secrets
from .config import Server as ServerSettings
from .errors import ConfigError, NewsletterError, TokenError
from .esp.sendgrid_events import BatchError, decode, parse_batch
from .events import Event, EventStore, PendingSuppression, suppressing
from .logmask import address_tag, tag_key
from .subscribers import suppression_key
from .suppressions import (
    Suppression,
    SuppressionList,
    add_suppressions,
    merge_pending,
    pending_entry,
)
from .tokens import Unsubscribe, verify_token

log = logging.getLogger("newsletter.server")

SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"
MAX_SKEW_SECONDS = 300  # SendGrid's timestamp may be this old (or this far ahead) at most
FORM_MAX_BYTES = 16_384  # the one-click body is 26 bytes; the page's form a few more
RETRY_SECONDS = 30.0  # how often an unwritable suppressions.csv is tried again (if unchanged)
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


class BodyTimeout(Exception):
    """The body did not arrive in time: answered 408 (see ``body_timeout`` in create_app)."""

    def __init__(self, received: int, seconds: float) -> None:
        super().__init__(f"{received} bytes in {seconds:g} s")
        self.received = received
        self.seconds = seconds


class ClientGone(Exception):
    """The client closed the connection before its body was complete: nobody to answer."""

    def __init__(self, received: int) -> None:
        super().__init__(f"after {received} bytes")
        self.received = received


# An answer that ends the connection: the rest of a refused body is never read.
CLOSE = {"Connection": "close"}

_DIGITS = re.compile(r"[0-9]{1,18}")  # ASCII only: str.isdigit() also accepts "²"


async def read_body(request: Request, limit: int, timeout: float) -> bytes:
    """The request body, refusing more than ``limit`` bytes whatever Content-Length claims.

    The whole body must arrive within ``timeout`` seconds (BodyTimeout); a client
    that stalls halfway must not hold a buffer for as long as it keeps the socket
    open.  A buffer given up is freed at once, not when the exception is.
    """
    declared = request.headers.get("content-length")
    if declared is not None:
        if not _DIGITS.fullmatch(declared.strip()):
            raise HTTPException(400, "bad Content-Length")
        if int(declared) > limit:
            raise BodyTooLarge
    body = bytearray()  # one growing buffer: freed whole (realloc/mremap), not as 64 KB crumbs
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.stream():
                if len(body) + len(chunk) > limit:
                    raise BodyTooLarge
                body += chunk
        return bytes(body)
    except TimeoutError:
        raise BodyTimeout(len(body), timeout) from None
    except ClientDisconnect:
        raise ClientGone(len(body)) from None
    finally:
        body.clear()


def form_fields(content_type: str | None, body: bytes) -> dict[str, str]:
    """The fields of a urlencoded or multipart form (first value of each, name lower-cased).

    Anything else is read as urlencoded: some one-click senders set no Content-Type.
    """
    ctype = (content_type or "").strip()
    out: dict[str, str] = {}
    if ctype.lower().startswith("multipart/form-data"):
        message = BytesParser(policy=email.policy.HTTP).parsebytes(
            b"Content-Type: " + ctype.encode("latin-1", "replace") + b"\r\n\r\n" + body
        )
        if not message.is_multipart():
            return out
        for part in list(message.iter_parts())[:20]:
            name = part.get_param("name", header="content-disposition")
            value = part.get_payload(decode=True)
            if isinstance(name, str) and isinstance(value, bytes):
                out.setdefault(name.strip().lower(), value.decode("utf-8", "replace").strip())
        return out
    try:
        pairs = parse_qsl(body.decode("utf-8", "replace"), max_num_fields=20)
    except ValueError:  # too many fields
        return out
    for name, value in pairs:
        out.setdefault(name.strip().lower(), value.strip())
    return out


_TOKEN_IN_PATH = re.compile(r"/u/[^/?#\s\"'<>]+")


def mask_tokens(text: str) -> str:
    """``/u/<token>`` for every unsubscribe token in a text (a token is the address)."""
    return _TOKEN_IN_PATH.sub("/u/<token>", text)


class TokenMask(logging.Filter):
    """A handler filter that takes unsubscribe tokens out of every record, traceback included."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask_tokens(message)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask_tokens(record.exc_text)
        return True


class UvicornNames(logging.Filter):
    """A handler filter for uvicorn's records: plain words, and not all tagged "error".

    uvicorn logs everything, "Started server process" included, as ``uvicorn.error``;
    its records are shown as ``uvicorn``, and its 503 for too many connections says
    which setting decides.
    """

    def __init__(self, max_connections: int) -> None:
        super().__init__()
        self.max_connections = max_connections

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "uvicorn.error":
            record.name = "uvicorn"
            if record.msg == "Exceeded concurrency limit.":
                record.msg = (
                    "503 to a new request: %d connections are open already"
                    " (server.max_connections in newsletter.toml)"
                )
                record.args = (self.max_connections,)
        return True


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
        if not re.fullmatch(r"[0-9]{1,12}", timestamp):  # not isdigit(): "²" is a digit
            return "malformed timestamp"
        skew = (time.time() if now is None else now) - int(timestamp)
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


def _file_stamp(path: Path) -> tuple[int, ...] | None:
    """What changes when someone fixes the file (replaces, edits, chmods it), or None."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_mode)


class Loop:
    """State shared by the handlers: where to write, which keys to trust."""

    def __init__(self, ws: Workspace) -> None:
        cfg = ws.config
        self.ws = ws
        self.keys = newsletter_secrets()
        self._tag_key = tag_key(self.keys)
        self.verifier = WebhookVerifier(env_secret(WEBHOOK_KEY_ENV, required=False))
        self.max_body = cfg.server.max_body_bytes
        self.body_seconds = cfg.server.request_timeout
        self.pages = Pages.load(ws)
        self.store = EventStore(ws.state_db)
        # Who is already suppressed, to answer repeats without the file's exclusive lock.
        self.known = SuppressionList(ws.suppressions_path, strict=False, pending_db=None)
        self._known_lock = threading.Lock()  # one thread re-reads a changed file, not all
        self._merge_lock = threading.Lock()
        self._maybe_pending = True  # unknown until the first merge
        self._failed: tuple[tuple[int, ...] | None, float] | None = None
        self.merge_problem: str | None = None
        self.merge_pending()  # whatever an earlier run could not write

    def tag(self, email: str) -> str:
        """An address as log lines show it: a keyed tag, the same for every line."""
        return address_tag(email, self._tag_key)

    def _short(self, text: str) -> str:
        """A message for the public health check: paths relative to the workspace."""
        return text.replace(f"{self.ws.root}{os.sep}", "")

    # --- the suppression list ---------------------------------------------------------

    def refresh_known(self) -> None:
        """Follow the file; while another thread re-reads it, use what we knew (never wait).

        The cache only answers "already suppressed" for rows that were on file, and a
        "no" takes the careful path, so a moment's staleness costs nothing.
        """
        if self._known_lock.acquire(blocking=False):
            try:
                self.known.refresh()
            finally:
                self._known_lock.release()

    def merge_due(self) -> bool:
        """Whether a merge should run now: cheap (a stat at most), so every request asks."""
        if not self._maybe_pending:
            return False
        if self._failed is None:
            return True
        stamp, when = self._failed
        changed = _file_stamp(self.ws.suppressions_path) != stamp
        return changed or time.monotonic() - when >= RETRY_SECONDS

    def merge_pending(self, *, new: bool = False) -> None:
        """Move pending suppressions into the CSV, if due; never raises (the rows stay safe).

        ``new``: the caller has just recorded one, so there is something to merge.
        """
        with self._merge_lock:
            if new:
                self._maybe_pending = True
            if not self.merge_due():
                return
            path = self.ws.suppressions_path
            stamp = _file_stamp(path)
            retry = self._failed is not None or not new  # not just this request's own row
            try:
                added = merge_pending(self.store, path, cache=self.known)
            except (NewsletterError, OSError) as exc:
                if isinstance(exc, NewsletterError):
                    reason = exc.message
                else:
                    reason = exc.strerror or str(exc)
                self._failed = (stamp, time.monotonic())
                self.merge_problem = reason
                log.error(
                    "suppressions: waiting suppressions not merged into %s (they stay in %s,"
                    " tried again when the file changes or in %d s): %s",
                    path,
                    self.ws.state_db,
                    RETRY_SECONDS,
                    reason,
                )
                return
            self._failed, self._maybe_pending, self.merge_problem = None, False, None
            if added and retry:
                log.info("suppressions: %d waiting suppression(s) added to %s", len(added), path)

    def health(self) -> str | None:
        """None when every accepted suppression is in suppressions.csv, else why not."""
        self.merge_pending(new=True)  # another process may have left some
        try:
            waiting = self.store.pending_count()
        except NewsletterError as exc:
            return self._short(exc.message)
        if not waiting:
            return None
        why = self.merge_problem or "not merged yet"
        return self._short(
            f"{waiting} suppression(s) wait in {self.ws.state_db} (sends honour them) and"
            f" cannot be added to {self.ws.suppressions_path}: {why}"
        )

    def _entry(self, email: str, reason: str, source: str, at: float) -> PendingSuppression | None:
        try:
            return pending_entry(
                Suppression(email=email, reason=reason, source=source, at=_iso(at))
            )
        except ValueError as exc:  # we never send to it, so there is nothing to stop
            log.warning("not suppressing %s (%s): %s", self.tag(email), source, exc)
            return None

    def _csv_only(self, entries: list[PendingSuppression]) -> int:
        """When the state database is down, the CSV alone (the old way); raises if it fails."""
        rows = [Suppression(p.email, p.reason, p.source, p.at) for p in entries]
        if not rows:
            return 0
        return len(add_suppressions(self.ws.suppressions_path, rows, cache=self.known))

    # --- requests ------------------------------------------------------------------------

    def ingest(self, body: bytes) -> tuple[int, int, int, list[str]]:
        """Parse a verified batch, store events and suppressions; (received, stored, new
        suppressions, skipped).  Raises BatchError for a body that is not a batch."""
        batch = parse_batch(decode(body))
        entries: dict[str, PendingSuppression] = {}
        for e in suppressing(batch.events):
            entry = self._entry(e.email, e.suppress or "", f"{WEBHOOK_SOURCE}:{e.kind}", e.at)
            if entry is not None:
                entries.setdefault(entry.key, entry)
        if entries:  # most batches suppress nobody: leave the file alone then
            self.refresh_known()
        new = [p for p in entries.values() if not self.known.contains_key(p.key)]
        try:
            stored = self.store.add(batch.events, new)
        except NewsletterError:
            try:  # SendGrid will retry the batch; meanwhile stop mail to these addresses
                self._csv_only(new)
            except (NewsletterError, OSError) as exc:
                log.error("webhook: cannot write suppressions either: %s", exc)
            raise
        if new:
            self.merge_pending(new=True)
        return len(batch.events), stored, len(new), batch.skipped

    def one_click(self, who: Unsubscribe) -> bool:
        """Record an unsubscribe; True if the address was not already suppressed.

        Raises (the caller answers 503) only when neither the state database nor
        the CSV can take it.
        """
        now = time.time()
        email = suppression_key(who.email)
        event = Event(
            event_id=f"one-click:{who.list_name}:{email}",
            provider=ONE_CLICK_SOURCE,
            kind="unsubscribe",
            email=email,
            at=int(now),
            list_name=who.list_name,
            raw=json.dumps({"list": who.list_name, "email": email}),
        )
        self.refresh_known()
        entry = None
        if not self.known.contains_key(email):
            entry = self._entry(who.email, "unsubscribed", ONE_CLICK_SOURCE, now)
        try:
            self.store.add([event], [entry] if entry else [])
        except NewsletterError as exc:
            if entry is None:  # nothing to suppress: the event is only for the report
                log.warning("one-click: event not recorded: %s", exc.message)
                return False
            log.warning("one-click: state database unavailable (%s); writing the CSV", exc.message)
            return self._csv_only([entry]) > 0
        if entry is None:
            return False
        self.merge_pending(new=True)
        return True


class RetryPending:
    """Before any request, merge waiting suppressions if that is due (usually: a flag test)."""

    def __init__(self, app: ASGIApp, loop: Loop) -> None:
        self.app = app
        self.loop = loop

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.loop.merge_due():
            await run_in_threadpool(self.loop.merge_pending)
        await self.app(scope, receive, send)


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
            body = await read_body(request, FORM_MAX_BYTES, loop.body_seconds)
        except BodyTooLarge:
            log.warning("unsubscribe: 413 body over %d bytes", FORM_MAX_BYTES)
            return PlainTextResponse("request body too large", 413, headers=CLOSE)
        form = form_fields(request.headers.get("content-type"), body)
        lang = language(request, form.get("lang"))
        if form.get("list-unsubscribe", "").lower() != "one-click":
            # RFC 8058: only this body unsubscribes.  A person who got here some other
            # way sees the page with the button that sends it.
            log.info("unsubscribe: 400 no List-Unsubscribe=One-Click from %s", _client(request))
            return pages.render("confirm.html", lang, email=who.email, status=400)
        try:
            added = await run_in_threadpool(loop.one_click, who)
        except (NewsletterError, OSError) as exc:
            log.error(
                "unsubscribe: 503 could not save suppression for %s: %s",
                loop.tag(who.email),
                getattr(exc, "message", exc),
            )
            return pages.render("error.html", lang, status=503)
        log.info(
            "unsubscribe: %s on list %s (%s)",
            loop.tag(who.email),
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
            body = await read_body(request, loop.max_body, loop.body_seconds)
        except BodyTooLarge:
            log.warning("webhook: 413 body over %d bytes from %s", loop.max_body, peer)
            return JSONResponse({"error": "body too large"}, 413, headers=CLOSE)
        refusal = loop.verifier.check(
            body, request.headers.get(SIGNATURE_HEADER), request.headers.get(TIMESTAMP_HEADER)
        )
        if refusal:
            log.warning("webhook: 403 %s from %s", refusal, peer)
            return JSONResponse({"error": "forbidden"}, 403)
        try:
            received, stored, added, skipped = await run_in_threadpool(loop.ingest, body)
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
        problem = await run_in_threadpool(loop.health)
        body: dict[str, object] = {"status": "ok", "webhook_key": loop.verifier.configured}
        if problem is None:
            return JSONResponse(body, headers={"Cache-Control": "no-store"})
        body.update(status="error", problem=problem)
        return JSONResponse(body, 503, headers={"Cache-Control": "no-store"})

    async def http_error(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        if status == 404 and not request.url.path.startswith("/webhooks/"):
            return pages.render("not_found.html", language(request), status=404)
        detail = exc.detail if isinstance(exc, HTTPException) else "error"
        log.info("%s %s: %d %s", request.method, mask_tokens(request.url.path), status, detail)
        return PlainTextResponse(str(detail), status_code=status)

    async def body_timeout(request: Request, exc: Exception) -> Response:
        received, seconds = (
            (exc.received, exc.seconds) if isinstance(exc, BodyTimeout) else (0, loop.body_seconds)
        )
        log.warning(
            "%s %s: 408 body not complete after %g s (%d bytes received, Content-Length %s)"
            " from %s; connection closed (server.request_timeout)",
            request.method,
            mask_tokens(request.url.path),
            seconds,
            received,
            request.headers.get("content-length", "not given"),
            _client(request),
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

    routes = [
        Route("/u/{token}", unsubscribe_page, methods=["GET"]),
        Route("/u/{token}", unsubscribe_post, methods=["POST"]),
        Route("/webhooks/sendgrid", sendgrid_webhook, methods=["POST"]),
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
            Middleware(RetryPending, loop=loop),
        ],
    )
    app.state.loop = loop
    return app


# --- the HTTP server -----------------------------------------------------------------------


_M_MMAP_THRESHOLD = -3  # glibc's malloc.h


class DeadlineH11Protocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol, plus a deadline for a request's headers.

    uvicorn closes a connection that stays idle between requests, but not one that
    sends its headers a byte at a time: with ``limit_concurrency`` set, a hundred
    such sockets would lock every reader out for good.  From the moment a connection
    opens, and again after each answer, the next request's headers must be complete
    within ``header_seconds``; the body has its own deadline in :func:`read_body`.
    """

    header_seconds: float = 15.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[arg-type]
        self._header_deadline: asyncio.TimerHandle | None = None
        self._arm_header_deadline()

    def _arm_header_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
        self._header_deadline = self.loop.call_later(self.header_seconds, self._headers_late)

    def _headers_late(self) -> None:
        self._header_deadline = None
        if self.cycle is not None and not self.cycle.response_complete:
            return  # a request is being answered: its body has its own deadline
        if self.transport.is_closing():
            return
        if self.conn.trailing_data[0]:  # part of a request; a silent idle socket is no news
            log.info(
                "connection from %s closed: no complete request within %g s"
                " (server.request_timeout)",
                self.client[0] if self.client else "?",
                self.header_seconds,
            )
        self.transport.close()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm_header_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None
        super().connection_lost(exc)


def _give_big_buffers_back() -> None:
    """Make glibc return a freed request buffer to the system at once (Linux only).

    glibc serves allocations over 128 KB with their own mapping, given back when
    freed, but raises that threshold each time such a block is freed; after one
    batch of large bodies, the next ones come from the heap, which keeps its pages.
    Measured (benchmarks/bench_serve_hostile.py): 60 stalled 4.9 MB bodies left the
    server 50 MB larger after their 408s; with the threshold pinned, 2 MB.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (musl has it too, as a no-op)
        return
    mallopt(_M_MMAP_THRESHOLD, 128 * 1024)


def serve_forever(application: Starlette, sock: socket.socket, settings: ServerSettings) -> None:
    """Run ``application`` with uvicorn on a listening socket until Ctrl+C (or SIGTERM).

    Log records are expected to reach the root logger's handlers (``serve`` sets
    them up, with :class:`TokenMask`); uvicorn's are renamed there.
    """
    import uvicorn

    class Protocol(DeadlineH11Protocol):
        header_seconds = settings.request_timeout

    for handler in logging.getLogger().handlers:
        handler.addFilter(UvicornNames(settings.max_connections))
    _give_big_buffers_back()
    config = uvicorn.Config(
        application,
        http=Protocol,
        # uvicorn answers 503 once open connections, the new one included, reach this.
        limit_concurrency=settings.max_connections + 1,
        access_log=False,
        server_header=False,
        log_level="info",
        log_config=None,  # uvicorn's records go to our handler (and its mask)
    )
    uvicorn.Server(config).run(sockets=[sock])
