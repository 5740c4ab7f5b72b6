"""Shared fixtures: a throw-away copy of the repository's workspace, and the real CLI.

Tests never touch the repository's own `issues/`, `subscribers/` or `.newsletter/`:
they work on a copy in a temporary folder, exactly as a user's checkout looks.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
SAMPLE_ISSUE = "issues/2019-09.yaml"

# Secrets a test may need; never real ones.
TEST_ENV = {
    "NEWSLETTER_SECRET": "test-secret-key-0123456789abcdef",
}


@pytest.fixture(autouse=True)
def _no_real_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees a real key or host from the developer's shell."""
    for name in (
        "SENDGRID_API_KEY",
        "SENDGRID_API_HOST",
        "SENDGRID_WEBHOOK_PUBLIC_KEY",
        "NEWSLETTER_SECRET",
        "NEWSLETTER_WORKSPACE",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """A fresh workspace: newsletter.toml, templates/, issues/2019-09.yaml, subscribers/*.csv."""
    ws = tmp_path / "ws"
    ws.mkdir()
    shutil.copy(REPO / "newsletter.toml", ws / "newsletter.toml")
    shutil.copytree(REPO / "templates", ws / "templates")
    (ws / "issues").mkdir()
    shutil.copy(REPO / SAMPLE_ISSUE, ws / SAMPLE_ISSUE)
    shutil.copytree(REPO / "subscribers", ws / "subscribers")
    return ws


@dataclass
class Result:
    code: int
    out: str
    err: str


def run_cli(
    *args: str,
    cwd: Path,
    env: dict[str, str] | None = None,
    timeout: float = 120,
    input: str | None = None,
) -> Result:
    """Run `python -m newsletter ARGS` as a user would, in a separate process."""
    full_env = {
        k: v for k, v in os.environ.items() if not k.startswith(("SENDGRID_", "NEWSLETTER_"))
    }
    full_env.update(env or {})
    full_env.setdefault("COLUMNS", "200")
    proc = subprocess.run(
        [sys.executable, "-m", "newsletter", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        input=input,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture
def cli(workspace: Path) -> Iterator[object]:
    """`cli("check", "issues/2019-09.yaml")` runs the real command in the workspace."""

    def _run(*args: str, env: dict[str, str] | None = None, **kw: object) -> Result:
        return run_cli(*args, cwd=workspace, env=env, **kw)  # type: ignore[arg-type]

    yield _run
