"""Start SendGrid's API stand-in the way a developer does: `../shared/sendgrid/start-mock.sh`.

Stoplight Prism serving SendGrid's own OpenAPI spec on 127.0.0.1 (see
../shared/sendgrid/README.md for what it checks and what it cannot, e.g. 429s).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest

from conftest import SHARED

START_MOCK = SHARED / "sendgrid" / "start-mock.sh"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def prism(spec: str = "tsg_mail_v3.json") -> Iterator[str]:
    """Yield the base URL of a running Prism mock for `spec`; stop it afterwards."""
    if not START_MOCK.is_file():
        pytest.fail(f"{START_MOCK} is missing: the SendGrid mock comes from ../shared/sendgrid")
    if shutil.which("node") is None:
        pytest.fail(
            "node is not installed; scripts/setup-test installs it (apt-get install nodejs npm)"
        )
    port = free_port()
    env = dict(os.environ, PRISM_ARGS="-v error", PRISM_LOG=f"/tmp/newsletter-prism-{port}.log")
    out = subprocess.run(
        ["bash", str(START_MOCK), str(port), spec],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    if out.returncode != 0:
        pytest.fail(f"start-mock.sh failed ({out.returncode}): {out.stderr[-2000:]}")
    pid = int(out.stdout.split()[-1])
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)


__all__ = ["prism", "free_port", "START_MOCK", "Path"]
