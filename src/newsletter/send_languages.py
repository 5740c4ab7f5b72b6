"""Which version of an issue each recipient of a send gets.

An issue with translations is sent as one send (one ledger record, one lock, one
exactly-once promise): each subscriber gets the version in their list's `language`
column (see :func:`newsletter.languages.pick`), and the base language when they have
none or one the issue lacks.  The engine forms each batch from one language only, and
the batch records which (``batches.language``), so a resume posts it in that language.
``--language es`` sends only the Spanish version, to the readers who would get it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import ConfigError, Problem
from .languages import normalise, pick

if TYPE_CHECKING:
    from .build import BuiltIssue
    from .config import Workspace
    from .records import RecipientLike


@dataclass
class Versions:
    """The versions a send carries (``builds``: language -> build, the base first) and every
    language the issue exists in (``available``: what subscribers' languages are matched to)."""

    base: BuiltIssue
    builds: dict[str, BuiltIssue]
    available: tuple[str, ...]
    _picked: dict[str | None, str] = field(default_factory=dict, repr=False)

    @classmethod
    def of(
        cls, base: BuiltIssue, translations: Iterable[BuiltIssue] = (), only: str | None = None
    ) -> Versions:
        builds = {base.language: base}
        for t in translations:
            builds.setdefault(t.language, t)
        versions = cls(base, builds, tuple(builds))
        return versions.only([only]) if only else versions

    @property
    def several(self) -> bool:
        """More than one language: recipients must be told apart by their language."""
        return len(self.available) > 1 or set(self.builds) != set(self.available)

    def language_of(self, r: RecipientLike) -> str:
        """The version this recipient gets (memoised per typed value: lists have a handful)."""
        typed = r.language
        got = self._picked.get(typed)
        if got is None:
            got = self._picked[typed] = pick(typed, self.available, self.base.language)
        return got

    def only(self, languages: Iterable[str]) -> Versions:
        """These versions only (--language, or what a resumed send was sending)."""
        wanted = [w for w in languages if w]
        keep: dict[str, BuiltIssue] = {}
        for w in wanted:
            code = normalise(w)
            match = next((a for a in self.available if a.lower() == code), None)
            if match is None:
                shown = ", ".join(self.available)
                raise ConfigError(
                    f"--language {w}: this issue is in {shown}",
                    key="--language",
                    hint=f"choose one of {shown}, or leave --language out to send every version",
                )
            keep[match] = self.builds[match]
        return Versions(self.base, keep or dict(self.builds), self.available)

    def overlaps(self, languages: Iterable[str]) -> bool:
        """Does a send of ``languages`` (empty: all) reach readers this one reaches?"""
        theirs = {x.lower() for x in languages}
        return not theirs or bool(theirs & {x.lower() for x in self.builds})


def content_digest(builds: Iterable[BuiltIssue]) -> str:
    """SHA-256 of what the recipients of a send get (subject, HTML, text of each version):
    recorded with the send, so a resume can tell that the issue was edited meanwhile.
    (One version: the same digest as before sends had languages.)"""
    digest = hashlib.sha256()
    for built in builds:
        for part in (built.subject, built.html, built.text):
            digest.update(part.encode("utf-8"))
            digest.update(b"\0")
    return digest.hexdigest()


def build_versions(
    ws: Workspace, source: Path, only: str | None = None, *, finished: bool = True
) -> Versions:
    """Build the issue and each of its translations for a send (every version is checked,
    even those --language leaves out: a send is of the whole issue).  Raises CheckFailed
    with every problem of the first version that has errors (or IssueError for the base).

    ``finished``: a translation to be sent must be done: still marked `# todo` in places,
    or a draft of its own, it is refused (test copies and dry runs may show it)."""
    from .build import build_issue
    from .checks import lint_unbuildable
    from .errors import CheckFailed, IssueError
    from .translations import translations_of

    base = build_issue(ws, source)
    translations = []
    for path in translations_of(source):
        try:
            translations.append(build_issue(ws, path))
        except IssueError:
            raise CheckFailed(lint_unbuildable(ws, path)) from None
    versions = Versions.of(base, translations, only=only)
    if finished:
        half = [p for b in versions.builds.values() if b is not base for p in _unfinished(b)]
        if half:
            raise CheckFailed(half)
    return versions


def _unfinished(built: BuiltIssue) -> list[Problem]:
    """Why a translation is not ready to go out (nothing when it is)."""
    marked = [p for p in built.problems if p.code == "translation_todo"]
    if marked:
        what = f"{len(marked)} of its texts are still marked `# todo`"
        fix = "translate them and delete the marks (`newsletter check` lists them)"
    elif built.draft:
        what = "it is marked `draft: true`"
        fix = "remove its `draft: true` line when it is ready"
    else:
        return []
    return [
        *marked,
        Problem(
            message=f"the {built.language} version is not finished: {what}, so nothing was sent",
            path=built.source,
            code="translation_unfinished",
            hint=f"{fix}, or send the finished versions only, with --language",
        ),
    ]
