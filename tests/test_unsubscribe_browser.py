"""A reader in headless Chromium: open the unsubscribe link, press the button, see it done."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest

from browser import browser, offline_page
from newsletter.config import Workspace
from newsletter.server import create_app
from test_server import keypair, running, setup_env, token


@pytest.mark.browser
def test_reader_unsubscribes_in_a_browser(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    setup_env(workspace, monkeypatch, keypair()[1])
    csv_path = workspace / "subscribers" / "suppressions.csv"
    email = "ana.lopez@example.org"
    with running(create_app(Workspace(workspace))) as base, browser() as b:
        page: Any = offline_page(
            b, locale="es-ES", extra_http_headers={"Accept-Language": "es-ES,es;q=0.9"}
        )
        page.goto(f"{base}/u/{token(email)}", timeout=15_000)
        assert page.locator("html").get_attribute("lang") == "es"
        assert page.locator("#address").inner_text() == "a•••@example.org"  # never in full
        assert email not in csv_path.read_text(encoding="utf-8")  # the visit alone changes nothing
        page.locator("#unsubscribe-button").click(timeout=10_000)
        page.wait_for_selector("#done", timeout=10_000)
        assert page.locator("#heading").inner_text() == "Se ha dado de baja"
        assert "volver a suscribirse" in page.locator("#resubscribe").inner_text()
        assert page.url == f"{base}/u/{token(email)}"  # the form posted to the same URL
    with csv_path.open(newline="", encoding="utf-8") as f:
        found = [r for r in csv.DictReader(f) if r["email"] == email]
    assert [(r["reason"], r["source"]) for r in found] == [("unsubscribed", "one-click")]


@pytest.mark.browser
def test_a_tester_opens_a_test_copys_link_in_a_browser(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The unsubscribe link of a [TEST] copy, opened as a person would: a page saying it is
    a test copy, with a heading and no button; nobody is unsubscribed."""
    from email import policy
    from email.parser import BytesParser
    from urllib.parse import urlsplit

    from conftest import TEST_ENV, run_cli

    r = run_cli(
        "send",
        "2019-09",
        "--test-to",
        "ana.lopez@example.org",
        "--backend",
        "outbox",
        "--yes",
        cwd=workspace,
        env=TEST_ENV,
    )
    assert r.code == 0, r.err
    [eml] = (workspace / "outbox" / "2019-09" / "test-1").rglob("*.eml")
    msg = BytesParser(policy=policy.default).parsebytes(eml.read_bytes())
    [link] = [p.strip(" <>") for p in str(msg["List-Unsubscribe"]).split(",") if "https" in p]
    csv_path = workspace / "subscribers" / "suppressions.csv"
    before = csv_path.read_bytes()
    monkeypatch.setenv("NEWSLETTER_SECRET", TEST_ENV["NEWSLETTER_SECRET"])
    with running(create_app(Workspace(workspace))) as base, browser() as b:
        page: Any = offline_page(b)
        parts = urlsplit(link)
        page.goto(f"{base}{parts.path}?{parts.query}", timeout=15_000)
        heading = page.get_by_role("heading", level=1)
        assert "test copy" in heading.inner_text().lower()
        assert page.get_by_role("button").count() == 0  # nothing to press: nothing happens
        assert "a•••@example.org" in page.locator("main, body").first.inner_text()
    assert csv_path.read_bytes() == before
