"""SendGrid v3: the one module that knows SendGrid's field names, limits and error shapes.

:func:`build_payload` translates an issue batch into a ``POST /v3/mail/send``
body; :class:`SendGridBackend` posts it with httpx (public API only: the bytes,
headers and timeout are those the official ``sendgrid`` client sends) and maps
the answer onto our provider errors, keeping the status, the body and, when the
stand-in is Prism, its ``sl-violations`` header.  SendGrid's own settings are the
``[sendgrid]`` table (:class:`SendGridSettings`); :func:`api_host` is the one place
that decides which API host a command talks to (the send and `suppressions sync`).

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

import json
import os
from collections.abc import Callable
from datetime import timedelta
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any, ClassVar

from ..config import Send, Workspace, env_secret
from ..errors import ConfigError, ProviderRejected, ProviderUnavailable
from ..retry import retry_after
from .base import (
    Backend,
    Batch,
    Capabilities,
    DeliveryUnknown,
    IssueContent,
    Outcome,
    Prepared,
    Scheduling,
)
from .sendgrid_payload import SendGridSettings, build_payload, encode_payload
from .settings import ProviderSettings

if TYPE_CHECKING:
    import httpx

API_KEY_ENV = "SENDGRID_API_KEY"
API_HOST_ENV = "SENDGRID_API_HOST"  # another API base URL (tests point it at a stand-in)
DEFAULT_HOST = "https://api.sendgrid.com"
REJECT_STATUSES = {400, 401, 403, 404, 405, 413, 415}

CAPABILITIES = Capabilities(
    max_batch=1000,  # personalizations per request
    scheduling=Scheduling(
        max_ahead=timedelta(hours=72),  # send_at at most 72 hours ahead
        cancel_margin=timedelta(minutes=10),  # a schedule cannot be cancelled later
    ),
    substitutions=True,
    sandbox=True,
    tracking=True,
)

__all__ = [
    "API_HOST_ENV",
    "API_KEY_ENV",
    "CAPABILITIES",
    "SendGridBackend",
    "SendGridSettings",
    "api_host",
    "api_key",
    "build_payload",
    "encode_payload",
    "map_http_error",
    "map_transport_error",
    "retry_after",
]


def api_host(ws: Workspace | None) -> str:
    """The API base URL: SENDGRID_API_HOST, else ``[sendgrid] api_host``, else SendGrid's.

    The one resolver for every SendGrid call (sending, cancelling, `suppressions
    sync`), so the tests' stand-in and a configured host apply to all of them alike.
    """
    env = os.environ.get(API_HOST_ENV, "").strip()
    if env:
        if not env.startswith(("http://", "https://")):
            raise ConfigError(
                f"{API_HOST_ENV}={env!r} is not a URL",
                key=API_HOST_ENV,
                hint="e.g. http://127.0.0.1:4010",
            )
        return env.rstrip("/")
    configured = ws.config.provider(SendGridSettings).api_host if ws is not None else None
    return str(configured).rstrip("/") if configured else DEFAULT_HOST


def api_key(*, required: bool = True) -> str | None:
    """SENDGRID_API_KEY (checked to be fit for an HTTP header); a ConfigError if required
    and missing."""
    return env_secret(API_KEY_ENV, required=required, header=True)


def user_agent() -> str:
    """What the official client says it is (SendGrid's own statistics read it)."""
    try:
        return f"sendgrid/{version('sendgrid')};python"
    except PackageNotFoundError:  # pragma: no cover - it is a dependency
        return "sendgrid;python"


_HINTS = {
    400: "SendGrid did not accept the message as built; the field above says what to change",
    401: "check SENDGRID_API_KEY: SendGrid did not recognise it",
    403: "the API key needs the Mail Send permission, and the sender address must be verified",
    413: "the issue is too large for one request; shorten it or use fewer images inline",
}


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


def _violations(headers: httpx.Headers | None) -> tuple[str | None, str | None]:
    """Prism's ``sl-violations`` header as (readable text, first field): the real reason
    behind its 400s, whose body is always the spec's placeholder example."""
    raw = headers.get("sl-violations") if headers is not None else None
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


def map_http_error(response: httpx.Response) -> ProviderRejected | ProviderUnavailable:
    """An answer that is not 2xx -> our provider error (status, body, SendGrid's message)."""
    status = response.status_code
    headers = response.headers
    body = _decode(response.content)
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
    what = "is unavailable" if status >= 500 else "answered"
    return ProviderUnavailable(
        f"SendGrid {what} ({status}): {message or body[:200] or 'no message'}",
        status=status,
        body=body,
    )


def map_transport_error(exc: Exception, *, left: bool | None = None) -> ProviderUnavailable:
    """No HTTP answer: was the request sent (DeliveryUnknown) or not (ProviderUnavailable)?

    ``left``: whether the whole request was written to the connection, as httpx's
    ``trace`` extension saw it (None: not traced; then the kind of error decides).
    Failing to connect (refused, DNS, connect timeout, TLS) or to write the request
    (a connection that broke before the whole body was written: SendGrid cannot have
    accepted a request it did not fully receive) is safe to retry.  Whatever happens
    once the request is out (a read timeout, a connection closed before the answer)
    may have been accepted.  httpx reads on after a failed write (a server may answer
    early), so the read error that follows one is judged by ``left``, not by its kind.
    """
    import httpx

    before = (
        httpx.ConnectError,
        httpx.ConnectTimeout,
        httpx.PoolTimeout,
        httpx.WriteError,
        httpx.WriteTimeout,
        httpx.UnsupportedProtocol,
        httpx.ProxyError,
        httpx.LocalProtocolError,
    )
    if isinstance(exc, before) or left is False:
        if isinstance(exc, httpx.TimeoutException):
            return ProviderUnavailable(f"cannot connect to SendGrid: timed out ({exc})")
        return ProviderUnavailable(f"cannot connect to SendGrid: {exc}")
    if isinstance(exc, httpx.TimeoutException):
        return DeliveryUnknown("SendGrid did not answer before the timeout (send.timeout)")
    return DeliveryUnknown(f"the connection to SendGrid broke after the request was sent: {exc!r}")


class _Trace:
    """httpx's documented ``trace`` extension: calls ``leaving`` when the connection is
    open and the request's first byte is about to be written (event
    ``<protocol>.send_request_headers.started``), and notes whether the body was
    written out in full (``<protocol>.send_request_body.complete``)."""

    __slots__ = ("leaving", "left", "seen")

    def __init__(self, leaving: Callable[[], None] | None = None) -> None:
        self.seen = False
        self.left = False
        self.leaving = leaving

    def __call__(self, event: str, info: dict[str, Any]) -> None:
        self.seen = True
        if self.leaving is not None and event.endswith(".send_request_headers.started"):
            leaving, self.leaving = self.leaving, None
            leaving()
        elif event.endswith(".send_request_body.complete"):
            self.left = True


class SendGridBackend(Backend):
    """Posts batches to SendGrid's v3 API with httpx (any host: tests use 127.0.0.1)."""

    name = "sendgrid"
    label = "SendGrid"
    capabilities: ClassVar[Capabilities] = CAPABILITIES
    settings_model: ClassVar[type[ProviderSettings] | None] = SendGridSettings

    def __init__(
        self,
        api_key: str,
        settings: Send,
        *,
        host: str | None = None,
        sendgrid: SendGridSettings | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        import httpx

        self.settings = settings
        self.options = sendgrid or SendGridSettings()
        self.host = (host or DEFAULT_HOST).rstrip("/")
        self.timeout = settings.timeout
        # The official client's headers; a new connection per request (Connection:
        # close), as it makes them, so no request is ever written to a connection
        # SendGrid has just closed as idle (that would be an answer lost, not a refusal).
        self._client = httpx.Client(
            headers={
                "Authorization": f"Bearer {api_key}",
                "User-Agent": user_agent(),
                "Accept": "application/json",
                "Accept-Encoding": "identity",
                "Connection": "close",
            },
            timeout=settings.timeout,
            follow_redirects=False,
            transport=transport,
        )

    @classmethod
    def from_workspace(cls, ws: Workspace) -> SendGridBackend:
        key = api_key()
        assert key is not None
        return cls(
            key,
            ws.config.send,
            host=api_host(ws),
            sendgrid=ws.config.provider(SendGridSettings),
        )

    @classmethod
    def chosen_by_auto(cls) -> bool:
        return api_key(required=False) is not None

    def describe(self) -> str:
        where = "" if self.host == DEFAULT_HOST else f" at {self.host}"
        sandbox = " (sandbox mode: nothing is delivered)" if self.options.sandbox_mode else ""
        return f"SendGrid{where}{sandbox}"

    def close(self) -> None:
        self._client.close()

    def _post(
        self, path: str, body: bytes | None, leaving: Callable[[], None] | None = None
    ) -> httpx.Response:
        """POST ``body`` (JSON, already encoded) to ``path``; a 2xx answer or our error."""
        import httpx

        trace = _Trace(leaving)
        headers = {"Content-Type": "application/json"} if body is not None else None
        try:
            response = self._client.post(
                self.host + path,
                content=body,
                headers=headers,
                extensions={"trace": trace},
            )
        except httpx.RequestError as exc:
            raise map_transport_error(exc, left=trace.left if trace.seen else None) from None
        if response.status_code >= 300:
            raise map_http_error(response)
        return response

    def post_payload(
        self, payload: dict[str, Any] | bytes, leaving: Callable[[], None] | None = None
    ) -> Outcome:
        """POST a ``/v3/mail/send`` body: a dict, or JSON already encoded."""
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode("utf-8")
        response = self._post("/v3/mail/send", body, leaving)
        return Outcome(
            status=response.status_code, provider_id=response.headers.get("X-Message-Id")
        )

    def send_batch(self, content: IssueContent, batch: Batch) -> Outcome:
        return self.post(self.prepare(content, batch))

    def prepare(self, content: IssueContent, batch: Batch) -> Prepared:
        return Prepared(content, batch, encode_payload(content, batch, self.settings, self.options))

    def post(self, prepared: Prepared, leaving: Callable[[], None] | None = None) -> Outcome:
        assert prepared.body is not None
        return self.post_payload(prepared.body, leaving)

    def create_schedule(self) -> str:
        response = self._post("/v3/mail/batch", None)
        body = _decode(response.content)
        try:
            batch_id = json.loads(body)["batch_id"]
        except (ValueError, KeyError, TypeError):
            raise ProviderUnavailable(
                "SendGrid did not return a batch id for the scheduled send",
                status=response.status_code,
                body=body,
            ) from None
        return str(batch_id)

    def cancel_schedule(self, schedule_id: str) -> None:
        # POST /v3/user/scheduled_sends {"batch_id", "status": "cancel"} (Cancel Scheduled
        # Sends API; not in the mail spec that Prism serves).
        body = {"batch_id": schedule_id, "status": "cancel"}
        self._post("/v3/user/scheduled_sends", json.dumps(body).encode("utf-8"))
