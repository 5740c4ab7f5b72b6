"""SendGrid v3: the one module that knows SendGrid's field names and error shapes.

:func:`build_payload` translates an issue batch into a ``POST /v3/mail/send``
body; :class:`SendGridBackend` posts it with the official ``sendgrid`` client
and maps ``python_http_client`` errors onto our provider errors, keeping the
status, the body and, when the stand-in is Prism, its ``sl-violations`` header.

Choices worth knowing:

- The HTML and text are sent once per request; each personalization carries its
  own ``substitutions`` (placeholder -> value), ``headers`` (List-Unsubscribe) and
  ``custom_args``.  ``custom_args`` sit inside each personalization, never at the
  top level: SendGrid's published spec types the top-level field as a string,
  which makes Prism reject the object that real SendGrid accepts; per-personalization
  is valid for both and lets each recipient carry their own list.
- ``to.name`` loses ``,`` and ``;``, which SendGrid rejects in display names.
- A failure before the request was fully sent is :class:`ProviderUnavailable` (safe to
  retry); one after it is :class:`~newsletter.esp.base.DeliveryUnknown` (SendGrid may
  have it): see :func:`map_transport_error`.
"""

from __future__ import annotations

import http.client
import json
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import replace
from email.utils import parsedate_to_datetime
from json.encoder import encode_basestring_ascii
from typing import Any

import idna

from ..config import Send
from ..errors import ProviderRejected, ProviderUnavailable
from .base import Backend, Batch, DeliveryUnknown, IssueContent, Outcome, Prepared

DEFAULT_HOST = "https://api.sendgrid.com"
REJECT_STATUSES = {400, 401, 403, 404, 405, 413, 415}

_HINTS = {
    400: "SendGrid did not accept the message as built; the field above says what to change",
    401: "check SENDGRID_API_KEY: SendGrid did not recognise it",
    403: "the API key needs the Mail Send permission, and the sender address must be verified",
    413: "the issue is too large for one request; shorten it or use fewer images inline",
}


def _display_name(name: str | None) -> str | None:
    if not name:
        return None
    clean = " ".join(name.replace(",", " ").replace(";", " ").split())
    return clean or None


def _ascii_address(email: str) -> str:
    """International domains in their ASCII (xn--) form, which every mail system accepts.

    Lists keep the Unicode form (as email-validator recommends) for people to read.
    """
    if email.isascii():
        return email
    local, _, domain = email.rpartition("@")
    try:
        return f"{local}@{idna.encode(domain, uts46=True).decode('ascii')}"
    except idna.IDNAError:
        return email  # already validated; let SendGrid give its own answer


def build_payload(content: IssueContent, batch: Batch, settings: Send) -> dict[str, Any]:
    """The ``/v3/mail/send`` body for one batch (the outbox writes exactly this)."""
    personalizations = []
    correlation = batch.correlation
    for r in batch.recipients:
        to: dict[str, str] = {"email": _ascii_address(r.email)}
        name = _display_name(r.name)
        if name:
            to["name"] = name
        personalizations.append(
            {
                "to": [to],
                "substitutions": dict(r.values),
                "headers": dict(r.headers),
                "custom_args": correlation(r),
            }
        )
    payload: dict[str, Any] = {
        "personalizations": personalizations,
        "from": {"email": content.from_email, "name": content.from_name},
        "subject": content.subject,
        "content": [
            {"type": "text/plain", "value": content.text},
            {"type": "text/html", "value": content.html},
        ],
        "categories": [content.issue_id, "test"] if content.test else [content.issue_id],
        "mail_settings": {"sandbox_mode": {"enable": settings.sandbox_mode}},
        "tracking_settings": {
            "click_tracking": {"enable": settings.click_tracking, "enable_text": False},
            "open_tracking": {"enable": settings.open_tracking},
        },
    }
    if content.reply_to:
        payload["reply_to"] = {"email": content.reply_to}
    if settings.asm_group_id is not None:
        asm: dict[str, Any] = {"group_id": settings.asm_group_id}
        if settings.asm_groups_to_display:
            asm["groups_to_display"] = list(settings.asm_groups_to_display)
        payload["asm"] = asm
    if settings.ip_pool:
        payload["ip_pool_name"] = settings.ip_pool
    if batch.send_at is not None:
        payload["send_at"] = batch.send_at
    if batch.schedule_id is not None:
        payload["batch_id"] = batch.schedule_id
    return payload


_HEAD = '{"personalizations": []'


def encode_payload(content: IssueContent, batch: Batch, settings: Send) -> bytes:
    """Exactly ``json.dumps(build_payload(...))``, built about twice as fast.

    This is the body that is posted and that the outbox writes.  The per-issue part
    is encoded once by json.dumps; each personalization is assembled from strings
    escaped by json's own C escaper, in json.dumps's default layout, so the bytes
    are identical (tests compare them).
    """
    head = json.dumps(build_payload(content, replace(batch, recipients=()), settings))
    if not head.startswith(_HEAD):  # pragma: no cover - build_payload puts it first
        raise AssertionError("personalizations must be the first key")
    esc = encode_basestring_ascii
    args_by_list: dict[str, str] = {}
    keys: dict[str, str] = {}  # escaped placeholder and header names, the same for everyone
    parts: list[str] = []
    add = parts.append
    for r in batch.recipients:
        name = r.name
        if name and (
            "," in name
            or ";" in name
            or "  " in name
            or not name.isprintable()
            or name[0] == " "
            or name[-1] == " "
        ):
            name = _display_name(name)
        to = (
            f'{{"email": {esc(_ascii_address(r.email))}, "name": {esc(name)}}}'
            if name
            else f'{{"email": {esc(_ascii_address(r.email))}}}'
        )
        args = args_by_list.get(r.list_name)
        if args is None:
            args = args_by_list[r.list_name] = json.dumps(batch.correlation(r))
        subs = ", ".join(
            [f"{keys.get(k) or keys.setdefault(k, esc(k))}: {esc(v)}" for k, v in r.values.items()]
        )
        heads = ", ".join(
            [f"{keys.get(k) or keys.setdefault(k, esc(k))}: {esc(v)}" for k, v in r.headers.items()]
        )
        add(
            f'{{"to": [{to}], "substitutions": {{{subs}}}, '
            f'"headers": {{{heads}}}, "custom_args": {args}}}'
        )
    body = '{"personalizations": [' + ", ".join(parts) + "]" + head[len(_HEAD) :]
    return body.encode("ascii")


def _header(headers: Any, name: str) -> str | None:
    if headers is None:
        return None
    try:
        value = headers.get(name)
    except AttributeError:
        return None
    return None if value is None else str(value)


def retry_after(headers: Any, now: float | None = None) -> float | None:
    """Seconds to wait after a 429: X-RateLimit-Reset (unix time) first, then Retry-After."""
    now = time.time() if now is None else now
    reset = _header(headers, "X-RateLimit-Reset")
    if reset:
        try:
            return max(0.0, float(reset) - now)
        except ValueError:
            pass
    after = _header(headers, "Retry-After")
    if after:
        try:
            return max(0.0, float(after))
        except ValueError:
            try:
                return max(0.0, parsedate_to_datetime(after).timestamp() - now)
            except (TypeError, ValueError):
                return None
    return None


def _decode(body: Any) -> str:
    if isinstance(body, bytes):
        return body.decode("utf-8", "replace")
    return "" if body is None else str(body)


def _first_error(body: str) -> tuple[str | None, str | None]:
    """SendGrid's ``{"errors": [{"message", "field"}]}`` -> (message, field)."""
    try:
        data = json.loads(body)
    except ValueError:
        return None, None
    if isinstance(data, dict):
        errors = data.get("errors")
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            msg = errors[0].get("message")
            field = errors[0].get("field")
            text = str(msg) if msg else None
            return text, (str(field) if field not in (None, "null") else None)
        err = data.get("error")
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"]), None
    return None, None


def _violations(headers: Any) -> tuple[str | None, str | None]:
    """Prism's ``sl-violations`` header as (readable text, first field): the real reason
    behind its 400s, whose body is always the spec's placeholder example."""
    raw = _header(headers, "sl-violations")
    if not raw:
        return None, None
    try:
        items = json.loads(raw)
    except ValueError:
        return raw, None
    if not isinstance(items, list):
        return raw, None
    parts = []
    first_field: str | None = None
    for item in items:
        if isinstance(item, dict):
            where = ".".join(str(p) for p in item.get("location", [])[2:])
            first_field = first_field or where or None
            parts.append(str(item.get("message")))
    return ("; ".join(parts) or raw), first_field


def map_http_error(exc: Any) -> ProviderRejected | ProviderUnavailable:
    """python_http_client's HTTPError (status, body, headers) -> our provider error."""
    status = int(getattr(exc, "status_code", 0) or 0)
    headers = getattr(exc, "headers", None)
    body = _decode(getattr(exc, "body", b""))
    message, field = _first_error(body)
    violations, violation_field = _violations(headers)
    if violations:  # a spec stand-in: its body is a placeholder, the header is the reason
        message, field = violations, violation_field
    if status == 429:
        wait = retry_after(headers)
        return ProviderUnavailable(
            f"SendGrid rate limit reached (429); waiting {wait or 0:.1f} s",
            status=status,
            body=body,
            retry_after=wait,
        )
    if status in REJECT_STATUSES or (400 <= status < 500):
        text = f"SendGrid refused the request ({status}): {message or 'no message'}"
        if field:
            text += f" (field: {field})"
        if violations:
            body = f"{body}\nsl-violations: {violations}"
        return ProviderRejected(
            text, status=status, body=body, field=field, hint=_HINTS.get(status)
        )
    return ProviderUnavailable(
        f"SendGrid is unavailable ({status}): {message or body[:200] or 'no message'}",
        status=status,
        body=body,
    )


def map_transport_error(exc: BaseException) -> ProviderUnavailable:
    """No HTTP answer: was the request sent (DeliveryUnknown) or not (ProviderUnavailable)?

    urllib tells us: it wraps in URLError every OSError raised while it connects and
    writes the request (refused, DNS, connect timeout, TLS, a connection that broke
    before the whole body was written: SendGrid cannot have accepted a request it did
    not fully receive).  Whatever happens while waiting for or reading the answer
    (a read timeout, a connection closed after the request went out) comes through
    unwrapped, and then SendGrid may have accepted the batch.
    """
    if isinstance(exc, urllib.error.URLError):
        reason = exc.reason
        if isinstance(reason, TimeoutError | socket.timeout):
            return ProviderUnavailable(f"cannot connect to SendGrid: timed out ({reason})")
        return ProviderUnavailable(f"cannot connect to SendGrid: {reason}")
    if isinstance(exc, TimeoutError | socket.timeout):
        return DeliveryUnknown("SendGrid did not answer before the timeout (send.timeout)")
    return DeliveryUnknown(f"the connection to SendGrid broke after the request was sent: {exc!r}")


class SendGridBackend(Backend):
    """Posts batches through ``sendgrid.SendGridAPIClient`` (any host: tests use 127.0.0.1)."""

    name = "sendgrid"
    label = "SendGrid"

    def __init__(self, api_key: str, settings: Send, *, host: str | None = None) -> None:
        from sendgrid import SendGridAPIClient

        self.settings = settings
        self.host = (host or DEFAULT_HOST).rstrip("/")
        self.timeout = settings.timeout
        self._client = SendGridAPIClient(api_key=api_key, host=self.host)

    def describe(self) -> str:
        where = "" if self.host == DEFAULT_HOST else f" at {self.host}"
        sandbox = " (sandbox mode: nothing is delivered)" if self.settings.sandbox_mode else ""
        return f"SendGrid{where}{sandbox}"

    def _call(self, request: Callable[[], Any]) -> Any:
        import python_http_client.exceptions as hx

        try:
            return request()
        except hx.HTTPError as exc:
            raise map_http_error(exc) from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            raise map_transport_error(exc) from None

    def _post_encoded(self, endpoint: Any, body: bytes) -> Any:
        """POST JSON that is already encoded, through the client's own request function.

        ``Client.post`` would json.dumps the body itself, and it formats the whole
        request body into a debug-log string even when debug logging is off (3 ms per
        1,000-recipient request).  ``_make_request`` is python_http_client's documented
        seam ("separated into its own function so we can mock it"); it keeps the client's
        URL, headers (auth, user agent) and its HTTPError mapping.
        """
        from python_http_client.client import Response

        request = urllib.request.Request(
            endpoint._build_url(None),
            data=body,
            headers={**endpoint.request_headers, "Content-Type": "application/json"},
            method="POST",
        )
        opener = urllib.request.build_opener()
        return Response(endpoint._make_request(opener, request, timeout=self.timeout))

    def post_payload(self, payload: dict[str, Any] | bytes) -> Outcome:
        """POST a ``/v3/mail/send`` body: a dict, or JSON already encoded."""
        endpoint = self._client.client.mail.send
        if isinstance(payload, bytes):
            response = self._call(lambda: self._post_encoded(endpoint, payload))
        else:
            response = self._call(lambda: endpoint.post(request_body=payload, timeout=self.timeout))
        status = int(response.status_code)
        if not 200 <= status < 300:
            raise ProviderUnavailable(
                f"SendGrid answered {status}", status=status, body=_decode(response.body)
            )
        return Outcome(status=status, provider_id=_header(response.headers, "X-Message-Id"))

    def send_batch(self, content: IssueContent, batch: Batch) -> Outcome:
        return self.post(self.prepare(content, batch))

    def prepare(self, content: IssueContent, batch: Batch) -> Prepared:
        return Prepared(content, batch, encode_payload(content, batch, self.settings))

    def post(self, prepared: Prepared) -> Outcome:
        assert prepared.body is not None
        return self.post_payload(prepared.body)

    def create_schedule(self) -> str:
        endpoint = self._client.client.mail.batch
        response = self._call(lambda: endpoint.post(timeout=self.timeout))
        try:
            batch_id = json.loads(_decode(response.body))["batch_id"]
        except (ValueError, KeyError, TypeError):
            raise ProviderUnavailable(
                "SendGrid did not return a batch id for the scheduled send",
                status=int(response.status_code),
                body=_decode(response.body),
            ) from None
        return str(batch_id)

    def cancel_schedule(self, schedule_id: str) -> None:
        # POST /v3/user/scheduled_sends {"batch_id", "status": "cancel"} (Cancel Scheduled
        # Sends API; not in the mail spec that Prism serves).
        endpoint = self._client.client.user.scheduled_sends
        body = {"batch_id": schedule_id, "status": "cancel"}
        self._call(lambda: endpoint.post(request_body=body, timeout=self.timeout))
