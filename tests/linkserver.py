"""A small web server on 127.0.0.1 that answers the way real sites do, for `check --links`.

Each path is a behaviour: ``/ok`` 200, ``/moved`` 301 to /ok, ``/found`` 302 to /ok,
``/missing`` 404, ``/gone`` 410, ``/broken`` 500, ``/forbidden`` 403, ``/slow`` answers
after ``slow_seconds``, ``/nohead`` refuses HEAD (405) but answers GET, ``/loop-a`` and
``/loop-b`` redirect to each other, ``/chain/N`` redirects N more times, ``/wide.png``
and ``/narrow.png`` are pictures (1200 and 300 px wide), ``/heavy.jpg`` a picture over
1 MB, ``/page.jpg`` an HTML page named like a picture, ``/delay/...`` answers 200 after
``delay_seconds`` (the benchmark), ``/files/...`` serves files from ``files`` (a
published archive), ``/to-http`` redirects to ``downgrade_to``.  ``start(tls=...)`` answers
https with a certificate made by :func:`self_signed`.  Every request is recorded (method, path, User-Agent), and the
most requests in flight at once is kept.
"""

from __future__ import annotations

import datetime as dt
import io
import ipaddress
import ssl
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from PIL import Image


def picture(width: int, height: int, fmt: str = "PNG", noise: bool = False) -> bytes:
    import os

    if noise:
        im = Image.frombytes("RGB", (width, height), os.urandom(width * height * 3))
    else:
        im = Image.new("RGB", (width, height), (30, 90, 160))
    buf = io.BytesIO()
    im.save(buf, fmt, **({"quality": 100} if fmt == "JPEG" else {}))
    return buf.getvalue()


@dataclass
class Recorded:
    method: str
    path: str
    user_agent: str
    port: int


class _Quiet(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client that hangs up early (a timeout, a picture read in part) is normal


@dataclass
class LinkServer:
    slow_seconds: float = 3.0
    delay_seconds: float = 0.0
    files: Path | None = None
    requests: list[Recorded] = field(default_factory=list)
    in_flight: int = 0
    most_in_flight: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _servers: list[_Quiet] = field(default_factory=list)
    ports: list[int] = field(default_factory=list)
    tls: bool = False
    downgrade_to: str = ""  # where /to-http redirects (an http:// address)

    def start(self, sites: int = 1, tls: ssl.SSLContext | None = None) -> LinkServer:
        """Listen on `sites` ports of 127.0.0.1 (each a different site for the per-site limit);
        with `tls`, answer https (see :func:`self_signed`)."""
        for _ in range(sites):
            server = _Quiet(("127.0.0.1", 0), self._handler())
            if tls is not None:
                server.socket = tls.wrap_socket(server.socket, server_side=True)
                self.tls = True
            self._servers.append(server)
            self.ports.append(server.server_address[1])
            threading.Thread(target=server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()

    def url(self, path: str, site: int = 0) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self.ports[site]}{path}"

    def paths(self, method: str | None = None, site: int | None = None) -> list[str]:
        return [
            r.path
            for r in self.requests
            if (method is None or r.method == method)
            and (site is None or r.port == self.ports[site])
        ]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        owner = self
        wide, narrow = picture(1200, 400), picture(300, 200)
        heavy = picture(900, 600, "PNG", noise=True)
        assert len(heavy) > 1_000_000

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_HEAD(self) -> None:
                self._answer("HEAD")

            def do_GET(self) -> None:
                self._answer("GET")

            def _send(self, status: int, body: bytes = b"", **headers: str) -> None:
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k.replace("_", "-"), v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _answer(self, method: str) -> None:
                with owner._lock:
                    owner.requests.append(
                        Recorded(
                            method,
                            self.path,
                            self.headers.get("User-Agent", ""),
                            int(self.connection.getsockname()[1]),
                        )
                    )
                    owner.in_flight += 1
                    owner.most_in_flight = max(owner.most_in_flight, owner.in_flight)
                try:
                    self._route(method)
                finally:
                    with owner._lock:
                        owner.in_flight -= 1

            def _route(self, method: str) -> None:
                p = self.path
                html = {"Content_Type": "text/html; charset=utf-8"}
                if p.startswith("/delay/"):
                    time.sleep(owner.delay_seconds)
                    return self._send(200, b"<p>ok</p>", **html)
                if p == "/ok" or p.startswith("/ok?"):
                    return self._send(200, b"<p>ok</p>", **html)
                if p == "/moved":
                    return self._send(301, Location="/ok")
                if p == "/to-http":
                    return self._send(302, Location=owner.downgrade_to)
                if p == "/found":
                    return self._send(302, Location="/ok")
                if p == "/missing":
                    return self._send(404, b"not found", **html)
                if p == "/gone":
                    return self._send(410, b"gone", **html)
                if p == "/broken":
                    return self._send(500, b"oops", **html)
                if p == "/forbidden":
                    return self._send(403, b"no robots", **html)
                if p == "/slow":
                    time.sleep(owner.slow_seconds)
                    return self._send(200, b"late", **html)
                if p == "/nohead":
                    if method == "HEAD":
                        return self._send(405, Allow="GET")
                    return self._send(200, b"<p>ok</p>", **html)
                if p == "/loop-a":
                    return self._send(302, Location="/loop-b")
                if p == "/loop-b":
                    return self._send(302, Location="/loop-a")
                if p.startswith("/chain/"):
                    n = int(p.rsplit("/", 1)[1])
                    return self._send(302, Location=f"/chain/{n - 1}" if n > 0 else "/ok")
                if p == "/wide.png":
                    return self._send(200, wide, Content_Type="image/png")
                if p == "/narrow.png":
                    return self._send(200, narrow, Content_Type="image/png")
                if p == "/heavy.jpg":
                    return self._send(200, heavy, Content_Type="image/png")
                if p == "/page.jpg":
                    return self._send(200, b"<html><body>a page</body></html>", **html)
                if p.startswith("/files/") and owner.files is not None:
                    target = owner.files / p.removeprefix("/files/")
                    if target.is_file():
                        return self._send(200, target.read_bytes())
                return self._send(404, b"not found", **html)

        return Handler


def self_signed(folder: Path) -> tuple[ssl.SSLContext, Path]:
    """A server context with a certificate for 127.0.0.1 that nobody trusts, and its file
    (SSL_CERT_FILE=<it> makes a client trust it)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    return context, cert_file
