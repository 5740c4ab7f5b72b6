"""A loopback stand-in for SendGrid's suppression endpoints, for what Prism cannot do.

Prism answers every page with the spec's two-item example, so it cannot show that
we page with limit/offset, filter with start_time, or survive 429s and 5xx.  This
stub serves real lists, honours limit/offset/start_time like SendGrid, records
every request, and plays scripted failures first.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Scripted:
    status: int
    body: bytes = b'{"errors":[{"message":"scripted failure"}]}'
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Stub:
    lists: dict[str, list[Any]] = field(default_factory=dict)  # path -> entries
    failures: dict[str, list[Scripted]] = field(default_factory=dict)  # path -> played first
    requests: list[tuple[str, dict[str, str], dict[str, str]]] = field(default_factory=list)
    url: str = ""

    def calls(self, path: str) -> list[dict[str, str]]:
        return [q for p, q, _ in self.requests if p == path]


def _handler(stub: Stub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
            pass

        def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            parts = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            stub.requests.append((parts.path, query, dict(self.headers.items())))
            if not self.headers.get("Authorization", "").startswith("Bearer "):
                self._send(401, b'{"errors":[{"message":"authorization required"}]}')
                return
            scripted = stub.failures.get(parts.path)
            if scripted:
                step = scripted.pop(0)
                self._send(step.status, step.body, step.headers)
                return
            if parts.path not in stub.lists:
                self._send(404, b'{"errors":[{"message":"not found"}]}')
                return
            entries = stub.lists[parts.path]
            if "start_time" in query:
                since = int(query["start_time"])
                entries = [
                    e
                    for e in entries
                    if not isinstance(e, dict) or int(e.get("created", 0)) >= since
                ]
            if "limit" in query:
                offset, limit = int(query.get("offset", 0)), int(query["limit"])
                if not 1 <= limit <= 500:
                    self._send(400, b'{"errors":[{"message":"limit must be 1..500"}]}')
                    return
                entries = entries[offset : offset + limit]
            self._send(200, json.dumps(entries).encode())

    return Handler


@contextmanager
def stub_sendgrid(stub: Stub) -> Iterator[Stub]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(stub))
    stub.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield stub
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
