"""`newsletter serve` under hostile clients, started as a user starts it.

Slow, stalling and vanishing clients are raw sockets on 127.0.0.1, so that each
byte goes when the test says.  Deadlines are set short in the workspace's
newsletter.toml (`[server] request_timeout`) to keep the tests quick.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import pytest

from conftest import TEST_ENV, run_cli
from test_server import SECRET, Served, keypair, serve_cli, suppressions, token

DEADLINE = 1.5  # server.request_timeout in these tests, seconds


def configure(workspace: Path, **server: object) -> None:
    """Add settings to [server], the last table of the sample newsletter.toml."""
    path = workspace / "newsletter.toml"
    text = path.read_text(encoding="utf-8")
    tables = [line for line in text.splitlines() if line.startswith("[")]
    assert tables[-1] == "[server]"
    for key in server:  # a key given twice would be a TOML error: replace the file's own
        text = re.sub(rf"(?m)^{key} = .*\n", "", text)
    path.write_text(text + "".join(f"{k} = {v}\n" for k, v in server.items()), encoding="utf-8")


@contextmanager
def hostile_server(workspace: Path, **server: object) -> Iterator[Served]:
    configure(workspace, **{"request_timeout": DEADLINE, **server})
    _, public_key = keypair()  # the webhook reads bodies only when it can verify them
    with serve_cli(workspace, {"SENDGRID_WEBHOOK_PUBLIC_KEY": public_key}) as served:
        yield served


def stalled_post(port: int, path: str, declared: int, sent: int) -> socket.socket:
    """A POST that declares ``declared`` bytes, sends ``sent`` of them, and then nothing."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {declared}\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n\r\n".encode()
    )
    s.sendall(b"x" * sent)
    return s


def read_all(s: socket.socket, timeout: float) -> bytes:
    """Everything the server sends until it closes the connection (or ``timeout``)."""
    s.settimeout(timeout)
    data = b""
    try:
        while chunk := s.recv(65536):
            data += chunk
    except TimeoutError:
        return data + b"<still open>"
    return data


# --- 1. a body has a deadline -----------------------------------------------------------------


def test_a_stalled_body_gets_408_its_connection_closed(workspace: Path) -> None:
    with hostile_server(workspace) as served:
        started = time.monotonic()
        webhook = stalled_post(served.port, "/webhooks/sendgrid", 100_000, 5_000)
        page = stalled_post(served.port, f"/u/{token('ana.lopez@example.org')}", 900, 10)
        answers = [read_all(webhook, 10), read_all(page, 10)]
        elapsed = time.monotonic() - started
        webhook.close()
        page.close()
        for answer in answers:
            head = answer.split(b"\r\n\r\n")[0].lower()
            assert head.startswith(b"http/1.1 408"), answer[:200]
            assert b"connection: close" in head
            assert not answer.endswith(b"<still open>")  # the server hung up
        assert answers[0].endswith(b'{"error":"request body not received in time"}')
        assert DEADLINE - 0.2 < elapsed < DEADLINE + 5
        log = served.log("POST /u/<token>: 408")
        assert (
            "POST /webhooks/sendgrid: 408 body not complete after 1.5 s (5000 bytes received,"
            " Content-Length 100000) from 127.0.0.1; connection closed (server.request_timeout)"
        ) in log
        assert httpx.get(f"{served.base}/healthz").json()["status"] == "ok"
    assert "ana.lopez@example.org" not in suppressions(workspace)


def test_the_deadline_is_for_the_whole_body_not_each_byte(workspace: Path) -> None:
    """A client trickling a byte now and then is cut off too; a slow honest one is not."""
    body = b"List-Unsubscribe=One-Click"
    with hostile_server(workspace) as served:
        url = f"/u/{token('ana.lopez@example.org')}"
        trickle = stalled_post(served.port, url, 10_000, 1)
        started = time.monotonic()
        while time.monotonic() - started < DEADLINE + 3:
            try:
                trickle.sendall(b"x")
            except OSError:  # the server has closed it
                break
            time.sleep(0.2)
        answer = read_all(trickle, 5)
        trickle.close()
        assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
        assert time.monotonic() - started < DEADLINE + 3

        honest = stalled_post(served.port, url, len(body), 0)
        for i in range(0, len(body), 9):  # three pieces over about half the deadline
            honest.sendall(body[i : i + 9])
            time.sleep(DEADLINE / 6)
        answer = read_all(honest, 5)
        honest.close()
        assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    assert suppressions(workspace)["ana.lopez@example.org"][0] == "unsubscribed"


def test_headers_that_never_end_are_cut_off(workspace: Path) -> None:
    """A socket that dribbles header lines must not hold a connection slot for ever."""
    with hostile_server(workspace) as served:
        s = socket.create_connection(("127.0.0.1", served.port), timeout=10)
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        started = time.monotonic()
        closed = False
        while time.monotonic() - started < DEADLINE + 4:
            try:
                s.sendall(b"X-Slow: 1\r\n")
                s.settimeout(0.3)
                if s.recv(1024) == b"":
                    closed = True
                    break
            except TimeoutError:
                continue
            except OSError:
                closed = True
                break
        s.close()
        assert closed, "the server kept a never-ending request open"
        assert time.monotonic() - started < DEADLINE + 3
        log = served.log("no complete request within")
        assert "connection from 127.0.0.1 closed: no complete request within 1.5 s" in log
        # An idle connection that never sends anything is closed the same way, silently.
        idle = socket.create_connection(("127.0.0.1", served.port), timeout=10)
        assert read_all(idle, DEADLINE + 4) == b""
        idle.close()
        assert served.log().count("no complete request") == 1


# --- 2. a cap on connections --------------------------------------------------------------------


def test_connections_over_the_cap_get_503_and_the_cap_frees_up(workspace: Path) -> None:
    with hostile_server(workspace, max_connections=3, request_timeout=20) as served:
        with ExitStack() as stack:
            for _ in range(2):
                stack.callback(stalled_post(served.port, "/webhooks/sendgrid", 1000, 10).close)
            time.sleep(0.5)
            assert httpx.get(f"{served.base}/healthz").status_code == 200  # 2 + this one = 3
            stack.callback(stalled_post(served.port, "/webhooks/sendgrid", 1000, 10).close)
            deadline = time.monotonic() + 10
            while (r := httpx.get(f"{served.base}/healthz")).status_code != 503:
                assert time.monotonic() < deadline, "a 4th connection was served"
                time.sleep(0.1)
            assert r.headers["connection"] == "close"
        deadline = time.monotonic() + 10
        while httpx.get(f"{served.base}/healthz").status_code != 200:
            assert time.monotonic() < deadline, "the cap did not free up"
            time.sleep(0.1)
        log = served.log("503 to a new request")
        assert (
            "WARNING uvicorn: 503 to a new request: 3 connections are open already"
            " (server.max_connections in newsletter.toml)"
        ) in log


def test_the_new_settings_are_checked(workspace: Path) -> None:
    configure(workspace, request_timeout=0)
    result = run_cli("serve", "--port", "0", cwd=workspace, env=TEST_ENV, timeout=60)
    assert result.code == 2
    assert "setting `server.request_timeout`: Input should be greater than 0" in result.err
    assert "Traceback" not in result.err


# --- 3. a client that vanishes, and the names in the log --------------------------------------


def test_a_client_that_hangs_up_mid_body_is_one_log_line(workspace: Path) -> None:
    with hostile_server(workspace) as served:
        stalled_post(served.port, "/webhooks/sendgrid", 100_000, 5_000).close()
        secret = token("ana.lopez@example.org")
        stalled_post(served.port, f"/u/{secret}", 900, 10).close()
        served.log("POST /u/<token>: the client closed")
        assert httpx.get(f"{served.base}/healthz").json()["status"] == "ok"
    log = served.stop()
    assert (
        "INFO newsletter.server: POST /webhooks/sendgrid: the client closed the connection"
        " after 5000 bytes, before its request was complete\n"
    ) in log
    assert "Traceback" not in log and "ClientDisconnect" not in log
    assert log.count("/webhooks/sendgrid") == 1 and log.count("/u/<token>") == 1
    assert secret not in log


def test_ordinary_server_lines_are_not_tagged_as_errors(workspace: Path) -> None:
    with serve_cli(workspace) as served:
        served.log("Application startup complete")
    text = served.stop()
    assert "INFO uvicorn: Started server process" in text
    assert "INFO uvicorn: Finished server process" in text
    assert "uvicorn.error" not in text


# --- 4. a keyed tag for addresses in the log ---------------------------------------------------


def test_the_address_in_the_log_is_a_keyed_tag(workspace: Path) -> None:
    email = "ana.lopez@example.org"
    with serve_cli(workspace) as served:
        url = f"{served.base}/u/{token(email)}"
        for _ in range(2):  # the same tag on every line about her
            r = httpx.post(url, content=b"List-Unsubscribe=One-Click")
            assert r.status_code == 200
        log = served.log("(already suppressed)")
    tags = [
        line.split("unsubscribe: ")[1].split(" ")[0]
        for line in log.splitlines()
        if "unsubscribe: <" in line
    ]
    assert len(tags) == 2 and tags[0] == tags[1]
    tag = tags[0]
    assert len(tag) == 12 and tag.startswith("<") and tag.endswith(">")
    assert email not in log and "ana.lopez" not in log
    # Whoever holds the log and the list cannot compute it: it is not a plain hash...
    for form in (email, email.upper(), f" {email} "):
        assert hashlib.sha256(form.encode()).hexdigest()[:10] not in tag
    # ... but support, with the server's secret, can (any spelling of the address).
    env = {"NEWSLETTER_SECRET": SECRET}
    shown = _logmask(["Ana.Lopez@EXAMPLE.org", "ben.carter@example.com"], env)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.splitlines()[0] == f"{tag} Ana.Lopez@EXAMPLE.org"
    assert not shown.stdout.splitlines()[1].startswith(tag)
    other = _logmask([email], {"NEWSLETTER_SECRET": "another-secret-0123456789abcdef"})
    assert other.returncode == 0 and not other.stdout.startswith(tag)
    missing = _logmask([email], {})
    assert missing.returncode == 2 and "NEWSLETTER_SECRET is not set" in missing.stderr
    assert "Traceback" not in missing.stderr


def _logmask(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("SENDGRID_", "NEWSLETTER_"))}
    return subprocess.run(
        [sys.executable, "-m", "newsletter.logmask", *args],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


# --- 5. the Host header never reaches a redirect ---------------------------------------------


def raw_get(port: int, path: str, host: str) -> tuple[int, str | None]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        reply = read_all(s, 10)
    head = reply.split(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")
    status = int(head[0].split(" ")[1])
    location = next(
        (h.split(":", 1)[1].strip() for h in head if h.lower().startswith("location:")), None
    )
    return status, location


def _archive(workspace: Path) -> None:
    site = workspace / "archive-site" / "2019-09"
    site.mkdir(parents=True)
    (site / "index.html").write_text("<h1>September</h1>", encoding="utf-8")
    (site.parent / "index.html").write_text("<h1>All issues</h1>", encoding="utf-8")


@pytest.mark.parametrize(
    ("public_url", "prefix"),
    [("https://news.example.org/", ""), ("https://example.org/newsletter/", "/newsletter")],
)
def test_a_forged_host_never_reaches_a_redirect(
    workspace: Path, public_url: str, prefix: str
) -> None:
    _archive(workspace)
    config = workspace / "newsletter.toml"
    text = config.read_text(encoding="utf-8")
    config.write_text(
        text.replace(
            'unsubscribe_url = "https://news.example.org/"', f'unsubscribe_url = "{public_url}"'
        ),
        encoding="utf-8",
    )
    with serve_cli(workspace) as served:
        expected = {
            "/archive": "/archive/",
            "/healthz/": "/healthz",
            "/archive/2019-09": "/archive/2019-09/",
            "/archive/2019-09?x=1": "/archive/2019-09/?x=1",
        }
        for host in ("evil.example", "evil.example:443", "evil.example/x", "127.0.0.1"):
            for path, target in expected.items():
                status, location = raw_get(served.port, path, host)
                assert (status, location) == (307, prefix + target), (host, path)
        for path in ("//evil.example", "//evil.example/", "/archive//evil.example"):
            status, location = raw_get(served.port, path, "evil.example")
            assert location is None or (location.startswith("/") and "//" not in location)
        # A browser following the redirect on 127.0.0.1 gets the page (default prefix).
        if not prefix:
            page = httpx.get(f"{served.base}/archive/2019-09", follow_redirects=True)
            assert "September" in page.text and page.url.host == "127.0.0.1"
