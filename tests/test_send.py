"""Sending, in process: batches, payload, refusals, test sends, scheduling, cancelling.

The issue is a small hand-made stand-in for BuiltIssue (building the real one takes a
second; the CLI tests use it); lists are real CSV files read by subscribers.Audience;
SendGrid is the recording stand-in in tests/stub_sendgrid.py.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from conftest import TEST_ENV
from fakeclock import FakeClock
from newsletter import message, tokens
from newsletter.config import Workspace
from newsletter.errors import ConfigError, LedgerError
from newsletter.esp.base import CORRELATION_KEYS, Batch, IssueContent
from newsletter.esp.sendgrid import SendGridSettings, build_payload, encode_payload, retry_after
from newsletter.ledger import (
    B_CANCELLED,
    B_SENT,
    CANCELLED,
    DONE,
    FAILED,
    PAUSED,
    SCHEDULED,
    Ledger,
)
from newsletter.personalize import DEV_SECRET, Personalizer, row_of
from newsletter.plan import SendOptions
from newsletter.retry import Pacer
from newsletter.schedule import cancel_send, parse_send_at
from newsletter.send import SendSession
from stub_sendgrid import StubSendGrid, hang, ok, status

SECRET = TEST_ENV["NEWSLETTER_SECRET"]


# --------------------------------------------------------------------------- helpers (shared)


@dataclass(frozen=True)
class FakeBuilt:
    """The fields of build.BuiltIssue that sending uses."""

    issue_id: str = "2019-09"
    subject: str = "Digest — September 2019"
    html: str = (
        "<html><body><p>Dear %%first_name_html%%,</p><p>News.</p>"
        '<a href="%%unsubscribe_url%%">Unsubscribe</a></body></html>'
    )
    text: str = "Dear %%first_name%%,\n\nNews.\n\nUnsubscribe: %%unsubscribe_url%%\n"
    language: str = "en"
    source: Path = Path("issues/2019-09.yaml")
    preheader: str = "News"
    draft: bool = False
    problems: list[Any] = field(default_factory=list)


def set_send_config(ws: Path, **values: object) -> None:
    """Set keys of the [send] table in the workspace's newsletter.toml."""
    path = ws / "newsletter.toml"
    lines = path.read_text("utf-8").splitlines()
    out: list[str] = []
    in_send = False
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("["):
            in_send = stripped == "[send]"
            out.append(line)
            if in_send:
                out.extend(f"{k} = {json.dumps(v)}" for k, v in values.items())
            continue
        if in_send and stripped.split("=")[0].strip() in values:
            continue
        out.append(line)
    path.write_text("\n".join(out) + "\n", "utf-8")


def email_of(i: int) -> str:
    return f"person{i:05d}@example.org"


def write_list(
    ws: Path,
    name: str,
    n: int,
    *,
    start: int = 0,
    invalid: int = 0,
    duplicates: int = 0,
    suppressed: int = 0,
) -> list[str]:
    """subscribers/<name>.csv with n valid rows (+ bad ones); returns who should get the issue.

    The suppressed ones are the last ``suppressed`` valid addresses, added to
    subscribers/suppressions.csv.
    """
    rows = ["email,name,language,tags"]
    valid = [email_of(i) for i in range(start, start + n)]
    for i, email in enumerate(valid):
        name_ = "" if i % 7 == 0 else f"Person {start + i}"
        rows.append(f"{email},{name_},en,{'press' if i % 2 else 'partners'}")
        if i < invalid:
            rows.append(f"not-an-address-{i},Broken Row,en,")
        if i < duplicates:
            rows.append(f"{email.upper()},Again,en,")
    (ws / "subscribers" / f"{name}.csv").write_text("\n".join(rows) + "\n", "utf-8")
    gone = valid[len(valid) - suppressed :] if suppressed else []
    if gone:
        with (ws / "subscribers" / "suppressions.csv").open("a", encoding="utf-8") as f:
            for email in gone:
                f.write(f"{email},unsubscribed,test,2019-09-01T00:00:00+00:00\n")
    return [e for e in valid if e not in set(gone)]


def sendgrid_env(monkeypatch: pytest.MonkeyPatch, stub_url: str) -> None:
    monkeypatch.setenv("NEWSLETTER_SECRET", SECRET)
    monkeypatch.setenv("SENDGRID_API_KEY", "SG.test-key")
    monkeypatch.setenv("SENDGRID_API_HOST", stub_url)


def session(ws: Path, built: Any = None, **options: Any) -> SendSession:
    options.setdefault("backend", "sendgrid")
    return SendSession(Workspace(ws), built or FakeBuilt(), SendOptions(**options))  # type: ignore[arg-type]


def run(ws: Path, built: Any = None, **options: Any) -> Any:
    s = session(ws, built, **options)
    try:
        s.plan()
        return s.execute()
    finally:
        s.close()


@pytest.fixture(autouse=True)
def _fast_retries(workspace: Path) -> None:
    """Retry waits of milliseconds, so fault tests take seconds, not minutes."""
    set_send_config(workspace, backoff_base=0.01, backoff_max=0.05)


# --------------------------------------------------------------------------- personalization


def test_personalizer_fills_name_fallback_token_and_headers() -> None:
    p = Personalizer([SECRET.encode()], "https://news.example.org", "unsub@example.org", "es")
    r = p(row_of(_Sub("ana@example.org", None, None, "sample", language=None)))
    url = r.values[message.UNSUBSCRIBE_URL]
    assert url.startswith("https://news.example.org/u/")
    parts = urlsplit(url)
    assert parts.query == "lang=es"  # no language of her own: the issue's
    who = tokens.verify_token(parts.path.rsplit("/", 1)[1], [SECRET.encode()])
    assert (who.email, who.list_name) == ("ana@example.org", "sample")
    assert r.values[message.FIRST_NAME_TEXT] == "lector"  # the issue's language fallback
    assert (
        r.headers["List-Unsubscribe"] == f"<{url}>, <mailto:unsub@example.org?subject=unsubscribe>"
    )
    assert r.headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    r2 = p(row_of(_Sub("b@example.org", "<Bo> & Co", "<Bo>", "sample")))
    assert r2.values[message.FIRST_NAME_HTML] == "&lt;Bo&gt;"
    assert r2.values[message.FIRST_NAME_TEXT] == "<Bo>"


@pytest.mark.parametrize(
    ("language", "query"),
    [
        ("fr", "lang=fr"),
        ("pt_BR", "lang=pt-BR"),
        ("zh-Hant", "lang=zh-Hant"),
        (None, "lang=es"),
        ("", "lang=es"),
        ("Spanish, English", "lang=es"),  # not a code: the issue's language instead
        ("<es>", "lang=es"),
        ("e", "lang=es"),
        ("abcdefghi", "lang=es"),  # longer than 8
    ],
)
def test_unsubscribe_url_carries_the_subscribers_language(language: str | None, query: str) -> None:
    """The one-click page opens in the reader's language: ?lang= on the substituted URL and
    in List-Unsubscribe alike, and the token before it still verifies."""
    p = Personalizer([SECRET.encode()], "https://news.example.org/", "unsub@example.org", "es")
    [r] = p.batch([_Sub("zoë@exämple.org", None, None, "sample", language=language)])
    url = r.values[message.UNSUBSCRIBE_URL]
    assert urlsplit(url).query == query
    assert r.headers["List-Unsubscribe"].startswith(f"<{url}>, <mailto:")
    token = urlsplit(url).path.removeprefix("/u/")
    assert tokens.verify_token(token, [SECRET.encode()]).email == "zoë@exämple.org"
    # an issue with no usable language gives no query at all
    bare = Personalizer([SECRET.encode()], "https://news.example.org/", None, "??")
    plain = bare(_Sub("a@example.org", None, None, "x", language=None))
    assert "?" not in plain.values[message.UNSUBSCRIBE_URL]


def test_sendgrid_receives_the_language_in_both_places(
    workspace: Path, stub: StubSendGrid, monkeypatch: pytest.MonkeyPatch
) -> None:
    sendgrid_env(monkeypatch, stub.url)
    (workspace / "subscribers" / "langs.csv").write_text(
        "email,language\nana@example.org,es\nben@example.org,\n", "utf-8"
    )
    run(workspace, lists=["langs"])
    by_email = {p["to"][0]["email"]: p for p in stub.iter_personalizations()}
    for email, lang in (("ana@example.org", "es"), ("ben@example.org", "en")):
        p = by_email[email]
        url = p["substitutions"][message.UNSUBSCRIBE_URL]
        assert url.endswith(f"?lang={lang}")
        assert p["headers"]["List-Unsubscribe"].startswith(f"<{url}>")


@dataclass(frozen=True)
class _Sub:
    email: str
    name: str | None
    first_name: str | None
    list_name: str
    language: str | None = "en"


def test_payload_in_sendgrid_terms_without_personal_data_in_custom_args(
    workspace: Path,
) -> None:
    settings = Workspace(workspace).config.send.model_copy(update={"open_tracking": False})
    sendgrid = SendGridSettings(
        asm_group_id=42, asm_groups_to_display=[42, 43], sandbox_mode=True, ip_pool="newsletters"
    )
    p = Personalizer([SECRET.encode()], "https://news.example.org/", None, "en")
    recipients = [p(_Sub(f"p{i}@example.org", f"Doe, Jo{i}", "Jo", "sample")) for i in range(3)]
    content = IssueContent(
        "2019-09",
        "Subject",
        "<p>%%first_name_html%%</p>",
        "Hi %%first_name%%",
        "from@example.org",
        "Sender",
        "reply@example.org",
    )
    batch = Batch("2019-09", "7", "31", 1, recipients, send_at=1_900_000_000, schedule_id="abc")
    payload = build_payload(content, batch, settings, sendgrid)
    assert len(payload["personalizations"]) == 3
    first = payload["personalizations"][0]
    assert first["to"] == [{"email": "p0@example.org", "name": "Doe  Jo0".replace("  ", " ")}]
    assert set(first["custom_args"]) == set(CORRELATION_KEYS)
    assert first["custom_args"] == {
        "nl_issue": "2019-09",
        "nl_list": "sample",
        "nl_send": "7",
        "nl_batch": "31",
    }
    assert all(isinstance(v, str) and "@" not in v for v in first["custom_args"].values())
    assert set(first["substitutions"]) == set(message.ALL_PLACEHOLDERS)
    assert first["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "custom_args" not in payload  # top level: typed string in SendGrid's spec
    assert payload["categories"] == ["2019-09"]
    assert payload["content"][0] == {"type": "text/plain", "value": "Hi %%first_name%%"}
    assert payload["asm"] == {"group_id": 42, "groups_to_display": [42, 43]}
    assert payload["mail_settings"]["sandbox_mode"] == {"enable": True}
    assert payload["tracking_settings"]["open_tracking"] == {"enable": False}
    assert payload["ip_pool_name"] == "newsletters"
    assert (payload["send_at"], payload["batch_id"]) == (1_900_000_000, "abc")
    assert payload["reply_to"] == {"email": "reply@example.org"}


def test_fast_encoding_is_byte_identical_to_json_dumps(workspace: Path) -> None:
    settings = Workspace(workspace).config.send
    sendgrid = SendGridSettings(asm_group_id=7)
    p = Personalizer([SECRET.encode()], "https://news.example.org/", "u@example.org", "fr")
    odd = [
        'Zoë "Zed" O\'Brien',
        "Back\\slash",
        "Doe, Jane; Jr",
        " Tab\tand  spaces ",
        None,
        "",
        "😀 Émile",
        "line\nbreak",
    ]
    recipients = [
        p(_Sub(f"p{i}@exämple.org", n, n, "a" if i % 2 else "b")) for i, n in enumerate(odd)
    ]
    content = IssueContent(
        "2019-09",
        "Sujet — « test »",
        "<p>é %%first_name_html%%</p>",
        "é %%first_name%%",
        "from@example.org",
        "Expéditeur",
    )
    for batch in (
        Batch("2019-09", "1", "2", 1, recipients),
        Batch("2019-09", "1", "2", 1, [], send_at=5, schedule_id="x"),
    ):
        fast = encode_payload(content, batch, settings, sendgrid)
        assert fast == json.dumps(build_payload(content, batch, settings, sendgrid)).encode()
    # International domains go to SendGrid in their ASCII form; the token keeps the original.
    sent = json.loads(encode_payload(content, Batch("2019-09", "1", "2", 1, recipients), settings))
    assert sent["personalizations"][0]["to"][0]["email"] == "p0@xn--exmple-cua.org"


def test_retry_after_reads_reset_then_retry_after() -> None:
    assert retry_after({"X-RateLimit-Reset": "1005"}, now=1000.0) == 5.0
    assert retry_after({"Retry-After": "7"}, now=1000.0) == 7.0
    assert retry_after({"X-RateLimit-Reset": "900"}, now=1000.0) == 0.0
    assert retry_after({}, now=1000.0) is None


def test_pacer_spaces_requests() -> None:
    clock = FakeClock()
    pacer = Pacer(4.0, clock)
    pacer.wait()
    pacer.wait()
    clock.advance(0.1)  # the request took 0.1 s
    pacer.wait()
    clock.advance(0.3)  # slower than the rate: no wait
    pacer.wait()
    assert clock.slept == pytest.approx([0.25, 0.15])


# --------------------------------------------------------------------------- sending


def test_2500_subscribers_go_in_batches_of_1000_each_address_once(
    workspace: Path, stub: StubSendGrid, monkeypatch: pytest.MonkeyPatch
) -> None:
    sendgrid_env(monkeypatch, stub.url)
    expected = write_list(workspace, "big", 2510, invalid=15, duplicates=12, suppressed=10)
    s = session(workspace, lists=["big"])
    plan = s.plan()
    assert (plan.recipients, plan.invalid, plan.duplicates, plan.batches) == (2500, 15, 12, 3)
    assert plan.suppressed == 10
    report = s.execute()
    s.close()
    assert report.state == DONE and report.recipients_sent == 2500
    sends = stub.sends()
    assert [len(r.body["personalizations"]) for r in sends] == [1000, 1000, 500]
    assert sorted(stub.emails()) == sorted(expected)
    assert all(r.headers["Authorization"] == "Bearer SG.test-key" for r in sends)
    batch_ids = {p["custom_args"]["nl_batch"] for p in stub.iter_personalizations()}
    with Ledger(workspace / ".newsletter" / "state.db") as ledger:
        assert ledger.recipients_sent("2019-09") == 2500
        [summary] = ledger.sends("2019-09")
        assert (summary.state, summary.batches_sent, summary.pending) == (DONE, 3, 0)
        for bid in batch_ids:
            info = ledger.batch(int(bid))
            assert info is not None and info.issue_id == "2019-09" and info.lists == ("big",)
        assert sum(len(ledger.batch_recipients(int(b))) for b in batch_ids) == 2500


def test_same_list_again_is_refused_unless_force_resend(
    workspace: Path, stub: StubSendGrid, monkeypatch: pytest.MonkeyPatch
) -> None:
    sendgrid_env(monkeypatch, stub.url)
    expected = write_list(workspace, "small", 5)
    assert run(workspace, lists=["small"]).state == DONE
    with pytest.raises(LedgerError) as err:
        run(workspace, lists=["small"])
    assert "already sent to list small" in err.value.message and "--force-resend" in str(err.value)
    assert len(stub.emails()) == 5
    assert run(workspace, lists=["small"], force_resend=True).state == DONE
    assert sorted(stub.emails()) == sorted(expected * 2)
    with Ledger(workspace / ".newsletter" / "state.db") as ledger:
        assert ledger.recipients_sent("2019-09") == 10


def test_overlapping_list_skips_who_already_received_the_issue(
    workspace: Path, stub: StubSendGrid, monkeypatch: pytest.MonkeyPatch
) -> None:
    sendgrid_env(monkeypatch, stub.url)
    first = write_list(workspace, "a", 10)
    second = write_list(workspace, "b", 10, start=5)  # 5..14: 5 already got it via list a
    run(workspace, lists=["a"])
    s = session(workspace, lists=["b"])
    plan = s.plan()
    assert (plan.recipients, plan.already_sent) == (5, 5)
    s.execute()
    s.close()
    assert sorted(stub.emails()) == sorted(set(first) | set(second))


def test_test_send_is_marked_and_not_recorded_as_the_real_send(
    workspace: Path, stub: StubSendGrid, monkeypatch: pytest.MonkeyPatch
) -> None:
    sendgrid_env(monkeypatch, stub.url)
    write_list(workspace, "small", 3)
    report = run(workspace, lists=["small"], test_to=["me@example.org", "you@example.org"])
    assert report.state == DONE
    [request] = stub.sends()
    assert request.body["subject"] == "[TEST] Digest — September 2019"
    assert request.body["categories"] == ["2019-09", "test"]
    assert stub.emails() == ["me@example.org", "you@example.org"]
    with Ledger(workspace / ".newsletter" / "state.db") as ledger:
        assert ledger.recipients_sent("2019-09") == 0
    assert run(workspace, lists=["small"]).recipients_sent == 3  # not refused


def test_dry_run_through_sendgrid_posts_nothing_and_keeps_no_state(
    workspace: Path, stub: StubSendGrid, monkeypatch: pytest.MonkeyPatch
) -> None:
    sendgrid_env(monkeypatch, stub.url)
    write_list(workspace, "small", 3)
    report = run(workspace, lists=["small"], dry_run=True)
    assert report.recipients_sent == 0 and stub.requests == []
    assert not (workspace / ".newsletter").exists()


def test_resume_with_nothing_to_resume_says_so(
    workspace: Path, stub: StubSendGrid, monkeypatch: pytest.MonkeyPatch
) -> None:
    sendgrid_env(monkeypatch, stub.url)
    with pytest.raises(LedgerError, match="no paused, failed or interrupted send"):
        run(workspace, lists=["sample"], resume=True)


def test_sendgrid_backend_needs_secret_and_key(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SENDGRID_API_KEY", "SG.x")
    with pytest.raises(ConfigError) as err:
        session(workspace, lists=["sample"])
    assert err.value.key == "NEWSLETTER_SECRET"
    monkeypatch.delenv("SENDGRID_API_KEY")
    monkeypatch.setenv("NEWSLETTER_SECRET", SECRET)
    with pytest.raises(ConfigError) as err:
        session(workspace, lists=["sample"])
    assert err.value.key == "SENDGRID_API_KEY"


def test_outbox_without_secret_uses_the_labelled_development_key(workspace: Path) -> None:
    s = session(workspace, backend="outbox", lists=["sample"])
    assert s.dev_key and s.keys == [DEV_SECRET] and b"DEVELOPMENT" in DEV_SECRET
    s.close()


# --------------------------------------------------------------------------- scheduling


def test_parse_send_at_limits() -> None:
    now = datetime(2019, 9, 30, 8, 0, tzinfo=UTC)
    assert parse_send_at("2019-10-01T09:00Z", now) == datetime(2019, 10, 1, 9, 0, tzinfo=UTC)
    assert parse_send_at("2019-10-01T09:00+02:00", now).hour == 9
    for bad, words in (
        ("2019-09-29T09:00Z", "in the past"),
        ("2019-10-04T09:00Z", "72 hours"),
        ("tomorrow", "not a date"),
    ):
        with pytest.raises(ConfigError, match=words):
            parse_send_at(bad, now)


def test_scheduled_send_then_cancel(
    workspace: Path, stub: StubSendGrid, monkeypatch: pytest.MonkeyPatch
) -> None:
    sendgrid_env(monkeypatch, stub.url)
    write_list(workspace, "small", 4)
    when = (datetime.now(UTC) + timedelta(hours=2)).replace(microsecond=0)
    report = run(workspace, lists=["small"], send_at=when)
    assert report.state == SCHEDULED
    paths = [r.path for r in stub.requests]
    assert paths == ["/v3/mail/batch", "/v3/mail/send"]
    [request] = stub.sends()
    assert request.body["send_at"] == int(when.timestamp())
    assert isinstance(request.body["batch_id"], str) and request.body["batch_id"]
    with Ledger(workspace / ".newsletter" / "state.db") as ledger:
        [cancelled] = cancel_send(Workspace(workspace), "2019-09", ledger=ledger)
        assert cancelled.send.state == CANCELLED and cancelled.at_provider
        assert ledger.recipients_sent("2019-09") == 0
    cancel = stub.requests[-1]
    assert cancel.path == "/v3/user/scheduled_sends"
    assert cancel.body == {"batch_id": request.body["batch_id"], "status": "cancel"}
    assert run(workspace, lists=["small"]).state == DONE  # a cancelled send does not block


def test_cancel_refuses_within_ten_minutes_of_send_time(
    workspace: Path, stub: StubSendGrid, monkeypatch: pytest.MonkeyPatch
) -> None:
    sendgrid_env(monkeypatch, stub.url)
    write_list(workspace, "small", 2)
    when = datetime.now(UTC) + timedelta(minutes=30)
    run(workspace, lists=["small"], send_at=when)
    with (
        Ledger(workspace / ".newsletter" / "state.db") as ledger,
        pytest.raises(LedgerError, match="10 minutes"),
    ):
        cancel_send(Workspace(workspace), "2019-09", ledger=ledger, now=when - timedelta(minutes=5))
    assert stub.requests[-1].path == "/v3/mail/send"  # nothing posted to cancel


def _paused_scheduled_send(workspace: Path, stub: StubSendGrid) -> tuple[datetime, list[str]]:
    """A send of 4 scheduled an hour ahead that paused after batch 1 (of 2) was accepted."""
    set_send_config(workspace, batch_size=2, pause_after_failures=2)
    people = write_list(workspace, "small", 4)
    stub.script(ok(), status(503), status(503))
    when = (datetime.now(UTC) + timedelta(hours=1)).replace(microsecond=0)
    report = run(workspace, lists=["small"], send_at=when)
    assert report.state == PAUSED
    return when, people


@pytest.mark.parametrize(
    ("clock", "words"),
    [
        (timedelta(minutes=5), "has passed"),  # now is 5 minutes after the time
        (timedelta(minutes=-5), "only cancel a scheduled send until 10 minutes"),
    ],
)
def test_paused_scheduled_send_sendgrid_cannot_cancel_is_abandoned_here(
    workspace: Path,
    stub: StubSendGrid,
    monkeypatch: pytest.MonkeyPatch,
    clock: timedelta,
    words: str,
) -> None:
    sendgrid_env(monkeypatch, stub.url)
    when, people = _paused_scheduled_send(workspace, stub)
    first = [p["to"][0]["email"] for p in stub.sends()[0].body["personalizations"]]
    requests = len(stub.requests)
    with Ledger(workspace / ".newsletter" / "state.db") as ledger:
        [c] = cancel_send(Workspace(workspace), "2019-09", ledger=ledger, now=when + clock)
        assert c.send.state == CANCELLED and not c.at_provider and words in c.why_not
        [b1, b2] = ledger.batches(c.send.id)
        assert (b1.state, b2.state) == (B_SENT, B_CANCELLED)  # accepted: still goes out
        assert ledger.recipients_sent("2019-09") == 2
    assert len(stub.requests) == requests  # nothing asked of SendGrid: it could not help
    # the rest can be sent now; those SendGrid accepted are left out
    report = run(workspace, lists=["small"])
    assert report.state == DONE and report.recipients_sent == 2
    assert sorted(p["to"][0]["email"] for p in stub.sends()[-1].body["personalizations"]) == sorted(
        set(people) - set(first)
    )


def test_cancelled_failed_send_does_not_keep_its_people_from_the_issue(
    workspace: Path, stub: StubSendGrid, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failed batch's people did not get the issue: after `cancel` a new send reaches them."""
    sendgrid_env(monkeypatch, stub.url)
    people = write_list(workspace, "small", 5)
    stub.script(status(400))
    assert run(workspace, lists=["small"]).state == FAILED
    with Ledger(workspace / ".newsletter" / "state.db") as ledger:
        cancel_send(Workspace(workspace), "2019-09", ledger=ledger)
    s = session(workspace, lists=["small"])
    plan = s.plan()
    assert (plan.recipients, plan.already_sent) == (5, 0)
    assert s.execute().state == DONE
    s.close()
    assert sorted(stub.emails()) == sorted(people)
    with Ledger(workspace / ".newsletter" / "state.db") as ledger:
        first = ledger.sends("2019-09")[0]
        assert first.state == CANCELLED
        assert [b.state for b in ledger.batches(first.id)] == [B_CANCELLED]


def test_cancelled_scheduled_send_frees_even_its_unknown_batches(
    workspace: Path, stub: StubSendGrid, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SendGrid's cancel covers every message of the schedule, answered or not."""
    sendgrid_env(monkeypatch, stub.url)
    set_send_config(workspace, batch_size=2, timeout=0.3)
    people = write_list(workspace, "small", 4)
    stub.script(ok(), hang(2.0, accepted=True))
    when = (datetime.now(UTC) + timedelta(hours=1)).replace(microsecond=0)
    assert run(workspace, lists=["small"], send_at=when).state == PAUSED
    with Ledger(workspace / ".newsletter" / "state.db") as ledger:
        [c] = cancel_send(Workspace(workspace), "2019-09", ledger=ledger)
        assert c.at_provider
        assert [b.state for b in ledger.batches(c.send.id)] == [B_CANCELLED, B_CANCELLED]
    assert stub.requests[-1].path == "/v3/user/scheduled_sends"
    before = len(stub.sends())
    report = run(workspace, lists=["small"])
    assert report.recipients_sent == 4
    again = [p["to"][0]["email"] for r in stub.sends()[before:] for p in r.body["personalizations"]]
    assert sorted(again) == people
