"""Golden files: the sample issue's email.html, email.txt and web.html, byte for byte.

A change to the theme or the pipeline shows up here as a diff to review.  To accept
a reviewed change, refresh the files with `make golden` (NEWSLETTER_REFRESH_GOLDEN=1).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from conftest import SAMPLE_ISSUE
from newsletter.build import compose
from newsletter.config import Workspace

GOLDEN = Path(__file__).parent / "golden" / "2019-09"
REFRESH = os.environ.get("NEWSLETTER_REFRESH_GOLDEN") == "1"


@pytest.mark.parametrize("name", ["email.html", "email.txt", "web.html"])
def test_sample_matches_golden(name: str, sample_workspace: Path) -> None:
    built = compose(Workspace(sample_workspace), sample_workspace / SAMPLE_ISSUE)
    actual = {"email.html": built.html, "email.txt": built.text, "web.html": built.web_html}[name]
    path = GOLDEN / name
    if REFRESH:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(actual, "utf-8")
    assert path.exists(), f"{path} missing: run `make golden` and review the new file"
    expected = path.read_text("utf-8")
    assert actual == expected, f"{name} changed: review the diff, then `make golden` to accept it"
