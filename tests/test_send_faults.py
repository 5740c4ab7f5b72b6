"""Faults: 429, 5xx, refused connections, timeouts, dropped connections, refusals,
unsubscribes mid-send and before a retry, SIGKILL, two sends at once.

Every test asserts on what the stand-in SendGrid received: each valid address exactly
once across all accepted requests, nobody suppressed, nobody invalid.  429, 5xx and
refused connections are retried by the send itself; a request that got no answer
pauses it for the user's choice.  Backoff is shortened through send.backoff_base /
backoff_max and send.timeout, so this takes seconds.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import run_cli
from newsletter.errors import ProviderRejected
from newsletter.esp.base import DeliveryUnknown
from newsletter.esp.sendgrid import map_transport_error
from newsletter.ledger import (
    B_FAILED,
    B_SENT,
    B_SKIPPED,
    B_UNKNOWN,
    DONE,
    FAILED,
    PAUSED,
    Ledger,
)
from newsletter.suppression_file import Suppression, now_iso
from newsletter.suppression_writes import add_suppressions
from stub_sendgrid import StubSendGrid, close, hang, ok, rate_limited, status
from test_send import (  # noqa: F401  (_fast_retries is an autouse fixture)
    SECRET,
    _fast_retries,
    run,
    sendgrid_env,
    session,
    set_send_config,
    write_list,
)


def ledger_of(ws: Path) -> Ledger:
    return Ledger(ws / ".newsletter" / "state.db")


class Outage:
    """Progress sink that takes the stub down after batch ``after`` (connections refused)
    and brings it back when the send starts waiting to retry: a deterministic outage."""

    def __init__(self, stub: StubSendGrid, after: int) -> None:
        self.stub, self.after = stub, after
        self.waits: list[str] = []

    def batch_done(self, seq: int, recipients: int) -> None:
        if seq == self.after:
            self.stub.go_down()

    def waiting(self, seconds: float, reason: str) -> None:
        self.waits.append(reason)
        self.stub.come_back()


def test_rate_limit_5xx_and_refused_retried_no_answer_pauses_exactly_once(
    workspace: Path, stub: StubSendGrid, monkeypatch: pytest.MonkeyPatch
) -> None:
    """429, 500, 503 and a refused connection are retried by themselves; a request that got
    no answer (hang, dropped connection) pauses the send, and --skip-unknown finishes it:
    every address exactly once."""
    sendgrid_env(monkeypatch, stub.url)
    set_send_config(workspace, timeout=0.5, batch_size=500)
    expected = write_list(workspace, "big", 2510, invalid=20, duplicates=10, suppressed=10)
    limited = rate_limited(0.3)
    reset = float(limited.headers["X-RateLimit-Reset"])
    stub.script(
        limited,  # batch 1: rate limited, then two server errors, then accepted
        status(500),
        status(503),
        ok(),
        ok(),  # batch 2 (after a refused connection: see Outage)
        hang(3.0, accepted=True),  # batch 3: SendGrid takes it but answers too late
    )
    outage = Outage(stub, after=1)
    s = session(workspace, lists=["big"])
    s.plan()
    report = s.execute(outage)
    s.close()
    assert report.state == PAUSED and report.unknown == [3]
    assert "batch 3 (500 recipients) got no answer" in report.message
    assert stub.refused_windows == 1 and any("cannot connect" in w for w in outage.waits)
    actions = [(r.action, r.status) for r in stub.sends(accepted_only=False)]
    assert actions == [
        ("status", 429),
        ("status", 500),
        ("status", 503),
        ("ok", 202),
        ("ok", 202),
        ("hang", None),  # and nothing after it: not retried
    ]
    assert stub.sends(accepted_only=False)[1].at >= reset  # waited for X-RateLimit-Reset
    with ledger_of(workspace) as ledger:
        [summary] = ledger.sends("2019-09")
        b1, b2, b3 = ledger.batches(summary.id)
        assert (b1.attempts, b1.ambiguous_attempts, b1.state) == (4, 0, B_SENT)
        assert (b2.attempts, b2.ambiguous_attempts, b2.state) == (2, 0, B_SENT)  # refused, ok
        assert (b3.attempts, b3.ambiguous_attempts, b3.state) == (1, 1, B_UNKNOWN)
        assert (summary.state, summary.recipients_unknown) == (PAUSED, 500)

    # batch 4: the connection drops after the request went out; pauses again
    stub.script(close(accepted=True))
    report = run_resume(workspace, unknown="skip")
    assert report.state == PAUSED and report.unknown == [4] and report.maybe_twice == []
    report = run_resume(workspace, unknown="skip")
    assert report.state == DONE and report.recipients_sent == 500
    emails = stub.emails()  # the hung and dropped requests count: SendGrid had them
    assert len(emails) == 2500 and Counter(emails) == Counter(expected)
    assert not any(e.startswith("not-an-address") for e in stub.emails(accepted_only=False))
    with ledger_of(workspace) as ledger:
        [summary] = ledger.sends("2019-09")
        assert (summary.state, summary.recipients_sent, summary.recipients_skipped) == (
            DONE,
            1500,
            1000,
        )
        assert summary.resent_batches == 0


def test_no_answer_pauses_the_cli_with_both_choices(workspace: Path, stub: StubSendGrid) -> None:
    set_send_config(workspace, timeout=0.3)
    expected = write_list(workspace, "small", 3)
    stub.script(hang(2.0, accepted=True))
    env = _cli_env(stub.url)
    send = ("send", "issues/2019-09.yaml", "--list", "small", "--yes")
    r = run_cli(*send, cwd=workspace, env=env)
    assert r.code == 1
    assert "got no answer" in r.err and "nobody gets the issue twice" in r.err
    assert "--resume --skip-unknown" in r.err and "--resume --resend-unknown" in r.err
    assert len(stub.sends(accepted_only=False)) == 1  # not retried
    shown = run_cli("status", "2019-09", cwd=workspace, env=env)
    assert "paused" in shown.out and "3 unknown" in shown.out
    assert "batch 1 (3 recipients): posted, no answer" in shown.out
    r = run_cli(*send[:2], "--resume", "--skip-unknown", "--yes", cwd=workspace, env=env)
    assert r.code == 0, r.err
    assert "is done" in r.out
    assert sorted(stub.emails()) == sorted(expected)  # once: the hung request was accepted


def test_transport_errors_before_and_after_the_request_left() -> None:
    """What fails while connecting or writing the request (httpx's Connect*/Write*) was not
    accepted; what fails while waiting for the answer may have been.  A read error after
    a failed write (httpx reads on, for an early answer) counts as not sent."""
    before = [
        httpx.ConnectError("[Errno 111] Connection refused"),
        httpx.ConnectTimeout("timed out"),  # connect timeout
        httpx.ConnectError("[Errno -2] Name or service not known"),
        httpx.WriteError("[Errno 32] Broken pipe"),  # body not fully written
    ]
    for exc in before:
        mapped = map_transport_error(exc)
        assert not isinstance(mapped, DeliveryUnknown) and "cannot connect" in mapped.message
    broken_write = httpx.RemoteProtocolError("Server disconnected without sending a response.")
    assert not isinstance(map_transport_error(broken_write, left=False), DeliveryUnknown)
    after = [
        httpx.ReadTimeout("timed out"),  # read timeout
        httpx.RemoteProtocolError("Server disconnected without sending a response."),
        httpx.ReadError("[Errno 104] Connection reset by peer"),
        httpx.RemoteProtocolError("peer closed connection without sending complete message body"),
    ]
    for exc in after:
        assert isinstance(map_transport_error(exc), DeliveryUnknown), exc
        assert isinstance(map_transport_error(exc, left=True), DeliveryUnknown), exc


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


# --------------------------------------------------------------------------- unsubscribed before a retry


def _suppress(ws: Path, *emails: str) -> None:
    add_suppressions(
        ws / "subscribers" / "suppressions.csv",
        [Suppression(e, "unsubscribed", "one-click", now_iso()) for e in emails],
    )


def test_resume_leaves_out_who_unsubscribed_from_a_failed_batch(
    workspace: Path, stub: StubSendGrid, monkeypatch: pytest.MonkeyPatch
) -> None:
    sendgrid_env(monkeypatch, stub.url)
    set_send_config(workspace, batch_size=2, pause_after_failures=2)
    people = write_list(workspace, "small", 6)
    stub.script(ok(), status(503), status(503))  # batch 2 (people 2 and 3) fails
    assert run(workspace, lists=["small"]).state == PAUSED
    _suppress(workspace, people[2].upper())

    s = session(workspace, lists=[], resume=True)
    plan = s.plan()
    assert (plan.repost_batches, plan.repost_recipients, plan.repost_dropped) == (1, 1, 1)
    assert (plan.recipients, plan.already_sent, plan.suppressed) == (2, 2, 1)
    report = s.execute()
    s.close()
    assert report.state == DONE and report.dropped == 1
    assert report.recipients_sent == plan.total_recipients == 3  # the plan's counts hold
    assert Counter(stub.emails()) == Counter(p for p in people if p != people[2])
    with ledger_of(workspace) as ledger:
        [summary] = ledger.sends("2019-09")
        assert (summary.recipients_sent, summary.recipients_dropped, summary.pending) == (5, 1, 0)
        b2 = ledger.batches(summary.id)[1]
        assert (b2.state, b2.recipients) == (B_SENT, 1)
        assert [r.email for r in ledger.batch_recipients(b2.id, dropped=True)] == [people[2]]
        # they never got it: were they to subscribe again, a new send would reach them
        assert not ledger.already_batched("2019-09", people[2], backend="sendgrid")
    shown = run_cli("status", "2019-09", cwd=workspace, env=_cli_env(stub.url))
    assert "5 sent, 0 pending, 0 failed, 0 unknown, 1 left out" in shown.out


def test_a_failed_batch_whose_people_all_unsubscribed_is_not_posted(
    workspace: Path, stub: StubSendGrid, monkeypatch: pytest.MonkeyPatch
) -> None:
    sendgrid_env(monkeypatch, stub.url)
    set_send_config(workspace, batch_size=2, pause_after_failures=2)
    people = write_list(workspace, "small", 4)
    stub.script(ok(), status(503), status(503))
    assert run(workspace, lists=["small"]).state == PAUSED
    _suppress(workspace, people[2], people[3])
    posted = len(stub.sends(accepted_only=False))
    report = run_resume(workspace)
    assert report.state == DONE and report.dropped == 2 and report.batches_reposted == 0
    assert len(stub.sends(accepted_only=False)) == posted  # nothing posted
    with ledger_of(workspace) as ledger:
        [summary] = ledger.sends("2019-09")
        assert [b.state for b in ledger.batches(summary.id)] == [B_SENT, B_SKIPPED]
        assert (summary.recipients_sent, summary.recipients_dropped) == (2, 2)


def test_resend_unknown_leaves_out_who_unsubscribed_and_remembers_they_may_have_it(
    workspace: Path, stub: StubSendGrid
) -> None:
    people = write_list(workspace, "big", 2500)
    _kill_mid_send(workspace, stub)  # batch 2 (people 1000..1999) posted, no answer
    leaving = [people[1000], people[1500]]
    _suppress(workspace, *leaving)
    env = _cli_env(stub.url)
    r = run_cli(
        "send",
        "issues/2019-09.yaml",
        "--resume",
        "--resend-unknown",
        "--yes",
        cwd=workspace,
        env=env,
    )
    assert r.code == 0, r.err
    assert "to post again: 1 batch, 998 recipients (2 left out: unsubscribed since)" in r.out
    assert "2 subscribers unsubscribed before their batch was posted again" in r.err
    resent = stub.sends()[2]
    assert len(resent.body["personalizations"]) == 998
    assert not set(leaving) & {p["to"][0]["email"] for p in resent.body["personalizations"]}
    with ledger_of(workspace) as ledger:
        # the first, unanswered attempt may have reached them: they count as having it
        assert all(ledger.already_batched("2019-09", e, backend="sendgrid") for e in leaving)


# --------------------------------------------------------------------------- two at once


def test_two_sends_of_the_same_issue_at_once_never_duplicate(
    workspace: Path, stub: StubSendGrid
) -> None:
    """The second `newsletter send` stops at once with a clear message: one per issue."""
    expected = write_list(workspace, "big", 2500)
    stub.script(hang(accepted=True))  # the first process's batch 1 waits for release()
    first = _start_send(
        workspace, stub.url, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert stub.wait_for_sends(1, timeout=60)
        second = _start_send(
            workspace, stub.url, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        _, err2 = second.communicate(timeout=60)
        stub.release()
        _, err1 = first.communicate(timeout=60)
    finally:
        for proc in (first,):
            if proc.poll() is None:
                proc.kill()
    assert first.returncode == 0, err1
    assert second.returncode == 1 and "another send of 2019-09 is running" in err2
    assert "Traceback" not in err2
    emails = stub.emails()
    assert len(emails) == len(set(emails)) == len(expected) == 2500
    with ledger_of(workspace) as ledger:
        assert [s.state for s in ledger.sends("2019-09")] == [DONE]


class UnsubscribeWhileWaiting:
    """Progress sink: someone unsubscribes while the send waits to retry a batch."""

    def __init__(self, ws: Path, email: str) -> None:
        self.ws, self.email = ws, email

    def batch_done(self, seq: int, recipients: int) -> None:
        pass

    def waiting(self, seconds: float, reason: str) -> None:
        _suppress(self.ws, self.email)


def test_a_retry_after_a_wait_leaves_out_who_unsubscribed_meanwhile(
    workspace: Path, stub: StubSendGrid, monkeypatch: pytest.MonkeyPatch
) -> None:
    sendgrid_env(monkeypatch, stub.url)
    set_send_config(workspace, batch_size=2)
    people = write_list(workspace, "small", 4)
    stub.script(ok(), rate_limited(0.1))  # batch 2 (people 2 and 3) must wait
    s = session(workspace, lists=["small"])
    s.plan()
    report = s.execute(UnsubscribeWhileWaiting(workspace, people[2]))
    s.close()
    assert report.state == DONE and report.dropped == 1 and report.recipients_sent == 3
    retried = stub.sends()[1]
    assert [p["to"][0]["email"] for p in retried.body["personalizations"]] == [people[3]]
    assert Counter(stub.emails()) == Counter(p for p in people if p != people[2])
    with ledger_of(workspace) as ledger:
        [summary] = ledger.sends("2019-09")
        assert (summary.recipients_sent, summary.recipients_dropped) == (3, 1)
        assert not ledger.already_batched("2019-09", people[2], backend="sendgrid")
