"""The whole loop through a real `newsletter serve` and the outbox: a reader signs up on the
form, confirms from the email (a GET changes nothing, the POST writes the row with its
consent), receives the next issue, changes their language on /p/ and leaves from there."""

from __future__ import annotations

import base64
import csv
import json
import re
from pathlib import Path

import httpx

from conftest import TEST_ENV, Cli
from signup_support import (
    confirm_link,
    enable_signup,
    form,
    heading,
    local,
    read_eml,
    wait_for_emails,
)
from test_server import serve_cli

READER = "nueva.lectora@example.org"


def rows(path: Path) -> dict[str, dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return {r["email"]: r for r in csv.DictReader(f)}


def test_sign_up_confirm_receive_change_and_leave(workspace: Path, cli: Cli) -> None:
    enable_signup(workspace)
    members = workspace / "subscribers" / "sample.csv"
    suppressions = workspace / "subscribers" / "suppressions.csv"
    with serve_cli(workspace) as served:
        base = served.base
        page = httpx.get(f"{base}/subscribe?list=sample&lang=es")
        assert page.status_code == 200 and '<html lang="es">' in page.text
        consent = re.search(r'<input type="checkbox" id="consent"[^>]*>', page.text)
        assert consent is not None and "checked" not in consent.group(0)  # never ticked for them
        assert "Acepto que Mesoamerica &amp; Caribbean" in page.text
        answer = httpx.post(
            f"{base}/subscribe",
            data=form(READER, lang="es", language="es", name="Nueva Lectora", topic="health"),
        )
        assert answer.status_code == 200 and heading(answer.text) == "Revise su correo"
        assert READER not in answer.text
        [eml] = wait_for_emails(workspace, 1)
        msg = read_eml(eml)
        assert msg["To"].addresses[0].addr_spec == READER
        assert "Confirme su suscripción" in str(msg["Subject"])
        link = confirm_link(eml)
        token = link.rsplit("/", 1)[1]
        decoded = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        assert READER.encode() not in decoded and "nueva" not in link  # opaque

        before = members.read_bytes()
        shown = httpx.get(local(link, base))
        assert shown.status_code == 200 and 'id="confirm-button"' in shown.text
        assert members.read_bytes() == before  # a GET (a mail scanner) writes nothing

        done = httpx.post(local(link, base))
        assert done.status_code == 200 and heading(done.text) == "Ya está suscrito"
        row = rows(members)[READER]
        assert (row["name"], row["language"], row["tags"]) == ("Nueva Lectora", "es", "health")
        assert row["subscribed_at"].startswith("20")
        assert row["consent"].startswith("text 2026-12 (es); form: subscribe page; given ")
        assert "; confirmed by email link " in row["consent"]
        assert members.read_bytes().startswith(before)  # the other rows, byte for byte
        again = httpx.post(local(link, base))  # confirming twice is harmless
        assert again.status_code == 200 and list(rows(members)).count(READER) == 1

        sent = cli(
            "send", "2019-09", "--list", "sample", "--backend", "outbox", "--yes", env=TEST_ENV
        )
        assert sent.code == 0, sent.err
        [issue] = [p for p in (workspace / "outbox" / "2019-09").rglob("*.eml") if READER in p.name]
        html = read_eml(issue).get_body(("html",))
        assert html is not None
        prefs = re.search(r'href="(https://news\.example\.org/p/[^"]+)"', html.get_content())
        assert prefs is not None and READER not in prefs.group(1)
        assert "Update your preferences" in html.get_content()  # the issue is in English

        url = local(prefs.group(1).replace("&amp;", "&"), base)
        page = httpx.get(url)
        assert page.status_code == 200 and heading(page.text) == "Sus preferencias del boletín"
        assert READER not in page.text  # shown as n•••@example.org
        assert 'value="Nueva Lectora"' in page.text
        assert re.search(r'<option value="es"[^>]*selected', page.text)
        changed = httpx.post(
            url,
            data={
                "action": "save",
                "list": "sample",
                "topic": ["health", "press"],
                "language": "fr",
                "name": "Nueva Lectora",
            },
        )
        assert changed.status_code == 200 and '<html lang="fr">' in changed.text
        row = rows(members)[READER]
        assert (row["language"], set(row["tags"].split(";"))) == ("fr", {"health", "press"})

        left = httpx.post(url, data={"action": "leave", "lang": "fr"})
        assert left.status_code == 200 and heading(left.text) == "Vous êtes désabonné"
        with suppressions.open(newline="", encoding="utf-8") as f:
            entries = [r for r in csv.DictReader(f) if r["email"] == READER]
        assert [(e["reason"], e["source"]) for e in entries] == [("unsubscribed", "preferences")]
    log = served.stop()
    assert READER not in log and "nueva" not in log.lower()
    assert "/confirm/<token>" in log or "confirm:" in log


def test_report_counts_sign_ups_confirmations_and_changes(workspace: Path, cli: Cli) -> None:
    enable_signup(workspace)
    with serve_cli(workspace) as served:
        for who in ("one@example.org", "two@example.org"):
            r = httpx.post(f"{served.base}/subscribe", data=form(who))
            assert r.status_code == 200
        first, _ = wait_for_emails(workspace, 2)
        assert httpx.post(local(confirm_link(first), served.base)).status_code == 200
    sent = cli("send", "2019-09", "--list", "sample", "--backend", "outbox", "--yes", env=TEST_ENV)
    assert sent.code == 0, sent.err
    result = cli("report", "2019-09", "--format", "json", env=TEST_ENV)
    assert result.code == 0, result.err
    assert json.loads(result.out)["signups"]["sample"] == {
        "signups": 2,
        "confirmations": 1,
        "confirm_rate": 0.5,
        "preference_changes": 0,
        "left": 0,
    }


def test_signup_form_prints_a_snippet_that_posts_to_serve(workspace: Path, cli: Cli) -> None:
    missing = cli("signup-form", "--list", "sample")
    assert missing.code == 2 and "no [signup] table" in missing.err
    enable_signup(workspace)
    wrong = cli("signup-form", "--list", "nope")
    assert wrong.code == 2 and "signup.lists has: sample" in wrong.err
    r = cli("signup-form", "--list", "sample", "--lang", "es")
    assert r.code == 0, r.err
    html = r.out
    assert html.startswith('<form method="post" action="https://news.example.org/subscribe"')
    assert '<input type="hidden" name="form" value="embedded">' in html
    consent = re.search(r'<input type="checkbox" id="nl-sample-consent"[^>]*>', html)
    assert consent is not None and "checked" not in consent.group(0)
    assert 'name="website" tabindex="-1"' in html and 'aria-hidden="true"' in html
    assert "Correo electrónico" in html and "Salud" in html and "Acepto que Mesoamerica" in html
    fields = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', html))
    with serve_cli(workspace) as served:
        data = {**fields, "email": "embedded@example.org", "consent": "yes", "language": "es"}
        assert httpx.post(f"{served.base}/subscribe", data=data).status_code == 200
        [eml] = wait_for_emails(workspace, 1)
        assert httpx.post(local(confirm_link(eml), served.base)).status_code == 200
    row = rows(workspace / "subscribers" / "sample.csv")["embedded@example.org"]
    assert "; form: embedded form; " in row["consent"]
