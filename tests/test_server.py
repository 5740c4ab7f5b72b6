"""`newsletter serve` over real HTTP: uvicorn on a free 127.0.0.1 port, httpx as the client.

Webhook requests are signed here with a freshly generated ECDSA P-256 key, the way
SendGrid signs them (timestamp + raw body, SHA-256, base64 DER signature).
"""

from __future__ import annotations

import base64
import csv
import fcntl
import json
import logging
import os
import queue
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import types
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
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
from newsletter.esp.registry import WEBHOOKS
from newsletter.esp.sendgrid_events import SIGNATURE_HEADER, TIMESTAMP_HEADER
from newsletter.esp.webhooks import ParsedBatch, WebhookRefused
from newsletter.events import Event
from newsletter.server import TokenMask, create_app
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


class Served:
    """`newsletter serve` started as a user starts it, with its log (stderr) collected."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.port = 0
        self._lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stderr or ():
            self._lines.put(line)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self, wait_for: str | None = None, timeout: float = 20) -> str:
        """Everything logged so far; with ``wait_for``, first wait for a line holding it."""
        deadline = time.monotonic() + timeout
        while True:
            while not self._lines.empty():
                self.seen.append(self._lines.get())
            text = "".join(self.seen)
            if wait_for is None or wait_for in text:
                return text
            left = deadline - time.monotonic()
            if left <= 0:
                pytest.fail(f"the server never logged {wait_for!r}; it logged:\n{text}")
            with suppress(queue.Empty):
                self.seen.append(self._lines.get(timeout=min(left, 0.5)))

    def stop(self) -> str:
        """Ctrl+C, as a user stops it; returns the whole log."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)
        self._reader.join(5)
        return self.log()


@contextmanager
def serve_cli(
    workspace: Path,
    env: dict[str, str] | None = None,
    *args: str,
    secret: bool = True,
) -> Iterator[Served]:
    """Run `python -m newsletter serve --port 0 [ARGS]` in ``workspace``; yield once it
    listens (``secret=False``: without the test NEWSLETTER_SECRET)."""
    full_env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("SENDGRID_", "NEWSLETTER_"))},
        **(TEST_ENV if secret else {}),
        **(env or {}),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "newsletter", "serve", "--port", "0", *args],
        cwd=workspace,
        env=full_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    served = Served(proc)
    try:
        found = re.search(r"on http://127\.0\.0\.1:(\d+)/", served.log("on http://127.0.0.1:"))
        assert found is not None
        served.port = int(found.group(1))
        yield served
    finally:
        served.stop()


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
        "stale": (body, signed_headers(key, body, now - 320)),
        "future": (body, signed_headers(key, body, now + 320)),  # margin: no flake
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
    mixed = json.dumps([42, {"event": "open"}, sg_event("delivered", "ana@example.org", 1)])
    r = httpx.post(
        f"{base_url}/webhooks/sendgrid",
        content=mixed.encode(),
        headers=signed_headers(keys[0], mixed.encode()),
    )
    assert r.status_code == 200
    assert r.json() == {"received": 1, "stored": 1, "suppressed": 0, "skipped": 2}


class FakeWebhook:
    """A second provider, as small as one can be: a shared password and JSON lines."""

    provider = "fake"
    label = "Fake Mail"
    key_env = "FAKE_WEBHOOK_PASSWORD"
    configured = True

    def verify(self, headers: Mapping[str, str], body: bytes) -> None:
        if headers.get("x-fake-password") != "let-me-in":
            raise WebhookRefused("wrong password")

    def parse(self, body: bytes) -> ParsedBatch:
        batch = ParsedBatch()
        for n, line in enumerate(body.decode().splitlines()):
            item = json.loads(line)
            batch.events.append(
                Event(
                    event_id=f"fake-{n}",
                    provider="fake",
                    kind=item["kind"],
                    email=item["email"],
                    at=1568600000 + n,
                    issue_id="2019-09",
                    suppress="bounced" if item["kind"] == "bounced" else None,
                    raw=line,
                )
            )
        return batch


def test_a_provider_added_to_the_registry_gets_its_own_webhook(
    workspace: Path, monkeypatch: pytest.MonkeyPatch, keys: Any
) -> None:
    """The seam: one module and one registry line, no server code, make a new webhook."""
    module = types.ModuleType("fake_esp")
    module.webhook_adapter = lambda ws: FakeWebhook()  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "fake_esp", module)
    monkeypatch.setitem(WEBHOOKS, "fake", "fake_esp:webhook_adapter")
    setup_env(workspace, monkeypatch, keys[1])
    body = b'{"kind": "delivered", "email": "ana.lopez@example.org"}\n'
    body += b'{"kind": "bounced", "email": "gone@example.org"}\n'
    with running(create_app(Workspace(workspace))) as url:
        refused = httpx.post(f"{url}/webhooks/fake", content=body)
        assert refused.status_code == 403
        assert event_rows(workspace) == []
        r = httpx.post(
            f"{url}/webhooks/fake", content=body, headers={"X-Fake-Password": "let-me-in"}
        )
        assert r.status_code == 200, r.text
        assert r.json() == {"received": 2, "stored": 2, "suppressed": 1, "skipped": 0}
        assert httpx.get(f"{url}/webhooks/fake").status_code == 405
        # SendGrid's route is still there, with its own signature check.
        sg = json.dumps([sg_event("delivered", "ben.carter@example.com", 1)]).encode()
        assert httpx.post(f"{url}/webhooks/sendgrid", content=sg).status_code == 403
        ok = httpx.post(f"{url}/webhooks/sendgrid", content=sg, headers=signed_headers(keys[0], sg))
        assert ok.status_code == 200
    rows = {r["event_id"]: r for r in event_rows(workspace)}
    assert {
        k: (r["provider"], r["kind"], r["email"])
        for k, r in rows.items()
        if r["provider"] == "fake"
    } == {
        "fake-0": ("fake", "delivered", "ana.lopez@example.org"),
        "fake-1": ("fake", "bounced", "gone@example.org"),
    }
    assert len(rows) == 3
    assert suppressions(workspace)["gone@example.org"] == ("bounced", "fake-webhook:bounced")


def pending_rows(ws: Path) -> dict[str, tuple[str, str]]:
    """Suppressions waiting in the state database: key -> (reason, source)."""
    db = ws / ".newsletter" / "state.db"
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute("SELECT key, reason, source FROM pending_suppressions").fetchall()
    finally:
        conn.close()
    return {k: (r, s) for k, r, s in rows}


def add_bad_rows(ws: Path) -> bytes:
    """What staff do by hand: a typo'd address and a typo'd reason; returns the new bytes."""
    path = ws / "subscribers" / "suppressions.csv"
    with path.open("a", encoding="utf-8") as f:
        f.write("not-an-address,manual,phone,\nbob@example.org,unsubcribed,phone,\n")
    return path.read_bytes()


def test_bad_rows_in_the_csv_block_neither_one_click_nor_webhook(
    base_url: str, workspace: Path, keys: Any
) -> None:
    csv_path = workspace / "subscribers" / "suppressions.csv"
    before = add_bad_rows(workspace)
    r = httpx.post(
        f"{base_url}/u/{token('ben.carter@example.com')}", content=b"List-Unsubscribe=One-Click"
    )
    assert r.status_code == 200
    body = json.dumps(sample_batch()).encode()
    r = httpx.post(
        f"{base_url}/webhooks/sendgrid", content=body, headers=signed_headers(keys[0], body)
    )
    assert r.status_code == 200, r.text
    assert r.json()["suppressed"] == 5
    assert len(event_rows(workspace)) == len(sample_batch()) + 1  # and the one-click event
    text = csv_path.read_bytes()
    assert text.startswith(before)  # the hand-written rows are kept as they were
    with csv_path.open(newline="", encoding="utf-8") as f:
        emails = [row["email"] for row in csv.DictReader(f)]
    assert emails[-6:] == [
        "ben.carter@example.com",
        "gone@example.org",
        "old-bounce@example.org",
        "angry@example.org",
        "leaver@example.org",
        "group-leaver@example.org",
    ]
    assert "bob@example.org" in emails  # still there, still to be fixed by hand
    assert httpx.get(f"{base_url}/healthz").status_code == 200


def test_an_unwritable_csv_keeps_suppressions_in_sqlite_until_it_can_take_them(
    base_url: str, workspace: Path, keys: Any
) -> None:
    csv_path = workspace / "subscribers" / "suppressions.csv"
    saved = csv_path.read_bytes()
    csv_path.unlink()
    csv_path.mkdir()  # nothing can be appended to it
    body = json.dumps(sample_batch()).encode()
    r = httpx.post(
        f"{base_url}/webhooks/sendgrid", content=body, headers=signed_headers(keys[0], body)
    )
    assert r.status_code == 200, r.text  # SendGrid would otherwise retry, then give up
    assert r.json()["suppressed"] == 5
    url = f"{base_url}/u/{token('Ana.Lopez@example.org')}"
    for _ in range(2):
        r = httpx.post(url, content=b"List-Unsubscribe=One-Click")
        assert r.status_code == 200 and "unsubscribed" in r.text
    assert len(event_rows(workspace)) == len(sample_batch()) + 1
    assert pending_rows(workspace) == {
        "gone@example.org": ("bounced", "sendgrid-webhook:bounced"),
        "old-bounce@example.org": ("bounced", "sendgrid-webhook:dropped"),
        "angry@example.org": ("spam", "sendgrid-webhook:spamreport"),
        "leaver@example.org": ("unsubscribed", "sendgrid-webhook:unsubscribe"),
        "group-leaver@example.org": ("unsubscribed", "sendgrid-webhook:group_unsubscribe"),
        "ana.lopez@example.org": ("unsubscribed", "one-click"),
    }
    health = httpx.get(f"{base_url}/healthz")
    assert health.status_code == 503
    assert health.json()["status"] == "error"
    problem = health.json()["problem"]
    assert problem.startswith("6 suppressions wait in .newsletter/state.db (sends honour them)")
    assert "subscribers/suppressions.csv: Is a directory" in problem
    assert str(workspace) not in health.text

    csv_path.rmdir()  # someone fixes the file; the next request of any kind merges
    csv_path.write_bytes(saved)
    assert httpx.get(f"{base_url}/healthz").json() == {"status": "ok", "webhook_key": True}
    assert pending_rows(workspace) == {}
    after = suppressions(workspace)
    assert after["ana.lopez@example.org"] == ("unsubscribed", "one-click")
    assert after["gone@example.org"] == ("bounced", "sendgrid-webhook:bounced")
    assert len(after) == 7
    assert csv_path.read_bytes().startswith(saved)


def test_a_waiting_suppression_is_honoured_by_a_send_and_merged_at_start(
    cli: Any, workspace: Path, monkeypatch: pytest.MonkeyPatch, keys: Any
) -> None:
    csv_path = workspace / "subscribers" / "suppressions.csv"
    saved = csv_path.read_bytes()
    csv_path.unlink()
    csv_path.mkdir()
    setup_env(workspace, monkeypatch, keys[1])
    with running(create_app(Workspace(workspace))) as base:
        r = httpx.post(
            f"{base}/u/{token('ana.lopez@example.org')}", content=b"List-Unsubscribe=One-Click"
        )
        assert r.status_code == 200
    csv_path.rmdir()
    csv_path.write_bytes(saved)  # fixed while the server is down: nothing merged it yet
    assert b"ana.lopez" not in csv_path.read_bytes()
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
    sent_to = {
        p.name.split("-", 1)[1].removesuffix(".eml")
        for p in (workspace / "outbox" / "2019-09").rglob("*.eml")
    }
    assert "ben.carter@example.com" in sent_to and "ana.lopez@example.org" not in sent_to
    assert pending_rows(workspace) == {"ana.lopez@example.org": ("unsubscribed", "one-click")}
    create_app(Workspace(workspace))  # a server start merges what waits
    assert pending_rows(workspace) == {}
    assert suppressions(workspace)["ana.lopez@example.org"] == ("unsubscribed", "one-click")


def test_a_known_address_is_answered_without_the_files_lock(base_url: str, workspace: Path) -> None:
    """Repeats must not queue on the exclusive lock (and re-read a big file) each time."""
    csv_path = workspace / "subscribers" / "suppressions.csv"
    url = f"{base_url}/u/{token('chloe.martin@example.net')}"  # on file in the sample
    with csv_path.open("rb") as holder:
        fcntl.flock(holder.fileno(), fcntl.LOCK_EX)  # e.g. a writer busy with a huge file
        try:
            for _ in range(3):  # before the fix each of these waited for the lock
                r = httpx.post(url, content=b"List-Unsubscribe=One-Click", timeout=10)
                assert r.status_code == 200 and "c•••@example.net" in r.text
        finally:
            fcntl.flock(holder.fileno(), fcntl.LOCK_UN)
    # The cache follows the file: take chloe out by hand and she is added again.
    csv_path.write_text("email,reason,source,at\n", encoding="utf-8")
    assert httpx.post(url, content=b"List-Unsubscribe=One-Click").status_code == 200
    assert suppressions(workspace) == {"chloe.martin@example.net": ("unsubscribed", "one-click")}


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
            path[:3] + path[4:],  # a character dropped (sends' tokens have no "." now)
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
    assert 'method="post"' in es.text and "a•••@example.org" in es.text
    assert "ana.lopez" not in es.text  # a forwarded email's link does not give the address away
    assert es.headers["cache-control"] == "no-store"
    assert es.headers["referrer-policy"] == "no-referrer"
    en = httpx.get(url + "?lang=en", headers={"Accept-Language": "es"})
    assert '<html lang="en">' in en.text and ">Unsubscribe</button>" in en.text
    fallback = httpx.get(url + "?lang=xx", headers={"Accept-Language": "de, it;q=0.5"})
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
            httpx.post(url, data={"List-Unsubscribe": "One-Click", "lang": "<es>"}),
            httpx.get(f"{base}/u/forged.token"),
        ]
    for page in pages:
        assert page.status_code in (200, 404)
        assert "<script>" not in page.text and "<img" not in page.text
        assert "49" not in page.text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;{{ 7*7 }}{% raw %}" in page.text
    assert "&#34;•••@example.org" in pages[0].text  # the address, masked, its quote escaped


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


def test_odd_timestamps_cost_nothing_but_their_own_time(
    base_url: str, workspace: Path, keys: Any
) -> None:
    """NaN, inf, 10**20 or 5000 digits in one event must not lose the batch (was a 500)."""
    good = sg_event("delivered", "ana@example.org", 1)
    odd = ["NaN", "Infinity", '"inf"', str(10**20), "1" * 5000, "-5", '"1e400"', "1e400"]
    items = [json.dumps(good)] + [
        json.dumps(sg_event("open", f"r{i}@example.org", 10 + i, timestamp=0)).replace(
            '"timestamp": 0', f'"timestamp": {value}'
        )
        for i, value in enumerate(odd)
    ]
    body = ("[" + ",".join(items) + "]").encode()
    r = httpx.post(
        f"{base_url}/webhooks/sendgrid", content=body, headers=signed_headers(keys[0], body)
    )
    assert r.status_code == 200, r.text
    assert r.json() == {"received": 9, "stored": 9, "suppressed": 0, "skipped": 0}
    stored = {row["email"]: row["at"] for row in event_rows(workspace)}
    assert stored["ana@example.org"] == good["timestamp"]
    received = int(time.time())
    for i in range(len(odd)):  # unknown time: the time it arrived
        assert 0 <= received - stored[f"r{i}@example.org"] < 3600


def test_a_unicode_digit_timestamp_is_refused_not_a_crash(base_url: str) -> None:
    port = int(urlsplit(base_url).port or 0)
    for stamp in (b"\xb2", b"\xb2\xb3", "١٢٣".encode()):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(
                b"POST /webhooks/sendgrid HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
                b"X-Twilio-Email-Event-Webhook-Signature: abc\r\n"
                b"X-Twilio-Email-Event-Webhook-Timestamp: " + stamp + b"\r\n"
                b"Connection: close\r\n\r\n[]"
            )
            reply = s.recv(4096)
        assert reply.startswith(b"HTTP/1.1 403"), (stamp, reply[:100])


def test_a_post_must_carry_the_one_click_field(base_url: str, workspace: Path) -> None:
    """RFC 8058: the body List-Unsubscribe=One-Click, urlencoded or multipart."""
    before = (workspace / "subscribers" / "suppressions.csv").read_bytes()
    url = f"{base_url}/u/{token('ana.lopez@example.org')}"
    refused = [
        httpx.post(url),
        httpx.post(url, content=b"lang=es"),
        httpx.post(url, data={"List-Unsubscribe": "Yes"}),
        httpx.post(url, files={"lang": (None, "es")}),
        httpx.post(url, content=b"--x--", headers={"Content-Type": "multipart/form-data"}),
    ]
    for r in refused:
        assert r.status_code == 400
        assert 'id="unsubscribe-form"' in r.text  # a person sees the page with the button
    assert (workspace / "subscribers" / "suppressions.csv").read_bytes() == before
    multipart = httpx.post(url, files={"List-Unsubscribe": (None, "One-Click")})
    assert multipart.status_code == 200 and 'id="done"' in multipart.text
    ben = f"{base_url}/u/{token('ben.carter@example.com')}"
    assert httpx.post(ben, data={"List-Unsubscribe": "One-Click"}).status_code == 200
    assert {"ana.lopez@example.org", "ben.carter@example.com"} <= set(suppressions(workspace))


def test_the_language_in_the_link_survives_the_confirm_form(base_url: str) -> None:
    url = f"{base_url}/u/{token('ana.lopez@example.org')}?lang=es"
    page = httpx.get(url, headers={"Accept-Language": "en"})
    assert '<html lang="es">' in page.text
    form = re.search(r"<form[^>]*>(.*?)</form>", page.text, re.S)
    assert form is not None and "action=" not in form.group(0)  # posts to this very URL
    fields = dict(re.findall(r'name="([^"]+)" value="([^"]*)"', form.group(1)))
    assert fields == {"List-Unsubscribe": "One-Click", "lang": "es"}
    done = httpx.post(url, data=fields, headers={"Accept-Language": "en"})
    assert done.status_code == 200 and '<html lang="es">' in done.text
    # A mail provider's one-click POST has only the URL's ?lang=.
    ben = f"{base_url}/u/{token('ben.carter@example.com')}?lang=es"
    one_click = httpx.post(
        ben, content=b"List-Unsubscribe=One-Click", headers={"Accept-Language": "en"}
    )
    assert '<html lang="es">' in one_click.text and "Se ha dado de baja" in one_click.text


def test_log_lines_never_carry_a_token(base_url: str, caplog: pytest.LogCaptureFixture) -> None:
    secret = token("ana.lopez@example.org")
    with caplog.at_level(logging.INFO, logger="newsletter.server"):
        assert httpx.put(f"{base_url}/u/{secret}").status_code == 405
    assert "/u/<token>: 405" in caplog.text
    assert secret not in caplog.text and secret.split(".")[0] not in caplog.text
    # Any record, traceback included, through the filter `serve` puts on its handler.
    try:
        raise ValueError(f"cannot route /u/{secret}?lang=es")
    except ValueError:
        record = logging.LogRecord(
            "uvicorn.error", logging.ERROR, __file__, 1, "GET %s", (f"/u/{secret}",), sys.exc_info()
        )
    assert TokenMask().filter(record)
    text = logging.Formatter().format(record)
    assert "GET /u/<token>" in text and "cannot route /u/<token>?lang=es" in text
    assert secret not in text


def test_serve_on_port_0_prints_the_port_it_got(workspace: Path) -> None:
    secret = token("ana.lopez@example.org")  # SECRET is TEST_ENV's
    # COLUMNS narrower than the line: it must still come out whole.
    with serve_cli(workspace, {"COLUMNS": "60"}) as served:
        port = served.port
        assert port not in (0, 8000)
        health = httpx.get(f"http://127.0.0.1:{port}/healthz")  # listening before the line
        assert health.json() == {"status": "ok", "webhook_key": False}
        assert httpx.put(f"http://127.0.0.1:{port}/u/{secret}").status_code == 405
    err = served.log()
    assert "PUT /u/<token>: 405" in err and secret not in err
