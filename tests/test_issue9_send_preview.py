"""Issue 9, point 9: `preview --as ADDRESS` shows the issue as one subscriber gets it.

Their first name in the greeting, their own unsubscribe link (the token a send would
sign for them, with their language for its page), and the page says who it is.
"""

from __future__ import annotations

import email
import re
from email.policy import default as default_policy
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from conftest import TEST_ENV, Cli
from newsletter.config import Workspace
from newsletter.personalize import DEV_SECRET
from newsletter.preview import create_app, find_reader
from newsletter.tokens import verify_token
from test_preview import ISSUE, running_preview

pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")

SECRET = TEST_ENV["NEWSLETTER_SECRET"].encode()


def _link(html: str) -> str:
    found = re.search(r'href="(https://news\.example\.org/u/[^"]+)"', html)
    assert found, "no unsubscribe link in the email"
    return found.group(1)


def test_the_preview_as_a_subscriber_greets_them_and_carries_their_link(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from starlette.testclient import TestClient

    monkeypatch.setenv("NEWSLETTER_SECRET", TEST_ENV["NEWSLETTER_SECRET"])
    ws = Workspace(workspace)
    reader = find_reader(ws, "Ben.Carter@Example.com")
    with TestClient(create_app(ws, workspace / ISSUE, reader)) as c:
        page = c.get("/").text
        html = c.get("/email.html").text
        text = c.get("/email.txt").text
        eml = c.get("/preview.eml").content
    assert 'id="reader">as Ben Carter &lt;ben.carter@example.com&gt;, list sample, language en' in (
        page
    )
    assert "Hello Ben," in html and "Hello Ben," in text and "Hello Ana," not in html
    link = _link(html)
    who = verify_token(urlsplit(link).path.rsplit("/", 1)[1], [SECRET])
    assert (who.email, who.list_name, who.test) == ("ben.carter@example.com", "sample", False)
    assert urlsplit(link).query == "lang=en"
    msg = email.message_from_bytes(eml, policy=default_policy)
    assert str(msg["To"]) == "Ben Carter <ben.carter@example.com>"


def test_their_language_reaches_their_unsubscribe_page(workspace: Path) -> None:
    """Ana's row says `es`: her link opens the page in Spanish.  Without NEWSLETTER_SECRET
    the link is signed with the development key, as an outbox send's would be."""
    from starlette.testclient import TestClient

    ws = Workspace(workspace)
    with TestClient(
        create_app(ws, workspace / ISSUE, find_reader(ws, "ana.lopez@example.org"))
    ) as c:
        html = c.get("/email.html").text
        page = c.get("/").text
    link = _link(html)
    assert urlsplit(link).query == "lang=es"
    assert verify_token(urlsplit(link).path.rsplit("/", 1)[1], [DEV_SECRET]).email == (
        "ana.lopez@example.org"
    )
    assert "list sample, language es" in page


def test_someone_who_unsubscribed_is_shown_as_such(workspace: Path) -> None:
    reader = find_reader(Workspace(workspace), "chloe.martin@example.net")
    assert reader.suppressed
    assert reader.describe().endswith("(unsubscribed: a send leaves them out)")


def test_the_command_says_who_and_serves_their_copy(workspace: Path) -> None:
    with running_preview(workspace, "--as", "ben.carter@example.com") as run:
        line = run.lines.get(timeout=30)
        assert line is not None and line.startswith(
            "  as Ben Carter <ben.carter@example.com>, list sample, language en"
        ), line
        assert "Hello Ben," in httpx.get(run.url + "email.html").text
        code, _, err = run.stop()
    assert code in (0, 130) and "Traceback" not in err


def test_an_address_on_no_list_is_a_clear_error(cli: Cli, workspace: Path) -> None:
    r = cli("preview", ISSUE, "--port", "0", "--as", "nobody@example.org")
    assert r.code == 1
    assert "--as: nobody@example.org is not on any list (sample) in subscribers/" in r.err
    r = cli("preview", ISSUE, "--port", "0", "--as", "ben.carter@example.com", "--list", "nosuch")
    assert r.code != 0 and "nosuch" in r.err and "Traceback" not in r.err
    r = cli("preview", ISSUE, "--port", "0", "--as", "not an address")
    assert r.code == 1 and "--as: 'not an address' is not an email address" in r.err
    r = cli("preview", ISSUE, "--port", "0", "--list", "sample")
    assert r.code == 2 and "--list goes with --as" in r.err
