"""How fast `newsletter serve` ingests SendGrid's signed event batches.

Starts `python -m newsletter serve` (uvicorn) in a subprocess on a free 127.0.0.1
port, in a throw-away copy of the workspace, then posts signed batches of 1,000
real-shaped events (delivered, opens, machine opens, clicks, a few bounces and
unsubscribes that become suppressions) over loopback, one client and then several
at once.  Prints events per second, checks every event was stored exactly once by
counting rows in the SQLite state, and prints the figures.  Target: >= 5,000 events/s.

    .venv/bin/python benchmarks/bench_events.py [--batches 40] [--clients 4]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from newsletter.esp.sendgrid_events import SIGNATURE_HEADER, TIMESTAMP_HEADER

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "tests" / "fixtures" / "workspace"  # the pristine sample the tests use
BATCH = 1000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_batch(seq: int) -> list[dict[str, object]]:
    events: list[dict[str, object]] = []
    base_ts = int(time.time()) - 3600
    for i in range(BATCH):
        n = seq * BATCH + i
        email = f"reader{n % 20_000}@example.org"
        kind = ("delivered", "open", "open", "click", "processed")[i % 5]
        item: dict[str, object] = {
            "email": email,
            "timestamp": base_ts + i,
            "event": kind,
            "smtp-id": f"<{n}@ismtpd-555>",
            "category": ["newsletter"],
            "sg_event_id": f"bench-{seq}-{i}-{os.getpid()}",
            "sg_message_id": f"14c5d75ce93.dfd.64b469.filter0001.{n}.0",
            "nl_issue": "2019-09",
            "nl_list": "sample",
            "nl_send": "1",
            "nl_batch": str(seq),
        }
        if kind == "open":
            item["sg_machine_open"] = i % 10 == 1
            item["useragent"] = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7)"
        if kind == "click":
            item["url"] = f"https://www.example.org/articles/{i % 12}?utm_source=newsletter"
        if i % 200 == 7:  # ~0.5 % bounces and unsubscribes: the suppression path runs too
            item.update(
                event="bounce",
                type="bounce",
                reason="550 5.1.1 unknown user",
                email=f"bounce{seq}-{i}@example.org",
            )
        if i % 500 == 9:
            item.update(event="unsubscribe", email=f"leaver{seq}-{i}@example.org")
        events.append(item)
    return events


def sign(key: ec.EllipticCurvePrivateKey, body: bytes) -> dict[str, str]:
    ts = str(int(time.time()))
    sig = key.sign(ts.encode() + body, ec.ECDSA(hashes.SHA256()))
    return {
        SIGNATURE_HEADER: base64.b64encode(sig).decode(),
        TIMESTAMP_HEADER: ts,
        "Content-Type": "application/json",
    }


def stored(ws: Path) -> int:
    conn = sqlite3.connect(ws / ".newsletter" / "state.db")
    try:
        return int(conn.execute("SELECT count(*) FROM esp_events").fetchone()[0])
    finally:
        conn.close()


def run(batches: int, clients: int) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    public = base64.b64encode(
        key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    ).decode()
    tmp = Path(tempfile.mkdtemp(prefix="bench-events-"))
    ws = tmp / "ws"
    ws.mkdir()
    shutil.copytree(SAMPLE, ws, dirs_exist_ok=True)  # not the user's own subscribers/
    shutil.copytree(REPO / "templates", ws / "templates")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SENDGRID_", "NEWSLETTER_"))}
    env.update(
        NEWSLETTER_SECRET="bench-secret-0123456789abcdef", SENDGRID_WEBHOOK_PUBLIC_KEY=public
    )
    log = (tmp / "server.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "newsletter", "serve", "--host", "127.0.0.1", "--port", str(port)],
        cwd=ws,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"server did not start; see {tmp / 'server.log'}")
            time.sleep(0.1)

        bodies = [json.dumps(make_batch(seq)).encode() for seq in range(batches * 2 + 1)]
        print(f"batch: {BATCH} events, {len(bodies[0]) / 1024:.0f} KiB of JSON")
        with httpx.Client(timeout=60) as client:  # warm-up (first connection, first insert)
            client.post(
                f"{base}/webhooks/sendgrid", content=bodies[0], headers=sign(key, bodies[0])
            ).raise_for_status()

        def post_all(chunk: list[bytes]) -> list[float]:
            times = []
            with httpx.Client(timeout=60) as client:
                for body in chunk:
                    headers = sign(key, body)
                    t = time.perf_counter()
                    r = client.post(f"{base}/webhooks/sendgrid", content=body, headers=headers)
                    times.append(time.perf_counter() - t)
                    if r.status_code != 200 or r.json()["stored"] != BATCH:
                        raise SystemExit(f"unexpected answer {r.status_code}: {r.text[:200]}")
            return times

        for label, chunks in (
            ("1 client ", [bodies[1 : batches + 1]]),
            (f"{clients} clients", [bodies[batches + 1 + i :: clients] for i in range(clients)]),
        ):
            start = time.perf_counter()
            with ThreadPoolExecutor(clients) as pool:
                latencies = sorted(x for part in pool.map(post_all, chunks) for x in part)
            elapsed = time.perf_counter() - start
            events = len(latencies) * BATCH
            p50 = latencies[len(latencies) // 2] * 1000
            p95 = latencies[int(len(latencies) * 0.95) - 1] * 1000
            print(
                f"{label}: {events:6d} events in {elapsed:5.2f} s = {events / elapsed:8.0f}"
                f" events/s  (per 1,000-event request: p50 {p50:.0f} ms, p95 {p95:.0f} ms)"
            )
        total = stored(ws)
        expected = len(bodies) * BATCH
        print(
            f"stored rows: {total} (expected {expected}) -> "
            f"{'OK' if total == expected else 'MISMATCH'}"
        )
        # A repeat of an already-stored batch is answered and stores nothing.
        with httpx.Client(timeout=60) as client:
            r = client.post(
                f"{base}/webhooks/sendgrid", content=bodies[1], headers=sign(key, bodies[1])
            )
            print(f"re-posted batch: HTTP {r.status_code}, stored {r.json()['stored']}")
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=40, help="batches per run (default 40)")
    parser.add_argument("--clients", type=int, default=4, help="concurrent clients (default 4)")
    args = parser.parse_args()
    run(args.batches, args.clients)


if __name__ == "__main__":
    main()
