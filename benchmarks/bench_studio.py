"""How fast the studio's preview follows typing: one keystroke to the new email on screen.

    .venv/bin/python benchmarks/bench_studio.py [--samples 40] [--view desktop]

Starts the real `newsletter studio issues/2019-09.yaml --port 0 --no-open` in a throw-away copy
of the sample workspace, opens the address it prints in headless Chromium (Debian's, as
tests/browser.py finds it), and types one character at a time at the end of the Subject with
Playwright's keyboard.  Each sample is timed inside the page, from the Subject's `input` event
to the moment the visible preview frame holds the new document, laid out (the page then sets
body[data-preview-seq]; a MutationObserver notes the time).  Between samples it waits until no
preview is due or on its way, so every sample is one pause in typing.

The sample's pictures are on www.example.org: Chromium is started with a host resolver that
fails every name but 127.0.0.1 at once (no network, and no Playwright request interception,
whose round trip per picture would be counted), which stands for pictures already in the
browser's cache, as they are after the first preview.

A sample includes the page's debounce (60 ms after the last input), the POST /api/preview
round trip (apply the form to the YAML, check, render, compile, inline, plain text: the warm
in-process build is the floor) and the frame parsing and laying out the new document.  The request's own
time (from the browser's Resource Timing) is printed beside it to show where the time goes.

Targets on the 2-core development machine: median <= 150 ms, p95 <= 300 ms.
Figures are printed, never asserted: timing belongs here, not in tests.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from browser import CHROMIUM_FLAGS, chromium_path  # noqa: E402

SAMPLE = REPO / "tests" / "fixtures" / "workspace"
ISSUE = "issues/2019-09.yaml"
OFFLINE = "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"
TARGET_MEDIAN_MS = 150.0
TARGET_P95_MS = 300.0
TABS = {"desktop": "Desktop", "phone": "Phone", "dark": "Dark"}

# Installed once in the page: times from the Subject's input event to the preview's new seq.
PROBE = """() => {
  const b = (window.__bench = { t0: 0, done: null, seq: null });
  const subject = document.querySelector("[name=subject]");
  subject.addEventListener("input", () => { b.t0 = performance.now(); b.done = null; }, true);
  new MutationObserver(() => {
    if (b.t0 && b.done === null) {
      b.done = performance.now() - b.t0;
      b.seq = document.body.dataset.previewSeq;
    }
  }).observe(document.body, { attributes: true, attributeFilter: ["data-preview-seq"] });
}"""

# Where the time went, from the input event: request sent, answer in, new email on screen.
STAGES = """() => {
  const e = performance.getEntriesByType("resource").filter(r => r.name.endsWith("/api/preview"));
  const r = e[e.length - 1], b = window.__bench;
  return [r.startTime - b.t0, r.responseEnd - b.t0, b.done];
}"""
STAGE_NAMES = ("request sent", "answer received", "new email in the frame")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def verdict(value: float, target: float) -> str:
    return "ok" if value <= target else "OVER TARGET"


def start_studio(ws: Path) -> tuple[subprocess.Popen[str], str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SENDGRID_", "NEWSLETTER_"))}
    env["PYTHONPATH"] = str(REPO / "src")
    proc = subprocess.Popen(
        [sys.executable, "-m", "newsletter", "studio", ISSUE, "--port", "0", "--no-open"],
        cwd=ws,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    first: list[str] = []
    reader = threading.Thread(
        target=lambda: first.append(proc.stdout.readline() if proc.stdout else ""), daemon=True
    )
    reader.start()
    reader.join(60)
    found = re.search(r"http://127\.0\.0\.1:\d+/\?token=\S+", first[0] if first else "")
    if not found:
        proc.kill()
        raise SystemExit(f"`newsletter studio` printed no address: {first!r}")
    return proc, found.group(0)


def measure(page: Any, samples: int, warmup: int) -> list[list[float]]:
    """Per sample, the times (ms after the keystroke's input event) of STAGE_NAMES."""
    subject = page.get_by_label("Subject", exact=True)
    subject.click()
    page.keyboard.press("End")
    page.evaluate(PROBE)
    rows: list[list[float]] = []
    for i in range(warmup + samples):
        page.wait_for_function("() => !document.body.dataset.previewBusy")
        page.wait_for_timeout(40)  # a pause in typing, as between two words
        # Alternate adding and deleting a character, so the subject stays the sample's.
        page.keyboard.press("Backspace" if i % 2 else "x")
        page.wait_for_function("() => window.__bench.done !== null", timeout=10_000)
        if i >= warmup:
            rows.append([float(x) for x in page.evaluate(STAGES)])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=40, help="timed keystrokes (default 40)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed keystrokes first")
    parser.add_argument("--view", choices=sorted(TABS), default="desktop")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="bench-studio-"))
    ws = root / "ws"
    shutil.copytree(SAMPLE, ws)
    shutil.copytree(REPO / "templates", ws / "templates")
    proc, url = start_studio(ws)
    try:
        from playwright.sync_api import sync_playwright

        with sync_playwright() as pw:
            b = pw.chromium.launch(
                executable_path=chromium_path(), headless=True, args=[*CHROMIUM_FLAGS, OFFLINE]
            )
            page = b.new_page(viewport={"width": 1400, "height": 900})
            page.set_default_timeout(20_000)
            page.goto(url)
            page.wait_for_function("() => document.body.dataset.ready === '1'")
            if args.view != "desktop":
                page.get_by_role("tab", name=TABS[args.view]).click()
            rows = measure(page, args.samples, args.warmup)
            b.close()
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(root, ignore_errors=True)

    totals = [r[-1] for r in rows]
    median = statistics.median(totals)
    p95 = percentile(totals, 0.95)
    print(
        f"studio: keystroke in the Subject -> {args.view} preview replaced, {len(totals)} samples"
    )
    print(
        f"  median {median:6.1f} ms   (target <= {TARGET_MEDIAN_MS:.0f} ms: {verdict(median, TARGET_MEDIAN_MS)})"
    )
    print(
        f"  p95    {p95:6.1f} ms   (target <= {TARGET_P95_MS:.0f} ms: {verdict(p95, TARGET_P95_MS)})"
    )
    print(f"  min    {min(totals):6.1f} ms   max {max(totals):6.1f} ms")
    print("  medians of each stage, in ms after the keystroke:")
    for k, name in enumerate(STAGE_NAMES):
        print(f"    {name:<27} {statistics.median(r[k] for r in rows):6.1f}")
    server = [r[1] - r[0] for r in rows]
    print(
        f"  POST /api/preview alone: median {statistics.median(server):6.1f} ms, "
        f"p95 {percentile(server, 0.95):6.1f} ms"
    )


if __name__ == "__main__":
    main()
