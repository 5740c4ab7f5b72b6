"""How fast building an issue is, side by side with the official MJML tools on one machine.

    .venv/bin/python benchmarks/bench_build.py [--rounds 9] [--runs 30] [--no-node]
                                                [--imports] [--src DIR] [--before DIR]

Three comparisons, each printed as our time, theirs and the ratio (ours / theirs):

* whole process, `newsletter build issues/2019-09.yaml -o <tmp>` against the official
  ``mjml`` 5 CLI compiling the same issue's MJML (what the two tools make a person wait
  for at the terminal); target ratio <= 0.5;
* whole process, `newsletter check issues/2019-09.yaml` against the same MJML CLI run
  (what an editor integration or CI runs most); target ratio <= 0.35;
* in-process, a warm build (one Renderer reused: read, render, compile, inline, text,
  checks) against Node's ``mjml2html`` + ``juice`` warm in one process on the same MJML;
  target ratio <= 0.6.

The whole-process runs alternate (mjml, build, check, mjml, build, check, ...) so that a
busy neighbour on a shared machine slows all three alike; the figure is the median of
``--rounds`` (at least 7).  The in-process figures alternate blocks of Python and Node
runs the same way.  Our process runs with Python's bytecode cache on (in a /tmp folder):
a user's checkout keeps ``__pycache__``, and some sandboxes set PYTHONDONTWRITEBYTECODE.

The official MJML and juice come from tests/npm (installed by scripts/setup-test; juice is
MJML's own dependency there), else they are installed once with npm into
/tmp/newsletter-bench-node.  ``--before OLD/src`` measures an older checkout too (e.g. a
`git worktree` of an earlier commit, with its own templates and sample), its processes and
warm blocks taking turns with ours, for a before/after table that one busy moment cannot
skew.  Figures are printed, never asserted: timing belongs here, not in tests.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# The pristine sample the tests use, copied to a temporary workspace: the repository's own
# issues/ and newsletter.toml are the user's and may have changed.
SAMPLE = REPO / "tests" / "fixtures" / "workspace"
ISSUE = "issues/2019-09.yaml"
TESTS_NODE = REPO / "tests" / "npm" / "node_modules"
NODE_DIR = Path("/tmp/newsletter-bench-node")
STEPS = ("read", "render", "compile", "inline", "text", "check", "total")
TARGET_BUILD = 0.5  # x the MJML CLI, whole process
TARGET_CHECK = 0.35  # x the MJML CLI, whole process
TARGET_WARM = 0.6  # x Node mjml2html + juice, warm in-process

NODE_SCRIPT = r"""
const { createRequire } = require('module');
const fs = require('fs');
const [modulesDir, mjmlPath, runsArg] = process.argv.slice(2);
const req = createRequire(modulesDir + '/');
const mjml2html = req('mjml');
const juice = req('juice');
const src = fs.readFileSync(mjmlPath, 'utf8');
async function once() {
  const result = await Promise.resolve(mjml2html(src, { validationLevel: 'soft' }));
  return juice(result.html);
}
(async () => {
  for (let i = 0; i < 5; i++) await once();
  const times = [];
  for (let i = 0; i < Number(runsArg); i++) {
    const t0 = process.hrtime.bigint();
    await once();
    times.push(Number(process.hrtime.bigint() - t0) / 1e9);
  }
  console.log(JSON.stringify(times));
})();
"""


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def verdict(ratio: float, target: float) -> str:
    return "ok" if ratio <= target else "OVER TARGET"


def make_workspace(root: Path, checkout: Path = REPO) -> Path:
    """The sample workspace and templates of ``checkout`` (an older one's, with --src)."""
    shutil.copytree(checkout / SAMPLE.relative_to(REPO), root)
    shutil.copytree(checkout / "templates", root / "templates")
    return root


def _env(src: Path) -> dict[str, str]:
    """Our process's environment: this src/ first on the path, the bytecode cache on."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(Path(tempfile.gettempdir()) / "newsletter-bench-pycache")
    env["PYTHONPATH"] = str(src)
    env["NODE_NO_WARNINGS"] = "1"
    return env


# ---------------------------------------------------------------- the Node side
def _node_modules() -> Path | str:
    """A node_modules folder holding mjml and juice, installing them once; or why not."""
    if not shutil.which("node"):
        return "Node.js not found"
    for folder in (TESTS_NODE, NODE_DIR / "node_modules"):
        if (folder / "mjml" / "package.json").is_file() and (
            folder / "juice" / "package.json"
        ).is_file():
            return folder
    if not shutil.which("npm"):
        return "npm not found (and tests/npm is not installed: run scripts/setup-test)"
    NODE_DIR.mkdir(parents=True, exist_ok=True)
    print(f"installing mjml and juice with npm into {NODE_DIR} (once) ...", flush=True)
    proc = subprocess.run(
        ["npm", "install", "--prefix", str(NODE_DIR), "--no-audit", "--no-fund"]
        + ["--loglevel=error", "mjml@5", "juice"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["?"]
        return f"npm install failed: {tail[0]}"
    return NODE_DIR / "node_modules"


def _version(modules: Path, name: str) -> str:
    data = json.loads((modules / name / "package.json").read_text("utf-8"))
    return str(data.get("version", "?"))


# ---------------------------------------------------------------- measuring
def _timed(cmd: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU (user + system) seconds of one process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode not in (0, 1):  # check exits 1 when it finds problems
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr.decode(errors='replace')}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def whole_process(
    trees: dict[str, tuple[Path, Path]],
    mjml_file: Path | None,
    modules: Path | None,
    rounds: int,
) -> dict[str, tuple[float, float]]:
    """Median wall and CPU seconds of each command, all run in alternation.

    ``trees``: label -> (its src/, its workspace); every tree's build and check take turns
    with the MJML CLI, so that a busy machine slows them alike.
    """
    py = [sys.executable, "-m", "newsletter"]
    out = Path(tempfile.mkdtemp(prefix="bench-build-out-"))
    commands: dict[str, tuple[list[str], Path, dict[str, str]]] = {}
    if mjml_file is not None and modules is not None:
        mjml_cmd = [str(modules / ".bin" / "mjml"), str(mjml_file), "-o", str(out / "m.html")]
        commands["mjml CLI"] = (mjml_cmd, out, _env(REPO / "src"))
    for label, (src, root) in trees.items():
        commands[f"build ({label})"] = ([*py, "build", ISSUE, "-o", str(out)], root, _env(src))
        commands[f"check ({label})"] = ([*py, "check", ISSUE], root, _env(src))
    for cmd, cwd, env in commands.values():  # warm the disk cache and the bytecode cache
        _timed(cmd, cwd, env)
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
    for _ in range(rounds):
        for name, (cmd, cwd, env) in commands.items():
            samples[name].append(_timed(cmd, cwd, env))
    shutil.rmtree(out, ignore_errors=True)
    return {
        name: (statistics.median(w for w, _ in got), statistics.median(c for _, c in got))
        for name, got in samples.items()
    }


def warm_block(root: Path, runs: int, mjml_out: Path | None) -> dict[str, object]:
    """In this process: a cold first build, 3 warm-up builds, then ``runs`` warm ones."""
    from newsletter.build import build_issue
    from newsletter.config import Workspace
    from newsletter.render import Renderer

    ws = Workspace(root)
    t0 = time.perf_counter()
    renderer = Renderer(ws)
    cold = build_issue(ws, root / ISSUE, renderer=renderer)
    cold_wall = time.perf_counter() - t0
    if mjml_out is not None:  # the same issue's MJML, for the official tools
        mjml_out.write_text(cold.mjml, "utf-8")
    for _ in range(3):  # the text template and caches fill on the first builds
        build_issue(ws, root / ISSUE, renderer=renderer)
    warm = [build_issue(ws, root / ISSUE, renderer=renderer).timings for _ in range(runs)]
    return {"cold": {**cold.timings, "wall": cold_wall}, "warm": warm}


def in_process(
    trees: dict[str, tuple[Path, Path]],
    runs: int,
    mjml_file: Path | None,
    modules: Path | None,
) -> tuple[dict[str, dict[str, float]], float | None]:
    """Warm per-step medians of each tree, and Node's warm median, in alternating blocks.

    Each block is its own process (this script with --warm-block), so that trees do not
    share a Python; three rounds of (each tree, then Node).
    """
    script = None
    if mjml_file is not None and modules is not None:
        script = mjml_file.with_name("bench.js")
        script.write_text(NODE_SCRIPT, "utf-8")
    ours: dict[str, dict[str, list[float]]] = {t: {k: [] for k in STEPS} for t in trees}
    node: list[float] = []
    for round_ in range(3):
        for label, (src, root) in trees.items():
            cmd = [sys.executable, __file__, "--warm-block", str(runs), "--src", str(src)]
            cmd += ["--workspace", str(root)]
            if round_ == 0 and mjml_file is not None and label == next(iter(trees)):
                cmd += ["--mjml-out", str(mjml_file)]
            env = {**_env(src), "PYTHONPATH": str(src)}
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if proc.returncode != 0:
                raise SystemExit(f"warm builds of {label} failed:\n{proc.stderr}")
            block = json.loads(proc.stdout)
            if round_ == 0:
                cold = block["cold"]
                print(
                    f"in-process ({label}), cold first build: {ms(cold['wall'])}  ("
                    + ", ".join(f"{k} {cold[k] * 1000:.1f}" for k in STEPS[:-1] if k in cold)
                    + ")"
                )
            for timings in block["warm"]:
                for k in STEPS:
                    ours[label][k].append(timings.get(k, 0.0))
        if script is not None and modules is not None and mjml_file is not None:
            proc = subprocess.run(
                ["node", str(script), str(modules), str(mjml_file), str(runs)],
                capture_output=True,
                text=True,
                check=True,
                env={**os.environ, "NODE_NO_WARNINGS": "1"},
            )
            node += json.loads(proc.stdout)
    medians = {t: {k: statistics.median(v) for k, v in steps.items()} for t, steps in ours.items()}
    print(f"in-process, warm (3 warm-up builds, then median of {3 * runs}; min in brackets):")
    print("  " + f"{'step':<8}" + "".join(f"{t:>22}" for t in trees))
    for k in STEPS:
        cells = "".join(f"{ms(medians[t][k]):>12} ({ms(min(ours[t][k])):>7})" for t in trees)
        print(f"  {k:<8}{cells}")
    if node:
        print(
            f"  Node mjml2html + juice, warm: {ms(statistics.median(node))} (min {ms(min(node))})"
        )
    return medians, (statistics.median(node) if node else None)


def import_profile(root: Path, src: Path, command: str, threshold_ms: float = 8.0) -> None:
    """Where a `newsletter build|check` process spends its import time (python -X importtime)."""
    args = [command, ISSUE] + (
        ["-o", tempfile.mkdtemp(prefix="bench-imp-")] if command == "build" else []
    )
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "newsletter", *args],
        cwd=root,
        capture_output=True,
        text=True,
        env=_env(src),
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
        f"imports of one `newsletter {command}` (-X importtime, which inflates them): "
        f"{total:.0f} ms in all; modules >= {threshold_ms:.0f} ms, two levels deep:"
    )
    for depth, name, cum, own in reversed(rows):  # importtime prints children first
        if depth <= 2 and cum >= threshold_ms:
            print(f"  {'  ' * depth}{name:<40} {cum:6.1f} ms  (own {own:.1f} ms)")


def _row(what: str, ours: float, theirs: float | None, target: float, unit: str = "s") -> str:
    fmt: Callable[[float], str] = (lambda v: f"{v:.3f} s") if unit == "s" else ms
    if theirs is None:
        return f"  {what:<34} {fmt(ours):>10}   (no reference: Node/MJML not available)"
    ratio = ours / theirs
    return (
        f"  {what:<34} {fmt(ours):>10}  vs {fmt(theirs):>10}  ratio {ratio:4.2f}"
        f"  (target <= {target}: {verdict(ratio, target)})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9, help="whole-process rounds (>= 7)")
    parser.add_argument("--runs", type=int, default=30, help="warm in-process builds per block")
    parser.add_argument("--no-node", action="store_true", help="skip the MJML/Node comparison")
    parser.add_argument("--imports", action="store_true", help="also print import profiles")
    parser.add_argument(
        "--src", type=Path, default=REPO / "src", help="the src/ folder to measure (default ours)"
    )
    parser.add_argument(
        "--before",
        type=Path,
        metavar="SRC",
        help="also measure this src/ (e.g. a `git worktree` of an older commit), alternating",
    )
    parser.add_argument("--warm-block", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--workspace", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--mjml-out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    src = args.src.resolve()
    sys.path.insert(0, str(src))
    if args.warm_block is not None:  # one block of warm builds, for in_process()
        print(json.dumps(warm_block(args.workspace, args.warm_block, args.mjml_out)))
        return
    rounds = max(7, args.rounds)
    print(f"sample: {ISSUE}; python {sys.version.split()[0]}; {os.cpu_count()} CPU(s)")
    modules: Path | None = None
    if not args.no_node:
        found = _node_modules()
        if isinstance(found, str):
            print(f"official MJML / juice: skipped ({found})")
        else:
            modules = found
            print(
                f"reference: official mjml {_version(modules, 'mjml')} and juice "
                f"{_version(modules, 'juice')} from {modules}; node {_node_version()}"
            )
    sources = {"after": src}
    if args.before:
        sources = {"before": args.before.resolve(), "after": src}
    with tempfile.TemporaryDirectory(prefix="bench-build-ws-") as tmp:
        trees: dict[str, tuple[Path, Path]] = {}
        for label, tree_src in sources.items():
            checkout = tree_src.parent if (tree_src.parent / "templates").is_dir() else REPO
            trees[label] = (tree_src, make_workspace(Path(tmp) / label, checkout))
            print(f"{label}: {tree_src}")
        mjml_file = Path(tmp) / "email.mjml" if modules is not None else None
        warm, node = in_process(trees, args.runs, mjml_file, modules)
        procs = whole_process(trees, mjml_file, modules, rounds)
        print(f"whole process, alternating, median of {rounds} (wall; CPU user+system):")
        for name, (wall, cpu) in procs.items():
            print(f"  {name:<18} {wall:.3f} s   (CPU {cpu:.3f} s)")
        mjml = procs.get("mjml CLI")
        print("summary (ours / theirs):")
        for label in trees:
            print(f" {label}:")
            for what, target in (("build", TARGET_BUILD), ("check", TARGET_CHECK)):
                wall, cpu = procs[f"{what} ({label})"]
                print(
                    _row(
                        f"`newsletter {what}` vs mjml CLI",
                        wall,
                        mjml[0] if mjml else None,
                        target,
                    )
                    + (f"  CPU ratio {cpu / mjml[1]:.2f}" if mjml else "")
                )
            print(
                _row("warm build vs Node mjml+juice", warm[label]["total"], node, TARGET_WARM, "ms")
            )
        if args.imports:
            for label, (tree_src, root) in trees.items():
                print(f"{label}:")
                import_profile(root, tree_src, "build")
                import_profile(root, tree_src, "check")


def _node_version() -> str:
    proc = subprocess.run(["node", "--version"], capture_output=True, text=True)
    return proc.stdout.strip()


if __name__ == "__main__":
    main()
