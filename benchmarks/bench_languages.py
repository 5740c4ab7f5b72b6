"""Build time of an issue in three languages against the same issue in one (issue 12).

    .venv/bin/python benchmarks/bench_languages.py [--rounds 9]

A translated issue is built once per language (the base file, then each translation read
with the base's shared fields filled in), so three languages should cost about three
times one: this prints both, warm in one process (one Renderer reused, as `archive`
does) and as whole `newsletter build` processes, and the ratio.  The figure is the median
of ``--rounds`` alternating runs (one language, three languages, ...), so a busy
neighbour slows both alike.  Expect about 3x warm, less as a whole process (Python's start
and the imports are paid once).  Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "tests" / "fixtures" / "workspace"
ISSUE = "issues/2019-09.yaml"


def make_workspace(root: Path, languages: list[str]) -> Path:
    """The sample workspace, with a translation per extra language as `newsletter translate`
    writes it (every text copied: the same amount of text to render as the base)."""
    from newsletter.issue import load_issue
    from newsletter.translation_skeleton import write_translation

    ws = root / f"ws-{len(languages)}"
    shutil.copytree(SAMPLE, ws)
    shutil.copytree(REPO / "templates", ws / "templates")
    base, _ = load_issue(ws / ISSUE)
    assert base is not None
    for lang in languages[1:]:
        write_translation(base.values, ws / ISSUE, lang, ISSUE)
    return ws


def warm(ws: Path) -> float:
    """Seconds to compose the issue and its translations, with one warm Renderer."""
    from newsletter.build import compose
    from newsletter.config import Workspace
    from newsletter.render import Renderer
    from newsletter.translations import translations_of

    w = Workspace.find(ws)
    r = Renderer(w)
    path = ws / ISSUE
    started = time.perf_counter()
    for one in [path, *translations_of(path)]:
        built = compose(w, one, r)
        assert not built.errors, built.errors
    return time.perf_counter() - started


def process(ws: Path, out: Path) -> float:
    """Seconds for a whole `newsletter build` (every language written)."""
    env = {**os.environ, "PYTHONPYCACHEPREFIX": "/tmp/newsletter-bench-pycache"}
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "newsletter", "build", ISSUE, "-o", str(out)],
        cwd=ws,
        env=env,
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-languages-") as tmp:
        root = Path(tmp)
        one = make_workspace(root, ["en"])
        three = make_workspace(root, ["en", "es", "fr"])
        warm(one), warm(three)  # imports, caches
        times: dict[str, list[float]] = {"warm 1": [], "warm 3": [], "build 1": [], "build 3": []}
        for _ in range(max(3, args.rounds)):
            times["warm 1"].append(warm(one))
            times["warm 3"].append(warm(three))
            times["build 1"].append(process(one, root / "out-1"))
            times["build 3"].append(process(three, root / "out-3"))
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"median of {max(3, args.rounds)} rounds, sample issue (8 articles)")
    print(f"{'':<28}{'1 language':>12}{'3 languages':>13}{'ratio':>8}")
    for label, key in (("in-process, warm", "warm"), ("whole `newsletter build`", "build")):
        a, b = med[f"{key} 1"], med[f"{key} 3"]
        print(f"{label:<28}{a * 1000:>9.0f} ms{b * 1000:>10.0f} ms{b / a:>7.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
