"""Commands about issues: new, check, build, schema, preview, archive."""

from __future__ import annotations

import datetime as dt
import json
import time
from enum import StrEnum
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
from .links import LINKS_HELP, TIMEOUT_HELP, LinksCommand, check_timeout, start_link_check
from .plain_help import PlainHelp


class Format(StrEnum):
    text = "text"
    json = "json"


def _resolve(path: Path) -> Path:
    return path if path.is_absolute() else (Path.cwd() / path)


def print_problems(problems: list[Problem]) -> None:
    for p in problems:
        colour = {"error": "red", "warning": "yellow"}.get(p.severity, "blue")  # info: blue
        err_console.print(f"[{colour}]{p.severity}[/{colour}]: ", end="")
        err_console.print(p.render(), markup=False, soft_wrap=True)


ISSUE_HELP = "The issue: its file (issues/2019-09.yaml) or its id (2019-09)."


def issue_path(ws: Workspace, issue: Path) -> Path:
    """The file an ISSUE argument names, shown relative to this folder where it can be."""
    from ..issue import issue_file

    path = issue_file(ws.issues_dir, issue)
    return Path(_rel(path)) if path.is_absolute() else path


@app.command(cls=LinksCommand)
def check(
    issue: Annotated[Path, typer.Argument(metavar="ISSUE", help=ISSUE_HELP)],
    strict: Annotated[bool, typer.Option("--strict", help="Warnings fail too.")] = False,
    fmt: Annotated[
        Format, typer.Option("--format", metavar="FORMAT", help="text, or json for CI.")
    ] = Format.text,
    links: Annotated[bool, typer.Option("--links", help=LINKS_HELP)] = False,
    fresh_links: Annotated[bool, typer.Option("--fresh-links", hidden=True)] = False,
    link_timeout: Annotated[
        float, typer.Option("--link-timeout", metavar="SECONDS", help=TIMEOUT_HELP)
    ] = 10.0,
) -> None:
    """Check an issue for mistakes before anyone sees it. Exit 0 clean, 1 problems found."""
    from ..build import compose
    from ..checks import lint_unbuildable
    from ..translations import translations_of

    check_timeout(link_timeout)

    exit_code = 1
    path = issue
    files = [issue]
    try:
        ws = state.workspace()
        path = issue_path(ws, issue)
        fetching = (  # offline without --links: CI without network still passes
            start_link_check(ws, path, fresh=fresh_links, timeout=link_timeout)
            if links or fresh_links
            else None
        )
        problems = []
        files = [path, *translations_of(path)]
        for one in files:  # the issue and each of its translations
            try:
                problems += compose(ws, one).problems
            except IssueError:  # what could be read is still checked: every problem in one run
                problems += lint_unbuildable(ws, one)
        problems = list(dict.fromkeys(problems))  # newsletter.toml's, once for all languages
        if fetching is not None:
            problems += fetching()
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
        what = f"{path} and {plural(len(files) - 1, 'translation')}" if len(files) > 1 else path
        console.print(
            f"{what}: {plural(len(errors), 'error')}, {plural(len(warnings), 'warning')}: {verdict}",
            markup=False,
            soft_wrap=True,  # one line, as editors and CI read it
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
    An issue with translations gets one set per language: <issue>/ and <issue>/<language>/.
    """
    from ..build import build_issue, write_build
    from ..checks import lint_unbuildable
    from ..translations import translations_of

    ws = state.workspace()
    started = time.perf_counter()
    path = issue_path(ws, issue)
    builds = []
    for one in [path, *translations_of(path)]:  # every language, before anything is written
        try:
            builds.append(build_issue(ws, one, strict=strict))
        except (IssueError, CheckFailed) as exc:
            if state.debug:
                raise
            # One line per problem with its level, as `check` prints them.
            problems = lint_unbuildable(ws, one) if isinstance(exc, IssueError) else exc.problems
            problems = [p for p in problems if p.severity in ("error", "warning")]
            print_problems(problems)
            errors = sum(p.severity == "error" for p in problems)
            err_console.print(
                f"{one}: {plural(errors, 'error')}, {plural(len(problems) - errors, 'warning')}: "
                "nothing was written (fix them and run `newsletter check` again)",
                markup=False,
                soft_wrap=True,
            )
            raise typer.Exit(1) from None
    several = len(builds) > 1
    for built in builds:
        output = write_build(ws, built, _resolve(out) if out else ws.build_dir)
        elapsed = time.perf_counter() - started
        print_problems(built.warnings)
        console.print(
            f"built {built.issue_id}{f' ({built.language})' if several else ''}: "
            f"{len(built.located.issue.articles)} articles, "
            f"{plural(len(built.warnings), 'warning')}, {elapsed * 1000:.0f} ms",
            markup=False,
        )
        for name, file in output.files.items():
            size = file.stat().st_size
            # One line per file, never wrapped: a path split in two cannot be copied.
            console.print(
                f"  {name:<12} {size:>9,} bytes  {_rel(file)}", markup=False, soft_wrap=True
            )


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
    languages: Annotated[
        str | None,
        typer.Option(
            "--languages",
            metavar="CODES",
            help="The issue's languages, e.g. en,es: the first is the issue's, each other gets "
            "a translation file (issues/YYYY-MM.es.yaml).",
        ),
    ] = None,
) -> None:
    """Write issues/YYYY-MM.yaml from a commented skeleton."""
    from ..translation_skeleton import parse_languages, translation_target

    ws = state.workspace()
    langs = parse_languages(languages) if languages is not None else []
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
    for file in [target, *(translation_target(target, lang) for lang in langs[1:])]:
        if file.exists() and not force:
            raise NewsletterError(
                f"{_rel(file)} already exists", hint="edit it, or pass --force to overwrite"
            )
    from ..studio_yaml import skeleton

    text = skeleton(month)
    if langs:
        from ..translation_skeleton import with_language

        text = with_language(text, langs[0])
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, "utf-8")
    console.print(f"wrote {_rel(target)}; next: newsletter check {_rel(target)}", markup=False)
    if langs[1:]:
        _translate(target, langs[1:])


def _translate(path: Path, langs: list[str]) -> None:
    """Write a translation skeleton of the issue file `path` per language."""
    from ..issue import load_issue
    from ..translation_skeleton import write_translation

    parsed, problems = load_issue(path)
    if parsed is None:
        raise IssueError(problems)
    for lang in langs:
        written = write_translation(parsed.values, path, lang, _rel(path))
        console.print(
            f"wrote {_rel(written)}: translate each text marked `# todo: translate`",
            markup=False,
        )


@app.command(cls=PlainHelp)
def translate(
    issue: Annotated[Path, typer.Argument(metavar="ISSUE", help=ISSUE_HELP)],
    to: Annotated[
        str,
        typer.Option(
            "--to", metavar="CODES", help="The translation's language, e.g. fr (or fr,pt)."
        ),
    ],
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
) -> None:
    """Start a translation of an issue in another language.

    Writes issues/YYYY-MM.fr.yaml beside issues/YYYY-MM.yaml. Every text is copied from the issue and marked `# todo: translate`; `check` lists what
    is still marked. Dates, links and pictures are taken from the issue.
    """
    from ..languages import translation_name
    from ..translation_skeleton import parse_languages, translation_target

    ws = state.workspace()
    path = issue_path(ws, issue)
    langs = parse_languages(to, "--to")
    named = translation_name(path)
    if named is not None:
        raise NewsletterError(
            f"{path} is a translation of {_rel(named[0])}",
            hint=f"give the issue's own file: newsletter translate {_rel(named[0])} --to {to}",
        )
    for lang in langs:
        file = translation_target(path, lang)
        if file.exists() and not force:
            raise NewsletterError(
                f"{_rel(file)} already exists", hint="edit it, or pass --force to overwrite"
            )
    _translate(path, langs)


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
