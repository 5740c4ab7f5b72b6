"""Commands: `subscribers check|import` (the suppression list's are in `cli/suppressions.py`).

Thin on purpose: reading, validating and merging live in `subscribers.py`,
`importing.py` and `suppressions.py`; this module picks the files, prints what happened in words a
communications officer can act on, and sets the exit code (1 when rows need fixing).
Output stays plain text (no colours needed to read it in a CI log).
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich import box
from rich.table import Table

from ..config import Workspace
from ..errors import Problem, SubscriberListError
from ..importing import ImportReport, import_list
from ..rows import RowProblem, Subscriber
from ..subscribers import describe_path, iter_list, list_file, list_names, list_path
from ..suppressions import SuppressionList
from ..words import plural
from . import app, console, state
from .plain_help import PlainHelp

subscribers_app = typer.Typer(
    help="Check subscriber lists and import CRM exports into them.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(subscribers_app, name="subscribers")

FormatOption = Annotated[
    Literal["text", "json"],
    typer.Option("--format", metavar="FORMAT", help="text for people, json for scripts."),
]
Reason = Literal["unsubscribed", "bounced", "spam", "manual"]  # = suppressions.REASONS


def _say(text: str) -> None:
    console.print(text, markup=False, highlight=False, soft_wrap=True)


def _table(*columns: str, numbers: bool = True) -> Table:
    """A borderless table that reads well in a terminal and in a CI log alike."""
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    for i, name in enumerate(columns):
        table.add_column(name, justify="right" if numbers and i else "left")
    return table


def _targets(ws: Workspace, names: list[str]) -> list[tuple[str, Path]]:
    """LIST arguments are list names, or paths to any CSV (to check an export first)."""
    if not names:
        found = list_names(ws)
        if not found:
            raise SubscriberListError(
                Problem(
                    message="no subscriber lists to check",
                    path=ws.subscribers_dir,
                    hint="a list is a CSV file like subscribers/members.csv with an email column",
                )
            )
        return [(name, list_path(ws, name)) for name in found]
    targets = []
    for name in names:
        if name.lower().endswith(".csv") and ("/" in name or Path(name).is_file()):
            path = Path(name)
            targets.append((path.stem, path))
        else:
            targets.append((name, list_path(ws, name)))
    return targets


def _relative(problem: Problem) -> Problem:
    if problem.path is None:
        return problem
    return dataclasses.replace(problem, path=Path(describe_path(problem.path)))


# --------------------------------------------------------------------------- subscribers


SHOWN_PER_KIND = 20  # rows printed per file and kind; the rest are counted
_KIND_WORDS = {
    "invalid": "invalid rows",
    "duplicate": "duplicate rows",
    "suppressed": "suppressed rows",
    "warning": "warnings",
}


class _Shown:
    """The row messages a person reads: the first SHOWN_PER_KIND of each kind per file,
    then one line saying how many more there are and where.

    A list with a million repeats must not print a million lines (nor format a
    million strings): `--format json` is where the complete list lives.
    """

    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix
        self.lines: list[str] = []
        self.counts: Counter[tuple[Path, str]] = Counter()
        self.hidden: dict[tuple[Path, str], list[int]] = {}  # [count, first line, last line]

    def add(self, problem: RowProblem) -> None:
        key = (problem.path, problem.kind)
        self.counts[key] += 1
        if self.counts[key] <= SHOWN_PER_KIND:
            self.lines.append(self.prefix + problem.render(describe_path(problem.path)))
            return
        hidden = self.hidden.get(key)
        if hidden is None:
            self.hidden[key] = [1, problem.line, problem.line]
        else:
            hidden[0] += 1
            hidden[2] = problem.line

    def total(self, *kinds: str) -> int:
        return sum(n for (_, kind), n in self.counts.items() if kind in kinds)

    def print(self) -> None:
        for line in self.lines:
            _say(line)
        for (path, kind), (count, first, last) in self.hidden.items():
            lines = f"line {first:,}" if first == last else f"lines {first:,} to {last:,}"
            _say(
                f"{self.prefix}... and {count:,} more {_KIND_WORDS.get(kind, kind)} in "
                f"{describe_path(path)} ({lines}); `--format json` lists them all"
            )


_ROW_JSON = json.JSONEncoder(ensure_ascii=False)


def _write_json(head: dict[str, object], rows: dict[str, Iterable[RowProblem]]) -> None:
    """`head` as indented JSON, then each list of rows one object per line, streamed:
    a million rows are never one Python structure or one string."""
    out = sys.stdout
    items = [
        f"  {json.dumps(k)}: " + json.dumps(v, indent=2, ensure_ascii=False).replace("\n", "\n  ")
        for k, v in head.items()
    ]
    out.write("{\n" + ",\n".join(items))
    for key, problems in rows.items():
        out.write(f",\n  {json.dumps(key)}: [")
        sep = "\n    "
        for problem in problems:
            out.write(sep + _ROW_JSON.encode(problem.as_dict()))
            sep = ",\n    "
        out.write("]" if sep == "\n    " else "\n  ]")
    out.write("\n}\n")


@subscribers_app.command("check", cls=PlainHelp)
def check(
    lists: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="LIST",
            help="List names (subscribers/<name>.csv) or CSV paths; default: all.",
        ),
    ] = None,
    output: FormatOption = "text",
) -> None:
    """Check subscriber lists, row by row.

    Counts each list's rows and shows invalid or duplicate rows (and warnings) with their line.

    Exit status 1 when any row needs fixing or a file cannot be read; warnings (a
    name with a line break, a value a spreadsheet runs as a formula) do not fail.
    """
    ws = state.workspace()
    targets = _targets(ws, list(lists or []))
    file_errors: list[Problem] = []
    try:
        suppressions: SuppressionList | None = SuppressionList(ws.suppressions_path)
    except SubscriberListError as exc:
        file_errors.extend(exc.problems)
        suppressions = None
    results: list[dict[str, object]] = []
    # json needs every row; text keeps only what it prints, whatever the list's size
    problems: list[RowProblem] | None = [] if output == "json" else None
    warnings: list[RowProblem] | None = [] if output == "json" else None
    shown = _Shown()
    for name, path in targets:
        counts: Counter[str] = Counter()
        error: str | None = None
        try:
            for item in iter_list(path, name, warnings=True):
                if isinstance(item, Subscriber):
                    counts["rows"] += 1
                    counts["valid"] += 1
                    if suppressions is not None and suppressions.contains_key(item.key):
                        counts["suppressed"] += 1
                    continue
                counts[item.kind] += 1
                if item.kind == "warning":
                    if warnings is not None:
                        warnings.append(item)
                else:
                    counts["rows"] += 1
                    if problems is not None:
                        problems.append(item)
                shown.add(item)
        except SubscriberListError as exc:
            file_errors.extend(exc.problems)
            error = exc.message
        results.append(
            {
                "list": name,
                "file": str(path),
                "rows": counts["rows"],
                "valid": counts["valid"],
                "invalid": counts["invalid"],
                "duplicates": counts["duplicate"],
                "suppressed": counts["suppressed"],
                "warnings": counts["warning"],
                "error": error,
            }
        )
    bad_rows = shown.total("invalid", "duplicate")
    failed = bool(bad_rows or file_errors)
    if problems is not None and warnings is not None:
        _write_json(
            {"ok": not failed, "lists": results, "file_errors": [p.as_dict() for p in file_errors]},
            {"problems": problems, "warnings": warnings},
        )
    else:
        _print_check(results, shown, file_errors)
    if failed:
        raise typer.Exit(1)


def _print_check(
    results: list[dict[str, object]], shown: _Shown, file_errors: list[Problem]
) -> None:
    table = _table("list", "rows", "valid", "invalid", "duplicates", "suppressed")
    for r in results:
        if r["error"]:
            table.add_row(str(r["list"]), "unreadable", "", "", "", "")
        else:
            table.add_row(
                *(
                    str(r[k])
                    for k in ("list", "rows", "valid", "invalid", "duplicates", "suppressed")
                )
            )
    console.print(table)
    shown.print()
    for error in file_errors:
        _say(_relative(error).render())
    bad_rows = shown.total("invalid", "duplicate")
    warned = shown.total("warning")
    warning_note = (
        f"{plural(warned, 'warning')}: those rows are used as the warnings say" if warned else ""
    )
    if bad_rows or file_errors:
        parts = []
        if bad_rows:
            parts.append(f"{plural(bad_rows, 'row')} to fix")
        if file_errors:
            parts.append(f"{plural(len(file_errors), 'file')} that cannot be read")
        _say("problems: " + ", ".join(parts) + " (rows listed above are not sent to)")
        if warning_note:
            _say(warning_note)
    else:
        _say("all lists OK" + (f"; {warning_note}" if warning_note else ""))


@subscribers_app.command("import", cls=PlainHelp)
def import_(
    file: Annotated[Path, typer.Argument(help="The CSV export to merge (e.g. from the CRM).")],
    list_name: Annotated[
        str, typer.Option("--list", metavar="NAME", help="The list to merge into.")
    ],
    create: Annotated[bool, typer.Option("--create", help="Start the list if missing.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Report only; write nothing.")] = False,
    output: FormatOption = "text",
) -> None:
    """Merge a CRM export into a list.

    Adds the new, valid addresses of FILE to a list and reports what was skipped and why.

    Two imports into one list run one after the other: the second waits, then
    merges on top of the first.
    """
    ws = state.workspace()
    target = list_file(ws, list_name)
    if not target.exists() and not create:
        names = ", ".join(list_names(ws)) or "none yet"
        raise SubscriberListError(
            Problem(
                message=f"no subscriber list named {list_name!r}",
                path=target,
                hint=f"lists: {names}; add --create to start a new list from {file}",
            )
        )

    def waiting() -> None:
        sys.stderr.write(f"waiting for another import of list {target.stem!r} to finish…\n")
        sys.stderr.flush()

    report = import_list(
        file,
        target,
        suppressions=SuppressionList(ws.suppressions_path),
        create=create,
        dry_run=dry_run,
        workspace=ws,
        on_wait=waiting,
    )
    if output == "json":
        _write_json(report.head(), {"skipped": report.skipped, "warnings": report.warnings})
        return
    _print_import(report, dry_run)


def _print_import(report: ImportReport, dry_run: bool) -> None:
    verb = "would add" if dry_run else "added"
    skipped = len(report.skipped) + report.already_listed
    where = describe_path(report.target)
    _say(f"{describe_path(report.source)} -> {where}" + (" (new list)" if report.created else ""))
    table = _table("outcome", "rows")
    table.add_row(verb, str(report.added))
    table.add_row("skipped: already on the list", str(report.already_listed))
    for kind, label in (
        ("invalid", "skipped: invalid address"),
        ("duplicate", "skipped: repeated in the file"),
        ("suppressed", "skipped: on the suppression list"),
    ):
        table.add_row(label, str(report.count(kind)))
    console.print(table)
    shown = _Shown("skipped ")
    for problem in report.skipped:
        shown.add(problem)
    shown.print()
    notes = _Shown()
    for problem in report.warnings:
        notes.add(problem)
    notes.print()
    if report.neutralised and not dry_run:
        _say(
            f"{plural(report.neutralised, 'value')} that a spreadsheet would run as a formula "
            f"{'was' if report.neutralised == 1 else 'were'} written with a leading ' so "
            f"{'it stays' if report.neutralised == 1 else 'they stay'} text (newsletter reads "
            f"{'it' if report.neutralised == 1 else 'them'} without it)"
        )
    for column, values in report.dropped_columns:
        _say(
            f"column {column!r} not imported: {where} has no such column "
            f"({plural(values, 'non-empty value')} left out); add {column!r} to the header line of "
            f"{where} to keep it"
        )
    if report.stale_removed:
        _say(
            f"removed {plural(report.stale_removed, 'temporary file')} left by an interrupted import"
        )
    if dry_run:
        _say(f"dry run: nothing written ({verb} {report.added}, skipped {skipped})")
    elif report.written:
        _say(f"{where} now has {plural(report.added, 'more subscriber')}")
    else:
        _say(f"nothing new: {where} left unchanged")
