"""Commands about issues: new, check, build, schema, preview, archive."""

from __future__ import annotations

import datetime as dt
import json
import time
from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import Annotated

import typer

from ..config import Workspace
from ..errors import (
    CheckFailed,
    ConfigError,
    IssueError,
    NewsletterError,
    Problem,
    TemplateError,
)
from ..words import plural
from . import app, console, err_console, state
from .plain_help import PlainHelp


class Format(StrEnum):
    text = "text"
    json = "json"


def _resolve(path: Path) -> Path:
    return path if path.is_absolute() else (Path.cwd() / path)


def print_problems(problems: list[Problem]) -> None:
    for p in problems:
        colour = "red" if p.severity == "error" else "yellow"
        err_console.print(f"[{colour}]{p.severity}[/{colour}]: ", end="")
        err_console.print(p.render(), markup=False, soft_wrap=True)


ISSUE_HELP = "The issue: its file (issues/2019-09.yaml) or its id (2019-09)."


def issue_path(ws: Workspace, issue: Path) -> Path:
    """The file an ISSUE argument names, shown relative to this folder where it can be."""
    from ..issue import issue_file

    path = issue_file(ws.issues_dir, issue)
    return Path(_rel(path)) if path.is_absolute() else path


@app.command(cls=PlainHelp)
def check(
    issue: Annotated[Path, typer.Argument(metavar="ISSUE", help=ISSUE_HELP)],
    strict: Annotated[bool, typer.Option("--strict", help="Warnings fail too.")] = False,
    fmt: Annotated[
        Format, typer.Option("--format", metavar="FORMAT", help="text, or json for CI.")
    ] = Format.text,
) -> None:
    """Check an issue for mistakes before anyone sees it. Exit 0 clean, 1 problems found."""
    from ..build import compose
    from ..checks import lint_unbuildable

    exit_code = 1
    path = issue
    try:
        ws = state.workspace()
        path = issue_path(ws, issue)
        try:
            problems = compose(ws, path).problems
        except IssueError:  # what could be read is still checked: every problem in one run
            problems = lint_unbuildable(ws, path)
    except TemplateError as exc:
        problems = exc.problems
    except ConfigError as exc:
        if fmt is not Format.json:
            raise
        problems = [Problem(message=exc.message, field=exc.key, hint=exc.hint, code="config")]
        exit_code = exc.exit_code
    errors = [p for p in problems if p.severity == "error"]
    warnings = [p for p in problems if p.severity == "warning"]
    failed = bool(errors) or (strict and bool(warnings))
    if fmt is Format.json:
        console.print_json(
            json.dumps(
                {
                    "file": str(path),
                    "ok": not failed,
                    "errors": len(errors),
                    "warnings": len(warnings),
                    "problems": [p.as_dict() for p in problems],
                }
            )
        )
    else:
        print_problems(problems)
        verdict = "problems found" if failed else "ok"
        console.print(
            f"{path}: {plural(len(errors), 'error')}, {plural(len(warnings), 'warning')}: {verdict}",
            markup=False,
        )
    raise typer.Exit(exit_code if failed else 0)


@app.command(cls=PlainHelp)
def build(
    issue: Annotated[Path, typer.Argument(metavar="ISSUE", help=ISSUE_HELP)],
    out: Annotated[
        Path | None,
        typer.Option("-o", "--out", metavar="DIR", help="Output folder (default build/)."),
    ] = None,
    strict: Annotated[bool, typer.Option("--strict", help="Warnings fail too.")] = False,
) -> None:
    """Build an issue's email and web page.

    Writes email.html, email.txt, web.html and preview.eml; refuses when check finds errors.
    """
    from ..build import build_issue, write_build
    from ..checks import lint_unbuildable

    ws = state.workspace()
    started = time.perf_counter()
    path = issue_path(ws, issue)
    try:
        built = build_issue(ws, path, strict=strict)
    except (IssueError, CheckFailed) as exc:
        if state.debug:
            raise
        # One line per problem with its level, as `check` prints them.
        problems = lint_unbuildable(ws, path) if isinstance(exc, IssueError) else exc.problems
        print_problems(problems)
        errors = sum(p.severity == "error" for p in problems)
        err_console.print(
            f"{path}: {plural(errors, 'error')}, {plural(len(problems) - errors, 'warning')}: nothing was "
            "written (fix them and run `newsletter check` again)",
            markup=False,
            soft_wrap=True,
        )
        raise typer.Exit(1) from None
    output = write_build(ws, built, _resolve(out) if out else ws.build_dir)
    elapsed = time.perf_counter() - started
    print_problems(built.warnings)
    console.print(
        f"built {built.issue_id}: {len(built.located.issue.articles)} articles, "
        f"{plural(len(built.warnings), 'warning')}, {elapsed * 1000:.0f} ms",
        markup=False,
    )
    for name, path in output.files.items():
        size = path.stat().st_size
        console.print(f"  {name:<12} {size:>9,} bytes  {_rel(path)}", markup=False)


def _rel(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


@app.command(cls=PlainHelp)
def new(
    date: Annotated[
        str | None, typer.Option("--date", metavar="YYYY-MM", help="Month of the issue, YYYY-MM.")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
) -> None:
    """Write issues/YYYY-MM.yaml from a commented skeleton."""
    ws = state.workspace()
    try:
        month = (
            dt.datetime.strptime(date, "%Y-%m").date() if date else dt.date.today().replace(day=1)
        )
    except ValueError:
        raise typer.BadParameter(
            f"{date!r} is not a month; write it as YYYY-MM", param_hint="--date"
        ) from None
    stem = f"{month:%Y-%m}"
    target = ws.issues_dir / f"{stem}.yaml"
    if target.exists() and not force:
        raise NewsletterError(
            f"{_rel(target)} already exists", hint="edit it, or pass --force to overwrite"
        )
    skeleton = resources.files("newsletter").joinpath("skeleton.yaml").read_text("utf-8")
    text = skeleton.format(
        month_name=f"{month:%B}", year=month.year, stem=stem, date=f"{month:%Y-%m}-28"
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, "utf-8")
    console.print(f"wrote {_rel(target)}; next: newsletter check {_rel(target)}", markup=False)


@app.command(cls=PlainHelp)
def schema(
    out: Annotated[
        Path | None,
        typer.Option("-o", "--out", metavar="FILE", help="Write to a file instead of stdout."),
    ] = None,
) -> None:
    """Print the JSON Schema of the issue format.

    For editors (autocompletion, checking as you type) and CI.
    """
    from ..issue import json_schema

    text = json.dumps(json_schema(), indent=2, ensure_ascii=False) + "\n"
    if out:
        out.write_text(text, "utf-8")
        console.print(f"wrote {out}", markup=False)
    else:
        typer.echo(text, nl=False)
