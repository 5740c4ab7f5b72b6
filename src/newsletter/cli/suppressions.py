"""Commands: `suppressions add|list|remove|restore|sync`.

The suppression list lives in `subscribers/suppressions.csv` and, as a durable copy,
in `.newsletter/state.db` (:mod:`newsletter.suppression_store`); sends honour both.
These commands are thin: the work is in `suppression_file.py` and `suppression_writes.py`.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections import Counter
from typing import Annotated

import typer

from ..addresses import normalise_email, suppression_key
from ..subscribers import describe_path
from ..suppression_file import REASONS, Suppression, now_iso, read_suppressions
from ..suppression_writes import add_suppressions, remove_suppressions, stored_suppressions
from ..words import plural
from . import app, console, err_console, state
from .audience import FormatOption, Reason, _say, _table
from .plain_help import PlainHelp

suppressions_app = typer.Typer(
    help="The suppression list: addresses that never receive a send.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(suppressions_app, name="suppressions")


@suppressions_app.command("add", cls=PlainHelp)
def suppressions_add(
    emails: Annotated[list[str], typer.Argument(metavar="EMAIL", help="Addresses to suppress.")],
    reason: Annotated[
        Reason,
        typer.Option(
            "--reason", metavar="REASON", help="Why: unsubscribed, bounced, spam or manual."
        ),
    ] = "manual",
    source: Annotated[
        str, typer.Option("--source", metavar="TEXT", help="Where the request came from.")
    ] = "cli",
) -> None:
    """Suppress addresses for every list and every future send.

    For requests that came by email, phone or letter."""
    ws = state.workspace()
    at = now_iso()
    entries: list[Suppression] = []
    bad: list[str] = []
    for raw in emails:
        try:
            normalise_email(raw)
        except ValueError as exc:
            bad.append(f"{raw.strip()!r}: {exc}")
            continue
        entries.append(Suppression(email=raw, reason=reason, source=source, at=at))
    added = add_suppressions(ws.suppressions_path, entries) if entries else []
    added_keys = {s.key for s in added}
    reported: set[str] = set()
    for entry in entries:
        key = suppression_key(entry.email)
        if key in reported:
            continue
        reported.add(key)
        if key in added_keys:
            _say(f"suppressed {normalise_email(entry.email)} ({reason})")
        else:
            _say(f"already suppressed: {normalise_email(entry.email)}")
    _say(f"{len(added)} added to {describe_path(ws.suppressions_path)}")
    for line in bad:
        err_console.print(f"error: not an email address: {line}", markup=False, soft_wrap=True)
    if bad:
        raise typer.Exit(1)


@suppressions_app.command("list", cls=PlainHelp)
def suppressions_list(
    reason: Annotated[
        Reason | None, typer.Option("--reason", metavar="REASON", help="Only this reason.")
    ] = None,
    output: FormatOption = "text",
) -> None:
    """Show every suppressed address with its reason, source and date."""
    ws = state.workspace()
    in_file = list(read_suppressions(ws.suppressions_path))
    known = {s.key for s in in_file}
    only_stored = [s for s in stored_suppressions(ws) if s.key not in known]
    rows = [s for s in in_file + only_stored if reason is None or s.reason == reason]
    if output == "json":
        sys.stdout.write(
            json.dumps(
                [
                    {"email": s.email, "reason": s.reason, "source": s.source, "at": s.at}
                    for s in rows
                ],
                indent=2,
                ensure_ascii=False,
            )
            + "\n"
        )
        return
    table = _table("email", "reason", "source", "at", numbers=False)
    for s in rows:
        table.add_row(s.email, s.reason, s.source, s.at)
    console.print(table)
    counts = Counter(s.reason for s in rows)
    summary = ", ".join(f"{counts[r]} {r}" for r in REASONS if counts[r])
    _say(f"{len(rows)} suppressed" + (f" ({summary})" if summary else ""))
    if only_stored:
        _say(
            f"{len(only_stored)} of them {'is' if len(only_stored) == 1 else 'are'} kept in "
            f".newsletter/state.db but missing from {describe_path(ws.suppressions_path)} "
            f"(sends honour {'it' if len(only_stored) == 1 else 'them'} anyway); "
            "`newsletter suppressions restore` writes "
            f"{'it' if len(only_stored) == 1 else 'them'} back to the file"
        )


@suppressions_app.command("sync", cls=PlainHelp)
def suppressions_sync(
    full: Annotated[
        bool,
        typer.Option("--full", help="Fetch everything, not only what changed since last sync."),
    ] = False,
    output: FormatOption = "text",
) -> None:
    """Fetch SendGrid's unsubscribes, bounces and spam reports.

    Merges them into suppressions.csv."""
    from ..esp.sendgrid_sync import api_from_workspace, sync_suppressions

    ws = state.workspace()
    api = api_from_workspace(ws)
    try:
        result = sync_suppressions(ws, api, full=full)
    finally:
        api.close()
    if output == "json":
        sys.stdout.write(json.dumps(result.as_dict(), indent=2, ensure_ascii=False) + "\n")
        return
    since = result.as_dict()["since"] or "the beginning"
    _say(f"SendGrid suppressions since {since}:")
    table = _table("list", "fetched", "new")
    for item in result.lists:
        table.add_row(item.name, str(item.fetched), str(item.added))
    console.print(table)
    for item in result.lists:
        for bad in item.invalid[:5]:
            err_console.print(
                f"warning: {item.name}: skipped invalid address {bad!r}", markup=False
            )
    _say(
        f"{plural(result.added, 'new suppression')} added to {describe_path(ws.suppressions_path)}"
    )


@suppressions_app.command("restore", cls=PlainHelp)
def suppressions_restore() -> None:
    """Write the suppressions file back from the state database.

    Adds to suppressions.csv every suppression kept in .newsletter/state.db that the file
    lacks (after it was deleted, replaced or edited by mistake)."""
    ws = state.workspace()
    stored = stored_suppressions(ws)
    path = ws.suppressions_path
    existed = path.exists()
    added = add_suppressions(path, stored) if stored else []
    shown = describe_path(path)
    if not stored:
        _say("the state database holds no suppressions; nothing to restore")
    elif added:
        _say(
            f"{'wrote' if not existed else 'added'} {plural(len(added), 'suppression')} "
            f"{'to a new' if not existed else 'back to'} {shown} "
            f"({len(stored) - len(added):,} were already there)"
        )
    else:
        _say(f"{shown} already has all {len(stored):,} suppressions; nothing to restore")


@suppressions_app.command("remove", cls=PlainHelp)
def suppressions_remove(
    emails: Annotated[list[str], typer.Argument(metavar="EMAIL", help="Addresses to take off.")],
) -> None:
    """Take addresses off the suppression list for good.

    For someone who asked to subscribe again: removes them from suppressions.csv and from
    the copy in the state database (deleting their row from the file alone is not enough:
    the copy would still apply)."""
    ws = state.workspace()
    keys = {suppression_key(e) for e in emails}
    removed = remove_suppressions(ws, keys)
    for raw in emails:
        key = suppression_key(raw)
        shown = raw.strip()
        with contextlib.suppress(ValueError):
            shown = normalise_email(raw)
        if key in removed:
            _say(f"removed {shown}: future sends to the lists they are on will reach them")
        else:
            _say(f"not on the suppression list: {shown}")
    if not removed:
        raise typer.Exit(1)
