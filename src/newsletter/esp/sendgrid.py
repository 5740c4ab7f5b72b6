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
"""

from __future__ import annotations

import http.client
import json
import socket
import time
import urllib.error
from email.utils import parsedate_to_datetime
from typing import Any

from ..config import Send
from ..errors import ProviderRejected, ProviderUnavailable
from .base import Backend, Batch, DeliveryUnknown, IssueContent, Outcome

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


def build_payload(content: IssueContent, batch: Batch, settings: Send) -> dict[str, Any]:
    """The ``/v3/mail/send`` body for one batch (the outbox writes exactly this)."""
    personalizations = []
    correlation = batch.correlation
    for r in batch.recipients:
        to: dict[str, str] = {"email": r.email}
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


def _violations(headers: Any) -> str | None:
    """Prism's ``sl-violations`` header, as readable text (the real reason behind its 400s)."""
    raw = _header(headers, "sl-violations")
    if not raw:
        return None
    try:
        items = json.loads(raw)
    except ValueError:
        return raw
    if not isinstance(items, list):
        return raw
    parts = []
    for item in items:
        if isinstance(item, dict):
            where = ".".join(str(p) for p in item.get("location", [])[2:])
            parts.append(f"{where}: {item.get('message')}" if where else str(item.get("message")))
    return "; ".join(parts) or raw


def map_http_error(exc: Any) -> ProviderRejected | ProviderUnavailable:
    """python_http_client's HTTPError (status, body, headers) -> our provider error."""
    status = int(getattr(exc, "status_code", 0) or 0)
    headers = getattr(exc, "headers", None)
    body = _decode(getattr(exc, "body", b""))
    message, field = _first_error(body)
    violations = _violations(headers)
    if status == 429:
        wait = retry_after(headers)
        return ProviderUnavailable(
            f"SendGrid rate limit reached (429); waiting {wait or 0:.1f} s",
            status=status, body=body, retry_after=wait,
        )
    if status in REJECT_STATUSES or (400 <= status < 500):
        text = f"SendGrid refused the request ({status}): {message or 'no message'}"
        if field:
            text += f" (field: {field})"
        if violations:
            text += f"; {violations}"
        if violations:
            body = f"{body}\nsl-violations: {violations}"
        return ProviderRejected(text, status=status, body=body, field=field,
                                hint=_HINTS.get(status))
    return ProviderUnavailable(
        f"SendGrid is unavailable ({status}): {message or body[:200] or 'no message'}",
        status=status, body=body,
    )


def map_transport_error(exc: BaseException) -> ProviderUnavailable:
    """No HTTP answer: a refused connection sent nothing; anything later may have arrived."""
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    if isinstance(reason, ConnectionRefusedError | socket.gaierror):
        return ProviderUnavailable(f"cannot connect to SendGrid: {reason}")
    if isinstance(reason, TimeoutError | socket.timeout):
        return DeliveryUnknown("SendGrid did not answer before the timeout")
    return DeliveryUnknown(f"the connection to SendGrid broke during the request: {reason!r}")


class SendGridBackend(Backend):
    """Posts batches through ``sendgrid.SendGridAPIClient`` (any host: tests use 127.0.0.1)."""

    name = "sendgrid"

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

    def _call(self, endpoint: Any, body: Any) -> Any:
        import python_http_client.exceptions as hx

        try:
            return endpoint.post(request_body=body, timeout=self.timeout)
        except hx.HTTPError as exc:
            raise map_http_error(exc) from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            raise map_transport_error(exc) from None

    def post_payload(self, payload: dict[str, Any]) -> Outcome:
        """POST a ready-made ``/v3/mail/send`` body."""
        response = self._call(self._client.client.mail.send, payload)
        status = int(response.status_code)
        if not 200 <= status < 300:
            raise ProviderUnavailable(f"SendGrid answered {status}", status=status,
                                      body=_decode(response.body))
        return Outcome(status=status, provider_id=_header(response.headers, "X-Message-Id"))

    def send_batch(self, content: IssueContent, batch: Batch) -> Outcome:
        return self.post_payload(build_payload(content, batch, self.settings))

    def create_schedule(self) -> str:
        response = self._call(self._client.client.mail.batch, None)
        try:
            batch_id = json.loads(_decode(response.body))["batch_id"]
        except (ValueError, KeyError, TypeError):
            raise ProviderUnavailable(
                "SendGrid did not return a batch id for the scheduled send",
                status=int(response.status_code), body=_decode(response.body),
            ) from None
        return str(batch_id)

    def cancel_schedule(self, schedule_id: str) -> None:
        # POST /v3/user/scheduled_sends {"batch_id", "status": "cancel"} (Cancel Scheduled
        # Sends API; not in the mail spec that Prism serves).
        self._call(
            self._client.client.user.scheduled_sends,
            {"batch_id": schedule_id, "status": "cancel"},
        )
