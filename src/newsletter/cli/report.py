"""`newsletter report`: how an issue did, from the events the server stored."""

from __future__ import annotations

import enum
import json
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table
from rich.text import Text

from . import app, console, state
from .plain_help import PlainHelp

if TYPE_CHECKING:
    from ..report import IssueReport


class Format(enum.StrEnum):
    text = "text"
    json = "json"


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f} %"


_BY_LANGUAGE = ("sent", "delivered", "unique_opens", "unique_clicks", "unsubscribes")


def _language_dict(r: IssueReport) -> dict[str, object]:
    """One language's figures for --format json (counts and rates, no timeline)."""
    return {**{k: getattr(r, k) for k in _BY_LANGUAGE}, "rates": r.rates()}


def _print_languages(by_language: dict[str, IssueReport]) -> None:
    """A translated issue: the main figures of each language, side by side."""
    table = Table(title="By language", title_justify="left")
    table.add_column("language", style="bold")
    for label in ("sent", "delivered", "opened", "clicked", "unsubscribed"):
        table.add_column(label, justify="right")
    for lang, r in by_language.items():
        rates = r.rates()
        table.add_row(
            lang,
            str(r.sent),
            f"{r.delivered} ({_percent(rates['delivered'])})",
            f"{r.unique_opens} ({_percent(rates['unique_opens'])})",
            f"{r.unique_clicks} ({_percent(rates['unique_clicks'])})",
            f"{r.unsubscribes} ({_percent(rates['unsubscribes'])})",
        )
    console.print(table)


@app.command(cls=PlainHelp)
def report(
    issue: Annotated[
        str | None,
        typer.Argument(
            metavar="ISSUE",
            help="Issue id or file (2019-09 or issues/2019-09.yaml); default: the"
            " issue with the latest events.",
        ),
    ] = None,
    format: Annotated[
        Format,
        typer.Option("--format", metavar="FORMAT", help="text, or json for scripts."),
    ] = Format.text,
) -> None:
    """Show how an issue did, with a chart.

    Deliveries, bounces, opens, clicks, unsubscribes and spam reports, with rates,
    and a chart of opens and clicks over time.
    """
    from ..issue import issue_id_of
    from ..report import build_report, write_chart
    from ..report_languages import language_reports
    from ..signup_store import signup_counts

    ws = state.workspace()
    result = build_report(ws, issue_id_of(issue) if issue else None)
    by_language = language_reports(ws, result.issue_id)  # a translated issue's languages
    chart = write_chart(ws, result)
    signups = signup_counts(ws)
    if format is Format.json:
        data = result.as_dict()
        data["chart"] = str(chart)
        data["languages"] = {lang: _language_dict(r) for lang, r in by_language.items()}
        data["signups"] = signups
        console.print_json(json.dumps(data, ensure_ascii=False))
        return
    if result.note:
        console.print(f"note: {result.note}", markup=False, soft_wrap=True)
    rates = result.rates()
    table = Table(title=f"Issue {result.issue_id}", title_justify="left")
    table.add_column("", style="bold")
    table.add_column("addresses", justify="right")
    table.add_column("rate", justify="right")
    table.add_column("of", style="dim")
    table.add_row("sent", str(result.sent), "", "")
    if result.outbox:
        table.add_row("written to the outbox", str(result.outbox), "", "not emailed")
    for key, label, base in (
        ("delivered", "delivered", "sent"),
        ("deferred", "deferred (retried)", "sent"),
        ("bounced", "bounced", "sent"),
        ("blocked", "blocked (temporary)", "sent"),
        ("dropped", "dropped", "sent"),
        ("unique_opens", "opened", "delivered"),
        ("machine_opens", "machine opens only", "delivered"),
        ("unique_clicks", "clicked", "delivered"),
        ("unsubscribes", "unsubscribed", "delivered"),
        ("spam_reports", "reported as spam", "delivered"),
    ):
        table.add_row(label, str(getattr(result, key)), _percent(rates[key]), base)
    table.add_row("click-to-open", "", _percent(rates["click_to_open"]), "opened")
    console.print(table)
    if by_language:
        _print_languages(by_language)
    if result.top_links:
        links = Table(title="Top links", title_justify="left")
        links.add_column("clicked by", justify="right")
        links.add_column("clicks", justify="right")
        links.add_column("link", overflow="fold")
        for link in result.top_links:
            links.add_row(str(link.unique), str(link.total), Text(link.url))  # no markup
        console.print(links)
    console.print(f"chart: {chart}", markup=False)
    if signups:
        _print_signups(signups)


def _print_signups(signups: dict[str, dict[str, object]]) -> None:
    """Sign-ups through `newsletter serve`, per list, since the first (each address once)."""
    table = Table(title="Sign-ups and preferences (all time)", title_justify="left")
    for column in ("list", "sign-ups", "confirmed", "confirm rate", "preference changes", "left"):
        table.add_column(column, justify="left" if column == "list" else "right")
    for name, row in signups.items():
        rate = row["confirm_rate"]
        table.add_row(
            Text(name),
            str(row["signups"]),
            str(row["confirmations"]),
            _percent(rate if isinstance(rate, float) else None),
            str(row["preference_changes"]),
            str(row["left"]),
        )
    console.print(table)
