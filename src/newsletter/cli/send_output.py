"""What `newsletter send` prints: the issue's problems, the plan and the outcome.

Kept apart from the commands (:mod:`newsletter.cli.sending`) so that the words a
person reads before and after a send are in one place.  Counts are said as people
say them ("1 recipient", "3 batches"), paths as the workspace shows them
(``issues/2019-09.yaml``, ``outbox/2019-09/send-1/``), every line of a list of
problems starts with its level, and what went only to the outbox never reads as sent.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..engine import StopReason
from ..errors import NewsletterError, Problem
from ..ledger import CANCELLED, DONE, FAILED, PAUSED, SCHEDULED, Ledger, SendSummary
from ..words import plural
from . import console, err_console

if TYPE_CHECKING:
    from ..config import Workspace
    from ..engine import SendReport
    from ..plan import Plan, SendOptions
    from ..rows import RowProblem
    from ..send import SendSession


def say(text: str, *, err: bool = False) -> None:
    (err_console if err else console).print(text, markup=False, highlight=False, soft_wrap=True)


def shown_path(ws: Workspace, path: Path) -> str:
    """A path as the workspace shows it (issues/2019-09.yaml), else as it is."""
    try:
        return str(path.resolve().relative_to(ws.root.resolve()))
    except (ValueError, OSError):
        return str(path)


def shown_folder(ws: Workspace, path: Path) -> str:
    return shown_path(ws, path).rstrip("/") + "/"


def when(ts: int | None, zone: tzinfo | None) -> str:
    """A ledger time (unix seconds) in the user's zone and in UTC."""
    from ..schedule import shown_time

    if not ts:
        return "-"
    return shown_time(datetime.fromtimestamp(ts, UTC), zone)


# --------------------------------------------------------------------------- problems


def problem_line(ws: Workspace, p: Problem) -> str:
    """`error: issues/2019-09.yaml:7:1: date: …`: the level first, the path as check shows it."""
    shown = dataclasses.replace(p, path=Path(shown_path(ws, p.path))) if p.path else p
    return f"{p.severity}: {shown.render()}"


def print_problems(ws: Workspace, problems: list[Problem]) -> None:
    for p in sorted(problems, key=lambda p: p.severity != "error"):
        say(problem_line(ws, p), err=True)


def refused(ws: Workspace, source: Path, problems: list[Problem]) -> int:
    """The issue has errors: every problem (errors and warnings, as `check` shows them),
    then one line saying nothing was sent.  Returns the exit code."""
    print_problems(ws, problems)
    errors = sum(p.severity == "error" for p in problems)
    warnings = len(problems) - errors
    shown = shown_path(ws, source)
    say(
        f"{shown}: {plural(errors, 'error')}, {plural(warnings, 'warning')}: nothing was sent; "
        f"fix the errors (`newsletter check {shown}` lists them again), then send again",
        err=True,
    )
    return 1


def row_problem_line(ws: Workspace, p: RowProblem) -> str:
    return f"warning: {p.render(shown_path(ws, p.path))}"


# --------------------------------------------------------------------------- the plan


def print_plan(
    ws: Workspace, session: SendSession, plan: Plan, options: SendOptions, zone: tzinfo | None
) -> None:
    from ..schedule import shown_time

    built = session.built
    source = shown_path(ws, built.source)
    if built.draft:
        # First, before anything that looks like a send: a draft cannot go to a list.
        what = "only test copies (--test-to) can be sent" if plan.test else "it cannot be sent"
        say(
            f"DRAFT: {source} is marked `draft: true`, so {what}"
            + ("; this dry run only shows what a send would do" if options.dry_run else "")
            + ". Remove the `draft: true` line when the issue is ready."
        )
    print_problems(ws, [p for p in built.warnings if p.code != "draft"])
    say(f"Send plan for {plan.issue_id}: {built.subject}")
    if plan.test:
        names = options.test_names
        shown = [f"{names[e]} <{e}>" if e in names else e for e in options.test_to]
        say(f"  test copy to:  {', '.join(shown)} (subject starts with [TEST])")
        if session.versions.several:
            say(f"  languages:     {', '.join(plan.languages)} (one copy of each per address)")
        say(f"  backend:       {plan.destination}")
        return
    if plan.resume is not None:
        r = plan.resume
        say(
            f"  resuming:      send #{r.id} ({r.state}), {plural(r.batches_sent, 'batch')} / "
            f"{plural(r.recipients_sent, 'recipient')} already sent"
        )
        if plan.changed:
            say(
                "warning: the issue has changed since this send started (subject, text or "
                "layout): the people still to get it will get the new version, the others "
                "had the old one",
                err=True,
            )
        if plan.unknown:
            say(
                f"  unknown:       {plural(len(plan.unknown), 'batch')} posted without an "
                "answer: " + ", ".join(f"#{b.seq}" for b in plan.unknown)
            )
        if plan.repost_batches or plan.repost_dropped:
            say(
                f"  to post again: {plural(plan.repost_batches, 'batch')}, "
                f"{plural(plan.repost_recipients, 'recipient')}"
                + (
                    f" ({plan.repost_dropped:,} left out: unsubscribed since)"
                    if plan.repost_dropped
                    else ""
                )
            )
    say(
        f"  lists:         {', '.join(plan.lists)}"
        + (f"   tags: {', '.join(plan.tags)}" if plan.tags else "")
    )
    say(f"  recipients:    {plan.recipients:,}" + (" (not yet sent)" if plan.resume else ""))
    if session.versions.several:  # a translated issue: who gets which version
        say(
            "  languages:     "
            + ", ".join(f"{lang} {n:,}" for lang, n in plan.languages.items())
            + (f" ({plan.other_language:,} get another language)" if plan.other_language else "")
        )
    say(
        f"  excluded:      {plan.invalid:,} invalid, {plan.duplicates:,} duplicate, "
        f"{plan.suppressed:,} suppressed"
        + (f", {plan.filtered_out:,} without the tags" if plan.tags else "")
        + (f", {plan.already_sent:,} already sent this issue" if plan.already_sent else "")
    )
    say(f"  batches:       {plan.batches:,} (at most {plural(plan.batch_size, 'recipient')} each)")
    say(f"  backend:       {plan.destination}")
    if plan.send_at is not None:
        say(f"  scheduled for: {shown_time(plan.send_at, zone)}")
    if plan.first:
        say(f"  first:         {', '.join(plan.first)}")
    shown_rows = plan.problems[:10]
    for p in shown_rows:
        say(row_problem_line(ws, p), err=True)
    if len(plan.problems) > len(shown_rows):
        more = len(plan.problems) - len(shown_rows)
        say(
            f"warning: ... and {plural(more, 'more row')} left out "
            "(`newsletter subscribers check` shows them all)",
            err=True,
        )


# --------------------------------------------------------------------------- the outcome


def outbox_folder(ws: Workspace, issue_id: str, send_id: int, *, test: bool = False) -> str:
    from ..esp.outbox import send_folder

    return shown_folder(ws, send_folder(ws.outbox_dir, issue_id, send_id, test=test))


def dry_run_done(ws: Workspace, session: SendSession, report: SendReport) -> None:
    from ..esp.outbox import DRY_RUN

    plan = session._plan
    assert plan is not None
    folder = shown_folder(ws, ws.outbox_dir / plan.issue_id / DRY_RUN)
    say(
        f"dry run: wrote {plural(report.batches_sent, 'batch file')} and "
        f"{plural(report.recipients_sent, '.eml file')} to {folder}; nothing was emailed"
        + (
            " (and this draft cannot be sent until its `draft: true` line is removed)"
            if session.built.draft
            else ""
        )
    )


def test_sent(ws: Workspace, session: SendSession, report: SendReport) -> int:
    plan = session._plan
    assert plan is not None
    if report.state != DONE:
        return outcome(ws, report, session, None)
    who = plural(report.recipients_sent, "address")
    if plan.delivers:
        say(f"test copy sent to {who} (test send #{report.send_id})")
    else:
        folder = outbox_folder(ws, plan.issue_id, report.send_id, test=True)
        say(
            f"test copy for {who} written to the outbox (nothing was emailed): {folder} "
            f"(test send #{report.send_id})"
        )
    return 0


def outcome(ws: Workspace, report: SendReport, session: SendSession, zone: tzinfo | None) -> int:
    """Say how the send ended; the exit code (raises the error of a failed send)."""
    from ..schedule import shown_time

    plan = session._plan
    people = plural(report.recipients_sent, "recipient")
    batches = plural(report.batches_sent, "batch")
    delivers = plan is None or plan.delivers
    folder = (
        outbox_folder(ws, plan.issue_id, report.send_id)
        if plan is not None and not delivers
        else ""
    )
    if report.state == DONE:
        if delivers:
            say(f"sent {people} in {batches}; send #{report.send_id} is done")
        else:
            say(
                f"{people} written to the outbox (nothing was emailed) in {batches}: "
                f"{folder}; send #{report.send_id} is done"
            )
    elif report.state == SCHEDULED:
        assert plan is not None and plan.send_at is not None
        due = shown_time(plan.send_at, zone)
        if delivers:
            say(
                f"scheduled {people} in {batches} for {due}; "
                f"`newsletter cancel {plan.issue_id}` can still call it off"
            )
        else:
            say(
                f"{people} written to the outbox (nothing is emailed, then or now) in "
                f"{batches}, as scheduled for {due}: {folder}"
            )
    if report.maybe_twice:
        say(
            f"note: {'batch' if len(report.maybe_twice) == 1 else 'batches'} "
            + ", ".join(str(s) for s in report.maybe_twice)
            + f" {'was' if len(report.maybe_twice) == 1 else 'were'} posted again after a "
            "request got no answer; those recipients may have received the issue twice",
            err=True,
        )
    for note in session.suppression_notes():
        say(f"warning: {note}", err=True)
    counts = session.audience_counts
    if counts and plan and counts.get("suppressed", 0) > plan.suppressed:
        left = counts["suppressed"] - plan.suppressed
        say(
            f"{plural(left, 'subscriber')} unsubscribed during the send and "
            f"{'was' if left == 1 else 'were'} left out",
            err=True,
        )
    if report.dropped:
        say(
            f"{plural(report.dropped, 'subscriber')} unsubscribed before their batch was "
            f"posted again and {'was' if report.dropped == 1 else 'were'} left out of it",
            err=True,
        )
    if report.state in (DONE, SCHEDULED):
        return 0
    resume = f"newsletter send {shown_path(ws, session.built.source)} --resume"
    in_run = f"{plural(report.recipients_sent, 'recipient')} sent in this run"
    if report.state == PAUSED and report.unknown:
        say(f"send #{report.send_id} paused: {report.message}", err=True)
        say(
            f"  {in_run}.  The batch was not "
            "posted again, so nobody gets the issue twice; choose how to continue:\n"
            f"    {resume} --skip-unknown     never send its recipients this issue\n"
            f"    {resume} --resend-unknown   post it again (some may get the issue twice)",
            err=True,
        )
        return 1
    if report.state == PAUSED:
        say(f"send #{report.send_id} paused: {report.message}", err=True)
        say(f"  {in_run}; continue with: {resume}", err=True)
        return 130 if report.stop is StopReason.BY_USER else 1
    if report.state == FAILED and isinstance(report.error, NewsletterError):
        say(
            f"send #{report.send_id} stopped after {plural(report.recipients_sent, 'recipient')} "
            f"in this run; once the problem below is fixed, continue with: {resume}",
            err=True,
        )
        raise report.error
    say(f"send #{report.send_id} is {report.state}: {report.message}", err=True)
    return 1


# --------------------------------------------------------------------------- status


def summary_dict(s: SendSummary, ledger: Ledger) -> dict[str, Any]:
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
        "send_tz": s.send_tz,
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
        "languages": {  # a translated issue: recipients sent and batched per language
            lang: {"sent": sent, "batched": batched}
            for lang, (sent, batched) in ledger.language_counts(s.id).items()
        }
        if len(s.languages) > 1
        else {},
    }


def delivers(backend: str) -> bool:
    """Whether sends through this backend leave the machine (the outbox's do not)."""
    from ..esp.registry import backend_class

    try:
        return backend_class(backend).capabilities.delivers
    except Exception:  # a backend this version no longer has: say what it recorded
        return True


def print_send(d: dict[str, Any], zone: tzinfo | None, now: float) -> None:
    emailed = delivers(d["backend"])
    due = d["send_at"] is not None and d["send_at"] > now
    label = d["state"] + (" (running)" if d["running"] else "")
    sent = "sent"
    if d["state"] == SCHEDULED:
        if due:  # handed to the provider, which has not sent it yet
            label = f"scheduled for {when(d['send_at'], zone)}"
            sent = "scheduled"
        elif emailed:
            label = f"sent at {when(d['send_at'], zone)} (as scheduled)"
        else:
            label = f"was due {when(d['send_at'], zone)}"
    elif d["send_at"] and d["state"] not in (DONE, CANCELLED):
        label += f" (scheduled for {when(d['send_at'], zone)})"
    if not emailed:
        label += " (written to the outbox; nothing is emailed)"
        sent = "written"
    kind = "test send" if d["test"] else "send"
    say(
        f"{kind} #{d['send']}  {d['issue']}  to {', '.join(d['lists'])}  "
        f"via {d['backend']}  {label}  (started {d['created_at']})"
    )
    say(
        f"  batches {d['batches_sent']}/{d['batches']} {sent}; recipients: "
        f"{d['recipients_planned']:,} planned, "
        f"{d['recipients_sent']:,} {sent}, {d['recipients_pending']:,} pending, "
        f"{d['recipients_failed']:,} failed, {d['recipients_unknown']:,} unknown"
        + (f", {d['recipients_skipped']:,} skipped" if d["recipients_skipped"] else "")
        + (
            f", {d['recipients_dropped']:,} left out (unsubscribed before a retry)"
            if d["recipients_dropped"]
            else ""
        )
    )
    if d.get("languages"):
        say(
            "  languages: "
            + ", ".join(
                f"{lang} {n['sent']:,}/{n['batched']:,} sent" for lang, n in d["languages"].items()
            )
        )
    if d["resent_batches"]:
        say(
            f"  {plural(d['resent_batches'], 'batch')} "
            f"{'was' if d['resent_batches'] == 1 else 'were'} posted again after getting no "
            "answer: their recipients may have received the issue twice"
        )
    if d["error"] and d["state"] in (PAUSED, FAILED):
        say(f"  last error: {d['error']}")
    for b in d["unknown_batches"]:
        say(
            f"  batch {b['seq']} ({plural(b['recipients'], 'recipient')}): posted, no answer"
            + (
                "; resume with --resend-unknown or --skip-unknown (to know which, look "
                f"in the provider's activity log for messages tagged nl_batch={b['batch']}:"
                " if they are there, skip)"
                if d["state"] not in (CANCELLED, DONE)
                else ""
            )
        )
    if d["state"] in (PAUSED, FAILED) or (d["state"] == "sending" and not d["running"]):
        say(f"  continue with: newsletter send issues/{d['issue']}.yaml --resume")
