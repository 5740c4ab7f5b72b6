"""Sending an issue with a translation (issue 12): each reader gets their language, once.

The sample issue (English) with a Spanish translation goes to a list whose `language`
column says en, es, ES-mx, es_419, fr, pt-BR, EN or nothing, through the recording
SendGrid stand-in (tests/stub_sendgrid.py).  What the stand-in received is checked: every
address exactly once, the Spanish subject and body to the Spanish readers (and the English
ones to everyone else, fr and pt-BR included: the issue has no French or Portuguese),
and no request mixing languages; the same after the send is killed (SIGKILL) and resumed.
"""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from conftest import TEST_ENV, Cli
from killmatrix import batches_received, unknown_batch_ids
from languages_fixture import EN_SUBJECT, ES_SUBJECT, translate_sample, write_members
from stub_sendgrid import Recorded, StubSendGrid
from test_send import set_send_config

ISSUE = "issues/2019-09.yaml"


def env_for(stub: StubSendGrid) -> dict[str, str]:
    return {
        "NEWSLETTER_SECRET": TEST_ENV["NEWSLETTER_SECRET"],
        "SENDGRID_API_KEY": "SG.test-key",
        "SENDGRID_API_HOST": stub.url,
    }


def language_of_request(r: Recorded) -> str:
    """The version a request carries, read from what the stand-in received: its subject,
    and its HTML's lang attribute (which must agree)."""
    body = r.body
    subject = body.get("subject") or body["personalizations"][0].get("subject")
    html = next(c["value"] for c in body["content"] if c["type"] == "text/html")
    text = next(c["value"] for c in body["content"] if c["type"] == "text/plain")
    if ES_SUBJECT in subject:
        assert '<html lang="es"' in html and "Gracias por leernos" in text
        return "es"
    assert EN_SUBJECT in subject, subject
    assert '<html lang="en"' in html and "Gracias por leernos" not in text
    return "en"


def received(stub: StubSendGrid) -> Counter[tuple[str, str]]:
    """(address, language) of every accepted personalization."""
    got: Counter[tuple[str, str]] = Counter()
    for r in stub.sends():
        lang = language_of_request(r)  # one language per request: asserted inside
        for p in r.body["personalizations"]:
            for to in p["to"]:
                got[(to["email"], lang)] += 1
    return got


def ledger(ws: Path, sql: str) -> list[tuple[Any, ...]]:
    con = sqlite3.connect(ws / ".newsletter" / "state.db")
    try:
        return list(con.execute(sql))
    finally:
        con.close()


@pytest.fixture
def two_languages(workspace: Path) -> Path:
    translate_sample(workspace)
    write_members(workspace)
    set_send_config(workspace, batch_size=2)  # several batches per language
    return workspace


def test_each_reader_gets_their_language_exactly_once(
    two_languages: Path, cli: Cli, stub: StubSendGrid
) -> None:
    members = write_members(two_languages)
    plan = cli(
        "send", ISSUE, "--list", "members", "--dry-run", "--backend", "sendgrid", env=env_for(stub)
    )
    assert plan.code == 0, plan.err
    assert "languages:     en 5, es 3" in plan.out  # the plan shows who gets which version
    result = cli(
        "send", ISSUE, "--list", "members", "--yes", "--backend", "sendgrid", env=env_for(stub)
    )
    assert result.code == 0, result.err
    assert received(stub) == Counter({(email, lang): 1 for email, _, lang in members})
    # Batches never mix languages, and each records its own.
    rows = ledger(
        two_languages, "SELECT language, COUNT(*), SUM(recipients) FROM batches GROUP BY language"
    )
    assert rows == [("en", 3, 5), ("es", 2, 3)]
    assert ledger(two_languages, "SELECT languages FROM sends") == [('["en", "es"]',)]
    status = cli("status", "2019-09")
    assert "languages: en 5/5 sent, es 3/3 sent" in status.out, status.out


def test_language_option_sends_one_version_then_the_rest(
    two_languages: Path, cli: Cli, stub: StubSendGrid
) -> None:
    members = write_members(two_languages)
    env = env_for(stub)
    first = cli(
        "send",
        ISSUE,
        "--list",
        "members",
        "--yes",
        "--language",
        "es",
        "--backend",
        "sendgrid",
        env=env,
    )
    assert first.code == 0, first.err
    assert "5 get another language" in first.out
    assert received(stub) == Counter(
        {(email, "es"): 1 for email, _, lang in members if lang == "es"}
    )
    # The whole issue again would reach the Spanish readers twice: refused.
    again = cli("send", ISSUE, "--list", "members", "--yes", "--backend", "sendgrid", env=env)
    assert again.code != 0 and "already sent" in again.err
    rest = cli(
        "send",
        ISSUE,
        "--list",
        "members",
        "--yes",
        "--language",
        "en",
        "--backend",
        "sendgrid",
        env=env,
    )
    assert rest.code == 0, rest.err
    assert received(stub) == Counter({(email, lang): 1 for email, _, lang in members})
    wrong = cli(
        "send", ISSUE, "--list", "members", "--language", "fr", "--backend", "sendgrid", env=env
    )
    assert wrong.code == 2 and "this issue is in en, es" in wrong.err


def test_test_copies_one_per_language(two_languages: Path, cli: Cli, stub: StubSendGrid) -> None:
    env = env_for(stub)
    both = cli(
        "send", ISSUE, "--test-to", "maria@example.org", "--yes", "--backend", "sendgrid", env=env
    )
    assert both.code == 0, both.err
    assert received(stub) == Counter(
        {("maria@example.org", "en"): 1, ("maria@example.org", "es"): 1}
    )
    subjects = sorted(r.body["subject"] for r in stub.sends())
    assert subjects == [f"[TEST] {ES_SUBJECT}", f"[TEST] {EN_SUBJECT}"]
    one = cli(
        "send",
        ISSUE,
        "--test-to",
        "maria@example.org",
        "--language",
        "es",
        "--yes",
        "--backend",
        "sendgrid",
        env=env,
    )
    assert one.code == 0, one.err
    assert received(stub)[("maria@example.org", "es")] == 2
    assert received(stub)[("maria@example.org", "en")] == 1


def test_an_unfinished_translation_is_not_sent(
    workspace: Path, cli: Cli, stub: StubSendGrid
) -> None:
    from languages_fixture import spanish

    translate_sample(workspace, spanish(workspace, todo_title=3))
    write_members(workspace)
    env = env_for(stub)
    refused = cli("send", ISSUE, "--list", "members", "--yes", "--backend", "sendgrid", env=env)
    assert refused.code == 1
    assert (
        "error: issues/2019-09.es.yaml: the es version is not finished: 1 of its texts are "
        "still marked `# todo`, so nothing was sent" in refused.err
    )
    assert stub.sends() == []
    # A test copy shows it as it is; the English version alone may go.
    test = cli(
        "send", ISSUE, "--test-to", "maria@example.org", "--yes", "--backend", "sendgrid", env=env
    )
    assert test.code == 0, test.err
    english = cli(
        "send",
        ISSUE,
        "--list",
        "members",
        "--language",
        "en",
        "--yes",
        "--backend",
        "sendgrid",
        env=env,
    )
    assert english.code == 0, english.err
    people = [e for e, _, lang in write_members(workspace) if lang == "en"]
    assert received(stub)[("maria@example.org", "es")] == 1
    got = received(stub)
    assert all(got[(e, "en")] == 1 for e in people)
    assert not any(lang == "es" and e != "maria@example.org" for e, lang in got)


def _bigger_list(ws: Path, n: int = 30) -> dict[str, str]:
    """n readers in en, es, ES-mx, fr, pt-BR and empty: address -> the version they get."""
    kinds = [("en", "en"), ("es", "es"), ("ES-mx", "es"), ("fr", "en"), ("pt-BR", "en"), ("", "en")]
    rows, want = ["email,name,language"], {}
    for i in range(n):
        typed, lang = kinds[i % len(kinds)]
        email = f"reader{i:03d}@example.org"
        rows.append(f"{email},Reader {i},{typed}")
        want[email] = lang
    (ws / "subscribers" / "members.csv").write_text("\n".join(rows) + "\n", "utf-8")
    return want


def _resume(ws: Path, env: dict[str, str], stub: StubSendGrid) -> None:
    """The README's path: --resume; if it stops on a batch that got no answer, skip it when
    the stand-in had it (every personalization carries its nl_batch), else post it again."""

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "newsletter", "send", ISSUE, "--resume", *args, "--yes"],
            cwd=ws,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
        )

    plain = run()
    if plain.returncode == 0 or "no paused, failed or interrupted send" in plain.stderr:
        return
    assert "--skip-unknown" in plain.stderr, plain.stderr
    unknown = unknown_batch_ids(ws)
    chosen = run("--skip-unknown" if unknown <= batches_received(stub) else "--resend-unknown")
    assert chosen.returncode == 0, chosen.stderr


@pytest.mark.parametrize("kill_after", [2, 5])
def test_sigkill_and_resume_keeps_every_language_exactly_once(
    workspace: Path, stub: StubSendGrid, kill_after: int
) -> None:
    import os

    translate_sample(workspace)
    want = _bigger_list(workspace)
    set_send_config(workspace, batch_size=3)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("SENDGRID_", "NEWSLETTER_"))},
        **env_for(stub),
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "newsletter",
            "send",
            ISSUE,
            "--list",
            "members",
            "--yes",
            "--backend",
            "sendgrid",
        ],
        cwd=workspace,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def kill(number: int, record: Recorded) -> None:
        if number == kill_after:
            proc.send_signal(signal.SIGKILL)  # the instant the stand-in answered 202

    stub.on_answer = kill
    assert proc.wait(timeout=120) == -signal.SIGKILL
    stub.on_answer = None
    assert ledger(workspace, "SELECT state FROM sends") == [("sending",)]
    _resume(workspace, env, stub)
    assert ledger(workspace, "SELECT state FROM sends") == [("done",)]
    got = received(stub)
    assert got == Counter({(email, lang): 1 for email, lang in want.items()})
    # Every request carried one language, and the ledger agrees batch by batch.
    by_batch = {
        str(p["custom_args"]["nl_batch"]): language_of_request(r)
        for r in stub.sends()
        for p in r.body["personalizations"]
    }
    recorded = dict(ledger(workspace, "SELECT CAST(id AS TEXT), language FROM batches"))
    assert all(recorded[b] == lang for b, lang in by_batch.items())
