"""Opaque link tokens: unsubscribe, preferences and sign-up confirmation links.

A link token is the reader's data (list, address, ...) sealed with AES-GCM-SIV under a
key derived (HKDF-SHA256) from each ``NEWSLETTER_SECRET`` key.  Sealing keeps what
made the first tokens (:mod:`newsletter.tokens`) simple, no lookup table that could be
lost or go stale, and adds what they lacked: nobody can read the address from the URL
(proxy logs, Referer headers, a forwarded email).  The encryption is authenticated, so
a token cannot be forged or altered, and deterministic (a fixed nonce, which GCM-SIV
is designed to allow), so one reader's link is the same in every issue.

Each kind of link is sealed with its own associated data, so an unsubscribe token is
not a preferences token and neither confirms a sign-up.  Several keys are tried, newest
first, so that the secret can be rotated; a token that fails says nothing about why.
Tokens already sent in the older signed form are verified by :mod:`newsletter.tokens`.
"""

from __future__ import annotations

import base64
import binascii
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

from .errors import TokenError

if TYPE_CHECKING:  # imported when a token is first made or read: commands that make none
    from cryptography.hazmat.primitives.ciphers.aead import AESGCMSIV  # start faster

UNSUBSCRIBE, PREFERENCES, CONFIRM = "u", "p", "c"
CONFIRM_SECONDS = 7 * 24 * 3600  # a confirmation link is valid 7 days
MAX_TOKEN_CHARS = 1024
_SEP = "\x1f"  # ASCII unit separator: in no address, list name or cleaned name
_NONCE = bytes(12)
_INFO = b"newsletter link tokens v2"
_TEST = "test"
_CANONICAL = re.compile(r"[A-Za-z0-9_-]{24,1024}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


@lru_cache(maxsize=16)
def _cipher(secret: bytes) -> AESGCMSIV:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.ciphers.aead import AESGCMSIV
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(secret)
    return AESGCMSIV(key)


def _aad(kind: str) -> bytes:
    return f"newsletter-link-v2:{kind}".encode("ascii")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def seal(kind: str, fields: Sequence[str], keys: Sequence[bytes]) -> str:
    """A URL-safe token holding ``fields``, sealed with the newest key for ``kind``."""
    if not keys:
        raise ValueError("no key")
    if any(_SEP in f for f in fields):
        raise ValueError("separator in a token field")
    plain = _SEP.join(fields).encode("utf-8")
    return _b64(_cipher(bytes(keys[0])).encrypt(_NONCE, plain, _aad(kind)))


def unseal(kind: str, token: str, keys: Sequence[bytes], count: int) -> list[str]:
    """The ``count`` fields of a token of ``kind``, or TokenError (one message for all)."""
    failure = TokenError("unknown or invalid link")
    if len(token) > MAX_TOKEN_CHARS or not _CANONICAL.fullmatch(token):
        raise failure
    try:
        sealed = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        raise failure from None
    if _b64(sealed) != token:  # only the spelling we wrote (decoding forgives stray bits)
        raise failure
    from cryptography.exceptions import InvalidTag

    for key in keys:
        try:
            plain = _cipher(bytes(key)).decrypt(_NONCE, sealed, _aad(kind))
        except InvalidTag:
            continue
        try:
            fields = plain.decode("utf-8").split(_SEP)
        except UnicodeDecodeError:
            raise failure from None
        if len(fields) != count:
            raise failure
        return fields
    raise failure


def is_sealed(token: str) -> bool:
    """Whether a token has the sealed form (the older signed tokens contain a dot)."""
    return "." not in token


# --- unsubscribe and preferences: who, on which list ---------------------------------------


@dataclass(frozen=True)
class Reader:
    """Who a link belongs to: an address on a list; ``test``: from a test copy."""

    email: str
    list_name: str
    test: bool = False


class LinkSigner:
    """Makes a recipient's unsubscribe and preferences tokens; one per send, fast per call."""

    def __init__(self, keys: Sequence[bytes], *, test: bool = False) -> None:
        if not keys:
            raise ValueError("no signing key")
        self._cipher = _cipher(bytes(keys[0]))
        self._mark = _TEST if test else ""
        self._aad_u, self._aad_p = _aad(UNSUBSCRIBE), _aad(PREFERENCES)

    def _seal(self, aad: bytes, email: str, list_name: str) -> str:
        if _SEP in email or _SEP in list_name:
            raise ValueError("separator in address or list name")
        plain = f"{list_name}{_SEP}{email}{_SEP}{self._mark}".encode()
        return _b64(self._cipher.encrypt(_NONCE, plain, aad))

    def unsubscribe(self, email: str, list_name: str) -> str:
        return self._seal(self._aad_u, email, list_name)

    def preferences(self, email: str, list_name: str) -> str:
        return self._seal(self._aad_p, email, list_name)


def open_reader(kind: str, token: str, keys: Sequence[bytes]) -> Reader:
    """Who an unsubscribe (``u``) or preferences (``p``) token names, or TokenError."""
    list_name, email, mark = unseal(kind, token, keys, 3)
    if mark not in ("", _TEST) or not email or not list_name:
        raise TokenError("unknown or invalid link")
    return Reader(email=email, list_name=list_name, test=mark == _TEST)


# --- sign-up confirmation --------------------------------------------------------------------


@dataclass(frozen=True)
class SignupRequest:
    """What a reader asked for on the form, carried by their confirmation link."""

    email: str
    list_name: str
    name: str
    language: str
    tags: tuple[str, ...]
    consent_version: str
    form: str  # which form: "page" (GET /subscribe) or "embedded" (signup-form)
    at: int  # unix time the form was sent (consent given)

    def expired(self, now: float | None = None) -> bool:
        return (time.time() if now is None else now) - self.at > CONFIRM_SECONDS


def clean_field(value: str, limit: int) -> str:
    """One line of plain text, at most ``limit`` characters: no control characters."""
    return " ".join(_CONTROL.sub(" ", value).split())[:limit]


def confirm_token(request: SignupRequest, keys: Sequence[bytes]) -> str:
    fields = (
        request.list_name,
        request.email,
        clean_field(request.name, 100),
        request.language,
        ",".join(request.tags),
        request.consent_version,
        request.form,
        str(request.at),
    )
    return seal(CONFIRM, fields, keys)


def open_confirm(token: str, keys: Sequence[bytes], now: float | None = None) -> SignupRequest:
    """The sign-up a confirmation token carries; TokenError if forged, altered or expired."""
    list_name, email, name, language, tags, version, form, at = unseal(CONFIRM, token, keys, 8)
    failure = TokenError("unknown or invalid link")
    if not at.isdigit() or not email or not list_name:
        raise failure
    request = SignupRequest(
        email=email,
        list_name=list_name,
        name=name,
        language=language,
        tags=tuple(t for t in tags.split(",") if t),
        consent_version=version,
        form=form,
        at=int(at),
    )
    if request.expired(now) or request.at > (time.time() if now is None else now) + 300:
        raise failure
    return request
