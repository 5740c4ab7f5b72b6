"""From one built issue to per-recipient messages: placeholders and the MIME message.

The HTML and text of an issue are built once, with placeholders where
per-recipient values go; they are filled here (for `.eml` files and previews)
or by the provider (SendGrid `substitutions`).  The HTML and the text part have
*separate* placeholders because a value must be HTML-escaped in one and not in
the other, and a provider substitutes the same string into every part.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

# name -> (placeholder in the text part, placeholder in the HTML part)
FIRST_NAME_TEXT = "%%first_name%%"
FIRST_NAME_HTML = "%%first_name_html%%"
UNSUBSCRIBE_URL = "%%unsubscribe_url%%"  # URL-safe, the same in both parts
PREFERENCES_URL = "%%preferences_url%%"  # the reader's preferences page (/p/<token>)

ALL_PLACEHOLDERS = (FIRST_NAME_TEXT, FIRST_NAME_HTML, UNSUBSCRIBE_URL, PREFERENCES_URL)

# Greeting fallback when a subscriber has no name, per language.
NAME_FALLBACK = {"en": "reader", "es": "lector", "fr": "lecteur", "pt": "leitor"}


def fallback_name(language: str) -> str:
    return NAME_FALLBACK.get(language.split("-")[0].lower(), NAME_FALLBACK["en"])


def substitutions(
    first_name: str | None, unsubscribe_url: str, language: str, preferences_url: str = ""
) -> dict[str, str]:
    """Placeholder -> value for one recipient (the same mapping the provider receives)."""
    name = (first_name or "").strip() or fallback_name(language)
    return {
        FIRST_NAME_TEXT: name,
        FIRST_NAME_HTML: html.escape(name, quote=True),
        UNSUBSCRIBE_URL: unsubscribe_url,
        PREFERENCES_URL: preferences_url,
    }


def fill(template: str, values: Mapping[str, str]) -> str:
    """Replace every placeholder in one pass (a value containing a placeholder stays as it is)."""
    if not values:
        return template
    out: list[str] = []
    i = 0
    n = len(template)
    while i < n:
        j = template.find("%%", i)
        if j < 0:
            out.append(template[i:])
            break
        out.append(template[i:j])
        for key, value in values.items():
            if template.startswith(key, j):
                out.append(value)
                i = j + len(key)
                break
        else:
            out.append("%%")
            i = j + 2
    return "".join(out)


def list_unsubscribe_headers(unsubscribe_url: str, mailto: str | None) -> dict[str, str]:
    """RFC 2369 + RFC 8058 headers: https one-click first, mailto as the fallback."""
    targets = [f"<{unsubscribe_url}>"]
    if mailto:
        targets.append(f"<mailto:{mailto}?subject=unsubscribe>")
    return {
        "List-Unsubscribe": ", ".join(targets),
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }


def mime_message(
    *,
    subject: str,
    from_email: str,
    from_name: str,
    to_email: str,
    to_name: str | None,
    html_body: str,
    text_body: str,
    reply_to: str | None = None,
    headers: Mapping[str, str] | None = None,
    date: datetime | None = None,
    message_id: str | None = None,
    boundary: str | None = None,
) -> EmailMessage:
    """A complete multipart/alternative message (text first, HTML preferred) for one recipient.

    Pass ``date``, ``message_id`` and ``boundary`` for byte-identical output (builds are
    reproducible); left out, they are the current time and random values.
    """
    msg = EmailMessage()
    msg["Subject"] = subject
    msg["From"] = Address(display_name=from_name, addr_spec=from_email)
    msg["To"] = Address(display_name=to_name or "", addr_spec=to_email)
    if reply_to:
        msg["Reply-To"] = reply_to
    when = date or datetime.now(UTC)
    msg["Date"] = format_datetime(when)
    msg["Message-ID"] = message_id or make_msgid(domain=from_email.rpartition("@")[2] or None)
    msg["MIME-Version"] = "1.0"
    for name, value in (headers or {}).items():
        msg[name] = value
    msg.set_content(text_body, subtype="plain", charset="utf-8", cte="quoted-printable")
    msg.add_alternative(html_body, subtype="html", charset="utf-8", cte="quoted-printable")
    if boundary:
        msg.set_boundary(boundary)
    return msg
