"""What the sign-up and preferences pages need, made once by ``create_app``.

:class:`Readers` holds the ``[signup]`` settings (None: no sign-up form), the per-client
limiter, the sign-up store (:mod:`newsletter.signup_store`) and the confirmation
mailer; the helpers below answer, for one address, which suppressions it has.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from ..addresses import suppression_key
from ..config import Workspace
from ..errors import ConfigError, NewsletterError
from ..signup_settings import Signup
from ..signup_store import SignupStore, signup_db
from ..subscribers import list_file
from ..suppression_file import Suppression, readable_suppressions
from ..suppression_writes import stored_suppressions
from .limits import ClientLimiter
from .pages import Pages
from .signup_mail import ConfirmationMailer


@dataclass(frozen=True)
class Readers:
    ws: Workspace
    keys: Sequence[bytes]
    settings: Signup | None
    store: SignupStore
    limiter: ClientLimiter | None
    mailer: ConfirmationMailer

    @classmethod
    def load(cls, ws: Workspace, keys: Sequence[bytes], pages: Pages) -> Readers:
        """Raises ConfigError for a sign-up list that does not exist."""
        settings = ws.config.signup
        if settings is not None:
            for name in settings.lists:
                path = list_file(ws, name)
                if not path.is_file():
                    raise ConfigError(
                        f"signup.lists: there is no list {path.relative_to(ws.root)}",
                        key="signup.lists",
                        hint="fix the name, or create the file with a first line such as "
                        "email,name,language,tags,subscribed_at,consent",
                    )
        return cls(
            ws=ws,
            keys=keys,
            settings=settings,
            store=SignupStore(signup_db(ws)),
            limiter=ClientLimiter(settings.signups_per_minute) if settings else None,
            mailer=ConfirmationMailer(ws, pages),
        )


def suppressions_of(ws: Workspace, email: str) -> list[Suppression]:
    """The address's suppressions: file rows (read leniently) and the database's copy."""
    key = suppression_key(email)
    found: list[Suppression] = []
    try:
        for entry in readable_suppressions(ws.suppressions_path, []):
            if entry.key == key:
                found.append(entry)
    except NewsletterError:
        pass  # a file broken past repair: the rows before the fault are kept
    with contextlib.suppress(NewsletterError):
        found += [s for s in stored_suppressions(ws) if s.key == key]
    return found


def blocking_reasons(found: list[Suppression]) -> set[str]:
    """Reasons a sign-up cannot lift: bounces, spam reports, entries made by hand."""
    return {s.reason for s in found if s.reason != "unsubscribed"}


def left_after(found: list[Suppression], at: float) -> bool:
    """Whether an `unsubscribed` entry is newer than the sign-up (``at``): the later wish wins."""
    for s in found:
        if s.reason != "unsubscribed" or not s.at:
            continue
        try:
            when = datetime.fromisoformat(s.at).timestamp()
        except ValueError:
            continue
        if when > at:
            return True
    return False
