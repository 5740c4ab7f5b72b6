"""A small SendGrid stand-in on 127.0.0.1 that records every request and misbehaves on cue.

Prism checks payloads against SendGrid's spec but cannot do what matters for
resilience: 429 with rate-limit headers, 503, hanging past the client's
timeout, dropping the connection.  This stub does, one scripted action per
``POST /v3/mail/send`` in order (then 202 for the rest), and keeps what it
received so tests assert on it: every address exactly once, nobody suppressed.

In a test::

    with StubSendGrid() as stub:
        stub.script(rate_limited(0.2), status(500), hang(accepted=False), ok())
        ... send to stub.url ...
        assert sorted(stub.emails()) == sorted(expected)

``go_down()`` stops listening, so connections are refused (nothing reaches the
stub), and ``come_back()`` listens again on the same port.

To act at an exact point of a send (the kill matrix, tests/killmatrix.py):
``wait_for_sends(n)`` returns once the n-th mail send was received,
``wait_for_answers(n)`` once the n-th was answered, and ``on_answer(n, record)``,
if set, is called in the serving thread right after the n-th answer was written.
A request cut short by a client that died while sending it is not received (SendGrid
would not accept half a request); ``truncated`` counts them.

As a separate process (the benchmark)::

    python tests/stub_sendgrid.py --port 0      # prints the port; GET /_stats -> counts
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Action:
    kind: str  # ok | status | hang | close
    status: int = 202
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    seconds: float | None = None  # hang: how long (None: until release())
    accepted: bool = True  # does this request count as delivered?
    reset_in: float | None = None  # X-RateLimit-Reset = the answer's time + this


def ok() -> Action:
    return Action("ok")


def status(code: int, body: bytes | None = None, headers: dict[str, str] | None = None) -> Action:
    default = json.dumps({"errors": [{"message": f"stub error {code}", "field": None}]}).encode()
    return Action(
        "status",
        status=code,
        body=default if body is None else body,
        headers=headers or {},
        accepted=False,
    )


def rate_limited(
    reset_in: float = 0.2, *, retry_after: float | None = None, from_answer: bool = False
) -> Action:
    """429 with SendGrid's headers; X-RateLimit-Reset is a unix time: ``reset_in`` from now,
    or (``from_answer``) from when the 429 is answered, so a scripted late request still
    makes the client wait the full ``reset_in``."""
    headers = {"X-RateLimit-Limit": "600", "X-RateLimit-Remaining": "0"}
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    elif not from_answer:
        headers["X-RateLimit-Reset"] = f"{time.time() + reset_in:.3f}"
    return Action(
        "status",
        status=429,
        headers=headers,
        body=b'{"errors":[{"field":null,"message":"too many requests"}]}',
        accepted=False,
        reset_in=reset_in if from_answer and retry_after is None else None,
    )


def hang(seconds: float | None = None, *, accepted: bool = False) -> Action:
    """Read the request, then answer nothing for ``seconds`` (or until release())."""
    return Action("hang", seconds=seconds, accepted=accepted)


def close(*, accepted: bool = False) -> Action:
    """Read the request, then drop the connection without an answer."""
    return Action("close", accepted=accepted)


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that died before reading its answer (the kill matrix kills them on
        purpose) is no error of the stub's: no traceback for that."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: Any  # parsed JSON, or None
    raw: bytes
    action: str
    status: int | None
    accepted: bool
    at: float


class StubSendGrid:
    """The server; thread-safe; ``record_bodies=False`` keeps only counts (benchmark)."""

    def __init__(self, port: int = 0, *, record_bodies: bool = True) -> None:
        self.record_bodies = record_bodies
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._script: list[Action] = []
        self._release = threading.Event()
        self.requests: list[Recorded] = []
        self.stats = {"requests": 0, "sends": 0, "personalizations": 0, "bytes": 0}
        self.answers = 0  # mail sends answered (a dropped connection is no answer)
        self.truncated = 0  # requests cut short by the client (not received, not recorded)
        self.on_answer: Callable[[int, Recorded], None] | None = None
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                if self.path == "/_stats":
                    with stub._lock:
                        data = json.dumps(stub.stats).encode()
                    self._answer(200, data, {"Content-Type": "application/json"})
                else:
                    self._answer(404, b"{}", {})

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                if len(raw) < length:  # the client died while sending: nothing arrived
                    with stub._lock:
                        stub.truncated += 1
                    self.close_connection = True
                    return
                stub._handle(self, raw)

            def _answer(self, code: int, body: bytes, headers: dict[str, str]) -> None:
                self.send_response(code)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(body)
                self.close_connection = True

        self._handler = Handler
        self._server = self._listen(port)
        self._thread: threading.Thread | None = None
        self.refused_windows = 0  # how many times go_down() was called

    def _listen(self, port: int) -> ThreadingHTTPServer:
        server = _Server(("127.0.0.1", port), self._handler)
        server.daemon_threads = True
        return server

    # -- control ----------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> StubSendGrid:
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._release.set()
        if self._thread is not None:
            self._server.shutdown()
        self._server.server_close()

    def go_down(self) -> None:
        """Stop listening: from now on connections are refused (no request is received)."""
        self._server.shutdown()
        self._server.server_close()
        self._thread = None
        self.refused_windows += 1

    def come_back(self) -> None:
        """Listen again on the same port (a no-op if already listening)."""
        if self._thread is None:
            self._server = self._listen(self.port)
            self.start()

    def __enter__(self) -> StubSendGrid:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def script(self, *actions: Action) -> None:
        """Queue actions for the next mail sends, in order; afterwards every send gets 202."""
        with self._lock:
            self._script.extend(actions)

    def release(self) -> None:
        """Let hung requests finish (their answers go to whoever is still listening)."""
        self._release.set()

    def wait_for_sends(self, n: int, timeout: float = 30.0) -> bool:
        """Block until ``n`` mail sends have been received (answered or not)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self.stats["sends"] < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def wait_for_answers(self, n: int, timeout: float = 30.0) -> bool:
        """Block until ``n`` mail sends have been answered (the answer written)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self.answers < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def _answered(self, n: int, record: Recorded) -> None:
        with self._cond:
            self.answers += 1
            self._cond.notify_all()
        hook = self.on_answer
        if hook is not None:
            hook(n, record)

    # -- what was received ------------------------------------------------------------------

    def sends(self, *, accepted_only: bool = True) -> list[Recorded]:
        with self._lock:
            return [
                r
                for r in self.requests
                if r.path == "/v3/mail/send" and (r.accepted or not accepted_only)
            ]

    def emails(self, *, accepted_only: bool = True) -> list[str]:
        """Every recipient address in the mail sends received (by default: accepted ones)."""
        out: list[str] = []
        for r in self.sends(accepted_only=accepted_only):
            for p in r.body["personalizations"]:
                out.extend(t["email"] for t in p["to"])
        return out

    def iter_personalizations(self) -> Iterator[dict[str, Any]]:
        for r in self.sends():
            yield from r.body["personalizations"]

    # -- serving ----------------------------------------------------------------------------

    def _handle(self, handler: Any, raw: bytes) -> None:
        path = handler.path
        body = None
        if self.record_bodies:
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = None
        number = 0  # which mail send this is, 1-based (0: another endpoint)
        with self._cond:
            self.stats["requests"] += 1
            self.stats["bytes"] += len(raw)
            action = Action("ok")
            if path == "/v3/mail/send":
                self.stats["sends"] += 1
                number = self.stats["sends"]
                if isinstance(body, dict):
                    self.stats["personalizations"] += len(body.get("personalizations", []))
                elif not self.record_bodies:  # counting only: no need to parse 1 MB of JSON
                    self.stats["personalizations"] += raw.count(b'"to":')
                if self._script:
                    action = self._script.pop(0)
            record = Recorded(
                method=handler.command,
                path=path,
                headers={k: v for k, v in handler.headers.items()},
                body=body if self.record_bodies else None,
                raw=raw if self.record_bodies else b"",
                action=action.kind,
                status=action.status if action.kind in ("ok", "status") else None,
                accepted=action.accepted,
                at=time.time(),
            )
            if self.record_bodies:
                self.requests.append(record)
            self._cond.notify_all()
        if action.kind == "hang":
            self._release.wait(action.seconds)
            with contextlib.suppress(OSError):
                handler._answer(202, b"", {"X-Message-Id": uuid.uuid4().hex})
            if number:
                self._answered(number, record)
            return
        if action.kind == "close":
            handler.close_connection = True
            with contextlib.suppress(OSError):
                handler.connection.shutdown(2)
            return
        if action.kind == "status":
            headers = {"Content-Type": "application/json", **action.headers}
            if action.reset_in is not None:
                headers["X-RateLimit-Reset"] = f"{time.time() + action.reset_in:.3f}"
            handler._answer(action.status, action.body, headers)
            if number:
                self._answered(number, record)
            return
        if path == "/v3/mail/batch":
            handler._answer(
                201,
                json.dumps({"batch_id": uuid.uuid4().hex}).encode(),
                {"Content-Type": "application/json"},
            )
        elif path == "/v3/user/scheduled_sends":
            handler._answer(201, raw, {"Content-Type": "application/json"})
        elif path == "/v3/mail/send":
            handler._answer(202, b"", {"X-Message-Id": uuid.uuid4().hex})
            self._answered(number, record)
        else:
            handler._answer(404, b'{"errors":[{"message":"not found"}]}', {})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--record", action="store_true", help="keep request bodies")
    args = parser.parse_args(argv)
    stub = StubSendGrid(args.port, record_bodies=args.record)
    print(stub.port, flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        stub._server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
