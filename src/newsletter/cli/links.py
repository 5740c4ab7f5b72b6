"""`check --links` on the command line: the option that takes an optional ``=fresh``.

``--links`` uses the answers of the last 24 hours where it has them; ``--links=fresh``
asks every site again.  Click has no option whose value may be left out, so the command
class turns ``--links=fresh`` into ``--links --fresh-links`` (a hidden flag) before
parsing; any other value is a usage error that says what is allowed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from ..config import Workspace
from ..errors import Problem
from .plain_help import PlainHelp

LINKS_HELP = (
    "Also fetch every link and remote picture (needs the internet; answers are kept 24 "
    "hours). --links=fresh asks every site again."
)
TIMEOUT_HELP = "With --links: seconds to wait for each site's answer (default 10)."


class LinksCommand(PlainHelp):
    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        rewritten: list[str] = []
        for arg in args:
            if arg == "--":
                rewritten.extend(args[len(rewritten) :])
                break
            if arg.startswith("--links="):
                value = arg.split("=", 1)[1]
                if value not in ("fresh", "cached"):
                    raise typer.BadParameter(
                        f"{value!r}: write --links (answers of the last 24 hours are "
                        "reused) or --links=fresh (every site is asked again)",
                        ctx=ctx,
                        param_hint="--links",
                    )
                rewritten.append("--links")
                if value == "fresh":
                    rewritten.append("--fresh-links")
                continue
            rewritten.append(arg)
        result: list[str] = super().parse_args(ctx, rewritten)
        return result


def link_problems(ws: Workspace, path: Path, *, fresh: bool, timeout: float) -> list[Problem]:
    """What fetching the issue's addresses found (on what could be read of the file)."""
    from ..issue import load_issue
    from ..issue_links import check_links

    parsed, _ = load_issue(path)
    if parsed is None:
        return []
    return check_links(ws, parsed, fresh=fresh, timeout=timeout)


def start_link_check(
    ws: Workspace, path: Path, *, fresh: bool, timeout: float
) -> Callable[[], list[Problem]]:
    """Fetch the links in a thread while `check` builds the issue (the sites' answers are
    most of the wait); the function returned waits for them and gives their problems."""
    found: list[Problem] = []
    failed: list[BaseException] = []

    def run() -> None:
        try:
            found.extend(link_problems(ws, path, fresh=fresh, timeout=timeout))
        except BaseException as exc:  # raised again in the caller's thread
            failed.append(exc)

    thread = threading.Thread(target=run, name="check-links", daemon=True)
    thread.start()

    def wait() -> list[Problem]:
        thread.join()
        if failed:
            raise failed[0]
        return found

    return wait


def check_timeout(seconds: float) -> None:
    if not 0 < seconds <= 120:
        raise typer.BadParameter(
            f"{seconds:g}: give the seconds to wait, more than 0 and at most 120",
            param_hint="--link-timeout",
        )


__all__ = [
    "LINKS_HELP",
    "TIMEOUT_HELP",
    "LinksCommand",
    "check_timeout",
    "link_problems",
    "start_link_check",
]
