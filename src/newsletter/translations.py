"""One issue in several languages: a translation is a sibling file of its issue.

``issues/2019-10.es.yaml`` beside ``issues/2019-10.yaml`` is the Spanish version of issue
2019-10.  It has the issue's structure, but what is the same in every language (the
issue's ``date``, ``number``, ``greeting`` and ``draft``; each article's ``url``,
``image.src``, ``image.width`` and ``date``) may be left out: it is taken from the base
file.  Anything the translation writes wins (a Spanish article may link to the Spanish
page).  Articles are matched by their ``id:`` when the translation's article has one,
else by position.

A translation is read like an issue (issue.py's loader, so every message names the
translation's file and line), with the base's shared fields filled in before validation.
It keeps the base's issue id: a send, the ledger and the archive know one issue 2019-10,
published in several languages (``2019-10/`` and ``2019-10/es/``).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import IssueError, Problem
from .issue import Located, Parsed, load_issue, read_issue
from .languages import translation_files, translation_name

SHARED_TOP = ("date", "number", "greeting", "draft")
SHARED_ARTICLE = ("url", "date")
SHARED_IMAGE = ("src", "width")


@dataclass(kw_only=True)
class _Of:
    """What a translation knows of its base (mixed into the two classes below)."""

    base_path: Path = field(default_factory=Path)
    lang: str = ""
    base: Parsed | None = None  # what could be read of the base file
    matches: list[int | None] = field(default_factory=list)  # base article of each article


@dataclass
class TranslatedParsed(Parsed, _Of):
    """A translation file with errors: what could be read of it, with the base's fields."""

    @property
    def issue_id(self) -> str:
        return self.base_path.stem

    @property
    def web_path(self) -> str:
        return f"{self.base_path.stem}/{self.lang}/"


@dataclass
class Translation(Located, _Of):
    """A valid translation: the model (base's shared fields filled in) and its positions."""

    @property
    def issue_id(self) -> str:
        return self.base_path.stem

    @property
    def web_path(self) -> str:
        return f"{self.base_path.stem}/{self.lang}/"


def is_translation(located: Parsed) -> bool:
    return isinstance(located, TranslatedParsed | Translation)


def match_articles(base: list[Any], translated: list[Any]) -> list[int | None]:
    """For each translated article, the index of its base article (None: no match).

    By ``id`` when the translated article has one, else by position; a base article
    matched twice counts for the first only.
    """
    ids = {a.get("id"): i for i, a in enumerate(base) if isinstance(a, dict) and a.get("id")}
    out: list[int | None] = []
    taken: set[int] = set()
    for i, art in enumerate(translated):
        wanted = art.get("id") if isinstance(art, dict) else None
        j = ids.get(wanted) if wanted else (i if i < len(base) else None)
        if j is not None and j in taken:
            j = None
        if j is not None:
            taken.add(j)
        out.append(j)
    return out


def merge(values: dict[str, Any], base: dict[str, Any], lang: str) -> dict[str, Any]:
    """The translation's values with what it leaves out of the shared fields taken from
    the base (in place, and returned)."""
    values.setdefault("language", lang)
    for key in SHARED_TOP:
        if key not in values and key in base:
            values[key] = copy.deepcopy(base[key])
    arts, base_arts = values.get("articles"), base.get("articles")
    if not (isinstance(arts, list) and isinstance(base_arts, list)):
        return values
    for art, j in zip(arts, match_articles(base_arts, arts), strict=True):
        if j is None or not isinstance(art, dict) or not isinstance(base_arts[j], dict):
            continue
        src = base_arts[j]
        for key in SHARED_ARTICLE:
            if key not in art and key in src:
                art[key] = copy.deepcopy(src[key])
        image, base_image = art.get("image"), src.get("image")
        if not isinstance(base_image, dict):
            continue
        if "image" not in art:
            art["image"] = copy.deepcopy(base_image)  # its alt is then the base's: warned
        elif isinstance(image, dict):
            for key in SHARED_IMAGE:
                if key not in image and key in base_image:
                    image[key] = copy.deepcopy(base_image[key])
    return values


def load_translation(
    path: Path, raw: bytes | None = None, base: Parsed | None = None
) -> tuple[Parsed | None, list[Problem]]:
    """What could be read of a translation file, and its errors (as issue.load_issue)."""
    named = translation_name(path)
    if named is None:
        raise ValueError(f"{path} is not a translation file")
    base_path, lang = named
    if base is None:
        base, _ = load_issue(base_path)  # its own problems are the base's, checked apart
    base_values = base.values if base is not None else {}
    parsed, problems = load_issue(path, raw, fill=lambda v: merge(v, base_values, lang))
    if parsed is None:
        return None, problems
    arts, base_arts = parsed.values.get("articles"), base_values.get("articles")
    matches = (
        match_articles(base_arts, arts)
        if isinstance(arts, list) and isinstance(base_arts, list)
        else []
    )
    out: Parsed
    if isinstance(parsed, Located):
        out = Translation(
            parsed.path,
            parsed.values,
            parsed.positions,
            parsed.comments,
            parsed.issue,
            base_path=base_path,
            lang=lang,
            base=base,
            matches=matches,
        )
    else:
        out = TranslatedParsed(
            parsed.path,
            parsed.values,
            parsed.positions,
            parsed.comments,
            base_path=base_path,
            lang=lang,
            base=base,
            matches=matches,
        )
    return out, problems + _language_problems(out, lang, base_values)


def _language_problems(tr: Parsed, lang: str, base: dict[str, Any]) -> list[Problem]:
    written = tr.values.get("language")
    out = []
    if "language" in tr.positions and isinstance(written, str) and written.lower() != lang.lower():
        out.append(
            tr.problem(
                "language",
                f"says `{written}`, but the file's name makes it the `{lang}` translation",
                hint=f"write `language: {lang}`, or rename the file to "
                f"{tr.path.name.replace(f'.{lang}.', f'.{written}.')}",
                code="translation_language",
            )
        )
    base_lang = base.get("language")
    if isinstance(base_lang, str) and base_lang.lower() == lang.lower():
        out.append(
            tr.problem(
                "language",
                f"`{lang}` is already the language of the base file",
                hint="a translation is in another language than its issue",
                code="translation_language",
            )
        )
    return out


def load_any(path: Path, raw: bytes | None = None) -> tuple[Parsed | None, list[Problem]]:
    """An issue file or a translation file, whichever `path` is."""
    if translation_name(path) is not None:
        return load_translation(path, raw)
    return load_issue(path, raw)


def read_any(path: Path, raw: bytes | None = None) -> Located:
    """Read and validate an issue or a translation; IssueError lists every problem."""
    if translation_name(path) is None:
        return read_issue(path, raw)
    parsed, problems = load_translation(path, raw)
    if any(p.severity == "error" for p in problems) or not isinstance(parsed, Located):
        raise IssueError(problems)
    return parsed


def translations_of(base: Path) -> list[Path]:
    """The translation files of an issue file, by language (none for a translation)."""
    if translation_name(base) is not None:
        return []
    return [p for _, p in translation_files(base)]
