"""The ledger's language columns (schema 6, issue 12) and who gets which version."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from conftest import TEST_ENV, Cli
from newsletter import state as state_db
from newsletter.languages import normalise, pick, translation_name
from newsletter.ledger import Ledger, RecipientRow


def test_schema_5_is_upgraded_to_6_keeping_its_sends(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    db = sqlite3.connect(path)
    db.executescript(
        state_db._LEDGER.replace(",\n    languages TEXT", "").replace(
            "DEFAULT 0,\n    language TEXT,", "DEFAULT 0,"
        )
        + state_db._EVENTS
        + state_db._SUPPRESSIONS
    )
    db.execute(
        "INSERT INTO sends (issue_id, lists, tags, backend, state, created_at, updated_at)"
        " VALUES ('2019-09', '[\"main\"]', '[]', 'sendgrid', 'paused', 'x', 'x')"
    )
    db.execute(
        "INSERT INTO batches (send_id, seq, state, recipients, created_at)"
        " VALUES (1, 1, 'failed', 1, 'x')"
    )
    db.execute("PRAGMA user_version=5")
    db.commit()
    db.close()
    assert state_db.SCHEMA_VERSION == 6
    with Ledger(path) as ledger:
        assert ledger._db.execute("PRAGMA user_version").fetchone()[0] == 6
        [old] = ledger.sends("2019-09")
        assert old.languages == ()  # a send from before: every language (it had one)
        info = ledger.batch(1)
        assert info is not None and info.language is None
        new = ledger.create_send("2019-09", ["main"], "sendgrid", languages=["en", "es"])
        assert ledger.send(new).languages == ("en", "es")
        rows = [RecipientRow("a@example.org", None, None, "es-MX", "main")]
        batch = ledger.open_batch(new, rows, issue_id="2019-09", language="es")
        assert batch.language == "es"


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("es", "es"),
        ("ES", "es"),
        ("es-MX", "es"),
        ("ES-mx", "es"),
        ("es_419", "es"),
        (" es ", "es"),
        ("en", "en"),
        ("fr", "en"),  # the issue has no French: the base language
        ("pt-BR", "en"),
        ("", "en"),
        (None, "en"),
        ("Spanish", "en"),  # not a code
        ("es, en", "en"),
    ],
)
def test_each_typed_language_picks_a_version(typed: str | None, expected: str) -> None:
    assert pick(typed, ("en", "es"), "en") == expected


def test_regional_versions_and_codes() -> None:
    assert pick("pt", ("en", "pt-BR"), "en") == "pt-BR"
    assert pick("pt_br", ("en", "pt-BR", "pt"), "en") == "pt-BR"
    assert normalise("ES_mx") == "es-mx"


def test_translation_file_names(tmp_path: Path) -> None:
    (tmp_path / "2019-10.yaml").write_text("x", "utf-8")
    assert translation_name(tmp_path / "2019-10.es.yaml") == (tmp_path / "2019-10.yaml", "es")
    assert translation_name(tmp_path / "2019-10.pt-BR.yaml") == (
        tmp_path / "2019-10.yaml",
        "pt-BR",
    )
    assert translation_name(tmp_path / "2019-11.es.yaml") is None  # no base: not a translation
    assert translation_name(tmp_path / "2019-10.yaml") is None
    assert translation_name(tmp_path / "2019-10.conflict-20191001-1200.yaml") is None


def test_report_breaks_down_by_language(cli: Cli, workspace: Path) -> None:
    """Events counted in their batch's language (nl_batch), as the whole issue's are."""
    from newsletter.events import Event, EventStore

    db = workspace / ".newsletter" / "state.db"
    batches = {}
    with Ledger(db) as ledger:
        send_id = ledger.create_send("2019-09", ["members"], "sendgrid", languages=["en", "es"])
        for lang, people in (("en", ["a", "b", "c", "d"]), ("es", ["e", "f"])):
            rows = [RecipientRow(f"{p}@example.org", None, None, lang, "members") for p in people]
            info = ledger.open_batch(send_id, rows, issue_id="2019-09", language=lang)
            ledger.mark_sent(info.id, status=202, provider_id="x")
            batches[lang] = str(info.id)

    def ev(n: int, kind: str, who: str, lang: str) -> Event:
        return Event(
            event_id=f"sg-{n}",
            provider="sendgrid",
            kind=kind,
            email=f"{who}@example.org",
            at=1_568_620_800 + n,
            issue_id="2019-09",
            list_name="members",
            raw="{}",
            batch_id=batches[lang],
        )

    events = [ev(i, "delivered", w, "en") for i, w in enumerate("abcd")]
    events += [ev(10 + i, "delivered", w, "es") for i, w in enumerate("ef")]
    events += [ev(20, "open", "a", "en"), ev(21, "open", "e", "es"), ev(22, "open", "f", "es")]
    store = EventStore(db)
    store.add(events)
    store.close()
    data = json.loads(cli("report", "2019-09", "--format", "json", env=TEST_ENV).out)
    assert data["sent"] == 6 and data["unique_opens"] == 3
    assert data["languages"]["en"]["sent"] == 4
    assert data["languages"]["en"]["rates"]["unique_opens"] == 0.25
    assert data["languages"]["es"]["unique_opens"] == 2
    assert data["languages"]["es"]["rates"]["unique_opens"] == 1.0
    table = cli("report", "2019-09", env=TEST_ENV)
    assert "By language" in table.out and "100.0 %" in table.out
