"""SendGrid Event Webhook batches -> our :class:`newsletter.events.Event`.

The only module that knows SendGrid's event field names.  A batch is a JSON
array of objects; the send step's ``custom_args`` (``nl_issue``, ``nl_list``,
``nl_send``, ``nl_batch``) come back as top-level keys of each event, which is
how an event finds its issue and batch again.

Which events stop further mail (anything else is only counted):

* ``bounce`` -> "bounced", except ``type: "blocked"`` (a temporary refusal
  that SendGrid itself does not suppress);
* ``dropped`` whose reason says the address is dead or opted out
  ("Bounced Address", "Invalid", "Spam Reporting Address", "Unsubscribed Address");
  a drop for a message-level reason ("Invalid SMTPAPI header", "Spam Content")
  says nothing about the address;
* ``spamreport`` -> "spam"; ``unsubscribe`` and ``group_unsubscribe`` -> "unsubscribed".

:class:`SendGridWebhook` is the server's adapter (see :mod:`.webhooks`): SendGrid's
signature check (ECDSA over timestamp + raw body, by the ``sendgrid`` package) plus
our freshness rule, then the parsing below.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
from collections.abc import Mapping
from typing import Any

from ..addresses import suppression_key
from ..config import WEBHOOK_KEY_ENV, Workspace, env_secret
from ..errors import ConfigError
from ..events import Event
from .webhooks import BatchError, ParsedBatch, WebhookAdapter, WebhookRefused

PROVIDER = "sendgrid"
SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"
MAX_SKEW_SECONDS = 300  # SendGrid's timestamp may be this old (or this far ahead) at most

# SendGrid event name -> our kind (bounce is split by its "type" below).
_KINDS = {
    "processed": "processed",
    "delivered": "delivered",
    "deferred": "deferred",
    "bounce": "bounced",
    "blocked": "blocked",
    "dropped": "dropped",
    "open": "open",
    "click": "click",
    "spamreport": "spamreport",
    "unsubscribe": "unsubscribe",
    "group_unsubscribe": "group_unsubscribe",
    "group_resubscribe": "group_resubscribe",
}

_SUPPRESS = {
    "bounced": "bounced",
    "spamreport": "spam",
    "unsubscribe": "unsubscribed",
    "group_unsubscribe": "unsubscribed",
}

# Lower-cased `reason` of a dropped event -> suppression reason.
_DROP_SUPPRESS = {
    "bounced address": "bounced",
    "invalid": "bounced",
    "invalid address": "bounced",
    "invalid email": "bounced",
    "spam reporting address": "spam",
    "unsubscribed address": "unsubscribed",
}

MAX_FIELD_CHARS = 2048  # a URL or reason longer than this is cut in the normalised columns
MAX_TIMESTAMP = 2**33  # year 2242: a later (or negative) time is a mistake, read as "unknown"
_MAX_INT_DIGITS = 100  # longer integer literals are read as floats (Python refuses >4300 digits)


def _text(value: Any, limit: int = MAX_FIELD_CHARS) -> str | None:
    if value is None or isinstance(value, dict | list):
        return None
    text = str(value).strip()
    return text[:limit] if text else None


def _timestamp(value: Any) -> int | None:
    """Unix seconds, or None for anything that is not a finite time in a sane range."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        text = value.strip()
        if not text or len(text) > 32:
            return None
        try:
            value = float(text)
        except ValueError:
            return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, int | float) and 0 <= value < MAX_TIMESTAMP:
        return int(value)
    return None


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return bool(value)


def normalise_event(item: Mapping[str, Any], *, raw: str | None = None) -> Event:
    """One SendGrid event -> Event; raises BatchError when it has no event name or address."""
    name = _text(item.get("event"))
    email = _text(item.get("email"), 320)
    if not name:
        raise BatchError("event without an `event` field")
    if not email:
        raise BatchError(f"{name} event without an `email` field")
    raw_json = (
        raw if raw is not None else json.dumps(item, separators=(",", ":"), ensure_ascii=False)
    )
    kind = _KINDS.get(name, "other")
    bounce_type = (_text(item.get("type")) or "").lower()
    if name == "bounce" and bounce_type == "blocked":
        kind = "blocked"
    reason = _text(item.get("reason")) or _text(item.get("response"))
    suppress = _SUPPRESS.get(kind)
    if kind == "dropped":
        suppress = _DROP_SUPPRESS.get((reason or "").lower())
    event_id = _text(item.get("sg_event_id"), 200)
    if not event_id:
        # SendGrid always sends one; without it, a hash of the event still makes a
        # re-posted batch harmless.
        event_id = "sha256:" + hashlib.sha256(raw_json.encode("utf-8")).hexdigest()
    at = _timestamp(item.get("timestamp"))
    return Event(
        event_id=event_id,
        provider=PROVIDER,
        kind=kind,
        email=suppression_key(email),  # one spelling: IDN domains as Unicode, lower case
        at=at if at is not None else int(time.time()),
        issue_id=_text(item.get("nl_issue"), 200),
        list_name=_text(item.get("nl_list"), 200),
        send_id=_text(item.get("nl_send"), 200),
        batch_id=_text(item.get("nl_batch"), 200),
        url=_text(item.get("url")) if kind == "click" else None,
        reason=reason,
        machine=kind == "open" and _truthy(item.get("sg_machine_open")),
        suppress=suppress,
        raw=raw_json,
    )


def _json_int(text: str) -> int | float:
    return int(text) if len(text) <= _MAX_INT_DIGITS else float(text)


def decode(body: bytes) -> Any:
    """The JSON of a (verified) body; BatchError if it is not JSON at all.

    Absurdly long integers become floats (inf) instead of failing the whole batch
    on Python's integer-digits limit; the fields that use numbers refuse them.
    """
    try:
        return json.loads(body, parse_int=_json_int)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError
        raise BatchError(f"malformed JSON: {exc}") from None


def parse_batch(data: Any) -> ParsedBatch:
    """A decoded webhook body -> events; items that are not usable are listed, not fatal.

    A batch with one odd item must still store the others: answering 4xx would
    make SendGrid retry (and fail) the whole batch, losing the good events.
    """
    if not isinstance(data, list):
        raise BatchError(f"expected a JSON array of events, got {type(data).__name__}")
    out = ParsedBatch()
    for index, item in enumerate(data):
        if not isinstance(item, dict):
            out.skipped.append(f"[{index}]: not an object")
            continue
        try:
            out.events.append(normalise_event(item))
        except BatchError as exc:
            out.skipped.append(f"[{index}]: {exc}")
        except (ValueError, OverflowError, RecursionError) as exc:  # a value we cannot convert
            out.skipped.append(f"[{index}]: unusable value ({exc.__class__.__name__})")
    return out


# --- the server's adapter --------------------------------------------------------------------


class SendGridWebhook:
    """SendGrid's Event Webhook for `newsletter serve`: verify first, parse second."""

    provider = PROVIDER
    label = "SendGrid"
    key_env = WEBHOOK_KEY_ENV

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

    def verify(self, headers: Mapping[str, str], body: bytes, now: float | None = None) -> None:
        refusal = self.refusal(
            body, headers.get(SIGNATURE_HEADER), headers.get(TIMESTAMP_HEADER), now
        )
        if refusal:
            raise WebhookRefused(refusal)

    def refusal(
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

    def parse(self, body: bytes) -> ParsedBatch:
        return parse_batch(decode(body))


def webhook_adapter(ws: Workspace) -> WebhookAdapter:
    """The adapter, with the key from SENDGRID_WEBHOOK_PUBLIC_KEY (unset: not configured)."""
    return SendGridWebhook(env_secret(WEBHOOK_KEY_ENV, required=False))
