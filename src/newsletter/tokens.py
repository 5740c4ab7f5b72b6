"""Unsubscribe tokens as the first sends made them, and the one verifier of every form.

Sends now make opaque, sealed tokens (:mod:`newsletter.link_tokens`), which
:func:`verify_token` accepts; the signed form below (readable base64 of the list and
address, plus a MAC) is still verified, so links in issues already sent keep working
until their key is rotated out.  :func:`make_token` and :class:`Signer` still write that
form, for tests and tools that check the old links.

The older form: HMAC-SHA256 over (list, address), keyed by NEWSLETTER_SECRET.

The token carries the address and list themselves (base64url) so that the
one-click endpoint needs no lookup table that could be lost or go stale; the
MAC makes it unforgeable.  Several keys are accepted so the secret can be
rotated (see :func:`newsletter.config.newsletter_secrets`); new tokens are
always signed with the first.  Verification accepts only the exact spelling
:func:`make_token` writes (one link per address, not many that decode alike),
compares in constant time and says nothing about *why* a token failed, so a
probe learns nothing.

A *test token* (in a ``--test-to`` copy) carries a third line, ``test``, inside the
signed payload: the server shows it a "this is a test copy" page and records nothing,
so a colleague trying the link is not unsubscribed from every list.  The mark is
covered by the MAC, so it can be neither added to nor removed from a real link, and
tokens without it (every link already sent) verify exactly as before.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Sequence
from dataclasses import dataclass

from .errors import TokenError
from .link_tokens import UNSUBSCRIBE, is_sealed, open_reader

_SEP = "\n"
_MAC_BYTES = 32
MAX_TOKEN_CHARS = 1024
# The only spelling make_token produces: unpadded base64url body, a dot, 43 characters of MAC.
_CANONICAL = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{43}")


_TEST_MARK = "test"


@dataclass(frozen=True)
class Unsubscribe:
    email: str
    list_name: str
    test: bool = False  # from a test copy: show a page, record nothing


_B64URL = bytes.maketrans(b"+/", b"-_")
_PREFIX = b"newsletter-unsubscribe-v1\0"


def _b64(data: bytes) -> str:
    return binascii.b2a_base64(data, newline=False).translate(_B64URL).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    pad = "=" * (-len(text) % 4)
    return base64.urlsafe_b64decode(text + pad)


def _mac(key: bytes, payload: bytes) -> bytes:
    return hmac.new(key, _PREFIX + payload, hashlib.sha256).digest()


class Signer:
    """Signs tokens with the newest key; made once per send, called once per recipient.

    The key and the fixed prefix are absorbed into one HMAC object up front and
    copied per token, about three times faster than keying a new HMAC each time,
    which matters when a send signs 100,000 tokens.
    """

    def __init__(self, keys: Sequence[bytes], *, test: bool = False) -> None:
        if not keys:
            raise ValueError("no signing key")
        self._keyed = hmac.new(keys[0], _PREFIX, hashlib.sha256)
        self._suffix = f"{_SEP}{_TEST_MARK}" if test else ""

    def __call__(self, email: str, list_name: str) -> str:
        if _SEP in list_name or _SEP in email:
            raise ValueError("newline in address or list name")
        payload = f"{list_name}{_SEP}{email}{self._suffix}".encode()
        mac = self._keyed.copy()
        mac.update(payload)
        return f"{_b64(payload)}.{_b64(mac.digest())}"


def make_token(email: str, list_name: str, keys: Sequence[bytes], *, test: bool = False) -> str:
    """A URL-safe token for this address on this list, signed with the newest key;
    ``test``: marked as a test copy's link (see the module docstring)."""
    return Signer(keys, test=test)(email, list_name)


def verify_token(token: str, keys: Sequence[bytes]) -> Unsubscribe:
    """Return who the token unsubscribes, or raise TokenError (one message for every failure)."""
    failure = TokenError("unknown or invalid unsubscribe link")
    if is_sealed(token):  # the opaque form every send makes now (link_tokens.py)
        try:
            who = open_reader(UNSUBSCRIBE, token, keys)
        except TokenError:
            raise failure from None
        return Unsubscribe(email=who.email, list_name=who.list_name, test=who.test)
    if len(token) > MAX_TOKEN_CHARS or not _CANONICAL.fullmatch(token):
        raise failure
    body, sig = token.split(".")
    try:
        payload = _unb64(body)
        mac = _unb64(sig)
    except (binascii.Error, ValueError):
        raise failure from None
    # base64 decoding forgives stray characters, padding and unused low bits, so several
    # strings decode alike; only the one make_token writes is the link we sent.
    if _b64(payload) != body or _b64(mac) != sig:
        raise failure
    # Compare against every key, without stopping early, so timing tells nothing.
    ok = False
    for key in keys:
        ok |= hmac.compare_digest(mac, _mac(key, payload))
    if not ok or len(mac) != _MAC_BYTES:
        raise failure
    try:
        list_name, email, *mark = payload.decode("utf-8").split(_SEP)
    except (UnicodeDecodeError, ValueError):
        raise failure from None
    if mark not in ([], [_TEST_MARK]):
        raise failure
    return Unsubscribe(email=email, list_name=list_name, test=bool(mark))
