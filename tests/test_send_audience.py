"""A send's audience is frozen when it is planned: editing a list while it is being
sent (a spreadsheet saving it in place) never loses or invents a recipient.

Asserted on what the stand-in SendGrid received and on the ledger's record.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from conftest import run_cli
from newsletter.ledger import DONE, Ledger
from stub_sendgrid import StubSendGrid, ok, status
from test_send import (  # noqa: F401  (_fast_retries is an autouse fixture)
    _fast_retries,
    email_of,
    sendgrid_env,
    session,
    set_send_config,
    write_list,
)
from test_send_faults import _cli_env
from test_suppressions_durable import AfterBatch


def _save_in_place(path: Path, text: str) -> None:
    """What a spreadsheet does: the same file (inode), truncated and written anew."""
    with path.open("r+", encoding="utf-8") as f:
        f.truncate(0)
        f.write(text)


def _edited_list(first_kept: int, n: int, added: int) -> str:
    rows = ["email,name,language,tags"]
    rows += [f"{email_of(i)},Person {i},en," for i in range(first_kept, n)]
    rows += [f"user{i}.tetest@example.net,New {i},en," for i in range(added)]
    return "\n".join(rows) + "\n"


def test_list_saved_in_place_mid_send_neither_loses_nor_invents_anyone(
    workspace: Path, stub: StubSendGrid, monkeypatch: pytest.MonkeyPatch
) -> None:
    sendgrid_env(monkeypatch, stub.url)
    set_send_config(workspace, batch_size=100)
    expected = write_list(workspace, "big", 900, suppressed=30)
    path = workspace / "subscribers" / "big.csv"
    planned_bytes = path.read_bytes()
    s = session(workspace, lists=["big"])
    plan = s.plan()
    assert plan.recipients == 870
    # between the plan and the send, and again mid-send, the list is saved in place
    _save_in_place(path, _edited_list(450, 900, 300))
    report = s.execute(AfterBatch(2, lambda: _save_in_place(path, _edited_list(600, 900, 700))))
    s.close()
    assert report.state == DONE
    emails = stub.emails()
    assert Counter(emails) == Counter(expected)  # exactly the planned people, once each
    assert not any("tetest" in e for e in emails)
    with Ledger(workspace / ".newsletter" / "state.db") as ledger:
        [summary] = ledger.sends("2019-09")
        info = ledger.audience_info(summary.id)
        assert info is not None and info["recipients"] == 870
        assert info["lists"]["big"]["sha256"] == hashlib.sha256(planned_bytes).hexdigest()
        assert info["lists"]["big"]["file"] == "subscribers/big.csv"


def test_a_resumed_send_keeps_its_frozen_audience(
    workspace: Path, stub: StubSendGrid, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Paused, the list edited, then resumed: the resume sends to the rest of the people
    planned, not to whoever the file holds now; someone who unsubscribed meanwhile is
    still left out."""
    sendgrid_env(monkeypatch, stub.url)
    set_send_config(workspace, batch_size=100, pause_after_failures=1)
    expected = write_list(workspace, "big", 500)
    stub.script(ok(), status(503))  # batch 2 fails: the send pauses
    s = session(workspace, lists=["big"])
    s.plan()
    assert s.execute().state == "paused"
    s.close()
    path = workspace / "subscribers" / "big.csv"
    _save_in_place(path, _edited_list(250, 500, 100))
    leaving = expected[400]
    r = run_cli("suppressions", "add", leaving, cwd=workspace)
    assert r.code == 0, r.err
    env = _cli_env(stub.url)
    shown = run_cli("status", "2019-09", cwd=workspace, env=env)
    assert "500 planned" in shown.out, shown.out
    done = run_cli("send", "issues/2019-09.yaml", "--resume", "--yes", cwd=workspace, env=env)
    assert done.code == 0, done.err
    assert "recipients:    299 (not yet sent)" in done.out, done.out
    assert "to post again: 1 batch, 100 recipients" in done.out
    assert Counter(stub.emails()) == Counter(e for e in expected if e != leaving)


def test_a_list_being_saved_while_the_plan_reads_it_is_read_whole(
    workspace: Path, stub: StubSendGrid, monkeypatch: pytest.MonkeyPatch
) -> None:
    sendgrid_env(monkeypatch, stub.url)
    write_list(workspace, "big", 3000)
    path = workspace / "subscribers" / "big.csv"
    versions = [_edited_list(0, 3000, 0), _edited_list(1000, 3000, 500)]
    stop = time.monotonic() + 1.0

    def keep_saving() -> None:
        i = 0
        while time.monotonic() < stop:
            _save_in_place(path, versions[i % 2])
            i += 1
        _save_in_place(path, versions[1])

    writer = threading.Thread(target=keep_saving)
    writer.start()
    try:
        s = session(workspace, lists=["big"], dry_run=True)
        plan = s.plan()
        s.close()
    finally:
        writer.join()
    assert (plan.recipients, plan.invalid, plan.duplicates) == (2500, 0, 0)  # never torn


def test_the_plan_waits_for_an_import_into_the_list_to_finish(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An import holds the list's lock while it rewrites the file; a send's plan reads the
    list only after it, so it never sees the import half-done."""
    from newsletter.config import Workspace
    from newsletter.list_locks import list_lock

    sendgrid_env(monkeypatch, "http://127.0.0.1:9")  # a dry run posts nothing
    write_list(workspace, "big", 100)
    ws = Workspace(workspace)
    ws.state_db.parent.mkdir(exist_ok=True)
    path = workspace / "subscribers" / "big.csv"
    result: dict[str, int] = {}

    def plan_it() -> None:
        s = session(workspace, lists=["big"], dry_run=True)
        result["recipients"] = s.plan().recipients
        s.close()

    with list_lock(ws, "big"):  # an import is rewriting the list
        worker = threading.Thread(target=plan_it)
        worker.start()
        time.sleep(0.5)
        assert "recipients" not in result  # the plan waits
        with path.open("a", encoding="utf-8") as f:
            f.write("late@example.org,Late,en,\n")
    worker.join(timeout=30)
    assert result["recipients"] == 101  # it read the list as the import left it


def test_new_only_reaches_people_added_since_and_nobody_twice(
    workspace: Path, stub: StubSendGrid
) -> None:
    """A list gets the issue; later two people join it.  A plain send is refused (it
    says how to reach them); --new-only sends to exactly those two."""
    expected = write_list(workspace, "big", 40)
    env = _cli_env(stub.url)
    r = run_cli("send", "2019-09", "--list", "big", "--yes", cwd=workspace, env=env)
    assert r.code == 0, r.err
    with (workspace / "subscribers" / "big.csv").open("a", encoding="utf-8") as f:
        f.write("late1@example.org,Late One,en,\nlate2@example.org,Late Two,en,\n")
    refused = run_cli("send", "2019-09", "--list", "big", "--yes", cwd=workspace, env=env)
    assert refused.code == 1 and "--new-only" in refused.err
    r = run_cli("send", "2019-09", "--list", "big", "--new-only", "--yes", cwd=workspace, env=env)
    assert r.code == 0, r.err
    assert "40 already sent this issue" in r.out
    assert Counter(stub.emails()) == Counter([*expected, "late1@example.org", "late2@example.org"])


def test_resuming_after_the_issue_was_edited_says_so(
    workspace: Path, stub: StubSendGrid, monkeypatch: pytest.MonkeyPatch
) -> None:
    sendgrid_env(monkeypatch, stub.url)
    set_send_config(workspace, batch_size=10, pause_after_failures=1)
    write_list(workspace, "big", 30)
    stub.script(ok(), status(503))
    env = _cli_env(stub.url)
    r = run_cli("send", "2019-09", "--list", "big", "--yes", cwd=workspace, env=env)
    assert r.code == 1 and "paused" in r.err
    same = run_cli("send", "2019-09", "--resume", "--dry-run", cwd=workspace, env=env)
    assert "has changed since this send started" not in same.err
    issue = workspace / "issues" / "2019-09.yaml"
    text = issue.read_text("utf-8")
    issue.write_text(text.replace("subject:", "subject: Corrected —", 1), "utf-8")
    r = run_cli("send", "2019-09", "--resume", "--yes", cwd=workspace, env=env)
    assert r.code == 0, r.err
    assert "warning: the issue has changed since this send started" in r.err
