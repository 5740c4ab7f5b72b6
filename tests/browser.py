"""Headless Debian `chromium` driven by Playwright (no browser download: executable_path).

scripts/setup-test installs chromium when it is missing; a test that needs it and
cannot find it fails with that instruction rather than skipping silently.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    # No name resolves (a request a page's routing misses, such as the first requests of a new
    # frame, fails at once instead of looking up e.g. www.example.org on the network).
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost",
]


def chromium_path() -> str:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    pytest.fail(
        "Debian's chromium is not installed; run scripts/setup-test (apt-get install chromium)"
    )


@contextmanager
def browser() -> Iterator[Any]:
    """A Playwright Browser on Debian's chromium; every page blocks requests off 127.0.0.1."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=chromium_path(), headless=True, args=CHROMIUM_FLAGS)
        try:
            yield b
        finally:
            b.close()


def offline_page(b: Any, **context_kw: Any) -> Any:
    """A page whose requests to anything but 127.0.0.1 are aborted (tests never use the network)."""
    ctx = b.new_context(**context_kw)

    def _route(route: Any) -> None:
        url = route.request.url
        if url.startswith(("http://127.0.0.1", "data:", "about:", "file:")):
            route.continue_()
        else:
            route.abort()

    ctx.route("**/*", _route)
    return ctx.new_page()
