"""Addresses in log lines: a keyed tag such as ``<3fa1c09b2e>`` instead of the address.

A log line must let support follow one reader across lines ("<3fa1c09b2e>
unsubscribed twice") without letting whoever holds the log and a subscriber list
tell who unsubscribed.  An unkeyed hash fails the second test (hash every address
of the list and compare), and so does a partial address.  The tag is an HMAC of the
normalised address, keyed with a key derived from the first NEWSLETTER_SECRET key
(derived, so that a tag never shares a key with an unsubscribe token), cut to 10
hex characters: plenty to tell a list's readers apart, worthless without the secret.
Rotating NEWSLETTER_SECRET changes every tag from then on.

To find one reader's lines, support runs (with the server's NEWSLETTER_SECRET set)::

    python -m newsletter.logmask ana@example.org      # prints <…>; grep the log for it
"""

from __future__ import annotations

import hashlib
import hmac
import sys
from collections.abc import Sequence

from .addresses import suppression_key
from .config import newsletter_secrets
from .errors import NewsletterError

TAG_HEX_CHARS = 10
_PURPOSE = b"newsletter log address tag v1"


def masked(email: str) -> str:
    """``a•••@example.org``: enough for readers to know which address, not to copy it (the
    pages a link opens may be seen by someone the email was forwarded to)."""
    local, _, domain = email.rpartition("@")
    return f"{local[:1]}•••@{domain}"


def tag_key(secrets: Sequence[bytes]) -> bytes:
    """The tag key derived from the newest NEWSLETTER_SECRET key (never the key itself)."""
    return hmac.new(secrets[0], _PURPOSE, hashlib.sha256).digest()


def address_tag(email: str, key: bytes) -> str:
    """``<10 hex>`` for an address; the same address (any case, any spacing) gives the same tag."""
    digest = hmac.new(key, suppression_key(email).encode("utf-8"), hashlib.sha256).hexdigest()
    return f"<{digest[:TAG_HEX_CHARS]}>"


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or any(a.startswith("-") for a in args):
        print(
            "usage: python -m newsletter.logmask ADDRESS [ADDRESS ...]\n"
            "prints the tag that `newsletter serve` writes in its log for each address",
            file=sys.stderr,
        )
        return 2
    try:
        key = tag_key(newsletter_secrets())
    except NewsletterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for email in args:
        print(f"{address_tag(email, key)} {email}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
