"""Benchmark: the whole kill matrix of issue 7 ("sends keep their promise under crashes").

A real `newsletter send` of 3,000 rows (2,970 to reach: invalid, duplicate and suppressed
rows left out; batches of 250, so 12) is killed at every batch boundary (in flight, the
instant of a 202, 20 ms after it), during pacing, a 5xx backoff and a 429 wait early,
midway and late, and after the last post; with SIGKILL and with SIGTERM.  Each kill is
followed by the README's resume path and checked on the stand-in SendGrid's record
(tests/killmatrix.py says how).  Prints one line per scenario and the totals: scenarios,
recipients, duplicates, lost, suppressed mailed, unlisted mailed, and how often a plain
``--resume`` was enough.  Exits 1 if any scenario broke the promise (someone twice, lost,
suppressed or unlisted mailed, or the send not done), or missed what issue 7 adds (a kill
during a wait leaves nothing unknown; SIGTERM pauses cleanly with exit code 130).

    .venv/bin/python benchmarks/bench_kill_matrix.py                 # ~90 scenarios
    .venv/bin/python benchmarks/bench_kill_matrix.py --signals KILL,TERM,HUP --recipients 5000
    git archive COMMIT src newsletter.toml templates issues subscribers | tar -x -C /tmp/old
    .venv/bin/python benchmarks/bench_kill_matrix.py --tree /tmp/old --suite

``--tree`` runs another commit's code (its src/ and workspace files); ``--choice skip``
answers every no-answer batch with --skip-unknown, even one SendGrid never received.
The run stops starting scenarios after ``--max-seconds`` (those left are reported).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "tests"), str(REPO / "src")]

from killmatrix import Outcome, Setup, matrix, run_matrix, table, totals  # noqa: E402


def points(batches: int) -> list[tuple[str, int]]:
    """Every batch boundary; each kind of wait at the first, a middle and the last batch."""
    middle = max(1, batches // 2)
    out: list[tuple[str, int]] = []
    out += [("in_flight", n) for n in range(1, batches + 1)]
    out += [("after_post", n) for n in range(1, batches + 1)]
    out += [("between", n) for n in range(1, batches)]
    out += [("pacing", n) for n in sorted({1, middle, max(1, batches - 1)})]
    for wait in ("backoff", "rate_limit"):
        out += [(wait, n) for n in sorted({1, middle, batches})]
    out.append(("finishing", -1))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipients", type=int, default=3000, help="rows (valid ones)")
    parser.add_argument("--batch-size", type=int, default=250)
    parser.add_argument("--signals", default="KILL,TERM", help="e.g. KILL,TERM,HUP,INT")
    parser.add_argument(
        "--only", default="", help="comma-separated kinds of point, e.g. pacing,backoff"
    )
    parser.add_argument(
        "--suite", action="store_true", help="the in-suite points only (tests/test_kill_matrix.py)"
    )
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--max-seconds", type=float, default=900.0)
    parser.add_argument(
        "--tree", help="a checkout of another commit: run its src/ with its newsletter.toml"
    )
    parser.add_argument("--choice", choices=("informed", "skip"), default="informed")
    parser.add_argument("--promise-only", action="store_true", help="fail only on a broken promise")
    parser.add_argument("-q", "--quiet", action="store_true", help="no line as each scenario ends")
    args = parser.parse_args(argv)

    try:
        signals = [
            signal.Signals[f"SIG{name.strip().upper().removeprefix('SIG')}"]
            for name in args.signals.split(",")
        ]
    except KeyError as exc:
        parser.error(f"--signals: no such signal {exc}")
    setup = Setup(
        recipients=args.recipients,
        suppressed=max(1, args.recipients // 100),
        batch_size=args.batch_size,
        tree=Path(args.tree).resolve() if args.tree else None,
        choice=args.choice,
    )
    wanted = {p.strip() for p in args.only.split(",") if p.strip()}
    if args.suite:
        from test_kill_matrix import POINTS

        every = list(POINTS)
    else:
        every = points(setup.batches)
    pts = [(p, n) for p, n in every if not wanted or p in wanted]
    scenarios = matrix(signals, pts)
    print(
        f"kill matrix: {len(scenarios)} scenarios, {setup.recipients - setup.suppressed:,} "
        f"recipients in {setup.batches} batches each, {args.workers} at a time"
        + (f", code from {setup.tree}" if setup.tree else ""),
        flush=True,
    )

    def progress(o: Outcome) -> None:
        if not args.quiet:
            verdict = "; ".join(o.problems + o.misses()) or "ok"
            print(f"  {o.scenario.name:<26} {o.seconds:5.1f} s  {verdict}", flush=True)

    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="kill-matrix-") as tmp:
        outcomes = run_matrix(
            scenarios,
            Path(tmp),
            setup,
            workers=args.workers,
            on_done=progress,
            budget=args.max_seconds,
        )
    elapsed = time.monotonic() - started
    print()
    print(table(outcomes))
    print("figures:", json.dumps(totals(outcomes)))
    left = len(scenarios) - len(outcomes)
    print(
        f"\n{len(outcomes)} of {len(scenarios)} scenarios ran in {elapsed:.0f} s"
        + (f" ({left} left out: --max-seconds)" if left else "")
    )
    broken = sum(bool(o.problems or (o.misses() and not args.promise_only)) for o in outcomes)
    if broken:
        print(f"FAILED: {broken} scenario(s) broke the promise or missed issue 7's requirements")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
