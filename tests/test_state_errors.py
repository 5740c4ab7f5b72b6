"""Secrets and the state database: a bad API key or a busy, damaged or full
`.newsletter/state.db` is one clear message and exit 2, never a traceback, and
never a batch left "unknown" when nothing left the machine.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from conftest import run_cli
from newsletter.errors import StateDatabaseError
from newsletter.ledger import SENDING, Ledger, RecipientRow
from stub_sendgrid import StubSendGrid
from test_send import SECRET, write_list


def _env(stub: StubSendGrid, key: str) -> dict[str, str]:
    return {"NEWSLETTER_SECRET": SECRET, "SENDGRID_API_KEY": key, "SENDGRID_API_HOST": stub.url}


@pytest.mark.parametrize(
    ("key", "what"),
    [
        ("SG.abcdef\r\nX-Injected: yes", "a line break at position 10"),
        ("SG.abc\ndef", "a line break at position 7"),
        ("SG.abc–def", "a non-ASCII character (U+2013) at position 7"),
        ("SG.abc def", "a space or control character at position 7"),
    ],
)
def test_a_broken_api_key_is_a_configuration_error_before_anything_is_posted(
    workspace: Path, stub: StubSendGrid, key: str, what: str
) -> None:
    write_list(workspace, "big", 30)
    r = run_cli(
        "send", "issues/2019-09.yaml", "--list", "big", "--yes", cwd=workspace, env=_env(stub, key)
    )
    assert r.code == 2, r.err
    assert f"SENDGRID_API_KEY contains {what}" in r.err
    assert "Traceback" not in r.err
    for secret_part in ("abc", "def", "Injected"):
        assert secret_part not in r.out + r.err  # the key is never shown
    assert stub.requests == []  # nothing was posted
    db = workspace / ".newsletter" / "state.db"
    if db.exists():  # and no batch is left in doubt
        with Ledger(db) as ledger:
            assert all(not ledger.unknown_batches(s.id) for s in ledger.sends())


def test_a_damaged_state_database_says_restore_and_exits_2(workspace: Path) -> None:
    db = workspace / ".newsletter" / "state.db"
    db.parent.mkdir()
    db.write_bytes(b"this is not a database" * 200)
    for command in (["status"], ["send", "issues/2019-09.yaml", "--list", "sample", "--yes"]):
        r = run_cli(*command, cwd=workspace, env={"NEWSLETTER_SECRET": SECRET})
        assert r.code == 2, (command, r.err)
        assert "state.db is damaged" in r.err and "restore" in r.err, r.err
        assert "do not delete it" in r.err and "Traceback" not in r.err


def test_a_busy_state_database_says_wait_and_exits_2(workspace: Path) -> None:
    db = workspace / ".newsletter" / "state.db"
    Ledger(db).close()
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another process writing, for longer than we wait
    try:
        r = run_cli(
            "send",
            "issues/2019-09.yaml",
            "--list",
            "sample",
            "--yes",
            "--backend",
            "outbox",
            cwd=workspace,
            env={"NEWSLETTER_SECRET": SECRET, "NEWSLETTER_DB_TIMEOUT": "0.5"},
        )
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert r.code == 2, r.err
    assert "state.db is busy" in r.err and "wait for that command to finish" in r.err
    assert "Traceback" not in r.err


def test_a_full_disk_keeps_the_ledger_consistent(tmp_path: Path) -> None:
    """SQLite's own "database or disk is full", forced with max_page_count: the batch
    being recorded is not half-recorded, and the error says what to do."""
    with Ledger(tmp_path / "state.db") as ledger:
        send = ledger.create_send("2019-09", ["main"], "sendgrid")
        ledger.transition(send, SENDING)
        pages = ledger._db.execute("PRAGMA page_count").fetchone()[0]
        ledger._db.execute(f"PRAGMA max_page_count={pages + 2}")
        people = [
            RecipientRow(f"person{i}@example.org", "x" * 200, None, None, "main")
            for i in range(1000)
        ]
        with pytest.raises(StateDatabaseError) as err:
            ledger.open_batch(send, people, issue_id="2019-09")
        assert "disk holding" in err.value.message and "is full" in err.value.message
        assert err.value.exit_code == 2 and err.value.hint and "free some space" in err.value.hint
        assert ledger.batches(send) == []  # nothing half-recorded
        assert ledger._db.execute("SELECT count(*) FROM recipients").fetchone()[0] == 0
        ledger._db.execute("PRAGMA max_page_count=1073741823")
        batch = ledger.open_batch(send, people[:10], issue_id="2019-09")  # space again: fine
        assert ledger.batch(batch.id) is not None and batch.recipients == 10
