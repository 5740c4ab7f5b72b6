"""Commands about sending: send, status, cancel.

The work is in :mod:`newsletter.send`; this module parses options, asks for
confirmation, draws the progress bar and turns Ctrl-C into a clean pause.  The words
of the plan and of the outcome are in :mod:`newsletter.cli.send_output`.
"""

from __future__ import annotations

import dataclasses
import gc
import json
from contextlib import suppress
from datetime import tzinfo
from enum import StrEnum
from pathlib import Path
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

from ..errors import CheckFailed, InputError, IssueError, NewsletterError
from ..esp.registry import backend_choices
from ..ledger import CANCELLED, DONE, SCHEDULED, Ledger
from ..words import plural
from . import app, console, state
from .pausing import pause_on_signals
from .plain_help import PlainHelp
from .send_output import (
    delivers,
    dry_run_done,
    outcome,
    print_plan,
    print_send,
    problem_line,
    refused,
    say,
    summary_dict,
    test_sent,
    when,
)

if TYPE_CHECKING:
    from ..config import Workspace
    from ..plan import SendOptions
    from ..send import SendSession


SKIP_IMAGE_CHECK_HELP = "Send even if the issue's own pictures are not at their published address."

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


TIMEZONE_HELP = (
    "Time zone of times without one, as an IANA name such as America/Costa_Rica "
    "(default: send.timezone in newsletter.toml)."
)


def _zone(ws: Workspace, name: str | None) -> tzinfo | None:
    """--timezone, else `send.timezone`, else None (this computer's zone is shown)."""
    from ..schedule import time_zone

    if name is not None:
        return time_zone(name)
    return time_zone(ws.config.send.timezone, key="send.timezone")


def _zone_of(
    ws: Workspace, asked: str | None, scheduled_in: str | None, default: tzinfo | None
) -> tzinfo | None:
    """The zone to show a send's times in: --timezone if given, else the zone its time was
    typed in (kept with the send), else the default."""
    if asked is None and scheduled_in:
        from ..schedule import time_zone

        with suppress(NewsletterError):
            return time_zone(scheduled_in)
    return default


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


@app.command(cls=PlainHelp)
def send(
    issue: Annotated[
        Path,
        typer.Argument(
            metavar="ISSUE", help="The issue: its file (issues/2019-09.yaml) or its id (2019-09)."
        ),
    ],
    lists: Annotated[
        list[str] | None,
        typer.Option(
            "--list",
            metavar="NAME",
            help="Subscriber list (subscribers/NAME.csv); repeat for several.",
        ),
    ] = None,
    tags: Annotated[
        list[str] | None,
        typer.Option(
            "--tag",
            metavar="TAG",
            help="Only subscribers with this tag; repeat for any of several.",
        ),
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
            metavar="TIME",
            help="Schedule for this time: 2019-10-01 08:00, tomorrow 08:00, in 2 hours, or "
            "2019-10-01T08:00-06:00; within what the provider allows (SendGrid: 72 hours).",
        ),
    ] = None,
    timezone: Annotated[
        str | None, typer.Option("--timezone", metavar="ZONE", help=TIMEZONE_HELP)
    ] = None,
    rate: Annotated[
        float | None,
        typer.Option("--rate", metavar="N", help="At most N requests per second (at least 0.01)."),
    ] = None,
    backend: Annotated[
        BackendChoice | None,
        typer.Option(
            "--backend",
            metavar="NAME",
            help="Where the messages go: auto (the first backend that is set up: SendGrid "
            "when SENDGRID_API_KEY is set, else the outbox folder), "
            + ", ".join(name for name in backend_choices() if name != "auto")
            + ".",
        ),
    ] = None,
    test_to: Annotated[
        str | None,
        typer.Option(
            "--test-to",
            metavar="ADDRESSES",
            help="Send a [TEST] copy to these addresses only, separated by commas; a name "
            'may come first: "Maria Comms <maria@example.org>".',
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
    new_only: Annotated[
        bool,
        typer.Option(
            "--new-only",
            help="Only people on the lists who have not had this issue (added since).",
        ),
    ] = False,
    language: Annotated[
        str | None,
        typer.Option(
            "--language",
            metavar="CODE",
            help="Only this version of a translated issue, to the readers who get it, e.g. es.",
        ),
    ] = None,
    skip_image_check: Annotated[
        bool, typer.Option("--skip-image-check", help=SKIP_IMAGE_CHECK_HELP)
    ] = False,
) -> None:
    """Send an issue to subscriber lists, or a test copy.

    Shows the plan (who, how many, which backend), asks, then sends in batches of up
    to 1,000; Ctrl-C pauses, --resume continues.
    """
    from ..plan import SendOptions
    from ..schedule import parse_send_at
    from ..send import SendSession, parse_test_addresses
    from ..send_languages import build_versions

    if resend_unknown and skip_unknown:
        raise typer.BadParameter("choose one of --resend-unknown and --skip-unknown")
    if (resend_unknown or skip_unknown) and not resume:
        raise typer.BadParameter("--resend-unknown and --skip-unknown go with --resume")
    if rate is not None and not rate >= 0.01:  # checked here: a range would show in --help
        raise typer.BadParameter(
            f"{rate} is less than 0.01 requests per second", param_hint="--rate"
        )
    from ..issue import issue_file

    ws = state.workspace()
    source = _resolve(issue_file(ws.issues_dir, issue))  # a path, or an id such as 2019-10
    zone = _zone(ws, timezone)
    zone_name = timezone if timezone is not None else ws.config.send.timezone
    copies = parse_test_addresses(test_to) if test_to is not None else []
    when_ = parse_send_at(send_at, timezone=zone_name) if send_at else None
    try:
        # The issue and its translations; test copies and dry runs may show an unfinished one.
        versions = build_versions(ws, source, language, finished=not (test_to or dry_run))
        built = versions.base
    except CheckFailed as exc:
        raise typer.Exit(refused(ws, source, exc.problems)) from None
    except IssueError as exc:  # unreadable: still report everything that can be checked
        from ..checks import lint_unbuildable

        raise typer.Exit(
            refused(ws, source, lint_unbuildable(ws, source) or exc.problems)
        ) from None
    options = SendOptions(
        lists=list(lists or []),
        tags=list(tags or []),
        backend=backend.value if backend else None,
        dry_run=dry_run,
        send_at=when_,
        rate=rate,
        force_resend=force_resend,
        new_only=new_only,
        timezone=zone_name,
        resume=resume,
        unknown="resend" if resend_unknown else "skip" if skip_unknown else "ask",
        test_to=[email for email, _ in copies],
        test_names={email: name for email, name in copies if name},
        language=language,
    )
    session = SendSession(ws, built, options, versions=versions)
    try:
        if not (skip_image_check or dry_run) and session.backend.capabilities.delivers:
            from ..sent_pictures import refuse_unpublished

            refuse_unpublished(versions.builds.values())  # the email shows them from there
        code = _run_session(session, ws, options, yes=yes, zone=zone)
    except InputError as exc:  # a list that cannot be read: each problem with its level
        for p in exc.problems:
            where = session.source_of(p.path) if p.path else None
            say(problem_line(ws, dataclasses.replace(p, path=where)), err=True)
        code = exc.exit_code
    finally:
        session.close()
    if code:
        raise typer.Exit(code)


def _run_session(
    session: SendSession, ws: Workspace, options: SendOptions, *, yes: bool, zone: tzinfo | None
) -> int:
    from ..personalize import DEV_SECRET_WARNING

    if session.dev_key:
        say(DEV_SECRET_WARNING, err=True)
    plan = session.plan()
    print_plan(ws, session, plan, options, zone)
    if options.dry_run and plan.delivers:
        say("dry run: nothing was sent")
        return 0
    if plan.batches == 0 and (not plan.unknown or options.unknown == "skip"):
        if plan.resume is None:
            say(plan.nobody_left())
            return 0
        report = session.finish()
        what = "is done" if report.state == DONE else "stays scheduled"
        say(f"send #{report.send_id} {what}: {plan.nobody_left()}")
        return outcome(ws, report, session, zone) if report.state not in (DONE, SCHEDULED) else 0
    if not yes and not options.dry_run:
        what = "Schedule" if plan.send_at else "Send"
        where = "" if plan.delivers else " (to the outbox: nothing is emailed)"
        people = plural(plan.total_recipients, "recipient")
        if not typer.confirm(f"{what} {plan.issue_id} to {people}{where}?"):
            say("nothing was sent", err=True)
            return 1
    # Everything alive now (the built issue, the imported libraries) lives until we exit:
    # keep the garbage collector from re-scanning it for every batch (~8 % of a large send).
    gc.freeze()
    # The handlers stay until the summary is printed: a signal after the last batch must
    # not turn a finished send into a killed process.
    with pause_on_signals(session.request_stop):
        with _Bar(plan.batches, plan.total_recipients) as bar:
            report = session.execute(bar)
        if options.dry_run:
            dry_run_done(ws, session, report)
            return 0
        if plan.test:
            return test_sent(ws, session, report)
        return outcome(ws, report, session, zone)


# --------------------------------------------------------------------------- status


@app.command(cls=PlainHelp)
def status(
    issue: Annotated[
        str | None,
        typer.Argument(
            metavar="ISSUE",
            help="An issue file or id (e.g. 2019-09); all issues if left out.",
        ),
    ] = None,
    fmt: Annotated[
        Format, typer.Option("--format", metavar="FORMAT", help="text, or json.")
    ] = Format.text,
    timezone: Annotated[
        str | None,
        typer.Option(
            "--timezone",
            metavar="ZONE",
            help="Show times in this zone, e.g. America/Costa_Rica (default: send.timezone, "
            "else this computer's), and in UTC.",
        ),
    ] = None,
) -> None:
    """Show how each send is doing.

    For every send: its state (scheduled for when, done, paused…), batches done, and
    recipients sent, pending, failed and unknown.
    """
    import time

    from ..issue import issue_id_of

    ws = state.workspace()
    zone = _zone(ws, timezone)
    if not ws.state_db.exists():
        sends: list[dict[str, Any]] = []
    else:
        with Ledger(ws.state_db) as ledger:
            summaries = ledger.sends(issue_id_of(issue) if issue else None)
            sends = [summary_dict(s, ledger) for s in summaries]
    if fmt is Format.json:
        console.print_json(json.dumps({"sends": sends}))
        return
    if not sends:
        say("no sends yet" + (f" of {issue_id_of(issue)}" if issue else ""))
        return
    now = time.time()
    for d in sends:
        print_send(d, _zone_of(ws, timezone, d["send_tz"], zone), now)


# --------------------------------------------------------------------------- cancel


@app.command(cls=PlainHelp)
def cancel(
    issue: Annotated[
        str, typer.Argument(metavar="ISSUE", help="An issue file or id, e.g. 2019-09.")
    ],
    timezone: Annotated[
        str | None,
        typer.Option(
            "--timezone",
            metavar="ZONE",
            help="Show times in this zone (default: send.timezone, else this computer's).",
        ),
    ] = None,
) -> None:
    """Cancel a scheduled send, or abandon an unfinished one.

    A send scheduled at the provider is called off there (nobody receives it); one
    the provider can no longer call off, or a paused one, is abandoned here.
    """
    from ..issue import issue_id_of
    from ..schedule import cancel_send
    from .send_output import outbox_folder

    ws = state.workspace()
    base_zone = _zone(ws, timezone)
    with Ledger(ws.state_db) as ledger:
        cancelled = cancel_send(ws, issue_id_of(issue), ledger=ledger)
    for c in cancelled:
        s = c.send
        zone = _zone_of(ws, timezone, s.send_tz, base_zone)
        people = plural(s.recipients_sent, "recipient")
        if c.at_provider and not delivers(s.backend):
            say(
                f"cancelled scheduled send #{s.id} of {s.issue_id} (was due "
                f"{when(s.send_at, zone)}): it was only written to the outbox, so nothing "
                f"was emailed; its files are now in {outbox_folder(ws, s.issue_id, s.id)}"
            )
        elif c.at_provider:
            say(
                f"cancelled scheduled send #{s.id} of {s.issue_id} at {c.provider} (was due "
                f"{when(s.send_at, zone)}): nobody receives it"
            )
        elif not delivers(s.backend):
            say(
                f"abandoned send #{s.id} of {s.issue_id}: it was only written to the outbox "
                f"({people}), so nothing was emailed; nothing more will be written for it"
            )
        elif s.send_at:
            say(
                f"abandoned send #{s.id} of {s.issue_id} here only: {c.why_not}.  The "
                f"{people} in batches {c.provider} accepted get it at "
                f"{when(s.send_at, zone)} (or got it); nobody else will from this send"
            )
        else:
            say(
                f"abandoned send #{s.id} of {s.issue_id}: {people} had "
                "received it; nobody else will from this send"
            )
        if s.recipients_unknown:
            say(
                f"  {plural(s.recipients_unknown, 'recipient')} were in batches posted without "
                "an answer: they may have received it, and later sends leave them out"
            )
    abandoned = [c.send for c in cancelled if not c.at_provider]
    if abandoned:
        lists = dict.fromkeys(name for s in abandoned for name in s.lists)
        say(
            f"to send it to those who did not get it: newsletter send "
            f"issues/{abandoned[0].issue_id}.yaml "
            + " ".join(f"--list {name}" for name in lists)
            + " (whoever has it is left out)"
        )
    assert all(c.send.state == CANCELLED for c in cancelled)
