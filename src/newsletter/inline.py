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

import importlib.util
import logging
import re
import sys
from typing import Any

DOCTYPE_RE = re.compile(r"^\s*(<!doctype[^>]*>)", re.IGNORECASE)
BASIC_ATTRIBUTES = ["width", "height", "align", "valign", "bgcolor", "background"]

_cssutils_quiet = False


def _quiet_cssutils() -> None:
    """Silence cssutils (mso-* warnings) and stop it from fetching @import URLs."""
    global _cssutils_quiet
    if _cssutils_quiet:
        return
    import cssutils

    cssutils.log.setLevel(logging.CRITICAL)
    cssutils.log.raiseExceptions = False

    def _no_fetch(url: str) -> tuple[None, str]:
        # Returning (None, "") tells cssutils the import could not be read; nothing is fetched.
        return None, ""

    _parser = cssutils.CSSParser(fetcher=_no_fetch, validate=False)
    cssutils.parseString = _parser.parseString  # premailer calls the module-level function
    _cssutils_quiet = True


def _lazy_requests() -> None:
    """Let premailer's top-level `import requests` cost nothing until requests is used.

    premailer only calls requests to fetch external CSS, which we never allow, yet
    importing it costs about 110 ms of every `newsletter build`.  LazyLoader keeps
    the real module: it is executed in full on the first attribute access.
    """
    if "requests" in sys.modules:
        return
    spec = importlib.util.find_spec("requests")
    if spec is None or spec.loader is None:
        return
    loader = importlib.util.LazyLoader(spec.loader)
    spec.loader = loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["requests"] = module
    loader.exec_module(module)


def inline_css(html: str) -> str:
    """Premailer with the options that keep MJML's output intact; never touches the network."""
    _lazy_requests()
    from premailer import Premailer

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
    }
    out = str(Premailer(html, **options).transform())
    if doctype and not DOCTYPE_RE.match(out):
        out = doctype.group(1) + out
    return out
