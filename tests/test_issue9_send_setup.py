"""Issue 9, point 19: `make test` says why it waits before each slow install step.

The SendGrid mock (Prism, from npm) used to install itself silently inside the first
test that started it; scripts/setup-test now installs it first, after a line saying so.
The test runs the real script with a stand-in for start-mock.sh.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import REPO

FAKE_MOCK = """#!/usr/bin/env bash
# Stand-in for ../shared/sendgrid/start-mock.sh: records that it ran, "serves" until killed.
echo "$1" > "{marker}"
sleep 60 </dev/null >/dev/null 2>&1 &
echo $!
"""


def _ready() -> bool:
    fonts = subprocess.run(["fc-list"], capture_output=True, text=True, check=False).stdout
    return bool(shutil.which("chromium") and shutil.which("node") and "dejavu" in fonts.lower())


@pytest.mark.skipif(not _ready(), reason="setup-test would install system packages first")
def test_setup_test_says_it_installs_the_sendgrid_mock_then_does(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    fake = tmp_path / "start-mock.sh"
    fake.write_text(FAKE_MOCK.format(marker=marker), "utf-8")
    cache = tmp_path / "cache"
    env = {**os.environ, "SENDGRID_MOCK_SCRIPT": str(fake), "PRISM_CACHE": str(cache)}
    first = subprocess.run(
        [str(REPO / "scripts" / "setup-test")], capture_output=True, text=True, env=env, timeout=600
    )
    assert first.returncode == 0, first.stderr
    assert (
        f"setup-test: installing the SendGrid mock (Prism, from npm, into {cache}): about a "
        "minute the first time"
    ) in first.stderr
    assert marker.read_text("utf-8").strip().isdigit()  # started on a free port, then stopped
    # Installed already: nothing to say, nothing started.
    (cache / "prism-9.9.9" / "node_modules" / ".bin").mkdir(parents=True)
    (cache / "prism-9.9.9" / "node_modules" / ".bin" / "prism").write_text("", "utf-8")
    marker.unlink()
    again = subprocess.run(
        [str(REPO / "scripts" / "setup-test")], capture_output=True, text=True, env=env, timeout=600
    )
    assert again.returncode == 0, again.stderr
    assert "SendGrid mock" not in again.stderr and not marker.exists()
