"""Inline CSS with premailer, configured so it does not damage MJML output.

premailer's defaults hurt MJML's HTML in five measured ways; each is handled
here and covered by a test in tests/test_inline.py:

1. it drops the lower-case ``<!doctype html>`` MJML writes (lxml only keeps a
   doctype it recognises verbatim) -> we put the original doctype back;
2. it strips ``!important`` inside the ``@media`` rules it keeps, which undoes
   the mobile layout and dark mode -> ``strip_important=False``, and the style
   blocks are kept as written (``keep_style_tags=True``);
3. it fetches ``<link rel=stylesheet>`` and external CSS over the network ->
   ``allow_network=False``, and cssutils' own fetcher (for ``@import``) is
   replaced by one that refuses;
4. it rewrites ``width``/``height``/``align``/``bgcolor`` attributes from CSS,
   which Outlook (Word) reads instead of CSS -> ``disable_basic_attributes``
   for all of them and ``align_floating_images=False``;
5. cssutils logs a warning for every ``mso-*`` property it does not know ->
   its logger is silenced while we inline.

``@media`` rules and MSO conditional comments therefore come out byte-identical
(the tests compare them).
"""

from __future__ import annotations

import logging
import re
import sys
import types
from typing import Any, cast

DOCTYPE_RE = re.compile(r"^\s*(<!doctype[^>]*>)", re.IGNORECASE)
BASIC_ATTRIBUTES = ["width", "height", "align", "valign", "bgcolor", "background"]

_cssutils_quiet = False


def _quiet_cssutils() -> None:
    """Silence cssutils (mso-* warnings), stop it fetching @import URLs, skip validation.

    premailer calls the module-level ``cssutils.parseString`` (stylesheets) and
    ``cssutils.parseStyle`` (inline styles, always with validate=True whatever
    ``disable_validation`` says).  Validation only feeds the warnings we silence,
    yet compiling its property regexes costs 60-125 ms of every build, so both are
    routed through one non-validating parser whose fetcher refuses every URL.
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

    cssutils.parseString = parse_string
    cssutils.parseStyle = parse_style
    _cssutils_quiet = True


class _NoRequests(types.ModuleType):
    def __getattr__(self, name: str) -> object:
        raise RuntimeError("premailer tried to use `requests`; inlining never uses the network")


def _import_premailer() -> type[Any]:
    """Import premailer without paying for `requests`, which we never let it use.

    premailer does `import requests` at the top only to fetch external CSS (which we
    disable, and we pass our own session); importing requests costs ~100 ms of every
    `newsletter build`.  A stand-in is in sys.modules only while premailer is being
    imported, so any other code that imports requests later gets the real module.
    """
    if "premailer.premailer" not in sys.modules and "requests" not in sys.modules:
        sys.modules["requests"] = _NoRequests("requests")
        try:
            import premailer.premailer  # noqa: F401
        finally:
            del sys.modules["requests"]
    from premailer import Premailer

    return cast(type[Any], Premailer)


class _NoNetwork:
    """Stands in for premailer's `requests` session: any use is a bug, so it raises."""

    def get(self, *args: object, **kwargs: object) -> None:
        raise RuntimeError("premailer tried to use the network while inlining")


def inline_css(html: str) -> str:
    """Premailer with the options that keep MJML's output intact; never touches the network."""
    Premailer = _import_premailer()  # noqa: N806

    _quiet_cssutils()
    doctype = DOCTYPE_RE.match(html)
    options: dict[str, Any] = {
        "keep_style_tags": True,
        "strip_important": False,
        "allow_network": False,
        "allow_loading_external_files": False,
        "disable_basic_attributes": BASIC_ATTRIBUTES,
        "align_floating_images": False,
        "remove_classes": False,
        "capitalize_float_margin": False,
        "disable_validation": True,
        "cssutils_logging_level": logging.CRITICAL,
        "exclude_pseudoclasses": True,
        "cache_css_parsing": True,
        "session": _NoNetwork(),
    }
    out = str(Premailer(html, **options).transform())
    if doctype and not DOCTYPE_RE.match(out):
        out = doctype.group(1) + out
    return out
