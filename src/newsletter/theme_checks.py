"""The theme's MJML, checked before mjml-python sees it (`newsletter check`, `build`).

mjml-python (MRML) has no validator and silently drops unknown tags and attributes, so a
typo in a template (`<mj-txt>`, `paddng=`) would vanish from the email without a word.  Each
template is walked here, Jinja syntax left in, against the components, parents and
attributes MJML defines.  That table is data, mjml_schema.toml beside this file, so that
allowing one more attribute is a one-line edit there.
"""

from __future__ import annotations

import re
import tomllib
from html.parser import HTMLParser
from importlib import resources
from pathlib import Path

from .errors import Problem

SCHEMA_FILE = "mjml_schema.toml"
# Components that cannot carry defaults inside <mj-attributes> (every other one can).
_NO_DEFAULTS = ("mjml", "mj-head", "mj-attributes", "mj-all", "mj-body")
_ANY: set[str] = set()  # attributes not checked (components the theme does not use)


def _load_schema() -> dict[str, tuple[set[str], set[str]]]:
    """tag: (allowed parents, allowed attributes), in the order the data file lists them."""
    text = resources.files("newsletter").joinpath(SCHEMA_FILE).read_text("utf-8")
    data = tomllib.loads(text)
    common = set(data["common_attributes"])
    tags: dict[str, tuple[set[str], set[str]]] = {}
    for tag, spec in data["components"].items():
        parents = set(spec["parents"])
        if tag not in _NO_DEFAULTS:
            parents.add("mj-attributes")
        if spec["attributes"] == "any":
            allowed = _ANY
        else:
            allowed = set(spec["attributes"]) | (common if spec.get("common") else set())
        tags[tag] = (parents, allowed)
    return tags


MJML_TAGS = _load_schema()


def is_mjml_tag(tag: str) -> bool:
    """An MJML component name (known or not), as opposed to HTML inside mj-text."""
    return tag.startswith("mj-") or tag == "mjml"


class _MjmlLinter(HTMLParser):
    """Walks a template's MJML (Jinja syntax left in) with line numbers."""

    def __init__(self, path: Path) -> None:
        super().__init__(convert_charrefs=True)
        self.path = path
        self.stack: list[str] = []
        self.problems: list[Problem] = []

    def _problem(self, message: str, hint: str | None = None) -> None:
        line, col = self.getpos()
        self.problems.append(
            Problem(
                message=message, path=self.path, line=line, column=col + 1, code="mjml", hint=hint
            )
        )

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if not is_mjml_tag(tag):
            return
        if tag not in MJML_TAGS:
            close = [t for t in MJML_TAGS if t.startswith(tag[:5])]
            self._problem(
                f"<{tag}> is not an MJML component; mjml-python drops it silently",
                hint=f"did you mean <{close[0]}>?" if close else None,
            )
            return
        parents, allowed = MJML_TAGS[tag]
        parent = next((t for t in reversed(self.stack) if t.startswith("mj")), None)
        in_attributes = parent == "mj-attributes"
        self._mrml_gaps(tag, attrs, in_attributes)
        if parents and parent is not None and parent not in parents:
            self._problem(
                f"<{tag}> cannot be inside <{parent}>",
                hint=f"put it inside {' or '.join('<' + p + '>' for p in sorted(parents))}",
            )
        for name, _ in attrs:
            if "{" in name or "%" in name:
                continue
            if in_attributes or allowed is _ANY:
                continue  # defaults for a component, or a component checked loosely
            if name not in allowed:
                self._problem(f'<{tag}> has no attribute "{name}"; mjml-python ignores it silently')
        self.stack.append(tag)

    def _mrml_gaps(
        self, tag: str, attrs: list[tuple[str, str | None]], in_attributes: bool
    ) -> None:
        """Things MJML honours but mjml-python (MRML) ignores without a word."""
        if tag == "mj-style" and any(name == "inline" for name, _ in attrs):
            self._problem(
                'mjml-python ignores <mj-style inline="inline">',
                hint="drop the attribute: premailer inlines every mj-style rule at build time",
            )
        if in_attributes and tag in ("mj-body", "mj-social-element"):
            self._problem(
                f"mjml-python ignores mj-attributes for <{tag}>",
                hint=f"set the attributes on each <{tag}> itself",
            )
        if tag == "mj-social" and not in_attributes:
            self._problem(
                "<mj-social> renders its icons without alt text",
                hint="use plain text links in an mj-text, as the default footer does",
            )

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if self.stack and self.stack[-1] == tag:
            self.stack.pop()

    def handle_endtag(self, tag: str) -> None:
        if not is_mjml_tag(tag) or tag not in MJML_TAGS:
            return
        if tag in self.stack:
            while self.stack and self.stack.pop() != tag:
                pass
        else:
            self._problem(f"</{tag}> closes a tag that is not open")


# A template's problems, by its path and text: the theme is the same from build to build
# (a preview server, the studio), so each template is walked again only when it changed.
_LINTED: dict[tuple[Path, str], tuple[Problem, ...]] = {}
_LINTED_MAX = 64


def lint_theme(theme_dir: Path) -> list[Problem]:
    """Static MJML checks on every template of the theme (file and line exact)."""
    out: list[Problem] = []
    for path in sorted(theme_dir.glob("*.mjml.j2")):
        source = path.read_text("utf-8")
        found = _LINTED.get((path, source))
        if found is None:
            found = _lint_template(path, source)
            if len(_LINTED) >= _LINTED_MAX:
                _LINTED.clear()
            _LINTED[(path, source)] = found
        out.extend(found)
    return out


def _lint_template(path: Path, source: str) -> tuple[Problem, ...]:
    linter = _MjmlLinter(path)
    # Partials are fragments: pretend they sit where the layout includes them.
    if path.name.startswith("_"):
        linter.stack = ["mjml", "mj-body"]
    linter.feed(re.sub(r"\{#.*?#\}", lambda m: "\n" * m.group(0).count("\n"), source, flags=re.S))
    linter.close()
    return tuple(linter.problems)
