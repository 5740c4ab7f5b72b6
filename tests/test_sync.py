"""`newsletter suppressions sync`: SendGrid's suppression lists into suppressions.csv.

Against Prism serving SendGrid's own spec (request shapes, auth, query types), and
against tests/stub_suppressions.py for paging, start_time and failures.
"""

from __future__ import annotations

import csv
import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import TEST_ENV
from newsletter.config import Workspace
from newsletter.errors import ProviderError, ProviderRejected, ProviderUnavailable
from newsletter.esp.sendgrid_sync import (
    OVERLAP_SECONDS,
    STATE_KEY,
    SuppressionsAPI,
    sync_suppressions,
)
from newsletter.events import EventStore
from newsletter.suppression_file import Suppression
from newsletter.suppression_writes import pending_entry
from prism import prism
from stub_suppressions import Scripted, Stub, stub_sendgrid

UNSUBS = "/v3/suppression/unsubscribes"
BOUNCES = "/v3/suppression/bounces"
SPAM = "/v3/suppression/spam_reports"


def rows(ws: Path) -> list[dict[str, str]]:
    with (ws / "subscribers" / "suppressions.csv").open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def env(url: str) -> dict[str, str]:
    return {**TEST_ENV, "SENDGRID_API_KEY": "SG.test-key", "SENDGRID_API_HOST": url}


def set_group(ws: Path, group: int, table: str = "sendgrid") -> None:
    """asm_group_id in [sendgrid] (or, as older files have it, in [send])."""
    config = ws / "newsletter.toml"
    text = config.read_text(encoding="utf-8")
    header = next(line for line in text.splitlines() if line.split("#")[0].strip() == f"[{table}]")
    config.write_text(
        text.replace(header + "\n", f"{header}\nasm_group_id = {group}\n", 1), encoding="utf-8"
    )


def last_sync(ws: Path) -> int | None:
    conn = sqlite3.connect(ws / ".newsletter" / "state.db")
    try:
        row = conn.execute("SELECT value FROM loop_state WHERE key=?", (STATE_KEY,)).fetchone()
    finally:
        conn.close()
    return int(row[0]) if row else None


@pytest.mark.prism
def test_sync_against_sendgrids_spec(cli: Any, workspace: Path) -> None:
    set_group(workspace, 42)
    before = rows(workspace)
    with prism("tsg_suppressions_v3.json") as url:
        first = cli("suppressions", "sync", "--format", "json", env=env(url))
        assert first.code == 0, first.err
        again = cli("suppressions", "sync", env=env(url))
        assert again.code == 0, again.err
    report = json.loads(first.out)
    assert [item["name"] for item in report["lists"]] == [
        "unsubscribes",
        "bounces",
        "spam_reports",
        "group 42",
    ]
    assert all(item["fetched"] == 2 for item in report["lists"])  # the spec's examples
    new = {(r["email"], r["reason"], r["source"]) for r in rows(workspace)[len(before) :]}
    assert new == {
        ("user1@example.com", "unsubscribed", "sendgrid:unsubscribes"),
        ("user2@example.com", "unsubscribed", "sendgrid:unsubscribes"),
        ("example@example.com", "bounced", "sendgrid:bounces"),
        ("example2@example.com", "unsubscribed", "sendgrid:group:42"),
    }
    assert "0 new suppression" in again.out
    assert len(rows(workspace)) == len(before) + 4


def _unsubs(n: int, created: int = 1_600_000_000) -> list[dict[str, Any]]:
    return [{"email": f"reader{i}@example.org", "created": created + i} for i in range(n)]


def test_pages_through_every_list_and_then_asks_only_for_news(cli: Any, workspace: Path) -> None:
    stub = Stub(
        lists={
            UNSUBS: _unsubs(1234),
            BOUNCES: [
                {
                    "email": "Gone@Example.org",
                    "created": 1_600_000_000,
                    "reason": "550",
                    "status": "5.1.1",
                }
            ],
            SPAM: [{"email": "reader3@example.org", "created": 1_600_000_100, "ip": "10.0.0.1"}],
        }
    )
    before = len(rows(workspace))
    with stub_sendgrid(stub):
        first = cli("suppressions", "sync", env=env(stub.url))
        assert first.code == 0, first.err
        calls = stub.calls(UNSUBS)
        assert [(c["limit"], c["offset"]) for c in calls] == [
            ("500", "0"),
            ("500", "500"),
            ("500", "1000"),
        ]
        assert all("start_time" not in c for c in calls)
        headers = [h for p, _, h in stub.requests if p == BOUNCES][0]
        assert headers["Authorization"] == "Bearer SG.test-key"
        assert headers["Accept"] == "application/json"
        synced = last_sync(workspace)
        assert synced is not None

        stub.lists[UNSUBS].append({"email": "late@example.org", "created": synced + 5})
        stub.requests.clear()
        second = cli("suppressions", "sync", "--format", "json", env=env(stub.url))
        assert second.code == 0, second.err
        assert {c.get("start_time") for _, c, _ in stub.requests} == {str(synced - OVERLAP_SECONDS)}
        assert json.loads(second.out)["added"] == 1

        stub.requests.clear()
        assert cli("suppressions", "sync", "--full", env=env(stub.url)).code == 0
        assert all("start_time" not in c for _, c, _ in stub.requests)
    after = rows(workspace)
    assert len(after) == before + 1234 + 1 + 1  # reader3 was already there as unsubscribed
    by_email = {r["email"].lower(): r for r in after}
    assert by_email["gone@example.org"]["reason"] == "bounced"
    assert by_email["reader3@example.org"]["reason"] == "unsubscribed"
    assert by_email["reader0@example.org"]["at"] == "2020-09-13T12:26:40+00:00"


def test_rate_limits_and_server_errors_are_retried(cli: Any, workspace: Path) -> None:
    stub = Stub(
        lists={UNSUBS: _unsubs(3), BOUNCES: [], SPAM: []},
        failures={
            BOUNCES: [
                Scripted(429, headers={"Retry-After": "0"}),
                Scripted(503, headers={"Retry-After": "0"}),
            ]
        },
    )
    with stub_sendgrid(stub):
        result = cli("suppressions", "sync", env=env(stub.url))
    assert result.code == 0, result.err
    assert len(stub.calls(BOUNCES)) == 3


def test_a_lasting_failure_stops_without_losing_the_last_sync(cli: Any, workspace: Path) -> None:
    stub = Stub(lists={UNSUBS: _unsubs(3), BOUNCES: [], SPAM: []})
    with stub_sendgrid(stub):
        assert cli("suppressions", "sync", env=env(stub.url)).code == 0
        synced = last_sync(workspace)
        stub.failures[SPAM] = [Scripted(500, headers={"Retry-After": "0"}) for _ in range(9)]
        result = cli("suppressions", "sync", env=env(stub.url))
    assert result.code != 0
    assert "SendGrid answered 500" in result.err and "Traceback" not in result.err
    assert last_sync(workspace) == synced


def test_a_refused_key_is_a_clear_cli_error(cli: Any, workspace: Path) -> None:
    before = rows(workspace)
    stub = Stub(
        lists={UNSUBS: _unsubs(3), BOUNCES: [], SPAM: []},
        failures={UNSUBS: [Scripted(401, b'{"errors":[{"message":"bad key"}]}')]},
    )
    with stub_sendgrid(stub):
        result = cli("suppressions", "sync", env=env(stub.url))
    assert result.code == 1
    assert "SendGrid refused GET /v3/suppression/unsubscribes: 401" in result.err
    assert "check that SENDGRID_API_KEY is right" in result.err
    assert "Traceback" not in result.err
    assert rows(workspace) == before


@pytest.mark.parametrize(
    ("scripted", "error", "message"),
    [
        (
            Scripted(403, b'{"errors":[{"message":"access forbidden"}]}'),
            ProviderRejected,
            "access forbidden",
        ),
        (Scripted(200, b"<html>proxy error</html>"), ProviderError, "is not JSON"),
        (Scripted(200, b'{"result": []}'), ProviderError, "is not a list"),
        (
            Scripted(404, b'{"errors":[{"message":"not found"}]}'),
            ProviderRejected,
            "SendGrid answered 404",
        ),
    ],
)
def test_refusals_and_odd_answers_change_nothing(
    workspace: Path, scripted: Scripted, error: type[Exception], message: str
) -> None:
    before = rows(workspace)
    stub = Stub(lists={UNSUBS: _unsubs(3), BOUNCES: [], SPAM: []}, failures={BOUNCES: [scripted]})
    with stub_sendgrid(stub):
        api = SuppressionsAPI(stub.url, "SG.x")
        with pytest.raises(error, match=message):
            sync_suppressions(Workspace(workspace), api)
        api.close()
    # The unsubscribes fetched before the failure are kept (they are true either way),
    # but the sync time is not advanced, so the next run asks again from the same point.
    assert len(rows(workspace)) == len(before) + 3
    assert not (workspace / ".newsletter" / "state.db").exists() or last_sync(workspace) is None


def test_invalid_addresses_are_skipped_with_a_warning(cli: Any, workspace: Path) -> None:
    stub = Stub(
        lists={
            UNSUBS: [
                {"email": "not an address", "created": 1},
                {"email": "fine@example.org", "created": 2},
                42,
            ],
            BOUNCES: [],
            SPAM: [],
        }
    )
    with stub_sendgrid(stub):
        result = cli("suppressions", "sync", env=env(stub.url))
    assert result.code == 0, result.err
    assert "skipped invalid address 'not an address'" in result.err
    assert rows(workspace)[-1]["email"] == "fine@example.org"


def test_missing_api_key_is_a_configuration_error(cli: Any) -> None:
    result = cli("suppressions", "sync", env=TEST_ENV)
    assert result.code == 2
    assert "SENDGRID_API_KEY is not set" in result.err


def test_backoff_without_retry_after_is_bounded() -> None:
    waits: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(502, text="bad gateway")

    api = SuppressionsAPI(
        "http://127.0.0.1:9",
        "SG.x",
        transport=httpx.MockTransport(handler),
        max_retries=3,
        sleep=waits.append,
    )
    with pytest.raises(ProviderUnavailable, match="502"):
        api.get(UNSUBS)
    assert waits == [2.0, 4.0, 8.0]


def test_sync_also_merges_what_the_server_could_not_write(cli: Any, workspace: Path) -> None:
    store = EventStore(workspace / ".newsletter" / "state.db")
    waiting = Suppression(
        "ana.lopez@example.org", "unsubscribed", "one-click", "2019-09-20T10:00:00+00:00"
    )
    store.add([], [pending_entry(waiting)])
    store.close()
    stub = Stub(lists={UNSUBS: [], BOUNCES: [], SPAM: []})
    with stub_sendgrid(stub):
        result = cli("suppressions", "sync", env=env(stub.url))
    assert result.code == 0, result.err
    assert rows(workspace)[-1] == {
        "email": "ana.lopez@example.org",
        "reason": "unsubscribed",
        "source": "one-click",
        "at": "2019-09-20T10:00:00+00:00",
    }
    conn = sqlite3.connect(workspace / ".newsletter" / "state.db")
    try:
        assert conn.execute("SELECT count(*) FROM pending_suppressions").fetchone()[0] == 0
    finally:
        conn.close()


def test_nonsense_creation_dates_become_the_sync_time(workspace: Path) -> None:
    stub = Stub(
        lists={
            UNSUBS: [
                {"email": "a@example.org", "created": 10**20},
                {"email": "b@example.org", "created": -1},
                {"email": "c@example.org", "created": 1_600_000_000},
            ],
            BOUNCES: [],
            SPAM: [],
        }
    )
    with stub_sendgrid(stub):
        api = SuppressionsAPI(stub.url, "SG.x")
        result = sync_suppressions(Workspace(workspace), api)
        api.close()
    at = {r["email"]: r["at"] for r in rows(workspace)}
    synced = datetime.fromtimestamp(result.synced_at, UTC).isoformat(timespec="seconds")
    assert (at["a@example.org"], at["b@example.org"]) == (synced, synced)
    assert at["c@example.org"] == "2020-09-13T12:26:40+00:00"


def test_a_rate_limit_waits_for_the_later_of_its_two_headers() -> None:
    """As the send does (newsletter.retry.retry_after): Retry-After and X-RateLimit-Reset
    together mean the later of the two; the sync used to take Retry-After alone."""
    waits: list[float] = []
    answers = iter(
        [
            httpx.Response(
                429,
                headers={
                    "Retry-After": "1",
                    "X-RateLimit-Reset": str(int(datetime.now(UTC).timestamp()) + 30),
                },
            ),
            httpx.Response(200, json=[]),
        ]
    )
    api = SuppressionsAPI(
        "http://127.0.0.1:9",
        "SG.x",
        transport=httpx.MockTransport(lambda request: next(answers)),
        sleep=waits.append,
    )
    assert api.get(UNSUBS) == []
    [wait] = waits
    assert 28.0 <= wait <= 30.0


def test_an_old_send_asm_group_id_is_still_synced_with_a_warning(cli: Any, workspace: Path) -> None:
    set_group(workspace, 42, table="send")
    group = "/v3/asm/groups/42/suppressions"
    stub = Stub(lists={UNSUBS: [], BOUNCES: [], SPAM: [], group: ["left@example.org"]})
    with stub_sendgrid(stub):
        result = cli("suppressions", "sync", env=env(stub.url))
    assert result.code == 0, result.err
    assert len(stub.calls(group)) == 1
    assert rows(workspace)[-1]["email"] == "left@example.org"
    assert "`send.asm_group_id` has moved to the [sendgrid] table" in result.err
