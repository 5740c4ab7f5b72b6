"""The consent a confirmed sign-up writes in its list's ``consent`` column.

GDPR Art. 7(1): the sender must be able to demonstrate consent.  The record says which
text the reader agreed to (its version, in which language), on which form, when, and
how the address was confirmed, in one line a person can read in a spreadsheet::

    text 2026-12 (es); form: subscribe page; given 2026-12-02T15:04:05+00:00;
    confirmed by email link 2026-12-02T15:09:30+00:00
"""

from __future__ import annotations

from datetime import UTC, datetime

from .link_tokens import SignupRequest

FORMS = {"page": "subscribe page", "embedded": "embedded form"}
HOW = "confirmed by email link"


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


def consent_record(request: SignupRequest, confirmed_at: float) -> str:
    form = FORMS.get(request.form, "subscribe page")
    return (
        f"text {request.consent_version} ({request.language}); form: {form}; "
        f"given {iso(request.at)}; {HOW} {iso(confirmed_at)}"
    )
