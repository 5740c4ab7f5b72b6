"""`--help` as a person reads it: ``send ISSUE``, not ``send {ISSUE}`` or ``ISSUE <path>``.

Typer marks a required argument with braces in the usage line and follows an
argument's name with its Python type; neither means anything to the staff who read
these pages.  Commands made with ``@app.command(cls=PlainHelp)`` show the argument's
name alone (options name their value with ``metavar=``, and numbers are checked by
the command, e.g. :func:`check_port`, so that no "[0<=x<=65535]" is shown).
"""

from __future__ import annotations

from typing import Any

import typer
from typer.core import TyperCommand


def _plain(piece: str) -> str:
    """``{ISSUE}`` -> ``ISSUE``, ``{EMAIL}...`` -> ``EMAIL...``."""
    core, dots = (piece[:-3], "...") if piece.endswith("...") else (piece, "")
    if core.startswith("{") and core.endswith("}"):
        core = core[1:-1]
    return core + dots


class PlainHelp(TyperCommand):
    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        return [_plain(piece) for piece in super().collect_usage_pieces(ctx)]

    def format_options(self, ctx: Any, formatter: Any) -> None:
        arguments: list[tuple[str, str]] = []
        options: list[tuple[str, str]] = []
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is None:
                continue
            if param.param_type_name == "argument":
                arguments.append((record[0].split(" <", 1)[0], record[1]))
            else:
                options.append(record)
        for title, rows in (("Arguments", arguments), ("Options", options)):
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)


def check_port(port: int | None) -> None:
    if port is not None and not 0 <= port <= 65535:
        raise typer.BadParameter(
            f"{port} is not a port; use 1 to 65535, or 0 for any free one",
            param_hint="--port",
        )
