"""A reader in headless Chromium, keyboard only: the sign-up form and the preferences page in
English and Spanish, each checked with axe-core (no serious or critical violation)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest

from axe import assert_accessible
from browser import browser, offline_page
from conftest import TEST_ENV
from newsletter.config import Workspace
from newsletter.link_tokens import LinkSigner
from newsletter.server import create_app
from signup_support import confirm_link, enable_signup, local, wait_for_emails
from test_server import running

SECRET = TEST_ENV["NEWSLETTER_SECRET"].encode()
WORDS = {
    "en": ("Check your inbox", "You are subscribed", "Your choices are saved"),
    "es": ("Revise su correo", "Ya está suscrito", "Sus opciones están guardadas"),
}


def focused(page: Any) -> str:
    return str(page.evaluate("() => document.activeElement && document.activeElement.id"))


def tab_to(page: Any, element_id: str, most: int = 12) -> None:
    """Press Tab until the element has focus (fails if it never gets it)."""
    for _ in range(most):
        page.keyboard.press("Tab")
        if focused(page) == element_id:
            return
    pytest.fail(f"#{element_id} never got the keyboard focus")


def rows(workspace: Path) -> dict[str, dict[str, str]]:
    with (workspace / "subscribers" / "sample.csv").open(newline="", encoding="utf-8") as f:
        return {r["email"]: r for r in csv.DictReader(f)}


@pytest.mark.browser
@pytest.mark.parametrize("lang", ["en", "es"])
def test_sign_up_and_confirm_with_the_keyboard(
    lang: str, workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEWSLETTER_SECRET", TEST_ENV["NEWSLETTER_SECRET"])
    enable_signup(workspace)
    email = f"keyboard.{lang}@example.org"
    sent, subscribed, _ = WORDS[lang]
    with running(create_app(Workspace(workspace))) as base, browser() as b:
        page: Any = offline_page(b)
        page.goto(f"{base}/subscribe?list=sample&lang={lang}", timeout=15_000)
        assert page.locator("html").get_attribute("lang") == lang
        assert_accessible(page)
        assert not page.locator("#consent").is_checked()
        tab_to(page, "email")
        page.keyboard.type(email)
        tab_to(page, "name")
        page.keyboard.type("Key Board")
        tab_to(page, "topic-1")
        page.keyboard.press("Space")
        tab_to(page, "consent")
        page.keyboard.press("Space")
        assert page.locator("#consent").is_checked()
        page.keyboard.press("Tab")
        assert focused(page) == "subscribe-button"  # the honeypot is never reached
        page.keyboard.press("Enter")
        page.wait_for_selector("#sent", timeout=10_000)
        assert page.locator("h1").inner_text() == sent
        assert_accessible(page)
        [eml] = wait_for_emails(workspace, 1)
        page.goto(local(confirm_link(eml), base), timeout=15_000)
        assert_accessible(page)
        tab_to(page, "confirm-button")
        page.keyboard.press("Enter")
        page.wait_for_selector("#done", timeout=10_000)
        assert page.locator("h1").inner_text() == subscribed
        assert_accessible(page)
    row = rows(workspace)[email]
    assert (row["name"], row["language"], row["tags"]) == ("Key Board", lang, "health")


@pytest.mark.browser
@pytest.mark.parametrize("lang", ["en", "es"])
def test_preferences_page_with_the_keyboard(
    lang: str, workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEWSLETTER_SECRET", TEST_ENV["NEWSLETTER_SECRET"])
    enable_signup(workspace)
    email = "ben.carter@example.com"  # on the sample list: en, tagged press
    token = LinkSigner([SECRET]).preferences(email, "sample")
    with running(create_app(Workspace(workspace))) as base, browser() as b:
        page: Any = offline_page(b)
        page.goto(f"{base}/p/{token}?lang={lang}", timeout=15_000)
        assert page.locator("html").get_attribute("lang") == lang
        assert email not in page.content()
        assert_accessible(page)
        assert page.locator("#list-1").is_checked()
        assert not page.locator("#topic-1").is_checked() and page.locator("#topic-2").is_checked()
        tab_to(page, "topic-1")
        page.keyboard.press("Space")  # health: on
        tab_to(page, "language")
        page.keyboard.press("ArrowDown")  # English -> Español
        tab_to(page, "name")
        page.keyboard.press("End")
        page.keyboard.type(" Jr")
        tab_to(page, "save-button")
        page.keyboard.press("Enter")
        page.wait_for_selector("#saved", timeout=10_000)
        assert page.locator("h1").inner_text() == WORDS["es"][2]  # in the language chosen
        assert_accessible(page)
    row = rows(workspace)[email]
    assert (row["name"], row["language"]) == ("Ben Carter Jr", "es")
    assert set(row["tags"].split(";")) == {"press", "health"}
