"""The confirmation email of a sign-up: one message through the workspace's backend.

It goes the way issues go (SendGrid, or the outbox, where the ``.eml`` can be opened:
``outbox/confirmations/send-<when>-<random>/``), but with open and click tracking off,
so that the confirmation link reaches the reader as we wrote it and no tracking
redirect gets to see it.  Its words are the page words (``confirm_email_*`` in
templates/pages/labels.toml), in the language the reader chose.
"""

from __future__ import annotations

import html
import secrets
import threading
import time

from ..config import Workspace
from ..esp.base import Backend, Batch, IssueContent, Recipient
from ..signup_settings import CONFIRMATIONS  # the "issue" these messages belong to
from .pages import Pages


class ConfirmationMailer:
    """Sends confirmation emails; the backend is opened on first use and kept."""

    def __init__(self, ws: Workspace, pages: Pages) -> None:
        self.ws = ws
        self.pages = pages
        self._backend: Backend | None = None
        self._lock = threading.Lock()

    def backend(self) -> Backend:
        with self._lock:
            if self._backend is None:
                from ..esp.registry import open_backend

                backend = open_backend(self.ws)
                settings = getattr(backend, "settings", None)
                if settings is not None:  # no tracking: the link must stay the one we wrote
                    backend.settings = settings.model_copy(  # type: ignore[attr-defined]
                        update={"open_tracking": False, "click_tracking": False}
                    )
                self._backend = backend
            return self._backend

    def content(self, lang: str, url: str, list_label: str) -> IssueContent:
        words = self.pages.labels[lang]
        org = str(self.pages.common["org"])

        def word(key: str) -> str:
            return words.get(key, "").replace("{org}", org).replace("{list}", list_label)

        subject = word("confirm_email_subject")
        lines = [word("confirm_email_body"), "", url, "", word("confirm_email_ignore")]
        text = "\n".join(lines) + f"\n\n-- \n{org}\n{self.pages.common['postal_address']}\n"
        e = html.escape
        primary = e(str(self.pages.common["brand"].primary))
        body = (
            f'<!doctype html><html lang="{e(lang)}"><head><meta charset="utf-8">'
            f"<title>{e(subject)}</title></head>"
            '<body style="font-family:Helvetica,Arial,sans-serif;font-size:16px;line-height:1.5">'
            f"<p>{e(word('confirm_email_body'))}</p>"
            f'<p><a href="{e(url)}" style="display:inline-block;background:{primary};'
            "color:#ffffff;padding:12px 24px;border-radius:6px;text-decoration:none;"
            f'font-weight:bold">{e(word("confirm_email_button"))}</a></p>'
            f'<p style="font-size:14px">{e(url)}</p>'
            f"<p>{e(word('confirm_email_ignore'))}</p>"
            f'<p style="font-size:13px;color:#52606d">{e(org)}<br>'
            f"{e(str(self.pages.common['postal_address']))}</p></body></html>"
        )
        sender = self.ws.config.sender
        return IssueContent(
            issue_id=CONFIRMATIONS,
            subject=subject,
            html=body,
            text=text,
            from_email=sender.from_email,
            from_name=sender.from_name,
            reply_to=sender.reply_to,
        )

    def send(self, email: str, name: str, list_name: str, lang: str, url: str) -> None:
        """Send one confirmation; raises the backend's errors (the caller logs them)."""
        ref = f"{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{secrets.token_hex(4)}"
        content = self.content(lang, url, list_name)
        batch = Batch(
            issue_id=CONFIRMATIONS,
            send_ref=ref,
            batch_ref=ref,
            seq=1,
            recipients=[Recipient(email, name or None, list_name, {}, {})],
        )
        self.backend().send_batch(content, batch)
