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


OPTIONS: dict[str, Any] = {
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

# A theme's <style> blocks are the same for every issue (and for both builds of a preview),
# so the rules premailer reads from each are kept: (css text, its index) -> (rules, leftover).
_RULES: dict[tuple[str, int], tuple[list[Any], list[Any]]] = {}
_RULES_MAX = 32
_premailer_class: type[Any] | None = None


def _premailer() -> type[Any]:
    """premailer's class, with the rules of a stylesheet it has seen once read from memory.

    Reading a stylesheet's rules (cssutils parses it, then writes every property back as
    text) is about half of a warm inlining.  premailer caches only the parse; the rules it
    makes from it depend on nothing else than the text, the block's index and the options,
    which are fixed here (OPTIONS), so the same text gives the same rules.  The lists are
    copied out, never handed over: transform() only reads them.
    """
    global _premailer_class
    if _premailer_class is None:
        base = import_premailer()

        class _CachedRules(base):  # type: ignore[misc, valid-type]
            def _parse_style_rules(
                self, css_body: str, ruleset_index: int
            ) -> tuple[list[Any], list[Any]]:
                key = (css_body, ruleset_index)
                found = _RULES.get(key)
                if found is None:
                    found = super()._parse_style_rules(css_body, ruleset_index)
                    if len(_RULES) >= _RULES_MAX:
                        _RULES.clear()
                    _RULES[key] = found
                return list(found[0]), list(found[1])

        _premailer_class = _CachedRules
    return _premailer_class


def inline_css(html: str) -> str:
    """Premailer with the options that keep MJML's output intact; never touches the network."""
    premailer = _premailer()
    quiet_cssutils()
    doctype = DOCTYPE_RE.match(html)
    out = str(premailer(html, session=_NoNetwork(), **OPTIONS).transform())
    if doctype and not DOCTYPE_RE.match(out):
        out = doctype.group(1) + out
    return out
