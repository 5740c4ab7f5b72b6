"""Language codes as people type them, and which version of an issue each reader gets.

Subscriber lists are typed by hand or exported from a CRM: ``es``, ``ES``, ``es-MX``,
``es_419`` and ``pt-BR`` all occur in the same `language` column.  An issue exists in a
few languages (its base file and its translations, see :mod:`newsletter.translations`);
:func:`pick` maps a typed code onto one of them, falling back to the base language for a
reader with no language or one the issue lacks.  Nothing here reads files, so the issue
model (issue.py) can use it to tell a translation's file name from an issue's.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

# A language code as a file name carries it: es, pt-BR, zh-Hant (as the issue's `language`).
LANGUAGE_CODE = r"[a-z]{2,3}(?:-[A-Za-z0-9]{2,8})?"
_TRANSLATION_STEM = re.compile(rf"^(?P<base>.+)\.(?P<lang>{LANGUAGE_CODE})$")
_TYPED = re.compile(r"^[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{1,8})*$")


def normalise(code: str | None) -> str | None:
    """A typed code in one form (lower case, ``-`` between parts): ``ES_mx`` -> ``es-mx``;
    None for an empty value or anything that is not a code ("Spanish", "es, en")."""
    if not code:
        return None
    text = code.strip()
    if not _TYPED.fullmatch(text):
        return None
    return text.replace("_", "-").lower()


def primary(code: str) -> str:
    """The language without its region or script: ``pt-br`` -> ``pt``."""
    return code.split("-", 1)[0].lower()


def pick(typed: str | None, available: Sequence[str], base: str) -> str:
    """Which of the issue's ``available`` languages a reader whose list says ``typed`` gets.

    Exact match first (ignoring case and ``_``/``-``), then the same language without
    region (``es-MX``, ``es_419`` -> ``es``; ``pt`` -> ``pt-BR`` when that is the only
    Portuguese), else ``base``.
    """
    code = normalise(typed)
    if code is None:
        return base
    by_form = {a.lower(): a for a in available}
    if code in by_form:
        return by_form[code]
    lang = primary(code)
    if lang in by_form:
        return by_form[lang]
    same = [a for a in available if primary(a) == lang]
    if same:
        return same[0]
    return base


def translation_name(path: Path) -> tuple[Path, str] | None:
    """(base file, language) when ``path`` is a translation: ``issues/2019-10.es.yaml``
    beside an existing ``issues/2019-10.yaml`` (or ``.yml``); None otherwise."""
    if path.suffix not in (".yaml", ".yml"):
        return None
    m = _TRANSLATION_STEM.match(path.stem)
    if m is None:
        return None
    for suffix in (path.suffix, ".yaml", ".yml"):
        base = path.with_name(m["base"] + suffix)
        if base.is_file():
            return base, m["lang"]
    return None


def translation_files(base: Path) -> list[tuple[str, Path]]:
    """A base issue file's translations as (language, file), sorted by language."""
    found: dict[str, Path] = {}
    for p in sorted(base.parent.glob(f"{glob_escape(base.stem)}.*.y*ml")):
        named = translation_name(p)
        if named is not None and named[0].stem == base.stem and ".conflict-" not in p.stem:
            found.setdefault(named[1], p)
    return sorted(found.items())


def glob_escape(text: str) -> str:
    """``text`` matched literally by Path.glob (an issue id may hold ``[``)."""
    return re.sub(r"([*?\[])", r"[\1]", text)


# Each language named in its own words, for the archive's links between versions.
ENDONYMS = {
    "en": "English",
    "es": "Español",
    "fr": "Français",
    "pt": "Português",
    "de": "Deutsch",
    "it": "Italiano",
    "nl": "Nederlands",
    "ht": "Kreyòl ayisyen",
    "ar": "العربية",
    "zh": "中文",
}


def endonym(code: str) -> str:
    """``es`` -> Español; a language we have no name for is shown as its code."""
    return ENDONYMS.get(code.lower()) or ENDONYMS.get(primary(code)) or code
