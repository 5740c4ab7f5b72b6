"""`newsletter report`: counts, rates, top links and the chart of one issue."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from conftest import TEST_ENV
from newsletter.addresses import suppression_key
from newsletter.esp.sendgrid_events import normalise_event
from newsletter.events import Event, EventRow, EventStore
from newsletter.ledger import Ledger, RecipientRow
from newsletter.report import chart_svg, summarise

T0 = 1_568_620_800  # 2019-09-16 08:00 UTC


def ev(n: int, kind: str, email: str, minutes: int = 0, **kw: Any) -> Event:
    fields: dict[str, Any] = {
        "event_id": f"sg-{n}",
        "provider": "sendgrid",
        "kind": kind,
        "email": email,
        "at": T0 + minutes * 60,
        "issue_id": "2019-09",
        "list_name": "sample",
        "raw": "{}",
    }
    fields.update(kw)
    return Event(**fields)


def story() -> list[Event]:
    """Ten recipients; what happened to each is easy to count by hand."""
    out: list[Event] = []
    n = 0

    def add(kind: str, email: str, minutes: int = 0, **kw: Any) -> None:
        nonlocal n
        n += 1
        out.append(ev(n, kind, email, minutes, **kw))

    for i in range(8):
        add("delivered", f"r{i}@example.org", 1)
    add("bounced", "r8@example.org", 1, suppress="bounced")
    add("dropped", "r9@example.org", 0, suppress="bounced")
    add("deferred", "r7@example.org", 0)
    add("open", "r0@example.org", 30)
    add("open", "r0@example.org", 90)  # the same reader again: still one open
    add("open", "r1@example.org", 200)
    add("open", "r2@example.org", 5, machine=True)  # Apple MPP only
    add("open", "r3@example.org", 6, machine=True)
    add("open", "r3@example.org", 300)  # ... and later a person: a human open
    add("click", "r0@example.org", 31, url="https://example.org/a")
    add("click", "r0@example.org", 32, url="https://example.org/a")
    add("click", "r1@example.org", 201, url="https://example.org/a")
    add("click", "r1@example.org", 202, url="https://example.org/[b]<script>")
    add("spamreport", "r4@example.org", 400, suppress="spam")
    add("unsubscribe", "r5@example.org", 500, suppress="unsubscribed")
    return out


def rows_of(events: list[Event]) -> list[EventRow]:
    return [EventRow(e.kind, e.email, e.at, e.url, e.machine) for e in events]


def test_counts_are_of_addresses_with_machine_opens_apart() -> None:
    r = summarise("2019-09", 10, rows_of(story()), extra_unsubscribes=[("r6@example.org", T0)])
    assert (r.sent, r.delivered, r.deferred, r.bounced, r.dropped) == (10, 8, 1, 1, 1)
    assert (r.unique_opens, r.machine_opens, r.open_events) == (3, 1, 6)
    assert (r.unique_clicks, r.click_events) == (2, 4)
    assert (r.unsubscribes, r.spam_reports) == (2, 1)
    assert [(link.url, link.unique, link.total) for link in r.top_links] == [
        ("https://example.org/a", 2, 3),
        ("https://example.org/[b]<script>", 1, 1),
    ]
    rates = r.rates()
    assert rates["delivered"] == 0.8 and rates["bounced"] == 0.1
    assert rates["unique_opens"] == 0.375 and rates["click_to_open"] == 0.6667
    assert rates["unsubscribes"] == 0.25
    # Cumulative curves end at the unique counts.
    last = r.timeline[-1]
    assert (last.opens, last.machine_opens, last.clicks) == (3, 1, 2)
    assert [p.opens for p in r.timeline] == sorted(p.opens for p in r.timeline)


def test_no_deliveries_gives_no_rates_not_a_crash() -> None:
    r = summarise("2019-09", 0, [])
    assert r.sent == 0 and r.timeline == []
    assert set(r.rates().values()) == {None}
    ET.fromstring(chart_svg(r))


def _record(ws: Path, events: list[Event], sent: int) -> None:
    store = EventStore(ws / ".newsletter" / "state.db")
    store.add(events)
    store.close()
    with Ledger(ws / ".newsletter" / "state.db") as ledger:
        send_id = ledger.create_send("2019-09", ["sample"], "sendgrid")
        batch = ledger.open_batch(
            send_id,
            [RecipientRow(f"r{i}@example.org", None, None, "en", "sample") for i in range(sent)],
            issue_id="2019-09",
        )
        ledger.mark_sent(batch.id, status=202, provider_id="x")


def test_report_command_json_table_and_chart(cli: Any, workspace: Path) -> None:
    _record(workspace, story(), sent=10)
    result = cli("report", "issues/2019-09.yaml", "--format", "json", env=TEST_ENV)
    assert result.code == 0, result.err
    data = json.loads(result.out)
    assert data["issue_id"] == "2019-09"
    assert (data["sent"], data["delivered"], data["unique_opens"], data["machine_opens"]) == (
        10,
        8,
        3,
        1,
    )
    assert data["rates"]["unique_clicks"] == 0.25
    assert data["top_links"][0] == {"url": "https://example.org/a", "unique": 2, "total": 3}
    chart = workspace / "build" / "2019-09" / "report.svg"
    assert data["chart"] == str(chart)
    svg = ET.fromstring(chart.read_text(encoding="utf-8"))
    assert svg.tag == "{http://www.w3.org/2000/svg}svg"
    assert len(svg.findall(".//{http://www.w3.org/2000/svg}polyline")) == 3

    table = cli("report", env=TEST_ENV)  # default: the issue with the latest events
    assert table.code == 0, table.err
    assert "Issue 2019-09" in table.out
    assert "opened" in table.out and "37.5 %" in table.out
    assert "https://example.org/[b]<script>" in table.out  # shown as text, not rich markup


def test_one_click_unsubscribes_count_for_the_issue(cli: Any, workspace: Path) -> None:
    events = [
        ev(1, "delivered", "r0@example.org", 1),
        Event(
            event_id="one-click:sample:r0@example.org",
            provider="one-click",
            kind="unsubscribe",
            email="r0@example.org",
            at=T0 + 600,
            raw="{}",
        ),
    ]
    _record(workspace, events, sent=1)
    result = cli("report", "2019-09", "--format", "json", env=TEST_ENV)
    assert result.code == 0, result.err
    assert json.loads(result.out)["unsubscribes"] == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("report",), "no events recorded yet"),
        (("report", "2031-01"), "issue 2031-01: no sends and no events recorded"),
        (("report", ".."), "is not an issue id"),
        (("report", "2019 09!"), "is not an issue id"),
    ],
)
def test_nothing_to_report_is_a_clear_message(
    cli: Any, args: tuple[str, ...], message: str
) -> None:
    result = cli(*args, env=TEST_ENV)
    assert result.code == 1
    assert message in result.err and "Traceback" not in result.err


def test_one_click_unsubscribes_of_idn_addresses_are_counted(cli: Any, workspace: Path) -> None:
    """SendGrid reports xn-- domains; our links (and suppressions) carry the Unicode form."""
    sg_item = {
        "event": "delivered",
        "email": "new@XN--BCHER-KVA.example",
        "timestamp": T0 + 60,
        "sg_event_id": "sg-new",
        "nl_issue": "2019-09",
    }

    def one_click(n: int, email: str) -> Event:
        key = suppression_key(email)
        return Event(f"one-click:sample:{key}", "one-click", "unsubscribe", key, T0 + 600 + n)

    events = [
        normalise_event(sg_item),  # stored now: one spelling
        ev(2, "delivered", "old@xn--bcher-kva.example", 1),  # stored as SendGrid wrote it
        ev(3, "delivered", "both@xn--bcher-kva.example", 1),
        ev(4, "unsubscribe", "both@xn--bcher-kva.example", 5),  # SendGrid's link, too
        one_click(1, "new@bücher.example"),
        one_click(2, "Old@Bücher.example"),
        one_click(3, "both@bücher.example"),
    ]
    _record(workspace, events, sent=3)
    result = cli("report", "2019-09", "--format", "json", env=TEST_ENV)
    assert result.code == 0, result.err
    data = json.loads(result.out)
    assert (data["delivered"], data["unsubscribes"]) == (3, 3)  # each person once


def test_confirmation_emails_are_never_taken_for_the_latest_issue(
    cli: Any, workspace: Path
) -> None:
    later = [
        ev(900 + i, "delivered", f"new{i}@example.org", minutes=600, issue_id="confirmations")
        for i in range(3)
    ]
    _record(workspace, [*story(), *later], sent=10)
    table = cli("report", "--format", "json", env=TEST_ENV)  # default: the latest issue
    assert table.code == 0, table.err
    assert json.loads(table.out)["issue_id"] == "2019-09"
