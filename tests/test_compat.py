"""Each reliance on a library's internals (src/newsletter/compat.py), checked directly.

When one of these fails after an upgrade, the message says what the library changed and
what it breaks here: fix compat.py (or pin the library) before anything else.
"""

from __future__ import annotations

import inspect
import re
import subprocess
import sys
import textwrap
from typing import Any

import pytest
from email_validator import EmailNotValidError, validate_email

from newsletter import compat


def _fail(library: str, what: str, consequence: str) -> None:
    pytest.fail(
        f"{library} changed underneath newsletter.compat: {what}. Consequence: {consequence}. "
        "Update src/newsletter/compat.py for the new version (or pin the old one).",
        pytrace=False,
    )


# --------------------------------------------------------------------------- cssutils


def test_premailer_calls_the_cssutils_functions_we_replace() -> None:
    """quiet_cssutils() replaces cssutils.parseString / parseStyle on the module; that only
    works while premailer looks them up there at each call."""
    import cssutils

    compat.quiet_cssutils()
    for name in ("parseString", "parseStyle"):
        if not getattr(getattr(cssutils, name), "__newsletter_patch__", False):
            _fail("cssutils", f"cssutils.{name} is not our replacement", "the patch did not apply")
    Premailer = compat.import_premailer()  # noqa: N806
    calls: list[str] = []
    originals = {n: getattr(cssutils, n) for n in ("parseString", "parseStyle")}

    def spy(name: str) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            calls.append(name)
            return originals[name](*args, **kwargs)

        return call

    try:
        cssutils.parseString = spy("parseString")
        cssutils.parseStyle = spy("parseStyle")
        html = (
            "<html><head><style>p { color: red } @media (max-width: 10px) "
            "{ p { color: blue !important } }</style></head>"
            '<body><p style="margin: 0">x</p></body></html>'
        )
        Premailer(html, keep_style_tags=True, cache_css_parsing=False).transform()
    finally:
        cssutils.parseString = originals["parseString"]
        cssutils.parseStyle = originals["parseStyle"]
    for name in ("parseString", "parseStyle"):
        if name not in calls:
            _fail(
                "premailer",
                f"it no longer calls cssutils.{name} through the module",
                "every build validates CSS again (60-125 ms) and may fetch @import URLs and "
                "log a warning per mso-* property",
            )


def test_cssutils_parser_takes_a_fetcher_and_no_validation() -> None:
    import cssutils

    fetched: list[str] = []

    def fetcher(url: str) -> tuple[None, str]:
        fetched.append(url)
        return None, ""

    try:
        parser = cssutils.CSSParser(fetcher=fetcher, validate=False)
        sheet = parser.parseString("@import url(http://127.0.0.1:9/x.css); p { mso-x: 1 }")
        style = parser.parseStyle("color: red", encoding="utf-8", validate=False)
    except TypeError as exc:
        _fail("cssutils", f"CSSParser/parseStyle no longer take these arguments ({exc})", "")
    if fetched != ["http://127.0.0.1:9/x.css"]:
        _fail(
            "cssutils",
            "an @import no longer goes through the parser's fetcher",
            "it may be fetched",
        )
    assert sheet.cssRules and style.getPropertyValue("color") == "red"


# --------------------------------------------------------------------------- premailer


def test_premailer_imports_without_requests_and_takes_a_session() -> None:
    """Run in a fresh interpreter: requests must not be imported, and premailer must still
    accept our own session (it would otherwise fall back to `requests`)."""
    code = textwrap.dedent(
        """
        import sys
        from newsletter import compat
        Premailer = compat.import_premailer()
        class NoNetwork:
            def get(self, *a, **k):
                raise RuntimeError("network")
        out = Premailer("<html><body><p>x</p></body></html>", session=NoNetwork(),
                        allow_network=False).transform()
        assert "<p>x</p>" in out
        print("requests" in sys.modules)
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        _fail(
            "premailer",
            f"importing it with the `requests` stand-in, or passing session=, failed:\n{done.stderr}",
            "`newsletter build` cannot inline CSS",
        )
    if done.stdout.strip() != "False":
        _fail("premailer", "importing it now imports requests anyway", "~100 ms more per build")


def test_premailer_only_touches_requests_through_its_session() -> None:
    import premailer.premailer as module

    source = inspect.getsource(module)
    uses = set(re.findall(r"\brequests\.(\w+)", source))
    if uses:
        _fail(
            "premailer",
            f"it uses requests.{', requests.'.join(sorted(uses))} directly",
            "the stand-in in compat.import_premailer would raise while inlining",
        )


# --------------------------------------------------------------------------- email-validator


@pytest.mark.parametrize(
    "local",
    [
        "ana",
        "ana.lopez",
        "a+b",
        "o'brien",
        "x_y-z",
        "{curly}",
        "a..b",
        ".a",
        "a.",
        "a b",
        '"quoted"',
        "josé",
        "a@b",
    ],
)
def test_dot_atom_text_agrees_with_validate_email(local: str) -> None:
    """The list reader's fast path accepts a local part when DOT_ATOM_TEXT matches it; it must
    be exactly the ASCII local parts validate_email() accepts unquoted."""
    pattern = compat.DOT_ATOM_TEXT
    if not isinstance(pattern, re.Pattern):
        _fail("email-validator", "rfc_constants.DOT_ATOM_TEXT is not a compiled pattern", "")
    try:
        validate_email(f"{local}@example.org", check_deliverability=False)
        valid = local.isascii() and not local.startswith('"')
    except EmailNotValidError:
        valid = False
    if bool(pattern.match(local)) != valid:
        _fail(
            "email-validator",
            f"DOT_ATOM_TEXT {'accepts' if not valid else 'refuses'} the local part {local!r} "
            f"that validate_email() {'refuses' if not valid else 'accepts'}",
            "lists would accept or refuse addresses differently from email-validator",
        )


def test_case_insensitive_mailbox_names_are_what_validate_email_lowercases() -> None:
    names = compat.CASE_INSENSITIVE_MAILBOX_NAMES
    if not names or not all(isinstance(n, str) and n == n.lower() for n in names):
        _fail(
            "email-validator", "CASE_INSENSITIVE_MAILBOX_NAMES is no list of lower-case names", ""
        )
    for name in names:
        result = validate_email(f"{name.upper()}@example.org", check_deliverability=False)
        if result.normalized != f"{name}@example.org":
            _fail(
                "email-validator",
                f"validate_email() no longer lower-cases {name.upper()}@",
                "the list reader's fast path would normalise it differently",
            )
    kept = validate_email("Ana@example.org", check_deliverability=False).normalized
    if kept != "Ana@example.org":
        _fail("email-validator", "validate_email() lower-cases every local part now", "")
