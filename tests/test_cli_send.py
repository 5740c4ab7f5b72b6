"""`newsletter send / status / cancel` as a user runs them (real subprocesses)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from conftest import Result
from stub_sendgrid import StubSendGrid
from test_send import SECRET

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


@pytest.fixture
def stub() -> Iterator[StubSendGrid]:
    with StubSendGrid() as server:
        yield server


def sg_env(stub: StubSendGrid) -> dict[str, str]:
    return {
        "NEWSLETTER_SECRET": SECRET,
        "SENDGRID_API_KEY": "SG.cli-test",
        "SENDGRID_API_HOST": stub.url,
    }


def test_readme_dry_send_works_with_no_environment(cli, workspace: Path) -> None:  # type: ignore[no-untyped-def]
    r: Result = cli(*README_SEND)
    assert r.code == 0, r.err
    assert "recipients:    4" in r.out
    assert "0 invalid, 0 duplicate, 1 suppressed" in r.out
    assert "first:         ana.lopez@example.org, ben.carter@example.com" in r.out
    assert "NEWSLETTER_SECRET is not set; the outbox uses a development key" in r.err
    assert r.err.count("\n") == 1  # the warning is one line
    folder = workspace / "outbox" / "2019-09"
    assert (folder / "batch-0001.json").is_file()
    assert len(list((folder / "batch-0001").glob("*.eml"))) == 4
    assert not (workspace / ".newsletter").exists()
    assert "Traceback" not in r.err


def test_sendgrid_refuses_without_secret_or_key(cli) -> None:  # type: ignore[no-untyped-def]
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
    cli,
    workspace: Path,
    stub: StubSendGrid,  # type: ignore[no-untyped-def]
) -> None:
    env = sg_env(stub)
    declined = cli("send", "issues/2019-09.yaml", "--list", "sample", env=env, input="n\n")
    assert declined.code != 0 and "Send 2019-09 to 4 recipients?" in declined.out
    assert stub.requests == []

    sent = cli("send", "issues/2019-09.yaml", "--list", "sample", "--yes", env=env)
    assert sent.code == 0, sent.err
    assert "sent 4 recipients in 1 batch(es)" in sent.out
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
    assert "batches 1/1 sent; recipients: 4 sent, 0 pending, 0 failed, 0 unknown" in shown.out
    data = json.loads(cli("status", "issues/2019-09.yaml", "--format", "json", env=env).out)
    [send] = data["sends"]
    assert (send["state"], send["recipients_sent"], send["lists"]) == ("done", 4, ["sample"])


def test_test_copy_and_bad_options(cli, stub: StubSendGrid) -> None:  # type: ignore[no-untyped-def]
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


def test_schedule_then_cancel(cli, stub: StubSendGrid) -> None:  # type: ignore[no-untyped-def]
    env = sg_env(stub)
    when = (datetime.now(UTC) + timedelta(hours=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
    r = cli("send", "issues/2019-09.yaml", "--list", "sample", "--send-at", when, "--yes", env=env)
    assert r.code == 0, r.err
    assert "scheduled 4 recipients in 1 batch(es)" in r.out
    assert "scheduled for:" in r.out
    assert "scheduled for" in cli("status", "2019-09", env=env).out
    r = cli("cancel", "2019-09", env=env)
    assert r.code == 0 and "cancelled scheduled send #1" in r.out
    assert stub.requests[-1].path == "/v3/user/scheduled_sends"
    assert stub.requests[-1].body["status"] == "cancel"
    r = cli("cancel", "2019-09", env=env)
    assert r.code == 1 and "no scheduled or unfinished send" in r.err
