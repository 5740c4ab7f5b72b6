"""SendGrid event items -> our Event, and the events tables in the SQLite state."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from newsletter.esp.sendgrid_events import decode, normalise_event, parse_batch
from newsletter.esp.webhooks import BatchError
from newsletter.events import Event, EventStore, PendingSuppression, pending_keys, suppressing


def item(event: str, email: str = "Ana.Lopez@Example.org", **extra: Any) -> dict[str, object]:
    return {
        "email": email,
        "timestamp": 1568600000,
        "event": event,
        "sg_event_id": f"id-{event}-{email}",
        "sg_message_id": "m.1",
        "nl_issue": "2019-09",
        "nl_list": "sample",
        "nl_send": 3,
        "nl_batch": "17",
        **extra,
    }


@pytest.mark.parametrize(
    ("event", "extra", "kind", "suppress"),
    [
        ("processed", {}, "processed", None),
        ("delivered", {"response": "250 OK"}, "delivered", None),
        ("deferred", {"response": "421 later", "attempt": "2"}, "deferred", None),
        ("bounce", {"type": "bounce", "reason": "550 5.1.1"}, "bounced", "bounced"),
        ("bounce", {"reason": "550 5.1.1"}, "bounced", "bounced"),  # older events: no type
        ("bounce", {"type": "blocked", "reason": "421 IP listed"}, "blocked", None),
        ("dropped", {"reason": "Bounced Address"}, "dropped", "bounced"),
        ("dropped", {"reason": "Invalid"}, "dropped", "bounced"),
        ("dropped", {"reason": "Spam Reporting Address"}, "dropped", "spam"),
        ("dropped", {"reason": "Unsubscribed Address"}, "dropped", "unsubscribed"),
        ("dropped", {"reason": "Invalid SMTPAPI header"}, "dropped", None),
        ("dropped", {"reason": "Spam Content (if Spam Checker app is enabled)"}, "dropped", None),
        ("open", {"sg_machine_open": False}, "open", None),
        ("click", {"url": "https://x.example/"}, "click", None),
        ("spamreport", {}, "spamreport", "spam"),
        ("unsubscribe", {}, "unsubscribe", "unsubscribed"),
        ("group_unsubscribe", {"asm_group_id": 7}, "group_unsubscribe", "unsubscribed"),
        ("group_resubscribe", {"asm_group_id": 7}, "group_resubscribe", None),
        ("something_new", {}, "other", None),
    ],
)
def test_sendgrid_events_are_normalised(
    event: str, extra: dict[str, Any], kind: str, suppress: str | None
) -> None:
    e = normalise_event(item(event, **extra))
    assert (e.kind, e.suppress) == (kind, suppress)
    assert e.email == "ana.lopez@example.org"
    assert (e.issue_id, e.list_name, e.send_id, e.batch_id) == ("2019-09", "sample", "3", "17")
    assert e.at == 1568600000 and e.provider == "sendgrid"
    assert json.loads(e.raw) == item(event, **extra)


def test_machine_opens_clicks_and_odd_values() -> None:
    assert normalise_event(item("open", sg_machine_open=True)).machine
    assert normalise_event(item("open", sg_machine_open="true")).machine
    assert not normalise_event(item("click", sg_machine_open=True)).machine
    click = normalise_event(item("click", url="https://x.example/" + "a" * 5000))
    assert click.url is not None and len(click.url) == 2048
    assert normalise_event(item("open", timestamp="1568600001")).at == 1568600001
    no_args = normalise_event({"event": "open", "email": "a@b.org", "sg_event_id": "z"})
    assert no_args.issue_id is None and no_args.batch_id is None


def test_events_without_an_id_get_a_stable_one() -> None:
    raw = {"event": "delivered", "email": "a@b.org", "timestamp": 1}
    first, second = normalise_event(dict(raw)), normalise_event(dict(raw))
    assert first.event_id == second.event_id and first.event_id.startswith("sha256:")
    assert normalise_event({**raw, "timestamp": 2}).event_id != first.event_id


def test_batches_must_be_arrays_but_one_bad_item_is_skipped() -> None:
    for data in ({"event": "open"}, "x", 1, None):
        with pytest.raises(BatchError):
            parse_batch(data)
    parsed = parse_batch([item("open"), "oops", {"email": "x@y.org"}, {"event": "open"}])
    assert len(parsed.events) == 1
    assert parsed.skipped == [
        "[1]: not an object",
        "[2]: event without an `event` field",
        "[3]: open event without an `email` field",
    ]


def _event(n: int, **kw: object) -> Event:
    fields: dict[str, object] = {
        "event_id": f"e{n}",
        "provider": "sendgrid",
        "kind": "open",
        "email": f"r{n}@example.org",
        "at": 1000 + n,
        "issue_id": "2019-09",
        "raw": "{}",
    }
    fields.update(kw)
    return Event(**fields)  # type: ignore[arg-type]


def test_store_keeps_each_event_once(tmp_path: Path) -> None:
    db = tmp_path / ".newsletter" / "state.db"
    store = EventStore(db)
    batch = [_event(n) for n in range(50)]
    assert store.add(batch) == 50
    assert store.add(batch) == 0
    assert store.add(batch[:10] + [_event(99)]) == 1
    assert store.count() == 51
    store.close()
    # Another process sees the rows; the table is WAL-mode SQLite in the shared state file.
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("SELECT count(*) FROM esp_events").fetchone()[0] == 51
    conn.close()


def test_concurrent_posts_of_the_same_batch_store_it_once(tmp_path: Path) -> None:
    stores = [EventStore(tmp_path / "state.db") for _ in range(4)]
    batch = [_event(n) for n in range(300)]
    counts: list[int] = []
    threads = [threading.Thread(target=lambda s=s: counts.append(s.add(batch))) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(counts) == [0, 0, 0, 300]
    assert stores[0].count() == 300


def test_state_values_and_issue_listing(tmp_path: Path) -> None:
    store = EventStore(tmp_path / "state.db")
    assert store.get_state("k") is None
    store.set_state("k", "1")
    store.set_state("k", "2")
    assert store.get_state("k") == "2"
    store.add(
        [
            _event(1, issue_id="2019-08", at=10),
            _event(2, issue_id="2019-09", at=20),
            _event(3, issue_id=None, at=30),
        ]
    )
    assert store.issues() == ["2019-08", "2019-09"]


def test_one_click_unsubscribes_go_to_the_latest_issue_received(tmp_path: Path) -> None:
    store = EventStore(tmp_path / "state.db")
    store.add(
        [
            _event(1, kind="delivered", email="a@x.org", issue_id="2019-08", at=100),
            _event(2, kind="delivered", email="a@x.org", issue_id="2019-09", at=200),
            _event(3, kind="open", email="a@x.org", issue_id="2019-08", at=250),  # late open
            _event(4, kind="delivered", email="b@x.org", issue_id="2019-08", at=100),
            _event(5, kind="delivered", email="b@x.org", issue_id="2019-09", at=400),
            _event(
                6, kind="unsubscribe", provider="one-click", email="a@x.org", issue_id=None, at=300
            ),
            _event(
                7, kind="unsubscribe", provider="one-click", email="b@x.org", issue_id=None, at=300
            ),
        ]
    )
    assert store.one_click_unsubscribes_for("2019-09") == [("a@x.org", 300)]
    assert store.one_click_unsubscribes_for("2019-08") == [("b@x.org", 300)]


def test_suppressing_keeps_one_per_address_and_reason() -> None:
    events = [
        _event(1, suppress="bounced", email="a@x.org"),
        _event(2, suppress="bounced", email="a@x.org"),
        _event(3, suppress="spam", email="a@x.org"),
        _event(4, suppress=None),
    ]
    assert [e.event_id for e in suppressing(events)] == ["e1", "e3"]


def test_unwritable_state_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    store = EventStore(blocker / "state.db")
    from newsletter.events import EventStoreError

    with pytest.raises(EventStoreError, match="cannot open the state database"):
        store.add([_event(1)])


def test_a_timestamp_that_is_no_sane_time_reads_as_unknown() -> None:
    before = int(time.time())
    for value in (
        float("nan"),
        float("inf"),
        "inf",
        "-Infinity",
        "NaN",
        10**20,
        2**33,
        -1,
        "1e400",
        "9" * 5000,
        True,
        [1],
    ):
        at = normalise_event(item("open", timestamp=value)).at
        assert before <= at <= int(time.time()) + 1, value  # the time it arrived
    for value, expected in ((0, 0), (2**33 - 1, 2**33 - 1), (1568600001.9, 1568600001)):
        assert normalise_event(item("open", timestamp=value)).at == expected


def test_a_batch_with_absurd_numbers_keeps_its_good_events() -> None:
    body = (
        b'[{"event":"open","email":"a@b.org","timestamp":' + b"7" * 5000 + b"},"
        b'{"event":"open","email":"c@d.org","timestamp":NaN,"nl_send":' + b"1" * 5000 + b"},"
        b'{"event":"delivered","email":"e@f.org","timestamp":1568600000}]'
    )
    parsed = parse_batch(decode(body))
    assert [e.email for e in parsed.events] == ["a@b.org", "c@d.org", "e@f.org"]
    assert parsed.events[2].at == 1568600000 and parsed.skipped == []
    for bad in (b"[1,", b"\xff\xfe", b"[" * 100_000):
        with pytest.raises(BatchError, match="malformed JSON"):
            decode(bad)


def test_idn_addresses_are_stored_in_one_spelling() -> None:
    ascii_form = normalise_event(item("delivered", email="Ana@XN--BCHER-KVA.example"))
    unicode_form = normalise_event(item("delivered", email="ana@Bücher.example"))
    assert ascii_form.email == unicode_form.email == "ana@bücher.example"


def test_pending_suppressions_wait_in_the_state_database(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    assert pending_keys(db) == frozenset()  # no database: nothing, and none created
    assert not db.exists()
    store = EventStore(db)
    store.set_state("x", "1")  # the file and the tables exist now
    assert pending_keys(db) == frozenset()
    waiting = [
        PendingSuppression("b@x.org", "b@x.org", "bounced", "sendgrid-webhook:bounced", "t1"),
        PendingSuppression("a@x.org", "A@x.org", "unsubscribed", "one-click", "t2"),
    ]
    assert store.add([_event(1)], waiting) == 1
    again = PendingSuppression("a@x.org", "a@x.org", "spam", "later", "t3")
    assert store.add([_event(1)], [again]) == 0
    assert store.pending() == waiting  # arrival order; the first entry for a key stays
    assert pending_keys(db) == {"a@x.org", "b@x.org"}  # read-only, from another connection
    store.forget_pending(["b@x.org"])
    assert [p.key for p in store.pending()] == ["a@x.org"]
    store.close()
    # A database with only the ledger's tables (no server ever ran) has none waiting.
    other = tmp_path / "ledger-only.db"
    sqlite3.connect(other).execute("CREATE TABLE sends (id INTEGER)").connection.close()
    assert pending_keys(other) == frozenset()
