"""Sign-ups per second through `newsletter serve`: from the form's POST to the confirmation
email written in the outbox.

Starts `python -m newsletter serve` in a subprocess on a free 127.0.0.1 port, in a
throw-away copy of the sample workspace with a [signup] table (limits raised so that
the benchmark measures the work, not the limiter), then posts N sign-ups for N new
addresses from --clients threads and waits until N confirmation `.eml` files exist.
Prints the figure, with the time to the last answer and to the last email apart.
Loopback only.

    .venv/bin/python benchmarks/bench_signup.py [--count 300] [--clients 8]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "tests" / "fixtures" / "workspace"
SIGNUP = """
[signup]
lists = ["sample"]
consent_version = "bench"
signups_per_minute = 10000

[signup.consent]
en = "I agree that {org} emails me its newsletter."
"""


def workspace(root: Path) -> Path:
    ws = root / "ws"
    shutil.copytree(SAMPLE, ws)
    shutil.copytree(REPO / "templates", ws / "templates")
    with (ws / "newsletter.toml").open("a", encoding="utf-8") as f:
        f.write(SIGNUP)
    return ws


def start(ws: Path, log: Path) -> tuple[subprocess.Popen[bytes], int]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SENDGRID_", "NEWSLETTER_"))}
    env["NEWSLETTER_SECRET"] = "bench-secret-key-0123456789abcdef"
    proc = subprocess.Popen(
        [sys.executable, "-m", "newsletter", "serve", "--port", "0"],
        cwd=ws,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log.open("wb"),
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = re.search(r"http://127\.0\.0\.1:(\d+)/", log.read_text(errors="replace"))
        if found:
            return proc, int(found.group(1))
        time.sleep(0.05)
    proc.kill()
    raise SystemExit(f"the server did not start:\n{log.read_text(errors='replace')}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        ws = workspace(Path(tmp))
        proc, port = start(ws, Path(tmp) / "serve.log")
        base = f"http://127.0.0.1:{port}"
        try:
            httpx.get(f"{base}/subscribe").raise_for_status()  # warm up
            todo = list(range(args.count))
            lock = threading.Lock()
            failures: list[int] = []

            def client() -> None:
                with httpx.Client(timeout=60) as c:
                    while True:
                        with lock:
                            if not todo:
                                return
                            i = todo.pop()
                        r = c.post(
                            f"{base}/subscribe",
                            data={
                                "list": "sample",
                                "email": f"bench{i:06d}@example.org",
                                "consent": "yes",
                                "website": "",
                            },
                        )
                        if r.status_code != 200:
                            failures.append(r.status_code)

            t0 = time.perf_counter()
            threads = [threading.Thread(target=client) for _ in range(args.clients)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            answered = time.perf_counter() - t0
            outbox = ws / "outbox" / "confirmations"
            while len(list(outbox.rglob("*.eml"))) < args.count - len(failures):
                if time.perf_counter() - t0 > 600:
                    raise SystemExit("the confirmation emails did not all arrive in 10 minutes")
                time.sleep(0.05)
            written = time.perf_counter() - t0
        finally:
            proc.terminate()
            proc.wait(15)
    ok = args.count - len(failures)
    print(f"sign-ups:                  {args.count} from {args.clients} clients")
    if failures:
        print(f"refused:                   {len(failures)} ({sorted(set(failures))})")
    print(f"all answered after:        {answered:.2f} s ({ok / answered:.0f} per second)")
    print(f"all emails written after:  {written:.2f} s")
    print(f"sign-ups per second:       {ok / written:.1f} (form POST to outbox .eml written)")


if __name__ == "__main__":
    main()
