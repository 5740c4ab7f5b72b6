"""The outbox backend: files instead of email, for trying a send without an account.

Per batch it writes ``outbox/<issue>/batch-0001.json``, byte for byte the body
the SendGrid backend would post, and per recipient
``outbox/<issue>/batch-0001/00001-<address>.eml``: the message that person
would receive, placeholders filled, openable in any mail program.  It is the
default when no ``SENDGRID_API_KEY`` is set, so a new user can see exactly what
a send would do before it can do anything.

It can do what SendGrid can (it writes SendGrid's requests, scheduled ones included)
except deliver: :attr:`Capabilities.delivers` is false, which is what lets a dry run
write its files and lets the outbox sign links with a labelled development key.
"""

from __future__ import annotations

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


def batch_file(folder: Path, seq: int) -> Path:
    return folder / f"batch-{seq:04d}.json"


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

    @classmethod
    def from_workspace(cls, ws: Workspace) -> OutboxBackend:
        return cls(ws.outbox_dir, ws.config.send, sendgrid=ws.config.provider(SendGridSettings))

    @classmethod
    def chosen_by_auto(cls) -> bool:
        return True  # needs nothing: what auto falls back to

    def folder(self, issue_id: str) -> Path:
        return self.root / issue_id

    def describe(self) -> str:
        return f"outbox folder {self.root} (nothing is emailed)"

    def clear(self, issue_id: str) -> None:
        """Remove an earlier run's files so the folder shows exactly one send."""
        folder = self.folder(issue_id)
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
        folder = self.folder(content.issue_id)
        folder.mkdir(parents=True, exist_ok=True)
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
        """Nothing was queued anywhere, so there is nothing to call off."""
