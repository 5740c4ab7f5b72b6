"""Sign-up against misuse: one answer whatever the address's state, the honeypot, the limits
(per address, per client, body size), forged/expired/altered/other-list tokens, suppressions
(an unsubscribe lifted by a new confirmation, a bounce kept), 50 confirmations at once."""

from __future__ import annotations

import csv
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conftest import TEST_ENV
from newsletter.config import Workspace
from newsletter.link_tokens import SignupRequest, confirm_token
from newsletter.server import create_app
from newsletter.tokens import make_token
from signup_support import (
    confirm_link,
    confirmations,
    enable_signup,
    form,
    heading,
    local,
    wait_for_emails,
)
from test_server import running, serve_cli

SECRET = TEST_ENV["NEWSLETTER_SECRET"].encode()


@pytest.fixture
def base(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("NEWSLETTER_SECRET", TEST_ENV["NEWSLETTER_SECRET"])
    enable_signup(workspace, per_minute=5)
    with running(create_app(Workspace(workspace))) as url:
        yield url


def signup(email: str, list_name: str = "sample", at: float | None = None) -> str:
    request = SignupRequest(
        email=email,
        list_name=list_name,
        name="",
        language="en",
        tags=("press",),
        consent_version="2026-12",
        form="page",
        at=int(time.time() if at is None else at),
    )
    return confirm_token(request, [SECRET])


def add_suppression(workspace: Path, email: str, reason: str, at: str) -> None:
    path = workspace / "subscribers" / "suppressions.csv"
    with path.open("a", encoding="utf-8", newline="") as f:
        csv.writer(f).writerow([email, reason, "test", at])


def wait_for_log(caplog: pytest.LogCaptureFixture, text: str, count: int = 1) -> None:
    """Until the server has logged ``text`` ``count`` times (its work after the answer)."""
    deadline = time.monotonic() + 20
    while caplog.text.count(text) < count:
        if time.monotonic() > deadline:
            pytest.fail(f"the server never logged {text!r} {count} time(s):\n{caplog.text}")
        time.sleep(0.05)


def emails(path: Path) -> list[str]:
    with path.open(newline="", encoding="utf-8") as f:
        return [r["email"] for r in csv.DictReader(f)]


def test_the_answer_is_the_same_whatever_the_state(
    base: str, workspace: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """New, subscribed and bounced addresses get the same page; only the new one an email."""
    caplog.set_level("INFO", logger="newsletter.server")
    add_suppression(workspace, "bounced@example.org", "bounced", "2025-01-01T00:00:00+00:00")
    pages = [
        httpx.post(f"{base}/subscribe", data=form(who))
        for who in ("ana.lopez@example.org", "bounced@example.org", "fresh@example.org")
    ]
    assert {p.status_code for p in pages} == {200}
    assert len({p.text for p in pages}) == 1  # byte for byte the same page
    assert all("@" not in p.text.split("<footer>")[0] for p in pages)
    wait_for_emails(workspace, 1)
    wait_for_log(caplog, "is already on list sample; no email")
    wait_for_log(caplog, "is suppressed (bounced); no email")
    assert "ana.lopez" not in caplog.text and "bounced@" not in caplog.text
    assert [p.name.split("-", 1)[1] for p in confirmations(workspace)] == ["fresh@example.org.eml"]


def test_honeypot_gets_the_normal_page_and_no_email(base: str, workspace: Path) -> None:
    trapped = httpx.post(f"{base}/subscribe", data=form("bot@example.org", website="http://x"))
    assert trapped.status_code == 200 and heading(trapped.text) == "Check your inbox"
    httpx.post(f"{base}/subscribe", data=form("person@example.org"))
    [only] = wait_for_emails(workspace, 1)
    assert "person@example.org" in only.name
    assert not any("bot@" in p.name for p in confirmations(workspace))


def test_one_confirmation_email_per_address_per_hour(
    base: str, workspace: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="newsletter.server")
    for _ in range(3):
        assert httpx.post(f"{base}/subscribe", data=form("Twice@Example.org")).status_code == 200
    httpx.post(f"{base}/subscribe", data=form("other@example.org"))
    found = wait_for_emails(workspace, 2)
    wait_for_log(caplog, "had a confirmation email this hour; no other", 2)
    assert sorted(p.name.split("-", 1)[1] for p in found) == [
        "Twice@example.org.eml",
        "other@example.org.eml",
    ]


def test_a_client_posting_too_often_gets_429_with_retry_after(base: str) -> None:
    answers = [httpx.post(f"{base}/subscribe", data=form(f"p{i}@example.org")) for i in range(6)]
    assert [a.status_code for a in answers] == [200] * 5 + [429]
    assert 1 <= int(answers[-1].headers["retry-after"]) <= 60
    assert heading(answers[-1].text) == "Please wait a minute"


def test_a_large_body_gets_413(base: str) -> None:
    r = httpx.post(f"{base}/subscribe", data=form("big@example.org", name="x" * 5000))
    assert r.status_code == 413


def test_missing_consent_or_bad_address_shows_the_form_again(base: str, workspace: Path) -> None:
    no_consent = httpx.post(f"{base}/subscribe", data=form("a@example.org", consent=""))
    assert no_consent.status_code == 400 and 'id="form-error"' in no_consent.text
    assert "a@example.org" not in no_consent.text
    bad = httpx.post(f"{base}/subscribe", data=form("not an address"))
    assert bad.status_code == 400 and "does not look right" in bad.text


def test_forged_expired_altered_and_other_list_tokens_are_not_valid(
    base: str, workspace: Path
) -> None:
    good = signup("reader@example.org")
    flipped = good[:10] + ("A" if good[10] != "A" else "B") + good[11:]
    bad = [
        "forged",
        "A" * 120,
        flipped,  # altered
        good[:-4],  # truncated
        signup("reader@example.org", at=time.time() - 8 * 86400),  # expired (7 days)
        signup("reader@example.org", list_name="other"),  # a list not open to sign-ups
        confirm_token(  # signed with a key we do not have
            SignupRequest("reader@example.org", "sample", "", "en", (), "2026-12", "page", 1),
            [b"another-key-0123456789abcdef"],
        ),
        make_token("reader@example.org", "sample", [SECRET]),  # an unsubscribe token
    ]
    before = (workspace / "subscribers" / "sample.csv").read_bytes()
    for token in bad:
        for method in (httpx.get, httpx.post):
            r = method(f"{base}/confirm/{token}")
            assert r.status_code == 404, token
            assert heading(r.text) == "This link is not valid"
            assert 'id="signup-again"' in r.text
    assert (workspace / "subscribers" / "sample.csv").read_bytes() == before
    assert httpx.post(f"{base}/confirm/{good}").status_code == 200
    assert "reader@example.org" in emails(workspace / "subscribers" / "sample.csv")


def test_confirming_lifts_an_older_unsubscribe_and_keeps_a_bounce(
    base: str, workspace: Path
) -> None:
    add_suppression(workspace, "back@example.org", "unsubscribed", "2025-01-01T00:00:00+00:00")
    add_suppression(workspace, "bounced@example.org", "bounced", "2025-01-01T00:00:00+00:00")
    back = httpx.post(f"{base}/confirm/{signup('back@example.org')}")
    assert back.status_code == 200 and heading(back.text) == "You are subscribed"
    review = httpx.post(f"{base}/confirm/{signup('bounced@example.org')}")
    assert heading(review.text) == "We will review your subscription"
    left = emails(workspace / "subscribers" / "suppressions.csv")
    assert "back@example.org" not in left and "bounced@example.org" in left
    # An unsubscribe made after the sign-up wins over its older link.
    add_suppression(workspace, "later@example.org", "unsubscribed", "2099-01-01T00:00:00+00:00")
    late = httpx.post(f"{base}/confirm/{signup('later@example.org')}")
    assert late.status_code == 404
    assert "later@example.org" not in emails(workspace / "subscribers" / "sample.csv")


def test_a_changed_list_keeps_its_delimiter_bom_and_column_order(
    base: str, workspace: Path
) -> None:
    path = workspace / "subscribers" / "sample.csv"
    path.write_bytes(b'\xef\xbb\xbfName;E-mail\r\n"Ana; L\xc3\xb3pez";ana.lopez@example.org\r\n')
    assert httpx.post(f"{base}/confirm/{signup('new@example.org')}").status_code == 200
    text = path.read_bytes()
    assert text.startswith(b"\xef\xbb\xbfName;E-mail;language;tags;subscribed_at;consent\r\n")
    assert b'"Ana; L\xc3\xb3pez";ana.lopez@example.org\r\n' in text
    assert text.endswith(b"\r\n") and b";new@example.org;en;press;" in text


def test_fifty_confirmations_at_once_lose_nothing(workspace: Path) -> None:
    enable_signup(workspace)
    path = workspace / "subscribers" / "sample.csv"
    before = emails(path)
    people = [f"reader{i:02d}@example.org" for i in range(50)]
    tokens = [signup(p) for p in people]
    with serve_cli(workspace) as served:
        results: list[int] = []
        start = threading.Barrier(50)

        def post(token: str) -> None:
            start.wait()
            with httpx.Client(timeout=60) as c:
                results.append(c.post(f"{served.base}/confirm/{token}").status_code)

        threads = [threading.Thread(target=post, args=(t,)) for t in tokens]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert results == [200] * 50
    after = emails(path)
    assert after[: len(before)] == before and sorted(after[len(before) :]) == people


def test_a_confirmation_link_from_the_email_works_once_read_from_the_outbox(
    base: str, workspace: Path
) -> None:
    httpx.post(f"{base}/subscribe", data=form("mail@example.org", topic=["health", "nope"]))
    [eml] = wait_for_emails(workspace, 1)
    r = httpx.post(local(confirm_link(eml), base))
    assert r.status_code == 200
    with (workspace / "subscribers" / "sample.csv").open(newline="", encoding="utf-8") as f:
        [row] = [r for r in csv.DictReader(f) if r["email"] == "mail@example.org"]
    assert row["tags"] == "health"  # a topic that is not offered is not taken


def test_preferences_leave_one_list_keep_another_and_test_copies_change_nothing(
    base: str, workspace: Path
) -> None:
    from newsletter.link_tokens import LinkSigner

    other = workspace / "subscribers" / "partners.csv"
    other.write_text("email,name\nben.carter@example.com,Ben\n", encoding="utf-8")
    sample = workspace / "subscribers" / "sample.csv"
    token = LinkSigner([SECRET]).preferences("ben.carter@example.com", "sample")
    page = httpx.get(f"{base}/p/{token}")
    assert 'value="partners"' in page.text and 'value="sample"' in page.text
    test = LinkSigner([SECRET], test=True).preferences("ben.carter@example.com", "sample")
    before = sample.read_bytes(), other.read_bytes()
    for method in (httpx.get, httpx.post):
        r = method(f"{base}/p/{test}")
        assert r.status_code == 200 and heading(r.text) == "This is a test copy"
    forged = LinkSigner([b"another-key-0123456789abcdef"]).preferences(
        "ben.carter@example.com", "x"
    )
    unsubscribe = LinkSigner([SECRET]).unsubscribe("ben.carter@example.com", "sample")
    for bad in (forged, unsubscribe, "nope"):
        assert httpx.post(f"{base}/p/{bad}", data={"action": "leave"}).status_code == 404
    assert (sample.read_bytes(), other.read_bytes()) == before
    r = httpx.post(f"{base}/p/{token}", data={"action": "save", "list": "sample", "name": "Ben"})
    assert r.status_code == 200
    assert "ben.carter@example.com" not in emails(other)
    assert "ben.carter@example.com" in emails(sample)
    assert "ben.carter@example.com" not in emails(workspace / "subscribers" / "suppressions.csv")


def test_after_confirming_the_reader_goes_to_the_configured_page(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEWSLETTER_SECRET", TEST_ENV["NEWSLETTER_SECRET"])
    enable_signup(workspace)
    config = workspace / "newsletter.toml"
    text = config.read_text(encoding="utf-8").replace(
        "[signup]\n", '[signup]\nafter_confirm_url = "https://www.example.org/welcome"\n'
    )
    config.write_text(text, encoding="utf-8")
    with running(create_app(Workspace(workspace))) as base:
        r = httpx.post(f"{base}/confirm/{signup('welcome@example.org')}")
    assert r.status_code == 303 and r.headers["location"] == "https://www.example.org/welcome"
    assert "welcome@example.org" in emails(workspace / "subscribers" / "sample.csv")
