"""Planning a send: who it is for, what refuses it, and the counts the user confirms.

A new send reads each list once, into a frozen copy (:mod:`newsletter.snapshot`), so
the plan, the audience recorded in the ledger and a dry run all see the same rows;
a resumed send uses the audience its first run recorded.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from .addresses import email_key
from .clock import SYSTEM, Clock
from .config import Workspace
from .engine import SendEngine, unknown_batches_error
from .errors import (
    ConfigError,
    LedgerError,
    NewsletterError,
    Problem,
    SubscriberListError,
)
from .esp.base import Backend
from .esp.registry import check_support, open_backend
from .ledger import (
    UNFINISHED,
    BatchInfo,
    Ledger,
    RecipientLike,
    RecipientRow,
    SendSummary,
)
from .list_locks import list_lock
from .personalize import row_of, unsubscribe_keys
from .send_languages import Versions, content_digest
from .snapshot import FrozenAudience, ListCopy, Snapshots
from .subscribers import describe_path
from .words import plural

if TYPE_CHECKING:
    from .build import BuiltIssue
    from .rows import RowProblem
    from .subscribers import Audience
    from .suppressions import SuppressionList

UnknownChoice = Literal["ask", "resend", "skip"]


@dataclass
class SendOptions:
    lists: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    backend: str | None = None
    dry_run: bool = False
    send_at: datetime | None = None
    rate: float | None = None
    force_resend: bool = False
    new_only: bool = False  # only whoever on the lists has not had the issue yet
    timezone: str | None = None  # the zone --send-at was read in (kept with the send)
    resume: bool = False
    unknown: UnknownChoice = "ask"
    test_to: list[str] = field(default_factory=list)
    test_names: dict[str, str] = field(default_factory=dict)  # --test-to address -> its name
    language: str | None = None  # --language: only this version, to its readers


@dataclass
class Plan:
    issue_id: str
    lists: list[str]
    tags: list[str]
    backend: str
    destination: str
    batch_size: int
    recipients: int = 0
    invalid: int = 0
    duplicates: int = 0
    suppressed: int = 0
    filtered_out: int = 0
    already_sent: int = 0  # have (or may have) the issue; not counting who is to be reposted
    first: list[str] = field(default_factory=list)
    problems: list[RowProblem] = field(default_factory=list)
    resume: SendSummary | None = None
    repost_batches: int = 0  # batches to post again that still have someone in them
    repost_recipients: int = 0
    repost_dropped: int = 0  # in batches to post again, but unsubscribed since
    repost_keys: set[str] = field(default_factory=set, repr=False)
    unknown: list[BatchInfo] = field(default_factory=list)
    send_at: datetime | None = None
    test: bool = False
    dev_key: bool = False
    delivers: bool = True  # False: the backend writes files (a dry run then runs it)
    changed: bool = False  # resuming: the issue is not what the send's first batches carried
    languages: dict[str, int] = field(default_factory=dict)  # recipients per language
    other_language: int = 0  # --language: readers of the lists who get another version

    @property
    def batches(self) -> int:
        per = self.languages.values() if self.languages else [self.recipients]  # never mixed
        return sum(math.ceil(n / self.batch_size) for n in per) + self.repost_batches

    @property
    def total_recipients(self) -> int:
        return self.recipients + self.repost_recipients

    def nobody_left(self) -> str:
        """Why there is nobody to send to, in the words of the counts."""
        parts = []
        if self.already_sent:
            parts.append(f"{self.already_sent:,} already received this issue")
        if self.suppressed:
            parts.append(f"{self.suppressed:,} suppressed (unsubscribed, bounced or blocked)")
        if self.filtered_out:
            parts.append(f"{self.filtered_out:,} without the tags")
        if self.invalid:
            parts.append(f"{self.invalid:,} invalid")
        if not parts:
            return "nobody to send to: the lists have no subscribers"
        return "nobody left to send to: " + ", ".join(parts)


class Planner:
    """The planning half of a `newsletter send` (:class:`newsletter.send.SendSession` adds
    the sending): who the send is for, what stops it, and the counts the user confirms.

    A real send holds the issue's lock (:meth:`Ledger.lock_issue`) from :meth:`plan`
    until :meth:`close`, so a second `newsletter send` of the issue stops at once.
    """

    def __init__(
        self,
        ws: Workspace,
        built: BuiltIssue,
        options: SendOptions,
        *,
        ledger: Ledger | None = None,
        backend: Backend | None = None,
        clock: Clock = SYSTEM,
        versions: Versions | None = None,
    ) -> None:
        self.ws = ws
        self.built = built
        self.options = options
        self.versions = versions or Versions.of(built, only=options.language)  # its languages
        self.backend = backend or open_backend(ws, options.backend)
        # Whatever the backend cannot do (a batch size, --send-at, a sandbox) stops here.
        self.batch_size = check_support(ws, self.backend, send_at=options.send_at, now=clock.now())
        self.keys, self.dev_key = unsubscribe_keys(self.backend)
        self._ledger = ledger
        self.clock = clock
        self._engine: SendEngine | None = None
        self._plan: Plan | None = None
        self._suppressions: SuppressionList | None = None
        self.audience_counts: dict[str, int] = {}
        self._snapshots = Snapshots()
        self._frozen_send: int | None = None
        self._freeze_counts: dict[str, int] = {}
        self._audience_obj: Audience | FrozenAudience
        if options.send_at is not None and options.test_to:
            raise ConfigError("--send-at and --test-to cannot be combined", key="--send-at")

    @property
    def ledger(self) -> Ledger:
        """The workspace's ledger; a dry run with no state yet reads an empty one and so
        creates no `.newsletter/` folder."""
        if self._ledger is None:
            if self.options.dry_run and not self.ws.state_db.exists():
                self._ledger = Ledger(":memory:")
            else:
                self._ledger = Ledger(self.ws.state_db)
        return self._ledger

    @property
    def suppressions(self) -> SuppressionList:
        """One suppression list for the session, re-read whenever its file changes."""
        if self._suppressions is None:
            from .suppressions import SuppressionList

            self._suppressions = SuppressionList(self.ws.suppressions_path)
        return self._suppressions

    def suppression_notes(self) -> list[str]:
        """What the user must know about the suppression list after a run."""
        sl = self._suppressions
        if sl is None or not sl.vanished:
            return []
        shown = describe_path(sl.path)
        state = "is still missing" if not sl.file_exists else "came back"
        return [
            f"{shown} disappeared during the send and {state}; the send carried on "
            f"with the {sl.stored_count:,} suppressions kept in .newsletter/state.db, "
            "so nobody who left was mailed"
            + (
                f" (`newsletter suppressions restore` writes {shown} back)"
                if not sl.file_exists
                else ""
            )
        ]

    def _is_suppressed(self, r: RecipientLike) -> bool:
        return self.suppressions.contains(r.email)

    def close(self) -> None:
        if self._ledger is not None:
            self._ledger.close()  # also lets go of the issue's lock
        self.backend.close()
        self._snapshots.close()

    # -- planning ---------------------------------------------------------------------------

    def _new_plan(self, lists: list[str], tags: list[str]) -> Plan:
        return Plan(
            issue_id=self.built.issue_id,
            lists=lists,
            tags=tags,
            backend=self.backend.name,
            destination=self.backend.describe(),
            batch_size=self.batch_size,
            send_at=self.options.send_at,
            dev_key=self.dev_key,
            delivers=self.backend.capabilities.delivers,
        )

    def plan(self) -> Plan:
        opts = self.options
        if self.built.draft and not (opts.test_to or opts.dry_run):
            raise NewsletterError(
                f"{self._source} is marked as a draft, so it cannot be sent",
                hint="remove the `draft: true` line when it is ready, or send yourself a copy "
                "with --test-to",
            )
        if opts.test_to:
            plan = self._new_plan(opts.lists[:1] or ["test"], [])
            plan.test = True
            plan.recipients = len(opts.test_to) * len(self.versions.builds)  # one per language
            plan.languages = dict.fromkeys(self.versions.builds, len(opts.test_to))
            plan.first = opts.test_to[:3]
            self._plan = plan
            return plan
        self._check_suppressions_file()
        if opts.resume:
            if not opts.dry_run:
                self.ledger.lock_issue(self.built.issue_id)
            plan = self._resume_plan()
        else:
            if not opts.lists:
                raise ConfigError(
                    "name at least one list with --list",
                    key="--list",
                    hint="e.g. --list sample (subscribers/sample.csv)",
                )
            if not opts.dry_run:
                self.ledger.lock_issue(self.built.issue_id)
            self._refuse_repeat(opts.lists)
            plan = self._new_plan(list(dict.fromkeys(opts.lists)), list(opts.tags))
        self._count(plan)
        self._plan = plan
        return plan

    def _check_suppressions_file(self) -> None:
        """A suppressions file this workspace has had must be there: planning without it
        would show "0 suppressed" and, without the state database's copy, mail people
        who left.  (The copy is honoured anyway; the missing file is still a mistake
        the user must hear about before anything goes out.)"""
        from .suppression_store import SuppressionStore

        path = self.ws.suppressions_path
        if path.exists() or not self.ws.state_db.exists():
            return
        seen = SuppressionStore(self.ws.state_db).file_seen(path)
        if seen is None:
            return
        shown = describe_path(path)
        raise SubscriberListError(
            Problem(
                message="the suppression list is missing, but this workspace had it (last "
                f"read {seen.last_seen[:10]}, with {plural(seen.rows, 'address')}); without "
                "it the plan would show nobody as unsubscribed",
                path=path,
                hint=f"put it back (e.g. `git checkout -- {shown}`), or run "
                "`newsletter suppressions restore` to write it again from the copy kept "
                "in .newsletter/state.db; then send again",
            )
        )

    def _refuse_repeat(self, lists: Sequence[str]) -> None:
        earlier = self.ledger.blocking_sends(self.built.issue_id, lists, self.backend.name)
        earlier = [s for s in earlier if self.versions.overlaps(s.languages)]  # --language
        for s in earlier:
            if s.state in UNFINISHED:
                raise LedgerError(
                    f"send #{s.id} of {s.issue_id} to {', '.join(s.lists)} is {s.state} "
                    f"({s.recipients_sent} recipients sent)",
                    hint=f"continue it with `newsletter send {self._source} --resume`, or "
                    f"abandon it with `newsletter cancel {s.issue_id}`",
                )
        if self.options.force_resend or self.options.new_only:
            return  # --new-only: whoever already had it is left out (see _exclusion)
        for s in earlier:
            common = sorted(set(lists).intersection(s.lists))
            raise LedgerError(
                f"{s.issue_id} was already sent to list {', '.join(common)} "
                f"(send #{s.id}, {s.created_at}, {s.recipients_sent} recipients, {s.state})",
                hint="to reach only people added to the list since, add --new-only; "
                "--force-resend sends it again to everyone on the list",
            )

    def _resume_plan(self) -> Plan:
        issue_id = self.built.issue_id
        candidates = [
            s
            for s in self.ledger.sends(issue_id)
            if not s.test
            and s.backend == self.backend.name
            and s.state in UNFINISHED
            and (not self.options.lists or set(self.options.lists).intersection(s.lists))
        ]
        if not candidates:
            raise LedgerError(
                f"no paused, failed or interrupted send of {issue_id} "
                f"through {self.backend.name} to resume",
                hint="`newsletter status` lists the sends",
            )
        s = candidates[-1]
        if self.ledger.is_running_elsewhere(s.id):
            raise LedgerError(
                f"send #{s.id} of {issue_id} is running in another process",
                hint="wait for it, or press Ctrl-C there to pause it",
            )
        plan = self._new_plan(list(s.lists), list(s.tags))
        plan.resume = s
        self.versions = self.versions.only(s.languages)  # the versions it was sending
        digest = content_digest(self.versions.builds.values())
        plan.changed = s.content is not None and s.content != digest
        if self.options.send_at is not None:
            raise ConfigError(
                "--send-at cannot be changed when resuming",
                key="--send-at",
                hint="cancel the send and start a new one to change its time",
            )
        if s.send_at:
            plan.send_at = datetime.fromtimestamp(s.send_at, UTC)
            if plan.send_at <= self.clock.now():
                lists = " ".join(f"--list {name}" for name in s.lists)
                raise LedgerError(
                    f"send #{s.id} was scheduled for {plan.send_at.isoformat()}, which has "
                    "passed; resuming it would send at once",
                    hint=f"`newsletter cancel {issue_id}` abandons it (the "
                    f"{s.recipients_sent:,} recipients {self.backend.label} accepted keep it); then "
                    f"`newsletter send {self._source} {lists}` sends the rest "
                    "(add --send-at to schedule them)",
                )
        plan.unknown = self.ledger.unknown_batches(s.id)
        if plan.unknown and self.options.unknown == "ask":
            raise unknown_batches_error(s, plan.unknown, self.backend.label)
        repost = self.ledger.batches_to_repost(
            s.id, resend_unknown=self.options.unknown == "resend"
        )
        # Whoever has unsubscribed since a batch was formed is left out of its repost
        # (SendEngine does the same, and records it, just before posting).
        self.suppressions.refresh()
        for b in repost:
            keep = 0
            for r in self.ledger.batch_recipients(b.id):
                if self._is_suppressed(r):
                    plan.repost_dropped += 1
                else:
                    keep += 1
                    plan.repost_keys.add(email_key(r.email))
            if keep:
                plan.repost_batches += 1
                plan.repost_recipients += keep
        return plan

    def _exclusion(self, plan: Plan) -> Callable[[RecipientLike], bool] | None:
        """Who must not be batched again: already in a batch of this issue (this backend).

        None (nobody to exclude, and no query per subscriber) only when no recipient of
        the issue is recorded yet; decided again just before the run, with the issue's
        lock held, so no other send can record any meanwhile.
        """
        issue_id = plan.issue_id
        if not self.ledger.has_recipients(issue_id):
            return None
        backend = self.backend.name
        only: int | None = None
        force = plan.resume.force_resend if plan.resume else self.options.force_resend
        if force:
            if plan.resume is None:
                return None
            only = plan.resume.id
        already = self.ledger.already_batched

        def exclude(s: RecipientLike) -> bool:
            return already(issue_id, s.email, backend=backend, only_send=only)

        return exclude

    def _audience(self, plan: Plan) -> tuple[Iterable[RecipientLike], Callable[[], object]]:
        """Who the send is for: a resumed send's frozen audience; else the lists, read from
        their frozen copies (taken once per session, so the plan, the freeze and a dry
        run all see the same rows however the files change meanwhile)."""
        from .subscribers import Audience

        suppressions = self.suppressions
        frozen = plan.resume.id if plan.resume is not None else self._frozen_send
        if frozen is not None and self.ledger.audience_info(frozen) is not None:
            ledger = self.ledger
            self._audience_obj = FrozenAudience(
                lambda: ledger.audience(frozen), suppressions.contains
            )
            return self._audience_obj, suppressions.refresh
        audience = Audience(self.ws, plan.lists, plan.tags, suppressions=suppressions)
        copies = [
            self._freeze_list(name, path)
            for name, path in zip(audience.list_names, audience.paths, strict=True)
        ]
        audience.paths = [c.copy for c in copies]
        self._audience_obj = audience
        return audience, suppressions.refresh

    def _freeze_list(self, name: str, path: Path) -> ListCopy:
        """The list's frozen copy, taken while no `subscribers import` is rewriting it (the
        list's lock, shared).  Without a `.newsletter/` folder no import can be running,
        and a dry run must not create one."""
        if name in self._snapshots.copies or not self.ws.state_db.parent.exists():
            return self._snapshots.take(name, path)
        with list_lock(self.ws, name, shared=True):
            return self._snapshots.take(name, path)

    @property
    def _source(self) -> str:
        """The issue file as the workspace shows it (issues/2019-09.yaml), for messages."""
        try:
            return str(Path(self.built.source).resolve().relative_to(self.ws.root.resolve()))
        except (ValueError, OSError):
            return str(self.built.source)

    def source_of(self, path: Path) -> Path:
        """The list file a frozen copy was taken from (any other path as it is), so that a
        message names subscribers/members.csv, never a temporary copy."""
        for c in self._snapshots.copies.values():
            if c.copy == path:
                return c.source
        return path

    def _problems(self) -> list[RowProblem]:
        """The audience's row problems, naming the list files, not their frozen copies."""
        files = {c.copy: c.source for c in self._snapshots.copies.values()}
        return [replace(p, path=files.get(p.path, p.path)) for p in self._audience_obj.problems]

    def _to_freeze(self, plan: Plan) -> tuple[Iterable[RecipientRow], dict[str, dict[str, Any]]]:
        """The audience of a new send, for the ledger: from the copies the plan read,
        with the suppressions as they are now."""
        audience, _ = self._audience(plan)
        root = self.ws.root
        lists: dict[str, dict[str, Any]] = {
            c.name: {
                "file": os.path.relpath(c.source, root),
                "sha256": c.sha256,
                "bytes": c.size,
            }
            for c in self._snapshots.copies.values()
        }
        return (row_of(r) for r in audience), lists

    def _count(self, plan: Plan) -> None:
        audience, _ = self._audience(plan)
        exclude = self._exclusion(plan)
        reposting = plan.repost_keys
        versions = self.versions
        plan.languages = dict.fromkeys(versions.builds, 0)  # in the order they are sent
        language_of = versions.language_of if versions.several else None
        for s in audience:
            lang = language_of(s) if language_of else self.built.language
            if lang not in versions.builds:  # --language: another version is theirs
                plan.other_language += 1
                continue
            if exclude is not None and exclude(s):
                if not reposting or email_key(s.email) not in reposting:
                    plan.already_sent += 1
                continue
            plan.recipients += 1
            plan.languages[lang] = plan.languages.get(lang, 0) + 1
            if len(plan.first) < 3:
                plan.first.append(s.email)
        a = self._audience_obj
        plan.invalid = a.invalid
        plan.duplicates = a.duplicates + a.overlap
        plan.suppressed = a.suppressed
        plan.filtered_out = a.filtered_out
        plan.problems = self._problems()
