"""The archive of an issue published in several languages.

Each issue keeps its page at ``<issue>/`` (its base language) and each translation gets
``<issue>/<language>/``.  Every page of such an issue links to its other languages, for
readers (a short list of links at the top) and for search engines (``<link
rel="alternate" hreflang>`` in the head, with ``x-default`` the base page); the index shows
the languages under each issue, and there is one Atom feed per language
(``feed.<language>.xml``) beside the archive's ``feed.xml``.

An archive of single-language issues is exactly what it was: no links are added.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, TypeVar

from .errors import InputError, Problem
from .languages import endonym
from .translations import translations_of

T = TypeVar("T", bound=Any)  # archive.Entry (a frozen dataclass with `versions`)

if TYPE_CHECKING:
    from .build import BuiltIssue
    from .config import Workspace
    from .render import Renderer


@dataclass(frozen=True)
class Version:
    """One language of an issue, as its pages and the index link to it."""

    language: str
    name: str  # the language in its own words: Español
    path: str  # under the archive: 2019-10/es/
    url: str  # absolute
    subject: str


def compose_translations(
    ws: Workspace, built: list[BuiltIssue], renderer: Renderer
) -> tuple[dict[str, list[BuiltIssue]], list[Problem]]:
    """The translations of every issue to publish, by issue id, and their problems."""
    from .build import compose

    out: dict[str, list[BuiltIssue]] = {}
    problems: list[Problem] = []
    for b in built:
        for path in translations_of(b.source):
            try:
                t = compose(ws, path, renderer)
            except InputError as exc:
                problems.extend(exc.problems)
                continue
            if t.draft:
                continue  # a translation still marked draft is not published (nor checked here)
            problems.extend(t.problems)
            out.setdefault(b.issue_id, []).append(t)
    return out, problems


def versions_of(base_url: str, built: list[BuiltIssue]) -> list[Version]:
    """The versions of one issue (the base first), as links."""
    return [
        Version(
            language=b.language,
            name=endonym(b.language),
            path=b.located.web_path,
            url=f"{base_url}{b.located.web_path}",
            subject=b.subject,
        )
        for b in built
    ]


def _relative(from_path: str, to_path: str) -> str:
    """A link from the page at ``from_path`` (2019-10/es/) to ``to_path`` (2019-10/)."""
    up = from_path.count("/")
    return "../" * up + to_path


def head_links(versions: list[Version]) -> str:
    """``<link rel="alternate" hreflang>`` for every version, and x-default (the base)."""
    e = html.escape
    links = [
        f'<link rel="alternate" hreflang="{e(v.language)}" href="{e(v.url)}">' for v in versions
    ]
    links.append(f'<link rel="alternate" hreflang="x-default" href="{e(versions[0].url)}">')
    return "\n".join(links) + "\n"


def language_nav(versions: list[Version], current: Version) -> str:
    """The visible links to the other languages, each named in its own language."""
    e = html.escape
    links = " · ".join(
        f'<a href="{e(_relative(current.path, v.path))}" hreflang="{e(v.language)}" '
        f'lang="{e(v.language)}" style="color:inherit;">{e(v.name)}</a>'
        for v in versions
        if v is not current
    )
    return (
        f'<nav class="nl-languages" aria-label="{e(current.name)}" '
        'style="max-width:600px;margin:0 auto;padding:12px 16px;font:15px/1.5 sans-serif;'
        f'text-align:right;">{links}</nav>\n'
    )


def with_languages(page: str, versions: list[Version], current: Version) -> str:
    """The browser version with its language links (in the head and at the top)."""
    head = page.find("</head>")
    if head >= 0:
        page = page[:head] + head_links(versions) + page[head:]
    body = page.find("<body")
    end = page.find(">", body) if body >= 0 else -1
    if end >= 0:
        page = page[: end + 1] + "\n" + language_nav(versions, current) + page[end + 1 :]
    return page


def language_pages(
    base_url: str, base: BuiltIssue, translations: list[BuiltIssue]
) -> dict[str, bytes]:
    """Every page of one issue, by path in the archive (with language links if translated)."""
    if not translations:
        return {f"{base.issue_id}/index.html": base.web_html.encode("utf-8")}
    built = [base, *translations]
    versions = versions_of(base_url, built)
    return {
        f"{v.path}index.html": with_languages(b.web_html, versions, v).encode("utf-8")
        for b, v in zip(built, versions, strict=True)
    }


def with_versions(
    entries: list[T],
    built: list[BuiltIssue],
    translated: dict[str, list[BuiltIssue]],
    base_url: str,
) -> list[T]:
    """The index's entries, each with its issue's languages (none for a single-language one)."""
    out = []
    for e, b in zip(entries, built, strict=True):
        more = translated.get(b.issue_id)
        out.append(replace(e, versions=tuple(versions_of(base_url, [b, *more]))) if more else e)
    return out


def language_feeds(
    entries: list[T],
    built: list[BuiltIssue],
    translated: dict[str, list[BuiltIssue]],
    feed: Callable[[list[T], str, str], bytes],
) -> dict[str, bytes]:
    """``feed.<language>.xml`` for every language of the archive, once any issue is
    translated: each issue in that language, where it has it.  ``feed(entries, language,
    file name)`` writes one (archive.atom_feed)."""
    if not translated:
        return {}
    by_language: dict[str, list[T]] = {}
    for e, b in zip(entries, built, strict=True):
        for v in [b, *translated.get(b.issue_id, [])]:
            path = v.located.web_path
            entry = replace(
                e,
                subject=v.subject,
                preheader=v.preheader,
                language=v.language,
                url=e.url.removesuffix(e.href) + path,
                href=path,
            )
            by_language.setdefault(v.language, []).append(entry)
    return {
        f"feed.{lang}.xml": feed(items, lang, f"feed.{lang}.xml")
        for lang, items in sorted(by_language.items())
    }
