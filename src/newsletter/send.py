"""Sending an issue: plan, form batches lazily, post them, record every step in the ledger.

The flow (:class:`SendSession`)::

    plan()     take the issue's lock (held until close()), then one streaming pass
               over the audience: counts, refusals, resume checks
    execute()  create (or resume) the ledger's send, then SendEngine.run():
                 repost batches that failed (and, if the user chose, unknown ones),
                   each after re-reading the suppressions and taking out whoever left
                 loop: refresh suppressions -> take the next <=1,000 subscribers
                       -> commit them as a 'ready' batch -> pace -> 'posting' -> post
                       -> 'sent' (or back to 'ready' to wait and retry)

What makes it safe ("never reaches anyone twice, never loses anyone"):

- A batch's recipients are committed before its request leaves; 'posting' is marked
  after every wait, just before the request starts to leave; 'sent' only after the
  2xx.  A crash leaves at most one batch whose outcome is unknown (one killed while
  its request was out), and such a batch is never resent without the user's say
  (``--resend-unknown`` / ``--skip-unknown``); a batch killed while waiting provably
  never left and ``--resume`` posts it.
- Batches are formed when they are about to be posted, right after the suppression
  list is re-read, so someone who unsubscribes during a send misses the later batches;
  a batch posted again (a retry after a wait, or a repost by ``--resume``) leaves out,
  and records in the ledger, whoever has unsubscribed since it was formed.
- One process per issue (an OS lock), so two sends cannot both decide that nobody
  has the issue yet.
- Nobody is held in memory beyond the batch being posted: the audience is a stream.
- Retried automatically, with exponential backoff and jitter: 429 (as long as the
  provider says), 5xx, and connections that failed before the request was sent
  (refused, DNS, connect timeout).  ``send.pause_after_failures`` failures in a row
  pause the send.  A request that left and got no answer (a timeout waiting for the
  reply, a connection dropped after sending) may have been accepted: the batch is
  marked unknown and the send pauses for the user to choose ``--resume
  --skip-unknown`` or ``--resume --resend-unknown``.  A refusal (400/401/403/413)
  fails the send with the provider's reason.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from .addresses import email_key, normalise_recipient
from .build import PREVIEW_NAME
from .config import (
    Workspace,
)
from .engine import Progress, SendEngine, SendReport
from .errors import (
    ConfigError,
    LedgerError,
    ProviderRejected,
    ProviderUnavailable,
)
from .esp.base import IssueContent
from .ledger import (
    FAILED,
    PAUSED,
    PLANNED,
    SENDING,
    UNFINISHED,
    Ledger,
    RecipientRow,
)
from .personalize import Personalizer
from .plan import Plan, Planner
from .retry import Pacer, RetryPolicy
from .send_languages import content_digest

if TYPE_CHECKING:
    from .build import BuiltIssue


def issue_content(
    ws: Workspace, built: BuiltIssue, *, test: bool = False, dry_run: bool = False
) -> IssueContent:
    sender = ws.config.sender
    return IssueContent(
        issue_id=built.issue_id,
        subject=f"[TEST] {built.subject}" if test else built.subject,
        html=built.html,
        text=built.text,
        from_email=sender.from_email,
        from_name=sender.from_name,
        reply_to=sender.reply_to,
        test=test,
        dry_run=dry_run,
    )


# "Maria Comms <maria@example.org>", '"Comms, Maria" <maria@example.org>' or an address.
_NAMED = re.compile(r"(?P<name>.*?)\s*<(?P<email>[^<>]*)>")


def _split_addresses(text: str) -> list[str]:
    """Split at commas and semicolons, except inside quotes or angle brackets."""
    parts: list[str] = []
    current: list[str] = []
    quoted = angle = False
    for char in text:
        if char == '"' and not angle:
            quoted = not quoted
        elif char == "<" and not quoted:
            angle = True
        elif char == ">" and not quoted:
            angle = False
        elif char in ",;" and not (quoted or angle):
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    return [p.strip() for p in parts if p.strip()]


def parse_test_addresses(text: str) -> list[tuple[str, str | None]]:
    """The --test-to recipients as (address, display name or None), the addresses held
    to the same rules as list rows.  A name is written as mail programs show it:
    ``Maria Comms <maria@example.org>``."""
    out: list[tuple[str, str | None]] = []
    for part in _split_addresses(text):
        named = _NAMED.fullmatch(part)
        raw, name = (named["email"].strip(), named["name"]) if named else (part, "")
        if not raw:
            raise ConfigError(
                f"--test-to: {part!r} has no address between < and >", key="--test-to"
            )
        try:
            email = normalise_recipient(raw)
        except ValueError as exc:
            raise ConfigError(
                f"--test-to: {raw!r} is not an address we can send to: {exc}",
                key="--test-to",
                hint='write each as maria@example.org or "Maria Comms <maria@example.org>", '
                "separated by commas",
            ) from None
        clean = " ".join(name.strip().strip('"').split()) or None
        if any(email_key(email) == email_key(seen) for seen, _ in out):
            continue  # the same address twice gets one copy (the first name given wins)
        out.append((email, clean))
    if not out:
        raise ConfigError("--test-to needs at least one address", key="--test-to")
    return out


def validate_test_addresses(text: str) -> list[str]:
    """The --test-to addresses alone (see :func:`parse_test_addresses`)."""
    return [email for email, _ in parse_test_addresses(text)]


class SendSession(Planner):
    """One `newsletter send`: plan it (:class:`~newsletter.plan.Planner`), then execute it
    (or stop at the plan for a dry run)."""

    # -- executing --------------------------------------------------------------------------

    def request_stop(self) -> None:
        if self._engine is not None:
            self._engine.request_stop()

    def _engine_for(
        self,
        ledger: Ledger,
        progress: Progress | None,
        *,
        test: bool = False,
        dry_run: bool = False,
    ) -> SendEngine:
        """The engine of this send: one content and personalizer per language it sends."""
        cfg = self.ws.config.send
        versions = {
            language: (
                issue_content(self.ws, built, test=test, dry_run=dry_run),
                Personalizer(
                    self.keys,
                    str(cfg.unsubscribe_url),
                    cfg.unsubscribe_mailto,
                    built.language,
                    test=test,
                ),
            )
            for language, built in self.versions.builds.items()
        }
        content, personalize = next(iter(versions.values()))
        rate = self.options.rate if self.options.rate is not None else cfg.rate
        self._engine = SendEngine(
            ledger=ledger,
            backend=self.backend,
            content=content,
            personalize=personalize,
            policy=RetryPolicy.from_config(cfg),
            batch_size=self.batch_size,
            pacer=Pacer(rate, self.clock),
            progress=progress,
            clock=self.clock,
            versions=versions,
            language_of=self.versions.language_of if self.versions.several else None,
        )
        return self._engine

    def execute(self, progress: Progress | None = None) -> SendReport:
        return self._execute(progress, audience_wanted=True)

    def finish(self) -> SendReport:
        """Settle a resumed send that has nobody left to post to (the plan's batches is 0):
        it becomes done (or stays scheduled), with no new batch formed; batches to post
        again whose people have all unsubscribed are recorded as such."""
        plan = self._plan or self.plan()
        if plan.resume is None:
            raise LedgerError("only a resumed send can be finished without posting")
        return self._execute(None, audience_wanted=False)

    def _execute(self, progress: Progress | None, *, audience_wanted: bool) -> SendReport:
        plan = self._plan or self.plan()
        opts = self.options
        if opts.test_to:
            return self._execute_test(plan, progress)
        if opts.dry_run:
            return self._execute_dry(plan, progress)
        ledger = self.ledger
        ledger.lock_issue(plan.issue_id)  # already held since plan(); a no-op then
        if plan.resume is not None:
            send_id = plan.resume.id
            current = ledger.send(send_id)
            if current.state not in UNFINISHED:
                raise LedgerError(f"send #{send_id} is {current.state}; there is nothing to resume")
            if current.state == SENDING:  # the process that ran it has gone
                ledger.transition(send_id, PAUSED, note="the sending process stopped")
            if opts.unknown == "skip":
                ledger.skip_unknown(send_id)
            ledger.set_planned(send_id, current.recipients_batched + plan.recipients)
            if current.send_at and not current.schedule_id:  # scheduling failed last time
                ledger.set_schedule(send_id, self.backend.create_schedule(), current.send_at)
        else:
            self._refuse_repeat(plan.lists)  # again, now that nothing can change under us
            send_at = int(plan.send_at.timestamp()) if plan.send_at else None
            send_id = ledger.create_send(
                plan.issue_id,
                plan.lists,
                self.backend.name,
                tags=plan.tags,
                subject=self.built.subject,
                content=content_digest(self.versions.builds.values()),
                send_tz=opts.timezone if plan.send_at is not None else None,
                planned_recipients=plan.recipients,
                send_at=send_at,
                force_resend=opts.force_resend,
                audience=self._to_freeze(plan),
                languages=list(self.versions.builds),
            )
            self._freeze_counts = self._audience_obj.counts()
            self._frozen_send = send_id
            if send_at is not None:
                try:
                    schedule_id = self.backend.create_schedule()
                except (ProviderRejected, ProviderUnavailable) as exc:
                    ledger.transition(send_id, FAILED, note=exc.message)
                    raise
                ledger.set_schedule(send_id, schedule_id, send_at)
        engine = self._engine_for(ledger, progress)
        audience, refresh = self._audience(plan)
        report = engine.run(
            send_id,
            audience if audience_wanted else (),
            refresh=refresh,
            exclude=self._exclusion(plan),
            suppressed=self._is_suppressed,
            resend_unknown=opts.unknown == "resend",
        )
        if audience_wanted:
            counts = self._audience_obj.counts()
            if self._freeze_counts:  # a new send: as frozen, plus who left since
                counts = {
                    **self._freeze_counts,
                    "suppressed": self._freeze_counts["suppressed"] + counts["suppressed"],
                }
            self.audience_counts = counts
        return report

    def _execute_dry(self, plan: Plan, progress: Progress | None) -> SendReport:
        """A dry run posts nothing; through a backend that delivers nothing (the outbox) it
        writes the files, with a throw-away ledger so the real one is untouched."""
        if self.backend.capabilities.delivers:
            return SendReport(send_id=0, state=PLANNED, message="dry run: nothing was sent")
        self.backend.clear(plan.issue_id)
        with Ledger(":memory:") as scratch:
            send_id = scratch.create_send(
                plan.issue_id,
                plan.lists,
                self.backend.name,
                tags=plan.tags,
                planned_recipients=plan.recipients,
            )
            engine = self._engine_for(scratch, progress, dry_run=True)
            audience, refresh = self._audience(plan)
            report = engine.run(send_id, audience, refresh=refresh, exclude=self._exclusion(plan))
        report.message = "dry run: files written, nothing was emailed"
        return report

    def _execute_test(self, plan: Plan, progress: Progress | None) -> SendReport:
        """A test copy: recorded as a test send, never counted as the issue being sent; one
        per address and language (only --language's, if given)."""
        ledger = self.ledger
        send_id = ledger.create_send(
            plan.issue_id,
            plan.lists,
            self.backend.name,
            test=True,
            subject=self.built.subject,
            planned_recipients=plan.recipients,
        )
        list_name = plan.lists[0]
        names = self.options.test_names
        rows = []
        for language in self.versions.builds:
            for email in self.options.test_to:
                # Named: greeted by their first name.  Unnamed: the preview's sample name,
                # so the copy shows a greeting as readers will see it, not the fallback.
                name = names.get(email)
                first = name.split()[0] if name else PREVIEW_NAME
                rows.append(RecipientRow(email, name, first, language, list_name))
        engine = self._engine_for(ledger, progress, test=True)
        return engine.run(send_id, rows)


__all__ = [
    "SendSession",
    "issue_content",
    "parse_test_addresses",
    "validate_test_addresses",
]
