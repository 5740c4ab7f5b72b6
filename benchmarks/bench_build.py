"""How long building an issue takes: in-process (per step) and as a whole `newsletter build`.

    .venv/bin/python benchmarks/bench_build.py [--runs 30] [--process-runs 10] [--no-node]
                                                [--imports]

* in-process: one Renderer reused across builds, as a long-lived process (the
  preview server, a send) uses it; the first, cold build (lazy imports, template
  compilation) is reported on its own;
* whole process: `.venv/bin/newsletter build issues/2019-09.yaml -o <tmp>`, what a
  user waits for at the terminal (interpreter start and imports included);
* for scale, if Node and npm are present: the official `mjml` CLI plus `juice` on
  the same MJML, installed with npm into /tmp/newsletter-bench-node on first use
  (never by the tests).

Targets on the 2-core development machine: in-process <= 35 ms median, whole
process <= 0.45 s.  Figures are printed, never asserted: timing belongs here,
not in tests.
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
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from newsletter.build import build_issue  # noqa: E402
from newsletter.config import Workspace  # noqa: E402
from newsletter.render import Renderer  # noqa: E402

# The pristine sample the tests use, copied to a temporary workspace: the repository's own
# issues/ and newsletter.toml are the user's and may have changed.
SAMPLE = REPO / "tests" / "fixtures" / "workspace"
ISSUE = "issues/2019-09.yaml"
CLI = REPO / ".venv" / "bin" / "newsletter"
NODE_DIR = Path("/tmp/newsletter-bench-node")
STEPS = ("read", "render", "compile", "inline", "text", "check", "total")
TARGET_IN_PROCESS_MS = 35.0
TARGET_PROCESS_S = 0.45


def ms(seconds: float) -> str:
    return f"{seconds * 1000:7.1f} ms"


def verdict(value: float, target: float) -> str:
    return "ok" if value <= target else "OVER TARGET"


def median_time(fn: Callable[[], object], runs: int) -> tuple[float, float]:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), min(times)


def make_workspace(root: Path) -> Path:
    shutil.copytree(SAMPLE, root)
    shutil.copytree(REPO / "templates", root / "templates")
    return root


def in_process(root: Path, runs: int) -> float:
    ws = Workspace(root)
    t0 = time.perf_counter()
    renderer = Renderer(ws)
    cold = build_issue(ws, root / ISSUE, renderer=renderer)
    cold_wall = time.perf_counter() - t0
    print(
        f"in-process, cold first build: {ms(cold_wall)}  "
        + "  ".join(f"{k} {v * 1000:.1f}" for k, v in cold.timings.items())
    )

    for _ in range(3):  # the text template and caches fill on the first builds
        build_issue(ws, root / ISSUE, renderer=renderer)
    samples: dict[str, list[float]] = {k: [] for k in STEPS}
    for _ in range(runs):
        built = build_issue(ws, root / ISSUE, renderer=renderer)
        for k in STEPS:
            samples[k].append(built.timings.get(k, 0.0))
    median_total = statistics.median(samples["total"])
    print(f"in-process, warm (one Renderer, 3 warm-up builds, then median of {runs}):")
    for k in STEPS:
        print(f"  {k:<8} {ms(statistics.median(samples[k]))}   (min {ms(min(samples[k])).strip()})")
    print(
        f"  target <= {TARGET_IN_PROCESS_MS:.0f} ms: "
        f"{verdict(median_total * 1000, TARGET_IN_PROCESS_MS)}"
    )
    return median_total


def _env(bytecode_cache: bool) -> dict[str, str]:
    """The environment as it is, or with Python's bytecode cache on (in a /tmp folder).

    Some sandboxes set PYTHONDONTWRITEBYTECODE=1, so every run compiles newsletter's
    own modules again; a user's checkout keeps __pycache__.  Both figures are shown.
    """
    env = dict(os.environ)
    if bytecode_cache:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(Path(tempfile.gettempdir()) / "newsletter-bench-pycache")
    return env


def whole_process(root: Path, runs: int) -> float:
    if not CLI.is_file():
        print(f"whole process: skipped, {CLI} not found (run scripts/setup)")
        return float("nan")
    result = float("nan")
    with tempfile.TemporaryDirectory(prefix="bench-build-") as tmp:
        cmd = [str(CLI), "build", ISSUE, "-o", tmp]
        cases = [(True, "with bytecode cache")]
        if os.environ.get("PYTHONDONTWRITEBYTECODE"):
            cases.append((False, "PYTHONDONTWRITEBYTECODE=1 as set here"))
        for cache, label in cases:
            env = _env(cache)

            def run(env: dict[str, str] = env) -> None:
                subprocess.run(cmd, cwd=root, check=True, capture_output=True, env=env)

            run()  # warm the disk cache and the bytecode cache
            median, best = median_time(run, runs)
            print(
                f"whole process `newsletter build`, {label} (median of {runs}): "
                f"{median:.3f} s (min {best:.3f} s); target <= {TARGET_PROCESS_S} s: "
                f"{verdict(median, TARGET_PROCESS_S)}"
            )
            if cache:
                result = median
    return result


def import_profile(root: Path, threshold_ms: float = 8.0) -> None:
    """Where a `newsletter build` process spends its import time (python -X importtime)."""
    with tempfile.TemporaryDirectory(prefix="bench-imports-") as tmp:
        proc = subprocess.run(
            [
                sys.executable,
                "-X",
                "importtime",
                "-m",
                "newsletter",
                "build",
                ISSUE,
                "-o",
                tmp,
            ],
            cwd=root,
            capture_output=True,
            text=True,
            env=_env(True),
            check=True,
        )
    rows = []
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, self_us, cum_us, name = (part for part in re.split(r"[:|]", line, maxsplit=3))
        depth = (len(name) - len(name.lstrip(" "))) // 2
        rows.append((depth, name.strip(), int(cum_us) / 1000, int(self_us) / 1000))
    total = sum(cum for depth, _, cum, _ in rows if depth == 0)
    print(
        f"imports of one `newsletter build` (-X importtime): {total:.0f} ms in all; "
        f"modules >= {threshold_ms:.0f} ms, two levels deep:"
    )
    for depth, name, cum, own in reversed(rows):  # importtime prints children first
        if depth <= 2 and cum >= threshold_ms:
            print(f"  {'  ' * depth}{name:<40} {cum:6.1f} ms  (own {own:.1f} ms)")


def _node_tools() -> tuple[Path, Path] | str:
    """Paths of the mjml and juice CLIs, installing them once; or why they are unavailable."""
    if not (shutil.which("node") and shutil.which("npm")):
        return "Node.js/npm not found"
    mjml = NODE_DIR / "node_modules" / ".bin" / "mjml"
    juice = NODE_DIR / "node_modules" / ".bin" / "juice"
    if not (mjml.exists() and juice.exists()):
        NODE_DIR.mkdir(parents=True, exist_ok=True)
        print(f"installing mjml and juice with npm into {NODE_DIR} (once) ...", flush=True)
        proc = subprocess.run(
            [
                "npm",
                "install",
                "--prefix",
                str(NODE_DIR),
                "--no-audit",
                "--no-fund",
                "--loglevel=error",
                "mjml",
                "juice",
            ],
            capture_output=True,
            text=True,
            timeout=600,
        )
        if proc.returncode != 0 or not (mjml.exists() and juice.exists()):
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["?"]
            return f"npm install failed: {tail[0]}"
    return mjml, juice


def official_mjml(root: Path, runs: int, ours_process: float, ours_in_process: float) -> None:
    tools = _node_tools()
    if isinstance(tools, str):
        print(f"official mjml CLI + juice: skipped ({tools})")
        return
    mjml, juice = tools
    ws = Workspace(root)
    built = build_issue(ws, root / ISSUE)
    env = {**os.environ, "NODE_NO_WARNINGS": "1"}
    with tempfile.TemporaryDirectory(prefix="bench-mjml-") as tmp:
        src = Path(tmp) / "email.mjml"
        src.write_text(built.mjml, "utf-8")
        out, inlined = Path(tmp) / "email.html", Path(tmp) / "inlined.html"

        def run_mjml() -> None:
            subprocess.run(
                [str(mjml), str(src), "-o", str(out)], check=True, capture_output=True, env=env
            )

        def run_juice() -> None:
            subprocess.run(
                [str(juice), str(out), str(inlined)], check=True, capture_output=True, env=env
            )

        run_mjml()
        run_juice()
        m_med, _ = median_time(run_mjml, runs)
        j_med, _ = median_time(run_juice, runs)
    total = m_med + j_med
    print(
        f"official mjml CLI (median of {runs}): {m_med:.3f} s; juice: {j_med:.3f} s; "
        f"together {total:.3f} s for the email only"
    )
    if ours_process == ours_process:  # not NaN
        print(
            f"  whole `newsletter build` (email + web version + text + checks + .eml) is "
            f"{total / ours_process:.1f}x faster than mjml+juice for one file"
        )
    print(f"  in-process warm build is {total / ours_in_process:.0f}x faster")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30, help="in-process builds (default 30)")
    parser.add_argument(
        "--process-runs", type=int, default=10, help="whole-process builds (default 10)"
    )
    parser.add_argument("--no-node", action="store_true", help="skip the official MJML CLI")
    parser.add_argument(
        "--imports",
        action="store_true",
        help="also print the import-time profile of one `newsletter build`",
    )
    args = parser.parse_args()
    print(
        f"sample: {SAMPLE.relative_to(REPO) / ISSUE}; python {sys.version.split()[0]}; "
        f"{os.cpu_count()} CPU(s)"
    )
    with tempfile.TemporaryDirectory(prefix="bench-build-ws-") as tmp:
        root = make_workspace(Path(tmp) / "ws")
        warm = in_process(root, args.runs)
        process = whole_process(root, args.process_runs)
        if args.imports:
            import_profile(root)
        if args.no_node:
            print("official mjml CLI + juice: skipped (--no-node)")
        else:
            official_mjml(root, max(3, args.process_runs // 2), process, warm)


if __name__ == "__main__":
    main()
