"""What `build` and `check` import, and what the CLI's consoles write (cli/output.py).

Speed itself is measured in benchmarks/bench_build.py, never asserted; these tests hold the
behaviour the speed rests on: a `check` or `build` process does not import what it does not
use (rich, email-validator and its DNS resolver, requests), and the plain path of the
consoles writes byte for byte what rich writes.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from newsletter.cli.output import LazyConsole

# Modules `check` and `build` must not import: rich (its Console), email-validator (its
# patterns) with dnspython, and requests (premailer's, never used: no network).
NOT_IMPORTED = ("rich", "email_validator", "dns", "requests")

PROBE = """
import json, runpy, sys
sys.argv = ["newsletter", *sys.argv[1:]]
try:
    runpy.run_module("newsletter", run_name="__main__")
except SystemExit as exc:
    code = exc.code
sys.stdout.flush()
print("MODULES=" + json.dumps(sorted(sys.modules)), file=sys.stderr)
"""


def _modules_of(workspace: Path, *args: str) -> tuple[str, set[str]]:
    """Run the real command in a fresh interpreter; its output and every module it imported.

    As through a pipe, 80 columns wide: long paths in the output must not need rich either."""
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "COLUMNS")}
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        cwd=workspace,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    marker = proc.stderr.rindex("MODULES=")
    return proc.stdout, set(json.loads(proc.stderr[marker + len("MODULES=") :]))


def _top(modules: set[str]) -> set[str]:
    return {m.split(".")[0] for m in modules}


def test_check_imports_only_what_it_uses(workspace: Path) -> None:
    out, modules = _modules_of(workspace, "check", "issues/2019-09.yaml")
    assert "issues/2019-09.yaml: 0 errors, 0 warnings: ok" in out
    assert "premailer" in modules and "newsletter.inline" in modules  # the check really ran
    assert not _top(modules) & set(NOT_IMPORTED), sorted(_top(modules) & set(NOT_IMPORTED))


def test_check_json_imports_only_what_it_uses(workspace: Path) -> None:
    out, modules = _modules_of(workspace, "check", "issues/2019-09.yaml", "--format", "json")
    assert json.loads(out)["ok"] is True
    assert not _top(modules) & set(NOT_IMPORTED)


def test_build_imports_only_what_it_uses(workspace: Path, tmp_path: Path) -> None:
    folder = tmp_path / ("a-long-folder-name-" * 3)  # lines wider than 80 columns
    out, modules = _modules_of(workspace, "build", "issues/2019-09.yaml", "-o", str(folder))
    assert "built 2019-09: 8 articles" in out
    assert f"bytes  {folder}/2019-09/preview.eml\n" in out  # one line, not wrapped
    tmp_path = folder
    assert (tmp_path / "2019-09" / "email.html").is_file()
    assert not _top(modules) & set(NOT_IMPORTED)


# ---------------------------------------------------------------- the consoles
PLAIN_CASES: list[tuple[tuple[Any, ...], dict[str, Any]]] = [
    (("issues/2019-09.yaml: 0 errors, 2 warnings: problems found",), {"markup": False}),
    (("[red]error[/red]: ",), {"end": ""}),
    (("[yellow]warning[/yellow]: ",), {"end": ""}),
    (
        ("issues/2019-09.yaml:100:3: articles[2].title: is too long — “quotes” :fire:",),
        {"markup": False, "soft_wrap": True},
    ),
    (("built 2019-09: 8 articles, 0 warnings, 210 ms",), {"markup": False}),
    (("  email.html       53,790 bytes  build/2019-09/email.html",), {"markup": False}),
    (("two\nlines",), {"markup": False}),
    (("wrote issues/2019-10.yaml; next: newsletter check issues/2019-10.yaml",), {}),
]
RICH_CASES: list[tuple[tuple[Any, ...], dict[str, Any]]] = [
    (("x" * 120,), {"markup": False}),  # wider than 80: rich wraps it
    (("a [bold]styled[/bold] word and [link]",), {}),  # markup beyond a level
    (("tab\there",), {"markup": False, "soft_wrap": True}),  # rich expands tabs
    (("café " * 30,), {"markup": False}),  # not ASCII and long: rich measures the cells
    (("one", "two"), {}),
]


def _written(capsys: pytest.CaptureFixture[str], console: Any, args: Any, kw: Any) -> str:
    console.print(*args, **kw)
    return capsys.readouterr().out


@pytest.mark.parametrize(("args", "kw"), PLAIN_CASES + RICH_CASES)
def test_console_writes_what_rich_writes(
    args: tuple[Any, ...],
    kw: dict[str, Any],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("COLUMNS", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "NO_COLOR"):
        monkeypatch.delenv(name, raising=False)
    lazy = LazyConsole()
    ours = _written(capsys, lazy, args, kw)
    theirs = _written(capsys, Console(highlight=False, emoji=False), args, kw)
    assert ours == theirs
    # The plain cases must not have needed rich at all; the others must have used it.
    assert (lazy._rich is None) == ((args, kw) in PLAIN_CASES)


def test_console_width_follows_columns(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "30")
    line = "issues/2019-09.yaml: 0 errors, 0 warnings: ok"  # 46 characters
    lazy = LazyConsole()
    ours = _written(capsys, lazy, (line,), {"markup": False})
    assert ours == _written(
        capsys, Console(highlight=False, emoji=False), (line,), {"markup": False}
    )
    assert ours != line + "\n" and lazy._rich is not None  # wrapped, by rich


def test_console_json_is_rich_json(capsys: pytest.CaptureFixture[str]) -> None:
    data = {"file": "issues/2019-09.yaml", "ok": False, "problems": [{"message": "é — “x”"}]}
    lazy = LazyConsole()
    lazy.print_json(json.dumps(data))
    ours = capsys.readouterr().out
    Console(highlight=False, emoji=False).print_json(json.dumps(data))
    assert ours == capsys.readouterr().out
    assert lazy._rich is None


def test_console_colours_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """FORCE_COLOR (as on a terminal): the level is coloured, which only rich does."""
    monkeypatch.setenv("FORCE_COLOR", "1")
    buffer = io.StringIO()
    monkeypatch.setattr(sys, "stderr", buffer)
    lazy = LazyConsole(stderr=True)
    lazy.print("[red]error[/red]: ", end="")
    assert buffer.getvalue().startswith("\x1b[") and "error\x1b[0m: " in buffer.getvalue()
    assert lazy._rich is not None
