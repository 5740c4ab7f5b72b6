"""`newsletter serve` over real HTTP: uvicorn on a free 127.0.0.1 port, httpx as the client.

Webhook requests are signed here with a freshly generated ECDSA P-256 key, the way
SendGrid signs them (timestamp + raw body, SHA-256, base64 DER signature).
"""

from __future__ import annotations

import base64
import csv
import json
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from email import policy
from email.parser import BytesParser
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import uvicorn
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from conftest import TEST_ENV
from newsletter.config import Workspace
from newsletter.server import SIGNATURE_HEADER, TIMESTAMP_HEADER, create_app
from newsletter.tokens import make_token
from prism import free_port

SECRET = TEST_ENV["NEWSLETTER_SECRET"]
MAX_BODY = 65_536


# --- helpers other test files import -------------------------------------------------------


@contextmanager
def running(app: Any) -> Iterator[str]:
    """Serve `app` with uvicorn in a thread on a free loopback port; yield its base URL."""
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", lifespan="off", access_log=False
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(15)


def keypair() -> tuple[ec.EllipticCurvePrivateKey, str]:
    """A private key and its public key as SendGrid shows it (base64 DER SubjectPublicKeyInfo)."""
    key = ec.generate_private_key(ec.SECP256R1())
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return key, base64.b64encode(der).decode("ascii")


def signed_headers(
    key: ec.EllipticCurvePrivateKey, body: bytes, timestamp: int | None = None
) -> dict[str, str]:
    ts = str(int(time.time()) if timestamp is None else timestamp)
    signature = key.sign(ts.encode("ascii") + body, ec.ECDSA(hashes.SHA256()))
    return {
        SIGNATURE_HEADER: base64.b64encode(signature).decode("ascii"),
        TIMESTAMP_HEADER: ts,
        "Content-Type": "application/json",
    }


def sg_event(event: str, email: str, n: int, **extra: Any) -> dict[str, Any]:
    """A SendGrid Event Webhook item as SendGrid posts it, with our custom_args echoed."""
    return {
        "email": email,
        "timestamp": 1568600000 + n * 60,
        "smtp-id": f"<{n}.abc@ismtpd-555>",
        "event": event,
        "category": ["newsletter"],
        "sg_event_id": f"ZGVsaXZlcmVkLTAtMjQ0{n:06d}",
        "sg_message_id": f"14c5d75ce93.dfd.64b469.filter0001.16648.{n:06d}.0",
        "nl_issue": "2019-09",
        "nl_list": "sample",
        "nl_send": "1",
        "nl_batch": "1",
        **extra,
    }


def sample_batch() -> list[dict[str, Any]]:
    return [
        sg_event("processed", "ana.lopez@example.org", 1),
        sg_event("delivered", "ana.lopez@example.org", 2, response="250 OK"),
        sg_event("open", "ana.lopez@example.org", 3, useragent="Mozilla/5.0", ip="1.2.3.4"),
        sg_event("open", "ben.carter@example.com", 4, sg_machine_open=True),
        sg_event(
            "click",
            "ana.lopez@example.org",
            5,
            url="https://www.example.org/a?x=1",
            url_offset={"index": 0, "type": "html"},
        ),
        sg_event(
            "bounce",
            "gone@example.org",
            6,
            reason="550 5.1.1 no such user",
            status="5.1.1",
            type="bounce",
        ),
        sg_event("bounce", "busy@example.org", 7, reason="421 try later", type="blocked"),
        sg_event("dropped", "old-bounce@example.org", 8, reason="Bounced Address"),
        sg_event("dropped", "api-mistake@example.org", 9, reason="Invalid SMTPAPI header"),
        sg_event("spamreport", "angry@example.org", 10),
        sg_event("unsubscribe", "leaver@example.org", 11),
        sg_event("group_unsubscribe", "group-leaver@example.org", 12, asm_group_id=42),
        sg_event("deferred", "slow@example.org", 13, response="400 try again", attempt="1"),
    ]


def event_rows(ws: Path) -> list[sqlite3.Row]:
    db = ws / ".newsletter" / "state.db"
    if not db.exists():
        return []
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    try:
        return conn.execute("SELECT * FROM esp_events ORDER BY event_id").fetchall()
    except sqlite3.OperationalError:  # no table yet: nothing stored
        return []
    finally:
        conn.close()


def suppressions(ws: Path) -> dict[str, tuple[str, str]]:
    path = ws / "subscribers" / "suppressions.csv"
    with path.open(newline="", encoding="utf-8") as f:
        return {r["email"].lower(): (r["reason"], r["source"]) for r in csv.DictReader(f)}


def setup_env(workspace: Path, monkeypatch: pytest.MonkeyPatch, public_key: str | None) -> None:
    monkeypatch.setenv("NEWSLETTER_SECRET", SECRET)
    if public_key:
        monkeypatch.setenv("SENDGRID_WEBHOOK_PUBLIC_KEY", public_key)
    config = workspace / "newsletter.toml"
    text = config.read_text(encoding="utf-8")
    assert "[server]" in text
    config.write_text(text + f"max_body_bytes = {MAX_BODY}\n", encoding="utf-8")


# --- fixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def keys() -> tuple[ec.EllipticCurvePrivateKey, str]:
    return keypair()


@pytest.fixture
def base_url(
    workspace: Path, monkeypatch: pytest.MonkeyPatch, keys: tuple[ec.EllipticCurvePrivateKey, str]
) -> Iterator[str]:
    setup_env(workspace, monkeypatch, keys[1])
    with running(create_app(Workspace(workspace))) as url:
        yield url


def token(email: str, list_name: str = "sample") -> str:
    return make_token(email, list_name, [SECRET.encode()])


# --- webhook --------------------------------------------------------------------------------


def test_signed_batch_is_stored_once_and_suppresses(
    base_url: str, workspace: Path, keys: Any
) -> None:
    key = keys[0]
    batch = sample_batch()
    body = json.dumps(batch).encode()
    before = suppressions(workspace)
    first = httpx.post(
        f"{base_url}/webhooks/sendgrid", content=body, headers=signed_headers(key, body)
    )
    assert first.status_code == 200, first.text
    assert first.json()["stored"] == len(batch)
    again = httpx.post(
        f"{base_url}/webhooks/sendgrid", content=body, headers=signed_headers(key, body)
    )
    assert again.status_code == 200
    assert again.json()["stored"] == 0

    rows = event_rows(workspace)
    assert len(rows) == len(batch)
    by_id = {r["event_id"]: r for r in rows}
    click = by_id[batch[4]["sg_event_id"]]
    assert click["kind"] == "click" and click["url"] == "https://www.example.org/a?x=1"
    assert click["issue_id"] == "2019-09" and click["batch_id"] == "1"
    assert json.loads(click["raw"]) == batch[4]
    assert by_id[batch[3]["sg_event_id"]]["machine"] == 1
    assert by_id[batch[2]["sg_event_id"]]["machine"] == 0
    assert by_id[batch[6]["sg_event_id"]]["kind"] == "blocked"

    after = suppressions(workspace)
    new = {k: v for k, v in after.items() if k not in before}
    assert new == {
        "gone@example.org": ("bounced", "sendgrid-webhook:bounced"),
        "old-bounce@example.org": ("bounced", "sendgrid-webhook:dropped"),
        "angry@example.org": ("spam", "sendgrid-webhook:spamreport"),
        "leaver@example.org": ("unsubscribed", "sendgrid-webhook:unsubscribe"),
        "group-leaver@example.org": ("unsubscribed", "sendgrid-webhook:group_unsubscribe"),
    }
    # Posting twice added no duplicate rows to the CSV.
    lines = (workspace / "subscribers" / "suppressions.csv").read_text().splitlines()
    assert len(lines) == len(set(lines))


def _tamper(key: Any, other: Any, body: bytes) -> dict[str, tuple[bytes, dict[str, str]]]:
    now = int(time.time())
    good = signed_headers(key, body)
    return {
        "unsigned": (body, {"Content-Type": "application/json"}),
        "wrong key": (body, signed_headers(other, body)),
        "altered body": (body.replace(b"gone@", b"kept@"), good),
        "stale": (body, signed_headers(key, body, now - 301)),
        "future": (body, signed_headers(key, body, now + 301)),
        "not base64": (body, {**good, SIGNATURE_HEADER: "!!!not*base64"}),
        "not a signature": (body, {**good, SIGNATURE_HEADER: base64.b64encode(b"x" * 70).decode()}),
        "timestamp swapped": (body, {**good, TIMESTAMP_HEADER: str(now - 1)}),
        "bad timestamp": (body, {**good, TIMESTAMP_HEADER: "yesterday"}),
        "only signature": (body, {SIGNATURE_HEADER: good[SIGNATURE_HEADER]}),
    }


def test_unsigned_forged_or_stale_requests_get_403_and_store_nothing(
    base_url: str, workspace: Path, keys: Any
) -> None:
    body = json.dumps(sample_batch()).encode()
    before = (workspace / "subscribers" / "suppressions.csv").read_bytes()
    other, _ = keypair()
    for name, (content, headers) in _tamper(keys[0], other, body).items():
        r = httpx.post(f"{base_url}/webhooks/sendgrid", content=content, headers=headers)
        assert r.status_code == 403, name
    assert event_rows(workspace) == []
    assert (workspace / "subscribers" / "suppressions.csv").read_bytes() == before


def test_oversize_bodies_get_413(base_url: str, workspace: Path, keys: Any) -> None:
    big = json.dumps([sg_event("delivered", f"r{i}@example.org", i) for i in range(400)]).encode()
    assert len(big) > MAX_BODY
    # Declared too large: refused from the header alone, before any body is sent.
    port = int(urlsplit(base_url).port or 0)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(
            b"POST /webhooks/sendgrid HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nContent-Length: 1000000000\r\n\r\n"
        )
        reply = s.recv(4096)
    assert reply.startswith(b"HTTP/1.1 413"), reply[:100]
    # Honest Content-Length, validly signed.
    r = httpx.post(
        f"{base_url}/webhooks/sendgrid", content=big, headers=signed_headers(keys[0], big)
    )
    assert r.status_code == 413
    # No Content-Length at all (chunked): counted while reading.
    headers = signed_headers(keys[0], big)

    def chunks() -> Iterator[bytes]:
        for i in range(0, len(big), 8192):
            yield big[i : i + 8192]

    r = httpx.post(f"{base_url}/webhooks/sendgrid", content=chunks(), headers=headers)
    assert r.status_code == 413
    assert event_rows(workspace) == []


def test_signed_but_malformed_json_gets_400(base_url: str, workspace: Path, keys: Any) -> None:
    for body in (
        b'[{"event": "delivered",',
        b'{"event": "delivered"}',
        b'"x"',
        b"",
        b"[" * 100_00 + b"]" * 100_00,
    ):
        r = httpx.post(
            f"{base_url}/webhooks/sendgrid", content=body, headers=signed_headers(keys[0], body)
        )
        assert r.status_code == 400, body[:30]
    assert event_rows(workspace) == []
    # One odd item does not cost the good ones (a 4xx would make SendGrid drop the batch).
    body = json.dumps([42, {"event": "open"}, sg_event("delivered", "ana@example.org", 1)])
    r = httpx.post(
        f"{base_url}/webhooks/sendgrid",
        content=body.encode(),
        headers=signed_headers(keys[0], body.encode()),
    )
    assert r.status_code == 200
    assert r.json() == {"received": 1, "stored": 1, "suppressed": 0, "skipped": 2}


def test_storage_failure_answers_503_and_a_retry_stores_everything(
    base_url: str, workspace: Path, keys: Any
) -> None:
    csv_path = workspace / "subscribers" / "suppressions.csv"
    saved = csv_path.read_bytes()
    csv_path.unlink()
    csv_path.mkdir()  # add_suppressions cannot open it
    body = json.dumps(sample_batch()).encode()
    r = httpx.post(
        f"{base_url}/webhooks/sendgrid", content=body, headers=signed_headers(keys[0], body)
    )
    assert r.status_code == 503
    assert event_rows(workspace) == []  # suppressions first: nothing half-done
    csv_path.rmdir()
    csv_path.write_bytes(saved)
    r = httpx.post(
        f"{base_url}/webhooks/sendgrid", content=body, headers=signed_headers(keys[0], body)
    )
    assert r.status_code == 200
    assert len(event_rows(workspace)) == len(sample_batch())
    assert suppressions(workspace)["gone@example.org"][0] == "bounced"


def test_without_a_public_key_the_webhook_refuses(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    setup_env(workspace, monkeypatch, None)
    with running(create_app(Workspace(workspace))) as url:
        body = b"[]"
        r = httpx.post(f"{url}/webhooks/sendgrid", content=body)
        assert r.status_code == 503
        assert httpx.get(f"{url}/healthz").json() == {"status": "ok", "webhook_key": False}


def test_bad_requests_get_4xx_and_the_server_keeps_serving(base_url: str) -> None:
    port = int(urlsplit(base_url).port or 0)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"POST /webhooks/sendgrid HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n")
        reply = s.recv(4096)
    assert reply.split(b" ")[1].startswith(b"4"), reply[:100]
    assert httpx.get(f"{base_url}/webhooks/sendgrid").status_code == 405
    assert httpx.get(f"{base_url}/nowhere").status_code == 404
    assert httpx.post(f"{base_url}/u/x", content=b"a" * 20_000).status_code in (404, 413)
    r = httpx.get(
        f"{base_url}/u/{token('ana@example.org')}", headers={"Accept-Language": "es;q=abc," * 500}
    )
    assert r.status_code == 200
    assert httpx.get(f"{base_url}/healthz").json()["status"] == "ok"


# --- one-click unsubscribe --------------------------------------------------------------


def _unsubscribe_url_from_outbox(cli: Any, workspace: Path) -> tuple[str, str]:
    """Send the sample issue to the outbox and take one recipient's List-Unsubscribe URL."""
    result = cli(
        "send",
        "issues/2019-09.yaml",
        "--list",
        "sample",
        "--backend",
        "outbox",
        "--yes",
        env=TEST_ENV,
    )
    assert result.code == 0, result.err
    emls = sorted((workspace / "outbox" / "2019-09").rglob("*.eml"))
    assert emls, "the outbox send wrote no .eml files"
    for path in emls:
        msg = BytesParser(policy=policy.default).parsebytes(path.read_bytes())
        to = str(msg["To"].addresses[0].addr_spec)
        if to == "ana.lopez@example.org":
            header = str(msg["List-Unsubscribe"])
            assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
            https = [p.strip(" <>") for p in header.split(",") if "mailto:" not in p]
            return to, https[0]
    pytest.fail("ana.lopez@example.org got no message in the outbox")


def test_one_click_url_from_a_real_send_unsubscribes(
    cli: Any, workspace: Path, monkeypatch: pytest.MonkeyPatch, keys: Any
) -> None:
    email, url = _unsubscribe_url_from_outbox(cli, workspace)
    path = urlsplit(url).path  # the configured public base points elsewhere; keep the path
    assert path.startswith("/u/")
    setup_env(workspace, monkeypatch, keys[1])
    with running(create_app(Workspace(workspace))) as base:
        # What a mailbox provider does (RFC 8058): POST the fixed body, no cookies, no page.
        r = httpx.post(
            base + path,
            content=b"List-Unsubscribe=One-Click",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert r.status_code == 200
        again = httpx.post(
            base + path,
            content=b"List-Unsubscribe=One-Click",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert again.status_code == 200
        for bad in (
            path[:-1],
            path[:-3] + ("A" if path[-3] != "A" else "B") + path[-2:],
            path + "x",
            path.replace(".", ""),
        ):
            assert httpx.post(base + bad, content=b"List-Unsubscribe=One-Click").status_code == 404
    rows = [
        r
        for r in csv.DictReader(
            (workspace / "subscribers" / "suppressions.csv").open(encoding="utf-8")
        )
        if r["email"].lower() == email
    ]
    assert [(r["reason"], r["source"]) for r in rows] == [("unsubscribed", "one-click")]
    # The next send (next month's issue) leaves the address out.
    (workspace / "issues" / "2019-10.yaml").write_bytes(
        (workspace / "issues" / "2019-09.yaml").read_bytes()
    )
    result = cli(
        "send",
        "issues/2019-10.yaml",
        "--list",
        "sample",
        "--backend",
        "outbox",
        "--yes",
        env=TEST_ENV,
    )
    assert result.code == 0, result.err
    sent_to = {
        p.name.split("-", 1)[1].removesuffix(".eml")
        for p in (workspace / "outbox" / "2019-10").rglob("*.eml")
    }
    assert sent_to and email not in sent_to
    assert "ben.carter@example.com" in sent_to


def test_get_shows_a_page_and_never_unsubscribes(base_url: str, workspace: Path) -> None:
    before = (workspace / "subscribers" / "suppressions.csv").read_bytes()
    url = f"{base_url}/u/{token('ana.lopez@example.org')}"
    es = httpx.get(url, headers={"Accept-Language": "es-CR,es;q=0.9,en;q=0.8"})
    assert es.status_code == 200
    assert '<html lang="es">' in es.text and "Darme de baja" in es.text
    assert 'method="post"' in es.text and "ana.lopez@example.org" in es.text
    assert es.headers["cache-control"] == "no-store"
    assert es.headers["referrer-policy"] == "no-referrer"
    en = httpx.get(url + "?lang=en", headers={"Accept-Language": "es"})
    assert '<html lang="en">' in en.text and ">Unsubscribe</button>" in en.text
    fallback = httpx.get(url + "?lang=xx", headers={"Accept-Language": "de, fr;q=0.5"})
    assert '<html lang="en">' in fallback.text  # the configured language
    assert httpx.head(url).status_code == 200
    assert (workspace / "subscribers" / "suppressions.csv").read_bytes() == before
    # The form's POST: confirmation in the chosen language, with a way back.
    done = httpx.post(url, data={"List-Unsubscribe": "One-Click", "lang": "es"})
    assert done.status_code == 200
    assert "Se ha dado de baja" in done.text and "https://www.example.org/" in done.text
    assert suppressions(workspace)["ana.lopez@example.org"] == ("unsubscribed", "one-click")


def test_altered_tokens_get_the_same_404(base_url: str, workspace: Path) -> None:
    before = (workspace / "subscribers" / "suppressions.csv").read_bytes()
    good = token("ana.lopez@example.org")
    body, mac = good.split(".")
    forged_known = make_token("ana.lopez@example.org", "sample", [b"another-key-0123456789abcd"])
    forged_unknown = make_token("nobody@example.org", "sample", [b"another-key-0123456789abcd"])
    bad_tokens = [
        good[:-1],
        good[:20],
        body,
        f"{body}.{mac[:-2]}AA",
        f"{mac}.{body}",
        "x" * 2000,
        forged_known,
        forged_unknown,
        "%00",
        f"{body}..{mac}",
    ]
    pages = set()
    for bad in bad_tokens:
        for method in ("GET", "POST"):
            r = httpx.request(
                method,
                f"{base_url}/u/{bad}",
                content=b"List-Unsubscribe=One-Click" if method == "POST" else None,
            )
            assert r.status_code == 404, (bad, method)
            pages.add(r.text)
    assert len(pages) == 1  # nothing tells a known address from an unknown one
    assert (workspace / "subscribers" / "suppressions.csv").read_bytes() == before


def test_hostile_text_renders_as_text(
    workspace: Path, monkeypatch: pytest.MonkeyPatch, keys: Any
) -> None:
    config = workspace / "newsletter.toml"
    text = config.read_text(encoding="utf-8").replace(
        'name = "Mesoamerica & Caribbean Regional Office"',
        'name = "<script>alert(1)</script>{{ 7*7 }}{% raw %}"',
        1,
    )
    config.write_text(text, encoding="utf-8")
    setup_env(workspace, monkeypatch, keys[1])
    hostile = '"<img src=x onerror=alert(2)>{{7*7}}"@example.org'
    with running(create_app(Workspace(workspace))) as base:
        url = f"{base}/u/{token(hostile, 'list<b>')}"
        pages = [
            httpx.get(url),
            httpx.post(url, data={"lang": "<es>"}),
            httpx.get(f"{base}/u/forged.token"),
        ]
    for page in pages:
        assert page.status_code in (200, 404)
        assert "<script>" not in page.text and "<img" not in page.text
        assert "49" not in page.text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;{{ 7*7 }}{% raw %}" in page.text
    assert "&lt;img src=x onerror=alert(2)&gt;{{7*7}}" in pages[0].text


def test_archive_and_health(base_url: str, workspace: Path) -> None:
    assert httpx.get(f"{base_url}/healthz").json() == {"status": "ok", "webhook_key": True}
    assert httpx.get(f"{base_url}/archive/").status_code == 404  # not built yet
    site = workspace / "archive-site"
    (site / "2019-09").mkdir(parents=True)
    (site / "index.html").write_text("<h1>All issues</h1>", encoding="utf-8")
    (site / "2019-09" / "index.html").write_text("<h1>September</h1>", encoding="utf-8")
    assert "All issues" in httpx.get(f"{base_url}/archive/").text
    assert "September" in httpx.get(f"{base_url}/archive/2019-09/").text
    assert httpx.get(f"{base_url}/archive/..%2Fnewsletter.toml").status_code == 404
    assert httpx.get(f"{base_url}/archive/missing.html").status_code == 404
