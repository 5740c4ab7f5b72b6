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

The two things done to libraries' internals for this (cssutils' module-level parse
functions replaced; premailer imported without ``requests``) live in
:mod:`newsletter.compat`, with the test that notices when a library changes them.

``@media`` rules and MSO conditional comments therefore come out byte-identical
(the tests compare them).
"""

from __future__ import annotations

import logging
import re
from typing import Any

from .compat import import_premailer, quiet_cssutils

DOCTYPE_RE = re.compile(r"^\s*(<!doctype[^>]*>)", re.IGNORECASE)
BASIC_ATTRIBUTES = ["width", "height", "align", "valign", "bgcolor", "background"]


class _NoNetwork:
    """Stands in for premailer's `requests` session: any use is a bug, so it raises."""

    def get(self, *args: object, **kwargs: object) -> None:
        raise RuntimeError("premailer tried to use the network while inlining")


def inline_css(html: str) -> str:
    """Premailer with the options that keep MJML's output intact; never touches the network."""
    Premailer = import_premailer()  # noqa: N806

    quiet_cssutils()
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
