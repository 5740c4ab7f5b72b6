"""Helpers of the sign-up tests: a workspace whose newsletter.toml has [signup], and the
confirmation emails the outbox writes (tests/test_signup*.py)."""

from __future__ import annotations

import re
import time
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from urllib.parse import urlsplit

import pytest

SIGNUP_TOML = """
[signup]
lists = ["sample"]
consent_version = "2026-12"
signups_per_minute = {per_minute}

[signup.consent]
en = "I agree that {{org}} emails me its newsletter; I can unsubscribe at any time."
es = "Acepto que {{org}} me envíe su boletín; puedo darme de baja cuando quiera."

[signup.topics]
health = {{ en = "Health", es = "Salud" }}
press = "Press releases"
"""


def enable_signup(workspace: Path, per_minute: int = 1000) -> None:
    config = workspace / "newsletter.toml"
    text = config.read_text(encoding="utf-8")
    config.write_text(text + SIGNUP_TOML.format(per_minute=per_minute), encoding="utf-8")


def confirmations(workspace: Path) -> list[Path]:
    return sorted((workspace / "outbox" / "confirmations").rglob("*.eml"))


def wait_for_emails(workspace: Path, count: int, timeout: float = 20) -> list[Path]:
    """The outbox's confirmation emails once there are ``count`` (they are written after
    the answer); fails if they never come."""
    deadline = time.monotonic() + timeout
    while True:
        found = confirmations(workspace)
        if len(found) >= count:
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"{count} confirmation email(s) expected, {len(found)} written")
        time.sleep(0.05)


def read_eml(path: Path) -> EmailMessage:
    msg = BytesParser(policy=policy.default).parsebytes(path.read_bytes())
    assert isinstance(msg, EmailMessage)
    return msg


def confirm_link(path: Path) -> str:
    """The /confirm/ link of a confirmation email (from its plain-text part)."""
    body = read_eml(path).get_body(("plain",))
    assert body is not None
    found = re.search(r"https://\S+/confirm/\S+", body.get_content())
    assert found is not None
    return found.group(0)


def local(url: str, base: str) -> str:
    """A link of an email (at send.unsubscribe_url) as the test server serves it."""
    parts = urlsplit(url)
    return f"{base}{parts.path}" + (f"?{parts.query}" if parts.query else "")


def heading(html: str) -> str:
    found = re.search(r"<h1[^>]*>(.*?)</h1>", html, re.S)
    return found.group(1).strip() if found else ""


def form(email: str, **extra: str | list[str]) -> dict[str, str | list[str]]:
    """The sign-up form's fields as a browser posts them (consent ticked)."""
    return {
        "list": "sample",
        "lang": "en",
        "form": "page",
        "email": email,
        "name": "",
        "language": "en",
        "consent": "yes",
        "website": "",
        **extra,
    }
