"""What stalled uploads cost `newsletter serve`: memory before, during and after the deadline.

Starts `python -m newsletter serve` in a subprocess on a free 127.0.0.1 port, in a
throw-away copy of the workspace (with a webhook key, so the webhook reads bodies),
then opens 60 sockets that each declare a 5,000,000-byte body (the default
`server.max_body_bytes`), send 4.9 MB of it and stall.  It samples the server's
resident memory (VmRSS in /proc/<pid>/status) before, while the sockets hang, and
after `server.request_timeout` has passed, checks each socket got 408 (or was
closed), and that /healthz still answers during the attack.  Loopback only; at
most --sockets sockets and about request_timeout + 40 s.

    .venv/bin/python benchmarks/bench_serve_hostile.py [--sockets 60] [--timeout 15]

`--timeout 3600` approximates the behaviour before there was a deadline.
"""

from __future__ import annotations

import argparse
import base64
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

REPO = Path(__file__).resolve().parents[1]
DECLARED = 5_000_000  # the default server.max_body_bytes: accepted by the Content-Length check
SENT = 4_900_000


def rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text(encoding="ascii")
    found = re.search(r"^VmRSS:\s+(\d+) kB", status, re.M)
    return int(found.group(1)) / 1024 if found else float("nan")


def start_server(ws: Path, env: dict[str, str], log: Path) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "newsletter", "serve", "--host", "127.0.0.1", "--port", "0"],
        cwd=ws,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log.open("w"),
        text=True,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = re.search(r"on http://127\.0\.0\.1:(\d+)/", log.read_text(encoding="utf-8"))
        if found:
            return proc, int(found.group(1))
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    proc.kill()
    raise SystemExit(f"server did not start:\n{log.read_text(encoding='utf-8')}")


class Staller(threading.Thread):
    """One hostile client: headers, most of the body, then nothing; records the answer."""

    def __init__(self, port: int, payload: bytes) -> None:
        super().__init__(daemon=True)
        self.port, self.payload = port, payload
        self.sent = threading.Event()
        self.answer = b""
        self.closed_at: float | None = None

    def run(self) -> None:
        with socket.create_connection(("127.0.0.1", self.port), timeout=120) as s:
            s.sendall(
                b"POST /webhooks/sendgrid HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Content-Type: application/json\r\n"
                + f"Content-Length: {DECLARED}\r\n\r\n".encode()
            )
            s.sendall(self.payload)
            self.sent.set()
            try:
                while chunk := s.recv(4096):
                    self.answer += chunk
            except OSError:
                pass
            self.closed_at = time.monotonic()


def attack(pid: int, port: int, sockets: int, wait: float, label: str) -> None:
    """One round: open the stalling sockets, sample RSS while they hang and after."""
    base = f"http://127.0.0.1:{port}"
    payload = b"x" * SENT
    clients = [Staller(port, payload) for _ in range(sockets)]
    start = time.monotonic()
    for c in clients:
        c.start()
    peak = rss_mb(pid)
    while time.monotonic() - start < 30 and not all(c.sent.is_set() for c in clients):
        peak = max(peak, rss_mb(pid))
        time.sleep(0.2)
    settle = time.monotonic() + min(5.0, wait / 3)  # the server is still reading: watch it
    while time.monotonic() < settle and any(c.closed_at is None for c in clients):
        peak = max(peak, rss_mb(pid))
        time.sleep(0.2)
    during = rss_mb(pid)
    t = time.perf_counter()
    health = httpx.get(f"{base}/healthz", timeout=10)
    health_ms = (time.perf_counter() - t) * 1000
    print(
        f"{label}RSS while stalled: {during:7.1f} MB  (peak {peak:.1f} MB;"
        f" /healthz {health.status_code} in {health_ms:.0f} ms)"
    )
    while time.monotonic() - start < wait and any(c.closed_at is None for c in clients):
        time.sleep(0.2)
    time.sleep(1.0)
    after = rss_mb(pid)
    statuses: dict[str, int] = {}
    for c in clients:
        line = c.answer.split(b"\r\n", 1)[0].decode("latin-1") or (
            "closed without an answer" if c.closed_at is not None else "still open"
        )
        statuses[line] = statuses.get(line, 0) + 1
    closed = [c.closed_at - start for c in clients if c.closed_at is not None]
    print(
        f"{label}RSS after deadline: {after:6.1f} MB  ({time.monotonic() - start:.1f} s after the"
        f" first byte; {len(closed)}/{sockets} sockets closed by the server"
        + (f", the last after {max(closed):.1f} s)" if closed else ")")
    )
    for line, count in sorted(statuses.items()):
        print(f"  {count:3d} x {line}")


def run(sockets: int, timeout: float | None, rounds: int) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    public = base64.b64encode(
        key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    ).decode()
    tmp = Path(tempfile.mkdtemp(prefix="bench-hostile-"))
    ws = tmp / "ws"
    ws.mkdir()
    shutil.copy(REPO / "newsletter.toml", ws / "newsletter.toml")
    shutil.copytree(REPO / "templates", ws / "templates")
    shutil.copytree(REPO / "subscribers", ws / "subscribers")
    if timeout is not None:  # [server] is the file's last table
        config = ws / "newsletter.toml"
        text = re.sub(r"(?m)^request_timeout = .*\n", "", config.read_text(encoding="utf-8"))
        config.write_text(text + f"request_timeout = {timeout}\n", encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SENDGRID_", "NEWSLETTER_"))}
    env.update(
        NEWSLETTER_SECRET="bench-secret-0123456789abcdef", SENDGRID_WEBHOOK_PUBLIC_KEY=public
    )
    log = tmp / "server.log"
    server, port = start_server(ws, env, log)
    base = f"http://127.0.0.1:{port}"
    wait = (timeout if timeout is not None else 15.0) + 10  # how long to wait for the deadline
    wait = min(wait, 40.0)
    try:
        httpx.get(f"{base}/healthz", timeout=5).raise_for_status()
        time.sleep(0.5)
        before = rss_mb(server.pid)
        print(f"{sockets} sockets x {SENT / 1e6:.1f} MB sent of {DECLARED / 1e6:.1f} MB declared")
        print(f"RSS before:             {before:7.1f} MB")
        for n in range(1, rounds + 1):
            attack(server.pid, port, sockets, wait, f"round {n}: ")
        after = rss_mb(server.pid)
        print(f"RSS at the end:         {after:7.1f} MB  ({after - before:+.1f} MB)")
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sockets", type=int, default=60, help="stalled clients (max 90)")
    parser.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="server.request_timeout to write into the copy's newsletter.toml (default: unset)",
    )
    parser.add_argument("--rounds", type=int, default=2, help="attacks one after the other")
    args = parser.parse_args()
    run(min(max(args.sockets, 1), 90), args.timeout, min(max(args.rounds, 1), 5))


if __name__ == "__main__":
    main()
