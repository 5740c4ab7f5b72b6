"""The outbox backend: files instead of email, for trying a send without an account.

Each send has a folder of its own, named as `newsletter status` names the send::

    outbox/<issue>/send-3/        send #3 to the lists
    outbox/<issue>/test-4/        test send #4 (--test-to)
    outbox/<issue>/dry-run/       the latest --dry-run (replaced by the next one)
    outbox/<issue>/send-5-cancelled/   a scheduled send called off with `newsletter cancel`

In it, per batch, ``batch-0001.json``: byte for byte the body the SendGrid backend
would post; and per recipient ``batch-0001/00001-<address>.eml``: the message that
person would receive, placeholders filled, openable in any mail program.  A send that
is resumed adds its batches to its own folder; nothing of one send is ever written
into another's.  It is the default when no ``SENDGRID_API_KEY`` is set, so a new user
can see exactly what a send would do before it can do anything.

It can do what SendGrid can (it writes SendGrid's requests, scheduled ones included)
except deliver: :attr:`Capabilities.delivers` is false, which is what lets a dry run
write its files and lets the outbox sign links with a labelled development key.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import uuid
from dataclasses import replace
from pathlib import Path
from typing import ClassVar

from ..config import Send, Workspace
from ..errors import ProviderRejected
from ..message import fill, mime_message
from .base import Backend, Batch, Capabilities, IssueContent, Outcome
from .sendgrid import CAPABILITIES, SendGridSettings, encode_payload
from .settings import ProviderSettings

_UNSAFE = re.compile(r"[^A-Za-z0-9@._+-]+")
DRY_RUN = "dry-run"
CANCELLED_SUFFIX = "-cancelled"
SCHEDULE_FILE = "SCHEDULED.txt"  # in a scheduled send's folder: its schedule id, for cancel


def batch_file(folder: Path, seq: int) -> Path:
    return folder / f"batch-{seq:04d}.json"


def run_name(send_ref: str, *, test: bool = False, dry_run: bool = False) -> str:
    """The folder of one send within its issue's: send-3, test-4 or dry-run."""
    if dry_run:
        return DRY_RUN
    return f"{'test' if test else 'send'}-{send_ref}"


def send_folder(root: Path, issue_id: str, send_id: int, *, test: bool = False) -> Path:
    """Where send #send_id of the issue is (or was) written: its folder, or the folder it
    was moved to when it was cancelled."""
    folder = root / issue_id / run_name(str(send_id), test=test)
    cancelled = folder.with_name(folder.name + CANCELLED_SUFFIX)
    return cancelled if cancelled.is_dir() and not folder.is_dir() else folder


def _eml_name(index: int, email: str) -> str:
    return f"{index:05d}-{_UNSAFE.sub('_', email)[:80]}.eml"


class OutboxBackend(Backend):
    """Writes what would be sent under ``root/<issue>/``."""

    name = "outbox"
    label = "the outbox"
    capabilities: ClassVar[Capabilities] = replace(CAPABILITIES, delivers=False)
    settings_model: ClassVar[type[ProviderSettings] | None] = None  # reads [sendgrid]

    def __init__(
        self,
        root: Path,
        settings: Send,
        *,
        write_eml: bool = True,
        sendgrid: SendGridSettings | None = None,
    ) -> None:
        self.root = root
        self.settings = settings
        self.sendgrid = sendgrid
        self.write_eml = write_eml
        self.shown_root = str(root)

    @classmethod
    def from_workspace(cls, ws: Workspace) -> OutboxBackend:
        backend = cls(ws.outbox_dir, ws.config.send, sendgrid=ws.config.provider(SendGridSettings))
        with contextlib.suppress(ValueError):  # named as the workspace shows it: outbox/
            backend.shown_root = str(ws.outbox_dir.relative_to(ws.root)) + "/"
        return backend

    @classmethod
    def chosen_by_auto(cls) -> bool:
        return True  # needs nothing: what auto falls back to

    def folder(self, issue_id: str) -> Path:
        """The issue's folder, holding one folder per send."""
        return self.root / issue_id

    def run_folder(self, content: IssueContent, batch: Batch) -> Path:
        name = run_name(batch.send_ref, test=content.test, dry_run=content.dry_run)
        return self.folder(content.issue_id) / name

    def describe(self) -> str:
        return f"outbox folder {self.shown_root} (nothing is emailed)"

    def clear(self, issue_id: str) -> None:
        """Remove the previous dry run's files, so its folder shows exactly one run.
        (Sends each have their own folder, and are never removed.)"""
        folder = self.folder(issue_id) / DRY_RUN
        if folder.is_dir():
            shutil.rmtree(folder)

    def send_batch(self, content: IssueContent, batch: Batch) -> Outcome:
        try:
            return self._write(content, batch)
        except OSError as exc:  # a full disk or a read-only folder: retrying will not help
            raise ProviderRejected(
                f"cannot write the outbox: {exc}",
                hint=f"check that {self.root} is writable and the disk has space",
            ) from None

    def _write(self, content: IssueContent, batch: Batch) -> Outcome:
        folder = self.run_folder(content, batch)
        folder.mkdir(parents=True, exist_ok=True)
        if batch.schedule_id and not content.dry_run:
            (folder / SCHEDULE_FILE).write_text(
                f"{batch.schedule_id}\nScheduled send: `newsletter cancel {content.issue_id}` "
                "calls it off. The outbox emails nothing, at that time or any other.\n",
                encoding="utf-8",
            )
        # The very bytes the SendGrid backend posts.
        target = batch_file(folder, batch.seq)
        tmp = target.with_suffix(".json.tmp")
        tmp.write_bytes(encode_payload(content, batch, self.settings, self.sendgrid))
        tmp.replace(target)
        if self.write_eml:
            self._write_eml(folder / target.stem, content, batch)
        return Outcome(status=202, provider_id=None, detail=str(target))

    def _write_eml(self, folder: Path, content: IssueContent, batch: Batch) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        for index, r in enumerate(batch.recipients, start=1):
            msg = mime_message(
                subject=fill(content.subject, r.values),
                from_email=content.from_email,
                from_name=content.from_name,
                to_email=r.email,
                to_name=r.name,
                html_body=fill(content.html, r.values),
                text_body=fill(content.text, r.values),
                reply_to=content.reply_to,
                headers=r.headers,
            )
            # Lines up to RFC 5322's 998: the default 78 would turn the long one-click URL
            # into an RFC 2047 encoded word, which no mail program reads as a link.
            data = msg.as_bytes(policy=msg.policy.clone(max_line_length=998))
            (folder / _eml_name(index, r.email)).write_bytes(data)

    def create_schedule(self) -> str:
        return f"outbox-{uuid.uuid4().hex}"

    def cancel_schedule(self, schedule_id: str) -> None:
        """Nothing was queued anywhere; the send's folder is renamed ``…-cancelled`` so
        that what is left of it is not taken for a send that went (or will go)."""
        if not self.root.is_dir():
            return
        for marker in self.root.glob(f"*/*/{SCHEDULE_FILE}"):
            folder = marker.parent
            if folder.name.endswith(CANCELLED_SUFFIX):
                continue
            try:
                found = marker.read_text(encoding="utf-8").split("\n", 1)[0].strip()
            except (OSError, UnicodeDecodeError):
                continue
            if found == schedule_id:
                try:
                    folder.rename(folder.with_name(folder.name + CANCELLED_SUFFIX))
                except OSError as exc:
                    raise ProviderRejected(
                        f"cannot mark {folder} as cancelled: {exc.strerror or exc}",
                        hint=f"check that {self.root} is writable",
                    ) from None
