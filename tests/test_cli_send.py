"""`newsletter send / status / cancel` as a user runs them (real subprocesses)."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from conftest import Cli, Result
from newsletter.ledger import Ledger
from stub_sendgrid import StubSendGrid, ok, status
from test_send import SECRET, set_send_config, write_list

README_SEND = (
    "send",
    "issues/2019-09.yaml",
    "--list",
    "sample",
    "--backend",
    "outbox",
    "--dry-run",
    "--yes",
)


def sg_env(stub: StubSendGrid) -> dict[str, str]:
    return {
        "NEWSLETTER_SECRET": SECRET,
        "SENDGRID_API_KEY": "SG.cli-test",
        "SENDGRID_API_HOST": stub.url,
    }


def test_readme_dry_send_works_with_no_environment(cli: Cli, workspace: Path) -> None:
    r: Result = cli(*README_SEND)
    assert r.code == 0, r.err
    assert "recipients:    4" in r.out
    assert "0 invalid, 0 duplicate, 1 suppressed" in r.out
    assert "first:         ana.lopez@example.org, ben.carter@example.com" in r.out
    assert "NEWSLETTER_SECRET is not set; the outbox uses a development key" in r.err
    assert r.err.count("\n") == 1  # the warning is one line
    folder = workspace / "outbox" / "2019-09" / "dry-run"  # issue 9: each run its own folder
    assert (folder / "batch-0001.json").is_file()
    assert len(list((folder / "batch-0001").glob("*.eml"))) == 4
    assert not (workspace / ".newsletter").exists()
    assert "Traceback" not in r.err


def test_sendgrid_refuses_without_secret_or_key(cli: Cli) -> None:
    r = cli(
        "send",
        "issues/2019-09.yaml",
        "--list",
        "sample",
        "--backend",
        "sendgrid",
        "--yes",
        env={"SENDGRID_API_KEY": "SG.x"},
    )
    assert r.code == 2 and "NEWSLETTER_SECRET" in r.err and "Traceback" not in r.err
    r = cli(
        "send",
        "issues/2019-09.yaml",
        "--list",
        "sample",
        "--backend",
        "sendgrid",
        "--yes",
        env={"NEWSLETTER_SECRET": SECRET},
    )
    assert r.code == 2 and "SENDGRID_API_KEY is not set" in r.err


def test_send_status_and_refusal_to_send_twice(
    cli: Cli,
    workspace: Path,
    stub: StubSendGrid,
) -> None:
    env = sg_env(stub)
    declined = cli("send", "issues/2019-09.yaml", "--list", "sample", env=env, input="n\n")
    assert declined.code != 0 and "Send 2019-09 to 4 recipients?" in declined.out
    assert stub.requests == []

    sent = cli("send", "issues/2019-09.yaml", "--list", "sample", "--yes", env=env)
    assert sent.code == 0, sent.err
    assert "sent 4 recipients in 1 batch;" in sent.out
    assert "backend:       SendGrid at " + stub.url in sent.out
    assert sorted(stub.emails()) == [
        "ana.lopez@example.org",
        "ben.carter@example.com",
        "diego.ramirez@example.org",
        "esther.moyo@example.com",
    ]

    again = cli("send", "issues/2019-09.yaml", "--list", "sample", "--yes", env=env)
    assert again.code == 1 and "already sent to list sample" in again.err
    assert "--force-resend" in again.err and len(stub.sends()) == 1

    shown = cli("status", env=env)
    assert shown.code == 0
    assert "send #1  2019-09  to sample  via sendgrid  done" in shown.out
    assert "batches 1/1 sent; recipients: 4 planned, 4 sent, 0 pending, 0 failed, 0 unknown" in (
        shown.out
    )
    data = json.loads(cli("status", "issues/2019-09.yaml", "--format", "json", env=env).out)
    [send] = data["sends"]
    assert (send["state"], send["recipients_sent"], send["lists"]) == ("done", 4, ["sample"])


def test_test_copy_and_bad_options(cli: Cli, stub: StubSendGrid) -> None:
    env = sg_env(stub)
    r = cli(
        "send",
        "issues/2019-09.yaml",
        "--test-to",
        "me@example.org, you@example.org",
        "--yes",
        env=env,
    )
    assert r.code == 0, r.err
    [request] = stub.sends()
    assert request.body["subject"].startswith("[TEST] ")
    assert stub.emails() == ["me@example.org", "you@example.org"]
    r = cli("send", "issues/2019-09.yaml", "--test-to", "not an address", env=env)
    assert r.code == 2 and "--test-to" in r.err
    r = cli("send", "issues/2019-09.yaml", "--list", "sample", "--send-at", "next week", env=env)
    assert r.code == 2 and "is not a date and time" in r.err
    r = cli("send", "issues/2019-09.yaml", "--list", "nosuchlist", "--yes", env=env)
    assert r.code != 0 and "nosuchlist" in r.err and "Traceback" not in r.err
    r = cli("send", "issues/2019-09.yaml", "--skip-unknown", env=env)
    assert r.code == 2 and "--resume" in r.err


def test_schedule_then_cancel(cli: Cli, stub: StubSendGrid) -> None:
    env = sg_env(stub)
    when = (datetime.now(UTC) + timedelta(hours=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
    r = cli("send", "issues/2019-09.yaml", "--list", "sample", "--send-at", when, "--yes", env=env)
    assert r.code == 0, r.err
    assert "scheduled 4 recipients in 1 batch for" in r.out
    assert "scheduled for:" in r.out
    assert "scheduled for" in cli("status", "2019-09", env=env).out
    r = cli("cancel", "2019-09", env=env)
    assert r.code == 0 and "cancelled scheduled send #1" in r.out
    assert stub.requests[-1].path == "/v3/user/scheduled_sends"
    assert stub.requests[-1].body["status"] == "cancel"
    r = cli("cancel", "2019-09", env=env)
    assert r.code == 1 and "no scheduled or unfinished send" in r.err


def test_resume_with_nobody_left_finishes_the_send_and_says_why(
    cli: Cli,
    workspace: Path,
    stub: StubSendGrid,
) -> None:
    env = sg_env(stub)
    set_send_config(workspace, batch_size=2, pause_after_failures=2, backoff_base=0.01)
    people = write_list(workspace, "members", 4)
    stub.script(ok(), status(503), status(503))  # batch 2 (people 2 and 3) fails
    r = cli("send", "issues/2019-09.yaml", "--list", "members", "--yes", env=env)
    assert r.code == 1 and "paused" in r.err
    r = cli("suppressions", "add", people[2], people[3], "--reason", "unsubscribed", env=env)
    assert r.code == 0, r.err
    r = cli("send", "issues/2019-09.yaml", "--resume", "--yes", env=env)
    assert r.code == 0, r.err
    assert "to post again: 0 batches, 0 recipients (2 left out: unsubscribed since)" in r.out
    assert (
        "send #1 is done: nobody left to send to: 2 already received this issue, "
        "2 suppressed (unsubscribed, bounced or blocked)"
    ) in r.out
    assert "already has this issue" not in r.out
    assert sorted(stub.emails()) == sorted(people[:2])
    shown = cli("status", "2019-09", env=env)
    assert "via sendgrid  done" in shown.out and "--resume" not in shown.out
    assert "2 sent, 0 pending, 0 failed, 0 unknown, 2 left out" in shown.out


def test_new_send_with_nobody_left_words_the_message_from_the_counts(
    cli: Cli,
    workspace: Path,
) -> None:
    (workspace / "subscribers" / "gone.csv").write_text(
        "email\nana.lopez@example.org\nchloe.martin@example.net\nbad\n", "utf-8"
    )
    (workspace / "subscribers" / "suppressions.csv").write_text(
        "email,reason\nana.lopez@example.org,unsubscribed\nchloe.martin@example.net,bounced\n",
        "utf-8",
    )
    r = cli("send", "issues/2019-09.yaml", "--list", "gone", "--backend", "outbox", "--yes")
    assert r.code == 0, r.err
    assert "nobody left to send to: 2 suppressed (unsubscribed, bounced or blocked), 1 invalid" in (
        r.out
    )
    with Ledger(workspace / ".newsletter" / "state.db") as ledger:
        assert ledger.sends() == []  # nothing to send: no send recorded


def test_non_ascii_local_part_is_invalid_in_check_plan_and_test_to(
    cli: Cli,
    workspace: Path,
) -> None:
    (workspace / "subscribers" / "intl.csv").write_text(
        "email,name\np0@example.org,P0\njosé@example.org,José\np2@bücher.de,P2\n", "utf-8"
    )
    r = cli("subscribers", "check", "intl")
    assert r.code != 0
    assert (
        "intl.csv:3: invalid: josé@example.org: the part before the @ has non-ASCII "
        "characters, which SendGrid does not accept"
    ) in r.out + r.err
    r = cli("send", "issues/2019-09.yaml", "--list", "intl", "--backend", "outbox", "--dry-run")
    assert r.code == 0, r.err
    assert "recipients:    2" in r.out and "1 invalid" in r.out
    r = cli("send", "issues/2019-09.yaml", "--test-to", "josé@example.org", "--backend", "outbox")
    assert r.code == 2 and "SendGrid does not accept" in r.err


def test_plan_points_to_the_command_that_lists_every_bad_row(
    cli: Cli,
    workspace: Path,
) -> None:
    rows = "".join(f"bad{i}\n" for i in range(12))
    (workspace / "subscribers" / "messy.csv").write_text(f"email\n{rows}ok@example.org\n")
    r = cli("send", "issues/2019-09.yaml", "--list", "messy", "--backend", "outbox", "--dry-run")
    assert r.code == 0, r.err
    assert "and 2 more rows left out (`newsletter subscribers check` shows them all)" in r.err
    assert "lists check" not in r.err
    assert cli("subscribers", "check", "messy").out.count("invalid: bad") == 12


def test_cancel_of_a_paused_send_past_its_time_abandons_it_and_says_so(
    cli: Cli,
    workspace: Path,
    stub: StubSendGrid,
) -> None:
    env = sg_env(stub)
    set_send_config(workspace, batch_size=2, pause_after_failures=2, backoff_base=0.01)
    people = write_list(workspace, "members", 4)
    stub.script(ok(), status(503), status(503))
    when = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    r = cli("send", "issues/2019-09.yaml", "--list", "members", "--send-at", when, "--yes", env=env)
    assert r.code == 1 and "paused" in r.err
    db = sqlite3.connect(workspace / ".newsletter" / "state.db")
    db.execute("UPDATE sends SET send_at=send_at-7200")  # the scheduled time has passed
    db.commit()
    db.close()
    r = cli("send", "issues/2019-09.yaml", "--resume", "--yes", env=env)
    assert r.code == 1 and "has passed" in r.err and "newsletter cancel 2019-09" in r.err
    r = cli("cancel", "2019-09", env=env)
    assert r.code == 0, r.err
    assert "abandoned send #1 of 2019-09 here only: its time" in r.out
    assert "has passed" in r.out and "The 2 recipients in batches SendGrid accepted" in r.out
    assert "newsletter send issues/2019-09.yaml --list members" in r.out
    assert all(req.path != "/v3/user/scheduled_sends" for req in stub.requests)
    r = cli("send", "issues/2019-09.yaml", "--list", "members", "--yes", env=env)
    assert r.code == 0, r.err
    assert "2 already sent this issue" in r.out
    assert sorted(stub.emails()) == sorted(people)  # each once


def test_a_draft_cannot_be_sent_but_can_be_tried(cli: Any, workspace: Path) -> None:
    path = workspace / "issues" / "2019-09.yaml"
    path.write_text("draft: true\n" + path.read_text("utf-8"), "utf-8")
    r = cli("send", "issues/2019-09.yaml", "--list", "sample", "--backend", "outbox", "--yes")
    assert r.code == 1 and "is marked as a draft, so it cannot be sent" in r.err
    assert not (workspace / "outbox").exists()
    test = cli(
        "send", "issues/2019-09.yaml", "--test-to", "me@example.org", "--backend", "outbox", "--yes"
    )
    assert test.code == 0, test.err
