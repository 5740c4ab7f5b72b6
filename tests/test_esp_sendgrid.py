"""The SendGrid backend's transport (httpx) and the helpers it shares with `suppressions
sync`: one reading of a rate limit's wait, one API host resolver.

Transport faults are real sockets on 127.0.0.1 that misbehave at an exact moment:
before the request body has arrived (SendGrid cannot have it: safe to retry), or
after (it may have it: never retried by itself).
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from email.utils import format_datetime
from importlib.metadata import version
from pathlib import Path

import pytest

from newsletter.config import Workspace
from newsletter.errors import ConfigError, ProviderUnavailable
from newsletter.esp.base import DeliveryUnknown
from newsletter.esp.sendgrid import SendGridBackend, SendGridSettings, api_host, encode_payload
from newsletter.esp.sendgrid_sync import api_from_workspace
from newsletter.retry import retry_after
from test_esp_outbox import CONTENT, _batch

# --------------------------------------------------------------------------- retry_after


def test_retry_after_waits_for_the_later_of_the_two_headers() -> None:
    """Retry-After and X-RateLimit-Reset together: the later moment wins, whichever it is
    (the send used to prefer X-RateLimit-Reset and the sync Retry-After)."""
    now = 1000.0
    both = {"Retry-After": "30", "X-RateLimit-Reset": "1005"}
    assert retry_after(both, now) == 30.0
    assert retry_after({"Retry-After": "3", "X-RateLimit-Reset": "1020"}, now) == 20.0
    assert retry_after({"retry-after": "7"}, now) == 7.0  # header names ignore case
    assert retry_after({"x-ratelimit-reset": "1002.5"}, now) == 2.5


def test_retry_after_reads_dates_and_ignores_nonsense() -> None:
    now = datetime(2019, 9, 30, 8, 0, tzinfo=UTC).timestamp()
    later = format_datetime(datetime(2019, 9, 30, 8, 1, 30, tzinfo=UTC), usegmt=True)
    assert retry_after({"Retry-After": later}, now) == 90.0
    assert retry_after({"Retry-After": "soon"}, now) is None
    assert retry_after({"Retry-After": "inf", "X-RateLimit-Reset": "nan"}, now) is None
    assert retry_after({"Retry-After": "-5"}, now) == 0.0
    assert retry_after({}, now) is None and retry_after(None, now) is None


# --------------------------------------------------------------------------- API host


def test_one_host_resolver_for_sending_and_syncing(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SENDGRID_API_KEY", "SG.x")
    config = workspace / "newsletter.toml"
    text = config.read_text("utf-8")
    assert api_host(Workspace(workspace)) == "https://api.sendgrid.com"
    config.write_text(text.replace("[sendgrid]", '[sendgrid]\napi_host = "https://eu.example/"'))
    ws = Workspace(workspace)
    assert api_host(ws) == "https://eu.example"
    monkeypatch.setenv("SENDGRID_API_HOST", "http://127.0.0.1:9/")
    assert api_host(ws) == "http://127.0.0.1:9"
    backend = SendGridBackend.from_workspace(ws)
    api = api_from_workspace(ws)
    assert backend.host == str(api.client.base_url).rstrip("/") == "http://127.0.0.1:9"
    backend.close()
    api.close()
    monkeypatch.setenv("SENDGRID_API_HOST", "127.0.0.1:9")
    for build in (SendGridBackend.from_workspace, api_from_workspace):
        with pytest.raises(ConfigError, match="is not a URL") as err:
            build(ws)
        assert err.value.key == "SENDGRID_API_HOST"


# --------------------------------------------------------------------------- transport


class RawServer:
    """One connection at a time on 127.0.0.1; ``behave(conn, head)`` decides the rest
    after the request headers arrived.  Records what it read."""

    def __init__(self, behave: Callable[[socket.socket, bytes], None]) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.behave = behave
        self.requests: list[tuple[bytes, bytes]] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                head, _, rest = data.partition(b"\r\n\r\n")
                self.requests.append((head, rest))
                with contextlib.suppress(OSError):
                    self.behave(conn, head)

    def read_body(self, conn: socket.socket, head: bytes, already: bytes) -> bytes:
        length = next(
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        body = already
        while len(body) < length:
            chunk = conn.recv(1 << 20)
            if not chunk:
                break
            body += chunk
        return body

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def raw() -> Iterator[Callable[[Callable[[socket.socket, bytes], None]], RawServer]]:
    servers: list[RawServer] = []

    def make(behave: Callable[[socket.socket, bytes], None]) -> RawServer:
        servers.append(RawServer(behave))
        return servers[-1]

    yield make
    for server in servers:
        server.close()


def backend(url: str, workspace: Path, timeout: float = 5.0) -> SendGridBackend:
    settings = Workspace(workspace).config.send.model_copy(update={"timeout": timeout})
    return SendGridBackend("SG.key", settings, host=url)


def test_the_request_is_what_the_official_client_sends(raw: Callable, workspace: Path) -> None:  # type: ignore[type-arg]
    bodies: list[bytes] = []

    def answer(conn: socket.socket, head: bytes) -> None:
        bodies.append(server.read_body(conn, head, server.requests[-1][1]))
        conn.sendall(
            b"HTTP/1.1 202 Accepted\r\nX-Message-Id: m-1\r\nContent-Length: 0\r\n"
            b"Connection: close\r\n\r\n"
        )

    server = raw(answer)
    be = backend(server.url, workspace, timeout=7.5)
    outcome = be.send_batch(CONTENT, _batch())
    be.close()
    assert (outcome.status, outcome.provider_id) == (202, "m-1")
    [(head, _)] = server.requests
    lines = head.decode().split("\r\n")
    assert lines[0] == "POST /v3/mail/send HTTP/1.1"
    headers = dict(line.split(": ", 1) for line in lines[1:])
    assert headers["Authorization"] == "Bearer SG.key"
    assert headers["User-Agent"] == f"sendgrid/{version('sendgrid')};python"
    assert headers["Accept"] == "application/json"
    assert headers["Content-Type"] == "application/json"
    assert headers["Connection"] == "close"
    assert bodies == [encode_payload(CONTENT, _batch(), Workspace(workspace).config.send)]
    assert be.timeout == 7.5


def test_a_connection_cut_before_the_body_arrived_is_safe_to_retry(
    raw: Callable,  # type: ignore[type-arg]
    workspace: Path,
) -> None:
    """The server resets the connection as soon as it has the headers, while a large body is
    still being written: SendGrid cannot have accepted it, so it is a plain "not now"
    (retried), not an unknown batch, even though httpx goes on to read an answer."""

    def reset(conn: socket.socket, head: bytes) -> None:
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    server = raw(reset)
    be = backend(server.url, workspace)
    with pytest.raises(ProviderUnavailable) as err:
        be.post_payload(b'{"x": "' + b"a" * 50_000_000 + b'"}')
    be.close()
    assert not isinstance(err.value, DeliveryUnknown), err.value.message
    assert "cannot connect to SendGrid" in err.value.message


@pytest.mark.parametrize(
    ("after_body", "words"),
    [
        ("close", "broke after the request was sent"),
        ("hang", "did not answer before the timeout"),
    ],
)
def test_no_answer_after_the_body_arrived_is_unknown(
    raw: Callable,  # type: ignore[type-arg]
    workspace: Path,
    after_body: str,
    words: str,
) -> None:
    release = threading.Event()

    def read_then(conn: socket.socket, head: bytes) -> None:
        server.read_body(conn, head, server.requests[-1][1])
        if after_body == "hang":
            release.wait(5)

    server = raw(read_then)
    be = backend(server.url, workspace, timeout=0.5)
    with pytest.raises(DeliveryUnknown) as err:
        be.send_batch(CONTENT, _batch())
    release.set()
    be.close()
    assert words in err.value.message


def test_a_refused_connection_is_safe_to_retry(workspace: Path) -> None:
    free = socket.socket()
    free.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{free.getsockname()[1]}"
    free.close()  # nothing listens there
    be = backend(url, workspace)
    with pytest.raises(ProviderUnavailable) as err:
        be.send_batch(CONTENT, _batch())
    be.close()
    assert not isinstance(err.value, DeliveryUnknown)
    assert "cannot connect to SendGrid" in err.value.message


def test_sandbox_mode_is_said_in_the_plan() -> None:
    from newsletter.config import Send

    settings = Send(unsubscribe_url="https://news.example.org/")  # type: ignore[arg-type]
    be = SendGridBackend("SG.x", settings, sendgrid=SendGridSettings(sandbox_mode=True))
    assert be.describe() == "SendGrid (sandbox mode: nothing is delivered)"
    be.close()


def test_leaving_is_called_once_the_connection_is_open_and_never_for_a_refused_one(
    raw: Callable,  # type: ignore[type-arg]
    workspace: Path,
) -> None:
    """The send marks a batch "may have been received" from the ``leaving`` call on: it
    must come after connecting (a crash while connecting leaves nothing in doubt) and
    before the server can have a byte of the request."""
    seen_by_server_at_leaving: list[int] = []

    def answer(conn: socket.socket, head: bytes) -> None:
        server.read_body(conn, head, server.requests[-1][1])
        conn.sendall(b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")

    server = raw(answer)
    be = backend(server.url, workspace)
    prepared = be.prepare(CONTENT, _batch())
    outcome = be.post(
        prepared, leaving=lambda: seen_by_server_at_leaving.append(len(server.requests))
    )
    be.close()
    assert outcome.status == 202
    assert seen_by_server_at_leaving == [0]  # called once, before the request arrived

    free = socket.socket()
    free.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{free.getsockname()[1]}"
    free.close()
    calls: list[int] = []
    be = backend(url, workspace)
    with pytest.raises(ProviderUnavailable):
        be.post(be.prepare(CONTENT, _batch()), leaving=lambda: calls.append(1))
    be.close()
    assert calls == []  # nothing could leave: the batch stays ready
