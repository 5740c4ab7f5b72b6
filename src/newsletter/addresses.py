"""Address rules: when an email address is valid, its one spelling, its comparison key.

Validation is email-validator's (syntax only, no DNS).  Because real lists repeat a
few hundred domains, the domain part is judged once per distinct domain and the
common ASCII local part by the same regular expression email-validator uses; every
address outside that fast path goes to `validate_email` itself, so the verdicts and
messages are email-validator's in all cases.  List rows are held to one more rule
(:func:`normalise_recipient`): the part before the @ must be ASCII, because SendGrid
refuses anything else; suppressions accept such addresses.

Nothing here reads files: the lists, the suppression list, the ledger, the server and
the providers' events all compare addresses with these same functions.
"""

from __future__ import annotations

import re
import unicodedata

from email_validator import EmailNotValidError, validate_email

from .compat import CASE_INSENSITIVE_MAILBOX_NAMES, DOT_ATOM_TEXT

EMAIL_MAX_BYTES = 254  # RFC 3696 errata 1690, the limit email-validator applies
_CASE_INSENSITIVE = frozenset(CASE_INSENSITIVE_MAILBOX_NAMES)
_NOT_FAST = re.compile(r'[<>"(),:\[\]\\\s]')

_DOMAIN_CACHE_MAX = 100_000
_domain_cache: dict[str, tuple[str, str] | None] = {}


def _judge_domain(domain: str) -> tuple[str, str] | None:
    """(unicode domain, ASCII domain) if email-validator accepts `x@domain`, else None.

    Cached per distinct domain: this is where the time goes (IDNA, UTS-46), and a
    list of a million addresses has a few hundred domains.  A rejected domain is not
    given a reason here: the caller re-runs the whole address through
    email-validator so the message is exactly the one it would give.
    """
    try:
        return _domain_cache[domain]
    except KeyError:
        pass
    try:
        probe = validate_email("x@" + domain, check_deliverability=False)
        verdict: tuple[str, str] | None = (probe.domain, probe.ascii_domain)
    except EmailNotValidError:
        verdict = None
    if len(_domain_cache) >= _DOMAIN_CACHE_MAX:  # keep memory bounded on pathological lists
        _domain_cache.clear()
    _domain_cache[domain] = verdict
    return verdict


def normalise_email(raw: str) -> str:
    """The canonical form of an address: trimmed, NFC, domain lower-cased (Unicode IDN form).

    Raises ValueError whose message is email-validator's human reason.  The local
    part keeps its case (mailboxes may be case-sensitive); compare with
    :func:`email_key`.
    """
    text = raw.strip()
    if not text:
        raise ValueError("the email address is empty")
    if not text.isascii():
        text = unicodedata.normalize("NFC", text)
    if text.count("@") == 1 and not _NOT_FAST.search(text):
        local, _, domain = text.partition("@")
        if DOT_ATOM_TEXT.match(local):
            judged = _judge_domain(domain)
            if judged is not None:
                if local.lower() in _CASE_INSENSITIVE:
                    local = local.lower()
                uni_domain, ascii_domain = judged
                normalised = f"{local}@{uni_domain}"
                if (
                    len(text.encode()) <= EMAIL_MAX_BYTES
                    and len(normalised.encode()) <= EMAIL_MAX_BYTES
                    and len(local) + 1 + len(ascii_domain) <= EMAIL_MAX_BYTES
                ):
                    return normalised
    try:
        return validate_email(text, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise ValueError(str(exc)) from None


NON_ASCII_LOCAL = "the part before the @ has non-ASCII characters, which SendGrid does not accept"


def normalise_recipient(raw: str) -> str:
    """:func:`normalise_email` for an address we are to send to: also refuses a local
    part (before the @) that is not ASCII.

    Such addresses (SMTPUTF8) are valid, and email-validator accepts them, but
    SendGrid rejects them, and with them the whole request of up to 1,000 people.
    International *domains* are fine: they go to SendGrid in their xn-- form.
    An address starting with ``=``, ``+`` or ``-`` is refused too: it is legal in
    RFC 5322 but practically never a real mailbox, while in a list that is opened in
    a spreadsheet it is a formula (CSV injection).  Suppressions keep using
    :func:`normalise_email`, which accepts both kinds, so an entry for such an
    address can still be read and matched.
    """
    email = normalise_email(raw)
    if email[0] in "=+-":  # "@" at the start is already invalid
        raise ValueError(
            f"the address starts with {email[0]!r}, which a spreadsheet runs as a formula; "
            "lists refuse such addresses"
        )
    if not email.isascii() and not email.rpartition("@")[0].isascii():
        raise ValueError(NON_ASCII_LOCAL)
    return email


def email_key(email: str) -> str:
    """The comparison key of a normalised address: duplicates are found case-insensitively."""
    return email.lower()


def suppression_key(raw: str) -> str:
    """Key for matching any string against suppressions, valid address or not."""
    try:
        return email_key(normalise_email(raw))
    except ValueError:
        return raw.strip().lower()
