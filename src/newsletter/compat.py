"""Every place where we lean on a library's internals, fenced in one module.

Each item below depends on something a library does not promise (a private module, a
module attribute another library looks up at call time, an import done for a feature
we switch off).  Each is here, and only here, with why we need it and what exactly we
rely on, and tests/test_compat.py checks each reliance directly, so that an upgrade
that changes one fails there with a message naming it, instead of quietly making a
build slower, an email different or an address accepted that should not be.

1. cssutils, patched for premailer (:func:`quiet_cssutils`);
2. premailer imported without ``requests`` (:func:`import_premailer`);
3. email-validator's ``rfc_constants`` (:data:`DOT_ATOM_TEXT`,
   :data:`CASE_INSENSITIVE_MAILBOX_NAMES`), used by the subscriber lists' fast path.

What is no longer here because a public API replaced it: python_http_client's
``_make_request`` and ``_build_url`` (SendGrid requests are posted with httpx, see
:mod:`newsletter.esp.sendgrid`).
"""

from __future__ import annotations

import logging
import sys
import types
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from email_validator.rfc_constants import CASE_INSENSITIVE_MAILBOX_NAMES, DOT_ATOM_TEXT

# -- 3. email-validator ------------------------------------------------------------------
#
# ``email_validator.rfc_constants`` is not part of email-validator's documented API.
# Reading a large list, most addresses are plain ``local@domain``; checking the local
# part against the library's own dot-atom pattern (and lower-casing the mailbox names
# it treats as case-insensitive) lets the list reader skip a full validate_email() per
# row and still give byte-for-byte the same result.  Relied on: DOT_ATOM_TEXT is a
# compiled pattern whose .match() accepts exactly an unquoted dot-atom local part (it
# ends in \Z), and CASE_INSENSITIVE_MAILBOX_NAMES lists the lower-case local parts that
# validate_email() lower-cases when it normalises.  tests/test_compat.py compares both
# with validate_email() itself.

__all__ = [
    "CASE_INSENSITIVE_MAILBOX_NAMES",
    "DOT_ATOM_TEXT",
    "import_premailer",
    "quiet_cssutils",
]


def __getattr__(name: str) -> Any:
    """The two email-validator constants, imported on first use: email-validator compiles
    ~30 ms of patterns at import, which `newsletter build` (premailer's side of this
    module) never needs."""
    if name in ("CASE_INSENSITIVE_MAILBOX_NAMES", "DOT_ATOM_TEXT"):
        from email_validator import rfc_constants

        return getattr(rfc_constants, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# -- 1. cssutils -------------------------------------------------------------------------

_cssutils_quiet = False


def quiet_cssutils() -> None:
    """Silence cssutils (mso-* warnings), stop it fetching @import URLs, skip validation.

    Relied on: premailer calls the module-level functions ``cssutils.parseString``
    (stylesheets) and ``cssutils.parseStyle`` (inline styles, always with validation
    whatever its ``disable_validation`` says), looking them up on the module at each
    call, so replacing the module attributes reaches every call.  Validation only
    feeds the warnings we silence, yet compiling its property regexes costs 60-125 ms
    of every build, so both are routed through one non-validating
    ``cssutils.CSSParser(fetcher=..., validate=False)`` (public API) whose fetcher
    refuses every URL: an ``@import`` in a theme never reaches the network.
    """
    global _cssutils_quiet
    if _cssutils_quiet:
        return
    import cssutils

    cssutils.log.setLevel(logging.CRITICAL)
    cssutils.log.raiseExceptions = False

    def _no_fetch(url: str) -> tuple[None, str]:
        # Returning (None, "") tells cssutils the import could not be read; nothing is fetched.
        return None, ""

    parser = cssutils.CSSParser(fetcher=_no_fetch, validate=False)

    def parse_string(css_text: str, *args: Any, validate: bool | None = None, **kw: Any) -> Any:
        return parser.parseString(css_text, *args, validate=False, **kw)

    def parse_style(css_text: str, encoding: str = "utf-8", validate: bool | None = None) -> Any:
        return parser.parseStyle(css_text, encoding=encoding, validate=False)

    parse_string.__newsletter_patch__ = True  # type: ignore[attr-defined]
    parse_style.__newsletter_patch__ = True  # type: ignore[attr-defined]
    cssutils.parseString = parse_string
    cssutils.parseStyle = parse_style
    _cssutils_quiet = True


# -- 2. premailer without requests -------------------------------------------------------


class _NoRequests(types.ModuleType):
    def __getattr__(self, name: str) -> object:
        raise RuntimeError("premailer tried to use `requests`; inlining never uses the network")


def import_premailer() -> type[Any]:
    """The ``Premailer`` class, imported without paying for ``requests``.

    Relied on: premailer does ``import requests`` at the top of ``premailer.premailer``
    only to fetch external CSS, and touches it only when no ``session`` is passed
    (``self.session = session or requests``) and a URL is fetched.  We disable
    fetching and always pass our own session, yet importing requests costs ~100 ms
    of every `newsletter build`.  A stand-in that raises on any use is in
    ``sys.modules`` only while premailer is being imported, so any other code that
    imports requests later gets the real module; if premailer ever used requests at
    import time, the stand-in would raise there, loudly.
    """
    if "premailer.premailer" not in sys.modules and "requests" not in sys.modules:
        sys.modules["requests"] = _NoRequests("requests")
        try:
            import premailer.premailer  # noqa: F401
        finally:
            del sys.modules["requests"]
    from premailer import Premailer

    return cast(type[Any], Premailer)
