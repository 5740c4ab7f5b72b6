"""Faults: 429, 5xx, timeouts, dropped connections, refusals, unsubscribes mid-send, SIGKILL.

Every test asserts on what the stand-in SendGrid received: each valid address exactly
once across all accepted requests, nobody suppressed, nobody invalid.  Backoff is
shortened through send.backoff_base / backoff_max and send.timeout, so this takes seconds.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import run_cli
from newsletter.errors import ProviderRejected
from newsletter.ledger import B_FAILED, B_SENT, DONE, FAILED, PAUSED, Ledger
from newsletter.suppressions import Suppression, add_suppressions, now_iso
from stub_sendgrid import StubSendGrid, close, hang, ok, rate_limited, status
from test_send import (  # noqa: F401  (_fast_retries is an autouse fixture)
    SECRET,
    _fast_retries,
    sendgrid_env,
    session,
    set_send_config,
    write_list,
)


def ledger_of(ws: Path) -> Ledger:
    return Ledger(ws / ".newsletter" / "state.db")


@pytest.fixture
def stub() -> Iterator[StubSendGrid]:
    with StubSendGrid() as server:
        yield server


def test_rate_limit_5xx_timeout_and_dropped_connection_still_exactly_once(
    workspace: Path, stub: StubSendGrid, monkeypatch: pytest.MonkeyPatch
) -> None:
    sendgrid_env(monkeypatch, stub.url)
    set_send_config(workspace, timeout=0.5)
    expected = write_list(workspace, "big", 2510, invalid=20, duplicates=10, suppressed=10)
    limited = rate_limited(0.3)
    reset = float(limited.headers["X-RateLimit-Reset"])
    stub.script(
        # batch 1: rate limited, then two server errors, then accepted
        limited,
        status(500),
        status(503),
        ok(),
        # batch 2: no answer before the timeout, then the connection drops, then accepted
        hang(3.0),
        close(),
    )
    s = session(workspace, lists=["big"])
    s.plan()
    report = s.execute()
    s.close()

    assert report.state == DONE and report.recipients_sent == 2500
    emails = stub.emails()
    assert len(emails) == 2500 and sorted(emails) == sorted(expected)
    assert not any(e.startswith("not-an-address") for e in stub.emails(accepted_only=False))
    actions = [(r.action, r.status) for r in stub.sends(accepted_only=False)]
    assert actions == [
        ("status", 429),
        ("status", 500),
        ("status", 503),
        ("ok", 202),
        ("hang", None),
        ("close", None),
        ("ok", 202),
        ("ok", 202),
    ]
    assert stub.sends(accepted_only=False)[1].at >= reset  # waited for X-RateLimit-Reset
    # batch 2 was retried after requests that got no answer: reported, and in the ledger
    assert report.maybe_twice == [2]
    with ledger_of(workspace) as ledger:
        [summary] = ledger.sends("2019-09")
        b1, b2, b3 = ledger.batches(summary.id)
        assert (b1.attempts, b1.ambiguous_attempts, b1.state) == (4, 0, B_SENT)
        assert (b2.attempts, b2.ambiguous_attempts, b2.state) == (3, 2, B_SENT)
        assert b3.attempts == 1


def test_refusal_stops_with_sendgrid_message_then_resume_finishes_once(
    workspace: Path, stub: StubSendGrid, monkeypatch: pytest.MonkeyPatch
) -> None:
    sendgrid_env(monkeypatch, stub.url)
    expected = write_list(workspace, "big", 2500)
    body = json.dumps(
        {
            "errors": [
                {
                    "message": "The from email does not contain a valid address.",
                    "field": "from.email",
                }
            ]
        }
    ).encode()
    stub.script(ok(), status(400, body))
    s = session(workspace, lists=["big"])
    s.plan()
    report = s.execute()
    s.close()
    assert report.state == FAILED
    assert isinstance(report.error, ProviderRejected) and report.error.status == 400
    assert "does not contain a valid address" in report.error.message
    assert report.error.field == "from.email" and "field: from.email" in report.error.message
    with ledger_of(workspace) as ledger:
        [summary] = ledger.sends("2019-09")
        assert summary.state == FAILED and summary.recipients_sent == 1000
        assert [b.state for b in ledger.batches(summary.id)] == [B_SENT, B_FAILED]

    report = run_resume(workspace)
    assert report.state == DONE and report.batches_reposted == 1
    assert Counter(stub.emails()) == Counter(expected)


def run_resume(ws: Path, **options: object) -> Any:
    s = session(ws, lists=[], resume=True, **options)
    try:
        s.plan()
        return s.execute()
    finally:
        s.close()


def test_consecutive_failures_pause_the_send_and_resume_finishes_once(
    workspace: Path, stub: StubSendGrid, monkeypatch: pytest.MonkeyPatch
) -> None:
    sendgrid_env(monkeypatch, stub.url)
    set_send_config(workspace, pause_after_failures=3)
    expected = write_list(workspace, "big", 2500)
    stub.script(ok(), status(500), status(503), status(500))
    s = session(workspace, lists=["big"])
    s.plan()
    report = s.execute()
    s.close()
    assert report.state == PAUSED and "3 failed attempts in a row" in report.message
    assert len(stub.sends(accepted_only=False)) == 4
    with ledger_of(workspace) as ledger:
        [summary] = ledger.sends("2019-09")
        assert summary.state == PAUSED and summary.batches_unknown == 0
        assert summary.recipients_failed == 1000
    assert run_resume(workspace).state == DONE
    assert Counter(stub.emails()) == Counter(expected)


def test_max_retries_and_unreachable_host_pause_without_unknown_batches(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dead = StubSendGrid()
    url = dead.url
    dead._server.server_close()  # nothing listens there any more: connection refused
    sendgrid_env(monkeypatch, url)
    set_send_config(workspace, max_retries=2)
    write_list(workspace, "small", 3)
    s = session(workspace, lists=["small"])
    s.plan()
    report = s.execute()
    s.close()
    assert report.state == PAUSED and "cannot connect" in report.message
    with ledger_of(workspace) as ledger:
        [summary] = ledger.sends("2019-09")
        [batch] = ledger.batches(summary.id)
        # refused connections never reached SendGrid: safe to post again, no question asked
        assert (batch.state, batch.attempts, batch.ambiguous_attempts) == (B_FAILED, 3, 0)


class Unsubscriber:
    """Progress sink that unsubscribes people while the send runs (as the web server would)."""

    def __init__(self, path: Path, after_batch: int, emails: list[str]) -> None:
        self.path, self.after_batch, self.emails = path, after_batch, emails

    def batch_done(self, seq: int, recipients: int) -> None:
        if seq == self.after_batch:
            add_suppressions(
                self.path,
                [Suppression(e, "unsubscribed", "one-click", now_iso()) for e in self.emails],
            )

    def waiting(self, seconds: float, reason: str) -> None:
        pass


def test_unsubscribe_during_the_send_is_excluded_from_later_batches(
    workspace: Path, stub: StubSendGrid, monkeypatch: pytest.MonkeyPatch
) -> None:
    sendgrid_env(monkeypatch, stub.url)
    expected = write_list(workspace, "big", 2500)
    leaving = [expected[1500], expected[2400]]  # in batches 2 and 3
    already = expected[10]  # in batch 1, already posted when they unsubscribe
    s = session(workspace, lists=["big"])
    s.plan()
    report = s.execute(
        Unsubscriber(workspace / "subscribers" / "suppressions.csv", 1, [*leaving, already])
    )
    s.close()
    assert report.state == DONE and report.recipients_sent == 2498
    emails = stub.emails()
    assert not set(leaving) & set(emails)
    assert Counter(emails) == Counter(e for e in expected if e not in leaving)
    assert s.audience_counts["suppressed"] == 2


# --------------------------------------------------------------------------- SIGKILL


def _cli_env(stub_url: str) -> dict[str, str]:
    return {
        "NEWSLETTER_SECRET": SECRET,
        "SENDGRID_API_KEY": "SG.test-key",
        "SENDGRID_API_HOST": stub_url,
    }


def _start_send(ws: Path, stub_url: str, **popen: Any) -> subprocess.Popen[Any]:
    """`newsletter send` of the 2,500-address list "big" as a real process, as a user runs it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SENDGRID_", "NEWSLETTER_"))}
    env.update(_cli_env(stub_url))
    command = ["send", "issues/2019-09.yaml", "--list", "big", "--yes", "--backend", "sendgrid"]
    return subprocess.Popen(
        [sys.executable, "-m", "newsletter", *command], cwd=ws, env=env, **popen
    )


def _kill_mid_send(ws: Path, stub: StubSendGrid) -> None:
    """Start a real `newsletter send`, let batch 1 through, SIGKILL it while batch 2 hangs."""
    stub.script(ok(), hang(accepted=True))  # batch 2 reaches SendGrid; the answer never comes
    proc = _start_send(ws, stub.url, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        assert stub.wait_for_sends(2, timeout=60), "the send never reached batch 2"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    stub.release()
    assert proc.returncode == -signal.SIGKILL


def test_sigkill_mid_send_then_skip_unknown_is_exactly_once(
    workspace: Path, stub: StubSendGrid
) -> None:
    expected = write_list(workspace, "big", 2500, invalid=5, suppressed=5)
    _kill_mid_send(workspace, stub)
    env = _cli_env(stub.url)

    shown = run_cli("status", "2019-09", cwd=workspace, env=env)
    assert shown.code == 0
    assert "batch 2 (1,000 recipients): posted, no answer" in shown.out
    assert "1,000 sent" in shown.out

    refused = run_cli("send", "issues/2019-09.yaml", "--resume", "--yes", cwd=workspace, env=env)
    assert refused.code == 1
    assert "--skip-unknown" in refused.err and "--resend-unknown" in refused.err
    assert len(stub.sends(accepted_only=False)) == 2  # nothing posted by the refusal

    done = run_cli(
        "send", "issues/2019-09.yaml", "--resume", "--skip-unknown", "--yes", cwd=workspace, env=env
    )
    assert done.code == 0, done.err
    emails = stub.emails()  # the hung batch counts: SendGrid had it
    assert Counter(emails) == Counter(expected)
    with ledger_of(workspace) as ledger:
        [summary] = ledger.sends("2019-09")
        assert summary.state == DONE and summary.recipients_skipped == 1000
        assert summary.recipients_sent == 1495
    shown = run_cli("status", "2019-09", cwd=workspace, env=env)
    assert "1,000 skipped" in shown.out


def test_sigkill_mid_send_then_resend_unknown_repeats_only_that_batch(
    workspace: Path, stub: StubSendGrid
) -> None:
    expected = write_list(workspace, "big", 2500)
    _kill_mid_send(workspace, stub)
    hung = {p["to"][0]["email"] for p in stub.sends()[1].body["personalizations"]}
    assert len(hung) == 1000
    env = _cli_env(stub.url)
    done = run_cli(
        "send",
        "issues/2019-09.yaml",
        "--resume",
        "--resend-unknown",
        "--yes",
        cwd=workspace,
        env=env,
    )
    assert done.code == 0, done.err
    assert "may have received the issue twice" in done.err
    counts = Counter(stub.emails())
    assert set(counts) == set(expected)
    assert {e for e, n in counts.items() if n == 2} == hung
    assert max(counts.values()) == 2
    shown = run_cli("status", "2019-09", cwd=workspace, env=env)
    assert "posted again after getting no answer" in shown.out
    with ledger_of(workspace) as ledger:
        [summary] = ledger.sends("2019-09")
        assert (summary.state, summary.recipients_sent, summary.resent_batches) == (DONE, 2500, 1)


def test_ctrl_c_pauses_after_the_batch_in_flight(workspace: Path, stub: StubSendGrid) -> None:
    expected = write_list(workspace, "big", 2500)
    stub.script(ok(), hang(accepted=True))  # batch 2 is in flight when Ctrl-C comes
    proc = _start_send(
        workspace, stub.url, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert stub.wait_for_sends(2, timeout=60)
        proc.send_signal(signal.SIGINT)
        _wait_for_line(proc, "pausing after the batch in flight")
        stub.release()  # batch 2 is answered 202 after the Ctrl-C
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "paused by the user" in err and "--resume" in err
    assert len(stub.sends(accepted_only=False)) == 2  # batch 3 was never posted
    with ledger_of(workspace) as ledger:
        [summary] = ledger.sends("2019-09")
        assert (summary.state, summary.batches_sent, summary.batches_unknown) == (PAUSED, 2, 0)
    done = run_cli(
        "send", "issues/2019-09.yaml", "--resume", "--yes", cwd=workspace, env=_cli_env(stub.url)
    )
    assert done.code == 0, done.err
    assert Counter(stub.emails()) == Counter(expected)


def _wait_for_line(proc: subprocess.Popen[str], text: str) -> None:
    assert proc.stderr is not None
    for line in proc.stderr:
        if text in line:
            return
    raise AssertionError(f"{text!r} never printed")
