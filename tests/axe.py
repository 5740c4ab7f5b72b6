"""axe-core in a Playwright page: the accessibility rules a page must pass, as a test helper.

axe-core comes from tests/npm (pinned in tests/npm/package-lock.json, installed by
scripts/setup-test); a test that needs it and cannot find it fails with that instruction.
The script is injected into the page under test with `add_script_tag(content=...)`; on a page
whose Content-Security-Policy refuses inline scripts (the studio's), it is evaluated through
the DevTools protocol instead, which CSP does not govern.

    from axe import assert_accessible
    assert_accessible(page)                       # no serious or critical violation
    assert_accessible(page, context="#summary")   # only part of the page
    assert_accessible(page, iframes=False)        # not inside frames (scriptless previews)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

AXE = Path(__file__).resolve().parent / "npm" / "node_modules" / "axe-core" / "axe.min.js"
BLOCKING = ("serious", "critical")


def axe_source() -> str:
    if not AXE.is_file():
        pytest.fail(f"axe-core is not installed ({AXE}); run scripts/setup-test")
    return AXE.read_text(encoding="utf-8")


def run_axe(page: Any, context: str | None = None, *, iframes: bool = True) -> dict[str, Any]:
    """axe.run() on the page (or the element matching the CSS selector `context`): its result.

    iframes=False leaves frames out: a frame that may not run scripts (a sandboxed email
    preview) cannot answer axe, which then waits for it; test such content on its own."""
    if not page.evaluate("() => typeof window.axe === 'object'"):
        try:
            page.add_script_tag(content=axe_source())
        except Exception:  # a CSP without 'unsafe-inline' refuses the tag: evaluate it instead
            page.evaluate("(src) => { (0, eval)(src); }", axe_source())
    result: dict[str, Any] = page.evaluate(
        """async ([ctx, iframes]) => JSON.parse(JSON.stringify(
            await axe.run(ctx ? document.querySelector(ctx) : document, { iframes })))""",
        [context, iframes],
    )
    return result


def describe(violations: list[dict[str, Any]]) -> str:
    """One line per violation and element, to read in a failing test's output."""
    lines = []
    for v in violations:
        for node in v.get("nodes", []):
            target = " ".join(str(t) for t in node.get("target", []))
            lines.append(f"[{v['impact']}] {v['id']}: {v['help']} at {target}")
            if node.get("failureSummary"):
                lines.append("    " + node["failureSummary"].replace("\n", "\n    "))
    return "\n".join(lines)


def assert_accessible(
    page: Any, context: str | None = None, *, iframes: bool = True
) -> dict[str, Any]:
    """Fail when axe-core finds a serious or critical violation; return the whole result."""
    result = run_axe(page, context, iframes=iframes)
    blocking = [v for v in result["violations"] if v.get("impact") in BLOCKING]
    assert not blocking, "axe-core found:\n" + describe(blocking)
    return result
