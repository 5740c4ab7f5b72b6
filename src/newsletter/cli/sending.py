"""Commands about sending: send, status, cancel.

The work is in :mod:`newsletter.send`; this module parses options, prints the plan,
asks for confirmation, draws the progress bar and turns Ctrl-C into a clean pause.
"""

from __future__ import annotations

import gc
import json
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from ..engine import StopReason
from ..errors import NewsletterError
from ..esp.registry import backend_choices
from ..ledger import CANCELLED, DONE, FAILED, PAUSED, SCHEDULED, Ledger, SendSummary
from . import app, console, err_console, state

if TYPE_CHECKING:
    from ..config import Workspace
    from ..engine import SendReport
    from ..plan import Plan, SendOptions
    from ..send import SendSession


# --backend's choices are the registry's names (esp/registry.py), so a new provider needs
# no change here.  Built at run time; to the type checker it is just a StrEnum.
if TYPE_CHECKING:
    BackendChoice = StrEnum
else:
    BackendChoice = StrEnum("BackendChoice", [(name, name) for name in backend_choices()])


class Format(StrEnum):
    text = "text"
    json = "json"


def _resolve(path: Path) -> Path:
    return path if path.is_absolute() else (Path.cwd() / path)


def _rel(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _say(text: str, *, err: bool = False) -> None:
    (err_console if err else console).print(text, markup=False, highlight=False, soft_wrap=True)


def _when(ts: int | None) -> str:
    if not ts:
        return "-"
    return datetime.fromtimestamp(ts, UTC).astimezone().isoformat(timespec="minutes")


# --------------------------------------------------------------------------- send


class _Bar:
    """The rich progress bar: batches and recipients; says when it waits."""

    def __init__(self, batches: int, recipients: int) -> None:
        self.progress = Progress(
            TextColumn("{task.description:<11}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[note]}"),
            console=console,
            transient=False,
        )
        self.batches: TaskID = self.progress.add_task("batches", total=batches, note="")
        self.recipients: TaskID = self.progress.add_task("recipients", total=recipients, note="")

    def __enter__(self) -> _Bar:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def batch_done(self, seq: int, recipients: int) -> None:
        self.progress.advance(self.batches)
        self.progress.advance(self.recipients, recipients)
        self.progress.update(self.batches, note="")

    def waiting(self, seconds: float, reason: str) -> None:
        self.progress.update(self.batches, note=f"waiting {seconds:.1f} s: {reason}")


# Ctrl-C, `kill` (SIGTERM, also what a service manager or a CI runner sends) and a
# closed terminal or SSH session (SIGHUP) all pause the send the same clean way.
_PAUSE_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)


@contextmanager
def _pause_on_interrupt(request_stop: Callable[[], None]) -> Iterator[None]:
    """First signal: finish the batch in flight, then pause.  Second: stop at once
    (a batch whose request is out is then left unknown; one waiting stays unposted)."""
    pressed = {"n": 0}

    def handler(signum: int, frame: FrameType | None) -> None:
        pressed["n"] += 1
        if pressed["n"] > 1:
            raise KeyboardInterrupt
        request_stop()
        what = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
        _say(
            f"{what}: pausing after the batch in flight ({what} again to stop at once)",
            err=True,
        )

    previous: dict[int, Callable[[int, FrameType | None], Any] | int | None] = {}
    try:
        for signum in _PAUSE_SIGNALS:
            previous[signum] = signal.signal(signum, handler)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


def _print_plan(plan: Plan, subject: str) -> None:
    _say(f"Send plan for {plan.issue_id}: {subject}")
    if plan.test:
        _say(f"  test copy to:  {', '.join(plan.first)} (subject starts with [TEST])")
        _say(f"  backend:       {plan.destination}")
        return
    if plan.resume is not None:
        r = plan.resume
        _say(
            f"  resuming:      send #{r.id} ({r.state}), {r.batches_sent} batches / "
            f"{r.recipients_sent:,} recipients already sent"
        )
        if plan.unknown:
            _say(
                f"  unknown:       {len(plan.unknown)} batch(es) posted without an answer: "
                + ", ".join(f"#{b.seq}" for b in plan.unknown)
            )
        if plan.repost_batches or plan.repost_dropped:
            _say(
                f"  to post again: {plan.repost_batches} batch(es), "
                f"{plan.repost_recipients:,} recipients"
                + (
                    f" ({plan.repost_dropped:,} left out: unsubscribed since)"
                    if plan.repost_dropped
                    else ""
                )
            )
    _say(
        f"  lists:         {', '.join(plan.lists)}"
        + (f"   tags: {', '.join(plan.tags)}" if plan.tags else "")
    )
    _say(f"  recipients:    {plan.recipients:,}" + (" (not yet sent)" if plan.resume else ""))
    _say(
        f"  excluded:      {plan.invalid:,} invalid, {plan.duplicates:,} duplicate, "
        f"{plan.suppressed:,} suppressed"
        + (f", {plan.filtered_out:,} without the tags" if plan.tags else "")
        + (f", {plan.already_sent:,} already sent this issue" if plan.already_sent else "")
    )
    _say(f"  batches:       {plan.batches:,} (at most {plan.batch_size:,} recipients each)")
    _say(f"  backend:       {plan.destination}")
    if plan.send_at is not None:
        _say(f"  scheduled for: {plan.send_at.astimezone().isoformat(timespec='minutes')}")
    if plan.first:
        _say(f"  first:         {', '.join(plan.first)}")
    shown = plan.problems[:10]
    for p in shown:
        _say(f"warning: {p.render()}", err=True)
    if len(plan.problems) > len(shown):
        _say(
            f"warning: ... and {len(plan.problems) - len(shown)} more rows left out "
            "(`newsletter subscribers check` shows them all)",
            err=True,
        )


def _report(report: SendReport, session: SendSession) -> int:
    plan = session._plan
    if report.state == DONE:
        _say(
            f"sent {report.recipients_sent:,} recipients in {report.batches_sent} batch(es); "
            f"send #{report.send_id} is done"
        )
    elif report.state == SCHEDULED:
        assert plan is not None and plan.send_at is not None
        _say(
            f"scheduled {report.recipients_sent:,} recipients in {report.batches_sent} "
            f"batch(es) for {plan.send_at.astimezone().isoformat(timespec='minutes')}; "
            f"`newsletter cancel {plan.issue_id}` can still call it off"
        )
    if report.maybe_twice:
        _say(
            "note: batch(es) "
            + ", ".join(str(s) for s in report.maybe_twice)
            + " were posted again after a request got no answer; those recipients may have "
            "received the issue twice",
            err=True,
        )
    for note in session.suppression_notes():
        _say(f"warning: {note}", err=True)
    counts = session.audience_counts
    if counts and plan and counts.get("suppressed", 0) > plan.suppressed:
        _say(
            f"{counts['suppressed'] - plan.suppressed} subscriber(s) unsubscribed during "
            "the send and were left out",
            err=True,
        )
    if report.dropped:
        _say(
            f"{report.dropped:,} subscriber(s) unsubscribed before their batch was posted "
            "again and were left out of it",
            err=True,
        )
    if report.state in (DONE, SCHEDULED):
        return 0
    resume = f"newsletter send {_rel(session.built.source)} --resume"
    if report.state == PAUSED and report.unknown:
        _say(f"send #{report.send_id} paused: {report.message}", err=True)
        _say(
            f"  {report.recipients_sent:,} recipients sent in this run.  The batch was not "
            "posted again, so nobody gets the issue twice; choose how to continue:\n"
            f"    {resume} --skip-unknown     never send its recipients this issue\n"
            f"    {resume} --resend-unknown   post it again (some may get the issue twice)",
            err=True,
        )
        return 1
    if report.state == PAUSED:
        _say(f"send #{report.send_id} paused: {report.message}", err=True)
        _say(
            f"  {report.recipients_sent:,} recipients sent in this run; continue with: {resume}",
            err=True,
        )
        return 130 if report.stop is StopReason.BY_USER else 1
    if report.state == FAILED and isinstance(report.error, NewsletterError):
        _say(
            f"send #{report.send_id} stopped after {report.recipients_sent:,} recipients "
            f"in this run; once the problem below is fixed, continue with: {resume}",
            err=True,
        )
        raise report.error
    _say(f"send #{report.send_id} is {report.state}: {report.message}", err=True)
    return 1


@app.command()
def send(
    issue: Annotated[Path, typer.Argument(help="The issue file, e.g. issues/2019-09.yaml.")],
    lists: Annotated[
        list[str] | None,
        typer.Option("--list", help="Subscriber list (subscribers/NAME.csv); repeat for several."),
    ] = None,
    tags: Annotated[
        list[str] | None,
        typer.Option("--tag", help="Only subscribers with this tag; repeat for any of several."),
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run", help="Show the plan and stop (the outbox backend writes its files)."
        ),
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    send_at: Annotated[
        str | None,
        typer.Option(
            "--send-at",
            help="Schedule for this time (ISO 8601), within what the provider allows "
            "(SendGrid: 72 hours).",
        ),
    ] = None,
    rate: Annotated[
        float | None,
        typer.Option("--rate", min=0.01, help="At most this many requests per second."),
    ] = None,
    backend: Annotated[
        BackendChoice | None,
        typer.Option(
            "--backend",
            help="Where the messages go: auto (the first backend that is set up: SendGrid "
            "when SENDGRID_API_KEY is set, else the outbox folder) or a backend's name.",
        ),
    ] = None,
    test_to: Annotated[
        str | None,
        typer.Option(
            "--test-to", help="Send a [TEST] copy to these comma-separated addresses only."
        ),
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue a paused, failed or interrupted send.")
    ] = False,
    resend_unknown: Annotated[
        bool,
        typer.Option(
            "--resend-unknown", help="With --resume: post again batches that got no answer."
        ),
    ] = False,
    skip_unknown: Annotated[
        bool,
        typer.Option(
            "--skip-unknown", help="With --resume: never resend batches that got no answer."
        ),
    ] = False,
    force_resend: Annotated[
        bool,
        typer.Option(
            "--force-resend", help="Send again to lists that already received this issue."
        ),
    ] = False,
) -> None:
    """Send an issue to subscriber lists: plan, confirm, then batches of up to 1,000."""
    from ..build import build_issue
    from ..plan import SendOptions
    from ..schedule import parse_send_at
    from ..send import SendSession, validate_test_addresses

    if resend_unknown and skip_unknown:
        raise typer.BadParameter("choose one of --resend-unknown and --skip-unknown")
    if (resend_unknown or skip_unknown) and not resume:
        raise typer.BadParameter("--resend-unknown and --skip-unknown go with --resume")
    ws = state.workspace()
    built = build_issue(ws, _resolve(issue))
    options = SendOptions(
        lists=list(lists or []),
        tags=list(tags or []),
        backend=backend.value if backend else None,
        dry_run=dry_run,
        send_at=parse_send_at(send_at) if send_at else None,
        rate=rate,
        force_resend=force_resend,
        resume=resume,
        unknown="resend" if resend_unknown else "skip" if skip_unknown else "ask",
        test_to=validate_test_addresses(test_to) if test_to is not None else [],
    )
    session = SendSession(ws, built, options)
    try:
        code = _run_session(session, ws, options, yes=yes)
    finally:
        session.close()
    if code:
        raise typer.Exit(code)


def _run_session(session: SendSession, ws: Workspace, options: SendOptions, *, yes: bool) -> int:
    from ..personalize import DEV_SECRET_WARNING

    if session.dev_key:
        _say(DEV_SECRET_WARNING, err=True)
    plan = session.plan()
    _print_plan(plan, session.built.subject)
    if options.dry_run and plan.delivers:
        _say("dry run: nothing was sent")
        return 0
    if plan.batches == 0 and (not plan.unknown or options.unknown == "skip"):
        if plan.resume is None:
            _say(plan.nobody_left())
            return 0
        report = session.finish()
        what = "is done" if report.state == DONE else "stays scheduled"
        _say(f"send #{report.send_id} {what}: {plan.nobody_left()}")
        return _report(report, session) if report.state not in (DONE, SCHEDULED) else 0
    if not yes and not options.dry_run:
        what = "Schedule" if plan.send_at else "Send"
        if not typer.confirm(f"{what} {plan.issue_id} to {plan.total_recipients:,} recipients?"):
            _say("nothing was sent", err=True)
            return 1
    # Everything alive now (the built issue, the imported libraries) lives until we exit:
    # keep the garbage collector from re-scanning it for every batch (~8 % of a large send).
    gc.freeze()
    # The handlers stay until the summary is printed: a signal after the last batch must
    # not turn a finished send into a killed process.
    with _pause_on_interrupt(session.request_stop):
        with _Bar(plan.batches, plan.total_recipients) as bar:
            report = session.execute(bar)
        if options.dry_run:
            folder = ws.outbox_dir / plan.issue_id
            _say(
                f"dry run: wrote {report.batches_sent} batch file(s) and "
                f"{report.recipients_sent:,} .eml file(s) to {folder}; nothing was emailed"
            )
            return 0
        return _report(report, session)


# --------------------------------------------------------------------------- status


def _summary_dict(s: SendSummary, ledger: Ledger) -> dict[str, Any]:
    unknown = [] if s.running else ledger.unknown_batches(s.id)
    return {
        "send": s.id,
        "issue": s.issue_id,
        "lists": list(s.lists),
        "tags": list(s.tags),
        "backend": s.backend,
        "state": s.state,
        "running": s.running,
        "test": s.test,
        "created_at": s.created_at,
        "updated_at": s.updated_at,
        "send_at": s.send_at,
        "batches": s.batches,
        "batches_sent": s.batches_sent,
        "recipients_planned": s.planned_recipients,
        "recipients_sent": s.recipients_sent,
        "recipients_pending": s.pending,
        "recipients_failed": s.recipients_failed,
        "recipients_skipped": s.recipients_skipped,
        "recipients_dropped": s.recipients_dropped,
        "recipients_unknown": s.recipients_unknown,
        "unknown_batches": [
            {"batch": b.id, "seq": b.seq, "recipients": b.recipients, "error": b.error}
            for b in unknown
        ],
        "resent_batches": s.resent_batches,
        "error": s.error,
    }


@app.command()
def status(
    issue: Annotated[
        str | None,
        typer.Argument(help="An issue file or id (e.g. 2019-09); all issues if left out."),
    ] = None,
    fmt: Annotated[Format, typer.Option("--format", help="text, or json.")] = Format.text,
) -> None:
    """Show every send: state, batches done, recipients sent, pending, failed and unknown."""
    from ..issue import issue_id_of

    ws = state.workspace()
    if not ws.state_db.exists():
        sends: list[dict[str, Any]] = []
    else:
        with Ledger(ws.state_db) as ledger:
            summaries = ledger.sends(issue_id_of(issue) if issue else None)
            sends = [_summary_dict(s, ledger) for s in summaries]
    if fmt is Format.json:
        console.print_json(json.dumps({"sends": sends}))
        return
    if not sends:
        _say("no sends yet" + (f" of {issue_id_of(issue)}" if issue else ""))
        return
    for d in sends:
        label = d["state"] + (" (running)" if d["running"] else "")
        if d["state"] == SCHEDULED:
            label += f" for {_when(d['send_at'])}"
        kind = "test send" if d["test"] else "send"
        _say(
            f"{kind} #{d['send']}  {d['issue']}  to {', '.join(d['lists'])}  "
            f"via {d['backend']}  {label}  (started {d['created_at']})"
        )
        _say(
            f"  batches {d['batches_sent']}/{d['batches']} sent; recipients: "
            f"{d['recipients_planned']:,} planned, "
            f"{d['recipients_sent']:,} sent, {d['recipients_pending']:,} pending, "
            f"{d['recipients_failed']:,} failed, {d['recipients_unknown']:,} unknown"
            + (f", {d['recipients_skipped']:,} skipped" if d["recipients_skipped"] else "")
            + (
                f", {d['recipients_dropped']:,} left out (unsubscribed before a retry)"
                if d["recipients_dropped"]
                else ""
            )
        )
        if d["resent_batches"]:
            _say(
                f"  {d['resent_batches']} batch(es) were posted again after getting no "
                "answer: their recipients may have received the issue twice"
            )
        if d["error"] and d["state"] in (PAUSED, FAILED):
            _say(f"  last error: {d['error']}")
        for b in d["unknown_batches"]:
            _say(
                f"  batch {b['seq']} ({b['recipients']:,} recipients): posted, no answer"
                + (
                    "; resume with --resend-unknown or --skip-unknown (to know which, look "
                    f"in the provider's activity log for messages tagged nl_batch={b['batch']}:"
                    " if they are there, skip)"
                    if d["state"] not in (CANCELLED, DONE)
                    else ""
                )
            )
        if d["state"] in (PAUSED, FAILED) or (d["state"] == "sending" and not d["running"]):
            _say(f"  continue with: newsletter send issues/{d['issue']}.yaml --resume")


# --------------------------------------------------------------------------- cancel


@app.command()
def cancel(
    issue: Annotated[str, typer.Argument(help="An issue file or id, e.g. 2019-09.")],
) -> None:
    """Cancel a scheduled send of an issue (or abandon an unfinished one)."""
    from ..issue import issue_id_of
    from ..schedule import cancel_send

    ws = state.workspace()
    with Ledger(ws.state_db) as ledger:
        cancelled = cancel_send(ws, issue_id_of(issue), ledger=ledger)
    for c in cancelled:
        s = c.send
        if c.at_provider:
            _say(
                f"cancelled scheduled send #{s.id} of {s.issue_id} at {c.provider} (was due "
                f"{_when(s.send_at)}): nobody receives it"
            )
        elif s.send_at:
            _say(
                f"abandoned send #{s.id} of {s.issue_id} here only: {c.why_not}.  The "
                f"{s.recipients_sent:,} recipients in batches {c.provider} accepted get it at "
                f"{_when(s.send_at)} (or got it); nobody else will from this send"
            )
        else:
            _say(
                f"abandoned send #{s.id} of {s.issue_id}: {s.recipients_sent:,} recipients had "
                "received it; nobody else will from this send"
            )
        if s.recipients_unknown:
            _say(
                f"  {s.recipients_unknown:,} recipients were in batches posted without an "
                "answer: they may have received it, and later sends leave them out"
            )
    abandoned = [c.send for c in cancelled if not c.at_provider]
    if abandoned:
        lists = dict.fromkeys(name for s in abandoned for name in s.lists)
        _say(
            f"to send it to those who did not get it: newsletter send "
            f"issues/{abandoned[0].issue_id}.yaml "
            + " ".join(f"--list {name}" for name in lists)
            + " (whoever has it is left out)"
        )
    assert all(c.send.state == CANCELLED for c in cancelled)
