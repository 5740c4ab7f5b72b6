"""A subscriber as one recipient of a batch: their unsubscribe link, placeholder values
and List-Unsubscribe headers.

This is the hot path of a large send (once per recipient), so it is written for speed.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING
from urllib.parse import quote

from . import message
from .config import (
    SECRET_ENV,
    env_secret,
    newsletter_secrets,
)
from .esp.base import Backend, Recipient
from .ledger import (
    RecipientLike,
    RecipientRow,
)
from .link_tokens import LinkSigner

if TYPE_CHECKING:
    pass

# A clearly-labelled key for the outbox when NEWSLETTER_SECRET is unset: its links are
# accepted only by `newsletter serve --dev-key` (on this computer), never by a server
# that has the real secret.  It is public, so nothing that delivers mail may use it.

DEV_SECRET = b"newsletter-DEVELOPMENT-key-not-secret"


DEV_SECRET_WARNING = (
    f"warning: {SECRET_ENV} is not set; the outbox uses a development key, so its "
    "unsubscribe links work only with `newsletter serve --dev-key` on this computer"
)


def unsubscribe_keys(backend: Backend) -> tuple[list[bytes], bool]:
    """(keys, is_development_key): a backend that delivers nothing (the outbox) may use a
    labelled development key."""
    if env_secret(SECRET_ENV, required=False) is None and not backend.capabilities.delivers:
        return [DEV_SECRET], True
    return newsletter_secrets(), False


_LANGUAGE = re.compile(r"[A-Za-z]{2,8}(?:-[A-Za-z0-9]{1,7})*")


def language_query(language: str | None) -> str:
    """``?lang=<code>`` for the unsubscribe URL, so its page speaks the reader's language;
    "" for anything that is not a short language code (2 to 8 characters, e.g. es, pt-BR).

    Lists are typed by people: a value such as "Spanish" or "es, en" is not passed on.
    """
    if not language:
        return ""
    code = language.strip().replace("_", "-")
    if len(code) > 8 or not _LANGUAGE.fullmatch(code):
        return ""
    return "?lang=" + quote(code, safe="")


class Personalizer:
    """A subscriber -> their Recipient: unsubscribe and preferences URLs (opaque sealed
    tokens, :mod:`newsletter.link_tokens`, and ``?lang=`` with the subscriber's language
    or else the issue's), placeholder values, List-Unsubscribe headers.  Cheap enough to
    run for every recipient of every batch.

    ``test``: a test copy's links carry test tokens, which the server answers with a
    "this is a test copy" page instead of unsubscribing anyone."""

    def __init__(
        self,
        keys: Sequence[bytes],
        unsubscribe_base: str,
        mailto: str | None,
        language: str,
        *,
        test: bool = False,
    ) -> None:
        self.keys = list(keys)
        self.sign = LinkSigner(self.keys, test=test)
        self.base = unsubscribe_base if unsubscribe_base.endswith("/") else unsubscribe_base + "/"
        self.mailto = mailto
        self.language = language

    def url(self, email: str, list_name: str, language: str | None = None) -> str:
        query = language_query(language) or language_query(self.language)
        return f"{self.base}u/{self.sign.unsubscribe(email, list_name)}{query}"

    def __call__(self, s: RecipientLike) -> Recipient:
        return self.batch([s])[0]

    def batch(self, people: Sequence[RecipientLike]) -> list[Recipient]:
        """Many at once: the per-recipient loop is the hot path of a large send."""
        base, language, mailto = self.base + "u/", self.language, self.mailto
        prefs = self.base + "p/"
        sign, sign_prefs = self.sign.unsubscribe, self.sign.preferences
        substitutions = message.substitutions
        headers = message.list_unsubscribe_headers
        fallback = language_query(language)
        queries: dict[str | None, str] = {}  # a list has a handful of languages
        out = []
        for s in people:
            email, list_name = s.email, s.list_name
            query = queries.get(s.language)
            if query is None:
                query = queries[s.language] = language_query(s.language) or fallback
            url = base + sign(email, list_name) + query
            preferences_url = prefs + sign_prefs(email, list_name) + query
            out.append(
                Recipient(
                    email,
                    s.name,
                    list_name,
                    substitutions(s.first_name, url, language, preferences_url),
                    headers(url, mailto),
                )
            )
        return out


def row_of(s: RecipientLike) -> RecipientRow:
    return RecipientRow(s.email, s.name, s.first_name, s.language, s.list_name)
