"""The suite does not depend on what a user did to their own checkout.

The repository's `newsletter.toml`, `issues/`, `subscribers/`, `build/`, `outbox/` and
`.newsletter/` are live data: a real one-click unsubscribe adds a row to
`subscribers/suppressions.csv`, a user edits the sample issue, a send fills `outbox/` and the
state database. Once, that alone turned `make test` red. The tests use the pristine sample in
tests/fixtures/workspace/ instead; this test proves it by running the tests that read the sample
most closely inside a copy of the checkout whose live data has all moved on.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import REPO, SAMPLE_ISSUE

SAMPLE = REPO / "tests" / "fixtures" / "workspace"

# Tests that read the sample's subject, suppressions and configuration: with the repository's own
# live data in their workspace, these failed.
SENSITIVE = ["tests/test_golden.py", "tests/test_suppressions.py", "tests/test_cli_audience.py"]


def _checkout_whose_data_moved_on(root: Path) -> Path:
    """A copy of the code and tests, with the live data changed as a user would change it."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(REPO / "tests", root / "tests", ignore=ignore)
    shutil.copytree(REPO / "templates", root / "templates")
    shutil.copy(REPO / "pyproject.toml", root / "pyproject.toml")
    shutil.copytree(SAMPLE, root, dirs_exist_ok=True)

    issue = root / SAMPLE_ISSUE
    text = issue.read_text("utf-8")
    subject = '\nsubject: "Mesoamerica & Caribbean Digest — September 2019"\n'
    assert subject in text
    issue.write_text(text.replace(subject, '\nsubject: "Edited by the user"\n'), "utf-8")
    with (root / "subscribers" / "suppressions.csv").open("a", encoding="utf-8") as f:
        f.write("ana.lopez@example.org,unsubscribed,one-click,2026-01-05T10:00:00+00:00\n")
    (root / "subscribers" / "members.csv").write_text(
        "email,name\nnew.member@example.org,New Member\n", "utf-8"
    )
    config = root / "newsletter.toml"
    text = config.read_text("utf-8")
    assert 'primary = "#0b5394"' in text
    config.write_text(text.replace('primary = "#0b5394"', 'primary = "#123456"'), "utf-8")
    for junk in ("outbox/2019-09/batch-0001.json", "build/2019-09/email.html"):
        (root / junk).parent.mkdir(parents=True, exist_ok=True)
        (root / junk).write_text("left over by the user\n", "utf-8")
    (root / ".newsletter").mkdir()
    (root / ".newsletter" / "state.db").write_bytes(b"not a database")
    (root / ".newsletter" / "issue-2019-09.lock").write_text("", "utf-8")
    return root


def test_the_tests_pass_whatever_the_user_did_to_their_workspace(tmp_path: Path) -> None:
    root = _checkout_whose_data_moved_on(tmp_path / "checkout")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NEWSLETTER_", "SENDGRID_"))}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *SENSITIVE],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout and "failed" not in proc.stdout
