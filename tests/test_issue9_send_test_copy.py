"""Issue 9, sending half: test copies as Mailchimp users expect them, and `serve` on one's
own computer.

Points 7 (a display name in --test-to, used in the greeting; the sample name without
one), 8 (a test copy's unsubscribe link unsubscribes nobody: a page says it is a test
copy, and nothing is written), 17 (no email-validator words for a display name) and 18
(`serve --dev-key` runs without NEWSLETTER_SECRET, says so loudly, and accepts the
links of outbox sends signed with the development key).
"""

from __future__ import annotations

import sqlite3
from email import policy
from email.parser import BytesParser
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from conftest import TEST_ENV, Cli
from newsletter.config import Workspace
from newsletter.errors import TokenError
from newsletter.personalize import DEV_SECRET
from newsletter.server import create_app
from newsletter.tokens import make_token, verify_token
from stub_sendgrid import StubSendGrid
from test_cli_send import sg_env
from test_server import running, serve_cli

SECRET = TEST_ENV["NEWSLETTER_SECRET"].encode()
# Made by the code before test tokens existed: links in issues already sent.
OLD_TOKEN = "c2FtcGxlCmFuYS5sb3BlekBleGFtcGxlLm9yZw.fscgAddKv8BuzerV_u9zK6jTAhMuebnEGW2lzowSGts"


# --------------------------------------------------------------------------- point 7


def test_test_to_takes_a_display_name_and_greets_by_it(cli: Cli) -> None:
    with StubSendGrid() as stub:
        r = cli(
            "send",
            "issues/2019-09.yaml",
            "--test-to",
            'Maria Comms <maria@example.org>, "Boss, The" <boss@example.org>; me@example.org',
            "--yes",
            env=sg_env(stub),
        )
        assert r.code == 0, r.err
        people = {p["to"][0]["email"]: p for p in stub.iter_personalizations()}
    assert sorted(people) == ["boss@example.org", "maria@example.org", "me@example.org"]
    maria, boss, me = (
        people[e] for e in ("maria@example.org", "boss@example.org", "me@example.org")
    )
    assert maria["to"][0]["name"] == "Maria Comms"
    assert maria["substitutions"]["%%first_name%%"] == "Maria"
    assert boss["to"][0]["name"] == "Boss The"  # SendGrid refuses commas in names
    # No name: the preview's sample reader, as the preview shows the issue; not "reader".
    assert me["substitutions"]["%%first_name%%"] == "Ana"
    assert "test copy to:  Maria Comms <maria@example.org>, Boss, The <boss@example.org>" in r.out
    assert "test copy sent to 3 addresses" in r.out


def test_a_bad_test_to_address_is_said_in_plain_words(cli: Cli) -> None:
    r = cli("send", "issues/2019-09.yaml", "--test-to", "Maria <maria-at-example.org>")
    assert r.code == 2
    assert "--test-to: 'maria-at-example.org' is not an address we can send to" in r.err
    assert "Maria Comms <maria@example.org>" in r.err  # how to write it
    assert "angle brackets" not in r.err and "Traceback" not in r.err
    r = cli("send", "issues/2019-09.yaml", "--test-to", "Maria <>")
    assert r.code == 2 and "has no address between < and >" in r.err


def test_an_outbox_test_copy_greets_the_named_tester(cli: Cli, workspace: Path) -> None:
    r = cli(
        "send",
        "issues/2019-09.yaml",
        "--test-to",
        "Maria Comms <maria@example.org>",
        "--backend",
        "outbox",
        "--yes",
        env=TEST_ENV,
    )
    assert r.code == 0, r.err
    [eml] = (workspace / "outbox" / "2019-09" / "test-1").rglob("*.eml")
    msg = BytesParser(policy=policy.default).parsebytes(eml.read_bytes())
    assert str(msg["To"]) == "Maria Comms <maria@example.org>"
    plain = msg.get_body(("plain",))
    assert plain is not None and "Hello Maria," in plain.get_content()


# --------------------------------------------------------------------------- point 8


def test_a_test_token_is_marked_and_old_links_still_verify() -> None:
    test = make_token("ana.lopez@example.org", "sample", [SECRET], test=True)
    who = verify_token(test, [SECRET])
    assert (who.email, who.list_name, who.test) == ("ana.lopez@example.org", "sample", True)
    old = verify_token(OLD_TOKEN, [SECRET])
    assert (old.email, old.list_name, old.test) == ("ana.lopez@example.org", "sample", False)
    assert make_token("ana.lopez@example.org", "sample", [SECRET]) == OLD_TOKEN
    # The mark is signed: it cannot be taken off a test link (nor put on a real one).
    body, mac = test.split(".")
    real_body = OLD_TOKEN.split(".")[0]
    for forged in (f"{real_body}.{mac}", f"{body}.{OLD_TOKEN.split('.')[1]}"):
        with pytest.raises(TokenError):
            verify_token(forged, [SECRET])


def _links(folder: Path) -> dict[str, str]:
    """address -> the https List-Unsubscribe link of each .eml under folder."""
    out = {}
    for path in folder.rglob("*.eml"):
        msg = BytesParser(policy=policy.default).parsebytes(path.read_bytes())
        header = str(msg["List-Unsubscribe"])
        [https] = [p.strip(" <>") for p in header.split(",") if "mailto:" not in p]
        out[str(msg["To"].addresses[0].addr_spec)] = https
    return out


def _suppression_rows(workspace: Path) -> list[tuple[str, ...]]:
    db = workspace / ".newsletter" / "state.db"
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT email FROM suppressions").fetchall()
        rows += conn.execute("SELECT email FROM pending_suppressions").fetchall()
        rows += conn.execute("SELECT email FROM esp_events").fetchall()
    return [tuple(r) for r in rows]


def test_a_test_copy_link_shows_a_page_and_unsubscribes_nobody(
    cli: Cli, workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    r = cli(
        "send",
        "issues/2019-09.yaml",
        "--test-to",
        "ana.lopez@example.org",
        "--backend",
        "outbox",
        "--yes",
        env=TEST_ENV,
    )
    assert r.code == 0, r.err
    link = _links(workspace / "outbox" / "2019-09" / "test-1")["ana.lopez@example.org"]
    path = urlsplit(link).path + "?" + urlsplit(link).query
    csv_before = (workspace / "subscribers" / "suppressions.csv").read_bytes()
    monkeypatch.setenv("NEWSLETTER_SECRET", TEST_ENV["NEWSLETTER_SECRET"])
    with running(create_app(Workspace(workspace))) as base:
        page = httpx.get(base + path)
        one_click = httpx.post(
            base + urlsplit(link).path,
            content=b"List-Unsubscribe=One-Click",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        spanish = httpx.get(base + urlsplit(link).path + "?lang=es")
    assert page.status_code == 200 and one_click.status_code == 200
    for answer in (page, one_click):
        assert "This is a test copy" in answer.text
        assert "nobody was unsubscribed" in answer.text
        assert "a•••@example.org" in answer.text and "<form" not in answer.text
    assert "Esta es una copia de prueba" in spanish.text
    assert (workspace / "subscribers" / "suppressions.csv").read_bytes() == csv_before
    # (the database keeps a copy of suppressions.csv's rows: chloe's, not ana)
    assert ("ana.lopez@example.org",) not in _suppression_rows(workspace)
    # The same reader's link in a real send still unsubscribes (nothing else changed).
    assert (
        cli(
            "send",
            "issues/2019-09.yaml",
            "--list",
            "sample",
            "--backend",
            "outbox",
            "--yes",
            env=TEST_ENV,
        ).code
        == 0
    )
    real = _links(workspace / "outbox" / "2019-09" / "send-2")["ana.lopez@example.org"]
    with running(create_app(Workspace(workspace))) as base:
        done = httpx.post(base + urlsplit(real).path, content=b"List-Unsubscribe=One-Click")
    assert done.status_code == 200 and "You are unsubscribed" in done.text
    assert (
        b"ana.lopez@example.org,unsubscribed,one-click"
        in (workspace / "subscribers" / "suppressions.csv").read_bytes()
    )


# --------------------------------------------------------------------------- point 18


def test_serve_without_the_secret_says_how_to_run_it_on_this_computer(cli: Cli) -> None:
    r = cli("serve", "--port", "0")
    assert r.code == 2
    assert "NEWSLETTER_SECRET is not set" in r.err and "newsletter serve --dev-key" in r.err
    r = cli("serve", "--port", "0", "--dev-key", "--host", "0.0.0.0")
    assert r.code == 2 and "--dev-key serves only this computer" in r.err


def test_serve_with_the_dev_key_says_so_first_and_takes_outbox_links(
    cli: Cli, workspace: Path
) -> None:
    r = cli("send", "issues/2019-09.yaml", "--list", "sample", "--backend", "outbox", "--yes")
    assert r.code == 0 and "development key" in r.err
    link = _links(workspace / "outbox" / "2019-09" / "send-1")["ben.carter@example.com"]
    token = urlsplit(link).path.rsplit("/", 1)[1]
    assert verify_token(token, [DEV_SECRET]).email == "ben.carter@example.com"
    with serve_cli(workspace, None, "--dev-key", secret=False) as served:
        page = httpx.get(served.base + urlsplit(link).path)
        done = httpx.post(served.base + urlsplit(link).path, content=b"List-Unsubscribe=One-Click")
    log = served.log()
    first = log.splitlines()[0]
    assert "WARNING" in first and "DEVELOPMENT KEY" in first, log
    assert page.status_code == 200 and "b•••@example.com" in page.text
    assert done.status_code == 200 and "You are unsubscribed" in done.text
    assert (
        b"ben.carter@example.com,unsubscribed,one-click"
        in (workspace / "subscribers" / "suppressions.csv").read_bytes()
    )


def test_the_same_test_address_twice_gets_one_copy(cli: Cli, workspace: Path) -> None:
    r = cli(
        "send",
        "2019-09",
        "--test-to",
        "Maria Comms <maria@example.org>, MARIA@example.org",
        "--backend",
        "outbox",
        "--yes",
    )
    assert r.code == 0, r.err
    assert len(list((workspace / "outbox" / "2019-09" / "test-1").rglob("*.eml"))) == 1
