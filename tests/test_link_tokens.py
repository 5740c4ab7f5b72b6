"""link_tokens.py: sealed links carry no readable address, cannot be forged, altered or used
for another purpose, stay the same across sends, and survive a key rotation; links already
sent in the older signed form keep working."""

from __future__ import annotations

import base64
import time

import pytest

from newsletter.errors import TokenError
from newsletter.link_tokens import (
    CONFIRM,
    PREFERENCES,
    UNSUBSCRIBE,
    LinkSigner,
    SignupRequest,
    confirm_token,
    open_confirm,
    open_reader,
)
from newsletter.personalize import Personalizer
from newsletter.rows import Subscriber
from newsletter.tokens import make_token, verify_token

NEW, OLD = b"new-key-0123456789abcdef", b"old-key-0123456789abcdef"
ANA = "ana.lopez@example.org"


def raw(token: str) -> bytes:
    return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))


def test_a_sealed_token_hides_the_address_and_is_the_same_every_time() -> None:
    sign = LinkSigner([NEW])
    token = sign.unsubscribe(ANA, "sample")
    assert token == LinkSigner([NEW]).unsubscribe(ANA, "sample")  # deterministic
    assert all(c.isalnum() or c in "-_" for c in token)
    for secret in (ANA.encode(), b"ana", b"example", b"sample"):
        assert secret not in raw(token)
    assert sign.unsubscribe("ben@example.org", "sample") != token
    assert sign.preferences(ANA, "sample") != token  # another purpose, another token
    who = open_reader(UNSUBSCRIBE, token, [NEW])
    assert (who.email, who.list_name, who.test) == (ANA, "sample", False)


def test_kinds_cannot_stand_in_for_each_other() -> None:
    sign = LinkSigner([NEW])
    with pytest.raises(TokenError):
        open_reader(PREFERENCES, sign.unsubscribe(ANA, "sample"), [NEW])
    with pytest.raises(TokenError):
        open_reader(UNSUBSCRIBE, sign.preferences(ANA, "sample"), [NEW])
    with pytest.raises(TokenError):
        open_confirm(sign.preferences(ANA, "sample"), [NEW])
    request = SignupRequest(ANA, "sample", "Ana", "es", ("a",), "v1", "page", int(time.time()))
    with pytest.raises(TokenError):
        open_reader(CONFIRM, confirm_token(request, [NEW]), [NEW])


def test_rotation_and_forgeries() -> None:
    old = LinkSigner([OLD]).unsubscribe(ANA, "sample")
    assert open_reader(UNSUBSCRIBE, old, [NEW, OLD]).email == ANA
    with pytest.raises(TokenError):
        open_reader(UNSUBSCRIBE, old, [NEW])  # OLD rotated out
    good = LinkSigner([NEW]).unsubscribe(ANA, "sample")
    flipped = good[:5] + ("A" if good[5] != "A" else "B") + good[6:]
    for bad in ("", "x", good[:-2], good + "A", flipped, good + "==", f" {good}", good * 20):
        with pytest.raises(TokenError) as info:
            open_reader(UNSUBSCRIBE, bad, [NEW, OLD])
        assert str(info.value) == "unknown or invalid link"


def test_verify_token_takes_both_forms_and_the_test_mark() -> None:
    sealed = LinkSigner([NEW]).unsubscribe(ANA, "sample")
    legacy = make_token(ANA, "sample", [NEW])  # a link in an issue sent before
    assert verify_token(sealed, [NEW]).email == verify_token(legacy, [NEW]).email == ANA
    test = LinkSigner([NEW], test=True).unsubscribe(ANA, "sample")
    assert verify_token(test, [NEW]).test and not verify_token(sealed, [NEW]).test
    with pytest.raises(TokenError, match="unknown or invalid unsubscribe link"):
        verify_token(LinkSigner([NEW]).preferences(ANA, "sample"), [NEW])


def test_a_confirmation_token_carries_the_sign_up_and_expires_after_7_days() -> None:
    now = time.time()
    request = SignupRequest(
        ANA, "sample", "Ana López", "es", ("health", "press"), "2026-12", "embedded", int(now)
    )
    token = confirm_token(request, [NEW])
    assert ANA.encode() not in raw(token) and b"Ana" not in raw(token)
    assert open_confirm(token, [NEW]) == request
    assert open_confirm(token, [NEW], now=now + 6.9 * 86400) == request
    with pytest.raises(TokenError):
        open_confirm(token, [NEW], now=now + 7.1 * 86400)


def test_every_send_link_is_opaque_and_the_footer_gets_a_preferences_link() -> None:
    p = Personalizer([NEW], "https://news.example.org/", None, "en")
    ana = Subscriber(ANA, "Ana", "Ana", "es", frozenset(), None, None, {}, "sample", 2)
    [r] = p.batch([ana])
    unsubscribe = r.values["%%unsubscribe_url%%"]
    preferences = r.values["%%preferences_url%%"]
    assert unsubscribe.startswith("https://news.example.org/u/") and unsubscribe.endswith(
        "?lang=es"
    )
    assert preferences.startswith("https://news.example.org/p/")
    for url in (unsubscribe, preferences):
        token = url.rsplit("/", 1)[1].split("?")[0]
        assert ANA.encode() not in raw(token) and "." not in token
    assert verify_token(unsubscribe.rsplit("/", 1)[1].split("?")[0], [NEW]).email == ANA
