"""A vanished, replaced or unreadable suppressions.csv never un-suppresses anyone.

Every suppression is also kept in the state database; a send honours the union of
the database and the file.  Asserted on what the stand-in SendGrid received.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pytest

from conftest import run_cli
from newsletter.config import Workspace
from newsletter.ledger import DONE, PAUSED, Ledger
from newsletter.suppression_file import Suppression, read_suppressions
from newsletter.suppression_store import SuppressionStore
from newsletter.suppression_writes import add_suppressions
from newsletter.suppressions import SuppressionList
from stub_sendgrid import StubSendGrid
from test_send import (  # noqa: F401  (_fast_retries is an autouse fixture)
    _fast_retries,
    sendgrid_env,
    session,
    set_send_config,
    write_list,
)
from test_send_faults import _cli_env


class AfterBatch:
    """Progress sink: does something to the workspace once batch ``seq`` is accepted."""

    def __init__(self, seq: int, action: object) -> None:
        self.seq, self.action = seq, action

    def batch_done(self, seq: int, recipients: int) -> None:
        if seq == self.seq:
            self.action()  # type: ignore[operator]

    def waiting(self, seconds: float, reason: str) -> None:
        pass


def _suppressions(ws: Path) -> Path:
    return ws / "subscribers" / "suppressions.csv"


def test_file_deleted_mid_send_still_leaves_out_everyone_unsubscribed(
    workspace: Path, stub: StubSendGrid, monkeypatch: pytest.MonkeyPatch
) -> None:
    sendgrid_env(monkeypatch, stub.url)
    set_send_config(workspace, batch_size=100)
    expected = write_list(workspace, "big", 600, suppressed=150)  # the last 150 left
    path = _suppressions(workspace)
    s = session(workspace, lists=["big"])
    plan = s.plan()
    assert plan.suppressed == 150
    report = s.execute(AfterBatch(1, path.unlink))  # e.g. a `git checkout` mid-send
    notes = s.suppression_notes()
    s.close()
    assert report.state == DONE
    assert Counter(stub.emails()) == Counter(expected)  # nobody suppressed, each once
    assert notes and "disappeared during the send" in notes[0] and "restore" in notes[0]


def test_file_replaced_mid_send_by_a_partial_copy_keeps_every_suppression(
    workspace: Path, stub: StubSendGrid, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sync script deletes the file and writes it anew, with only some rows yet."""
    sendgrid_env(monkeypatch, stub.url)
    set_send_config(workspace, batch_size=100)
    expected = write_list(workspace, "big", 600, suppressed=150)
    path = _suppressions(workspace)
    original = path.read_text("utf-8").splitlines()

    def rewrite() -> None:
        tmp = path.with_suffix(".new")
        tmp.write_text("\n".join(original[:3]) + "\n", "utf-8")
        os.replace(tmp, path)

    s = session(workspace, lists=["big"])
    s.plan()
    report = s.execute(AfterBatch(2, rewrite))
    s.close()
    assert report.state == DONE
    assert Counter(stub.emails()) == Counter(expected)


def test_every_path_that_suppresses_keeps_a_durable_copy(workspace: Path) -> None:
    ws = Workspace(workspace)
    add_suppressions(
        ws.suppressions_path, [Suppression("Ana@Example.org", "unsubscribed", "one-click", "")]
    )
    r = run_cli("suppressions", "add", "ben@example.org", cwd=workspace)
    assert r.code == 0, r.err
    stored = {e.email for e in SuppressionStore(ws.state_db).entries()}
    assert {"Ana@example.org", "ben@example.org"} <= stored
    ws.suppressions_path.unlink()
    fresh = SuppressionList(ws.suppressions_path)
    assert "ana@example.org" in fresh and "BEN@example.org" in fresh


def test_rows_read_from_the_file_are_kept_too(workspace: Path) -> None:
    """Rows typed into the file by hand: the first read keeps them in the database."""
    ws = Workspace(workspace)
    Ledger(ws.state_db).close()  # a workspace that has sent before
    with ws.suppressions_path.open("a", encoding="utf-8") as f:
        f.write("by-hand@example.org,manual,staff,\n")
    assert "by-hand@example.org" in SuppressionList(ws.suppressions_path)
    ws.suppressions_path.unlink()
    assert "by-hand@example.org" in SuppressionList(ws.suppressions_path)


def test_missing_file_at_plan_time_is_an_error_not_zero_suppressed(
    workspace: Path, stub: StubSendGrid
) -> None:
    write_list(workspace, "big", 50, suppressed=5)
    env = _cli_env(stub.url)
    first = run_cli(
        "send", "issues/2019-09.yaml", "--list", "big", "--dry-run", cwd=workspace, env=env
    )
    assert first.code == 0 and "5 suppressed" in first.out, first.err
    Ledger(workspace / ".newsletter" / "state.db").close()
    SuppressionList(_suppressions(workspace))  # a send read it: the workspace has it
    _suppressions(workspace).unlink()
    r = run_cli("send", "issues/2019-09.yaml", "--list", "big", "--yes", cwd=workspace, env=env)
    assert r.code != 0
    assert "suppressions.csv: the suppression list is missing, but this workspace had it" in r.err
    assert "newsletter suppressions restore" in r.err and "Traceback" not in r.err
    assert stub.emails(accepted_only=False) == []  # nothing was posted


def test_unreadable_file_mid_send_pauses_and_resume_finishes_exactly_once(
    workspace: Path, stub: StubSendGrid, monkeypatch: pytest.MonkeyPatch
) -> None:
    sendgrid_env(monkeypatch, stub.url)
    set_send_config(workspace, batch_size=100)
    expected = write_list(workspace, "big", 400, suppressed=20)
    path = _suppressions(workspace)
    good = path.read_bytes()

    def break_it() -> None:
        path.write_bytes(good + b"\xff\xfe not utf-8\n")

    s = session(workspace, lists=["big"])
    s.plan()
    report = s.execute(AfterBatch(1, break_it))
    s.close()
    assert report.state == PAUSED
    assert "suppression list could not be read" in report.message
    assert len(stub.sends(accepted_only=False)) == 1  # nothing after the fault
    path.write_bytes(good)
    r = run_cli(
        "send", "issues/2019-09.yaml", "--resume", "--yes", cwd=workspace, env=_cli_env(stub.url)
    )
    assert r.code == 0, r.err
    assert Counter(stub.emails()) == Counter(expected)


def test_restore_writes_the_file_back_from_the_state_database(workspace: Path) -> None:
    r = run_cli("suppressions", "add", "ana@example.org", "ben@example.org", cwd=workspace)
    assert r.code == 0, r.err
    path = _suppressions(workspace)
    before = {s.key for s in read_suppressions(path)}
    path.unlink()
    shown = run_cli("suppressions", "list", cwd=workspace)
    assert "ana@example.org" in shown.out and "missing from subscribers/suppressions.csv" in (
        shown.out
    )
    r = run_cli("suppressions", "restore", cwd=workspace)
    assert r.code == 0, r.err
    assert "to a new subscribers/suppressions.csv" in r.out
    assert {"ana@example.org", "ben@example.org"} <= {s.key for s in read_suppressions(path)}
    assert before <= {s.key for s in read_suppressions(path)}
    again = run_cli("suppressions", "restore", cwd=workspace)
    assert "nothing to restore" in again.out


def test_remove_takes_someone_off_the_file_and_the_copy(
    workspace: Path, stub: StubSendGrid
) -> None:
    expected = write_list(workspace, "small", 6)
    path = _suppressions(workspace)
    with path.open("a", encoding="utf-8") as f:  # a quoted value over two lines, kept as is
        f.write('other@example.org,manual,"phone\ncall",\n')
    r = run_cli("suppressions", "add", expected[0], expected[1], cwd=workspace)
    assert r.code == 0, r.err
    r = run_cli("suppressions", "remove", expected[0].upper(), "nobody@example.org", cwd=workspace)
    assert r.code == 0, r.err
    assert f"removed {expected[0]}" in r.out.lower() and "not on the suppression list" in r.out
    keys = {s.key for s in read_suppressions(path)}
    assert expected[0] not in keys and expected[1] in keys and "other@example.org" in keys
    assert expected[0] not in {
        e.key for e in SuppressionStore(Workspace(workspace).state_db).entries()
    }
    done = run_cli(
        "send",
        "issues/2019-09.yaml",
        "--list",
        "small",
        "--yes",
        cwd=workspace,
        env=_cli_env(stub.url),
    )
    assert done.code == 0, done.err
    assert Counter(stub.emails()) == Counter(e for e in expected if e != expected[1])
    r = run_cli("suppressions", "remove", "nobody@example.org", cwd=workspace)
    assert r.code == 1
