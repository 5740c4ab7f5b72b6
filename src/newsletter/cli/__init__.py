"""The `newsletter` command line: a thin layer that parses arguments, calls the
modules that do the work, and turns errors into one clear message and an exit code.

Exit codes: 0 ok, 1 problems found or a user error, 2 usage or configuration error,
130 interrupted.  A traceback is shown only with ``--debug`` (or for a real bug).
"""

from __future__ import annotations

import gc
import importlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ..errors import NewsletterError
from .output import LazyConsole

if TYPE_CHECKING:
    from rich.console import Console

    from ..config import Workspace

app = typer.Typer(
    name="newsletter",
    help="Build monthly newsletter issues from YAML and send them through SendGrid.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

# rich is imported when something needs it (a table, colour on a terminal); plain text to
# a pipe or file is written directly, as rich would write it (cli/output.py).
console: Console = LazyConsole()  # type: ignore[assignment]
err_console: Console = LazyConsole(stderr=True)  # type: ignore[assignment]


class State:
    debug: bool = False
    workspace_path: Path | None = None

    def workspace(self) -> Workspace:
        from ..config import Workspace

        return Workspace.find(self.workspace_path)


state = State()


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")] = False,
    workspace: Annotated[
        Path | None,
        typer.Option(
            "--workspace",
            "-w",
            metavar="DIR",
            help="Folder holding newsletter.toml (default: this folder or a parent; "
            "or NEWSLETTER_WORKSPACE).",
        ),
    ] = None,
) -> None:
    state.debug = debug
    state.workspace_path = workspace


# Which module registers each top-level command (on `app`, when imported).  Only the
# module of the command being run is imported, so `newsletter build` does not pay for
# the send, list and server code; help and unknown commands load them all.
COMMANDS = {
    "new": "issues",
    "check": "issues",
    "build": "issues",
    "schema": "issues",
    "translate": "issues",
    "preview": "web",
    "archive": "web",
    "studio": "studio",
    "subscribers": "audience",
    "suppressions": "suppressions",
    "send": "sending",
    "status": "sending",
    "cancel": "sending",
    "serve": "serve",
    "signup-form": "signup",
    "report": "report",
}
MODULE_ORDER = (
    "issues",
    "web",
    "studio",
    "audience",
    "suppressions",
    "sending",
    "serve",
    "signup",
    "report",
)


# Commands that run for a moment and end: the garbage collector is off for them (main).
SHORT_COMMANDS = ("build", "check")


def command_name(args: list[str]) -> str | None:
    """The subcommand in ARGS, skipping the root options and their values."""
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg in ("-w", "--workspace"):
            skip = True
        elif not arg.startswith("-"):
            return arg
    return None


def load_commands(args: list[str]) -> None:
    name = command_name(args)
    wanted = {COMMANDS[name]} if name in COMMANDS else set(MODULE_ORDER)
    for module in MODULE_ORDER:
        if module in wanted:
            importlib.import_module(f"{__name__}.{module}")


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point; returns the process exit code.

    typer/click run in standalone mode, so usage errors print their message and
    exit 2 as usual; our own errors pass through it and are printed here.
    """
    args = sys.argv[1:] if argv is None else argv
    state.debug = "--debug" in args
    if argv is None and command_name(args) in SHORT_COMMANDS:
        # A process that ends in a moment: the cyclic collector would only walk the
        # objects its imports make, again and again (7% of a `newsletter check`).
        gc.disable()
    load_commands(args)
    # Everything imported so far lives as long as the process: keep the collector from
    # walking it again and again (about a tenth of a `newsletter build`).
    gc.freeze()
    command = typer.main.get_command(app)
    try:
        command.main(args=args, prog_name="newsletter", standalone_mode=True)
    except SystemExit as exc:
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        return 130
    except NewsletterError as exc:
        if state.debug:
            raise
        err_console.print(f"error: {exc}", markup=False, soft_wrap=True)
        return exc.exit_code
    except OSError as exc:  # a folder that does not exist, a file we may not write, a full disk
        if state.debug:
            raise
        where = f"{exc.filename}: " if exc.filename else ""
        err_console.print(f"error: {where}{exc.strerror or exc}", markup=False, soft_wrap=True)
        return 1
    return 0
