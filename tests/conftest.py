"""Shared fixtures: a throw-away copy of the sample workspace, and the real CLI.

The repository's own `newsletter.toml`, `issues/`, `subscribers/`, `build/`, `outbox/` and
`.newsletter/` are the user's: they change when someone edits the sample, unsubscribes through
`newsletter serve` or sends. Tests neither read nor write them. Their workspace is a copy of the
pristine sample kept in tests/fixtures/workspace/ (newsletter.toml, issues/2019-09.yaml,
subscribers/sample.csv and suppressions.csv) plus the repository's templates/, which are code.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from stub_sendgrid import StubSendGrid

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
# The sample workspace as the tests expect it; only a test-data change edits it.
SAMPLE = Path(__file__).resolve().parent / "fixtures" / "workspace"
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


def make_workspace(ws: Path) -> Path:
    """Lay out a fresh sample workspace at `ws` (created if missing) and return it."""
    shutil.copytree(SAMPLE, ws, dirs_exist_ok=True)
    shutil.copytree(REPO / "templates", ws / "templates")
    return ws


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """A fresh workspace: newsletter.toml, templates/, issues/2019-09.yaml, subscribers/*.csv."""
    return make_workspace(tmp_path / "ws")


@pytest.fixture(scope="session")
def sample_workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One sample workspace for the whole run, for tests that only read it (never write here)."""
    return make_workspace(tmp_path_factory.mktemp("sample") / "ws")


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


Cli = Callable[..., Result]  # the `cli` fixture: cli("check", "issues/2019-09.yaml")


@pytest.fixture
def cli(workspace: Path) -> Iterator[Cli]:
    """`cli("check", "issues/2019-09.yaml")` runs the real command in the workspace."""

    def _run(*args: str, env: dict[str, str] | None = None, **kw: object) -> Result:
        return run_cli(*args, cwd=workspace, env=env, **kw)  # type: ignore[arg-type]

    yield _run


@pytest.fixture
def stub() -> Iterator[StubSendGrid]:
    """The recording SendGrid stand-in (tests/stub_sendgrid.py) on 127.0.0.1."""
    with StubSendGrid() as server:
        yield server
