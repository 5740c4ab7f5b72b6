"""`newsletter translate` and `newsletter new --languages`: a translation's first draft.

Every text of the base issue is copied and marked ``# todo: translate`` on its line, so
the translator sees what is left and `check` lists every text still marked (see
translation_checks.py).  What is the same in every language (dates, number, links,
pictures) is left out: the translation takes it from the base file.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from .languages import LANGUAGE_CODE
from .translation_checks import ARTICLE_TEXTS, TOP_TEXTS

MARK = "# todo: translate"
NAMES = {
    "en": "English",
    "es": "Spanish",
    "fr": "French",
    "pt": "Portuguese",
    "de": "German",
    "it": "Italian",
    "nl": "Dutch",
    "ar": "Arabic",
    "zh": "Chinese",
    "ht": "Haitian Creole",
}


def language_name(code: str) -> str:
    return NAMES.get(code.split("-")[0].lower(), code)


def _text(key: str, value: str, indent: int) -> list[str]:
    """``key: value`` marked for translation: one line in double quotes, or a block."""
    pad = " " * indent
    lines = value.split("\n")
    one_line = len(lines) == 1 or (len(lines) == 2 and lines[1] == "")
    if one_line or any(ln[:1] in (" ", "\t") for ln in lines[:1]):
        return [f"{pad}{key}: {json.dumps(value.strip(), ensure_ascii=False)}   {MARK}"]
    chomp = "" if value.endswith("\n") else "-"
    body = lines[:-1] if value.endswith("\n") else lines
    out = [f"{pad}{key}: |{chomp}   {MARK}"]
    out += [f"{pad}  {ln}" if ln.strip() else "" for ln in body]
    return out


def translation_text(base_values: dict[str, Any], base_file: str, lang: str) -> str:
    """The translation skeleton's YAML (``base_file`` as the user names it)."""
    name = language_name(lang)
    out = [
        f"# {name} ({lang}) version of {base_file}.",
        f'# Translate each text marked "{MARK}", then delete the mark. `newsletter check',
        f"# {base_file}` lists every text still marked, or still the same as in {base_file}.",
        "# Dates, the number, links and pictures come from the base file: write them here",
        "# only to change them for this language (a link to the page in this language).",
        f"language: {lang}",
    ]
    for key in TOP_TEXTS[:2]:
        if isinstance(base_values.get(key), str):
            out += _text(key, base_values[key], 0)
    if isinstance(base_values.get("intro"), str):
        out += ["", *_text("intro", base_values["intro"], 0)]
    out += ["", "articles:"]
    for art in base_values.get("articles") or []:
        if not isinstance(art, dict):
            continue
        first = True
        for key in ("id", *ARTICLE_TEXTS[:2], "image", *ARTICLE_TEXTS[2:]):
            value = art.get(key)
            lines: list[str] = []
            if key == "id" and isinstance(value, str):
                lines = [f"    id: {json.dumps(value, ensure_ascii=False)}"]
            elif key == "image" and isinstance(value, dict) and isinstance(value.get("alt"), str):
                lines = ["    image:", *_text("alt", value["alt"], 6)]
            elif key not in ("id", "image") and isinstance(value, str):
                lines = _text(key, value, 4)
            if lines and first:
                lines[0] = "  - " + lines[0][4:]
                first = False
            out += lines
    if isinstance(base_values.get("closing"), str):
        out += ["", *_text("closing", base_values["closing"], 0)]
    return "\n".join(out) + "\n"


def write_translation(base_values: dict[str, Any], base_path: Path, lang: str, shown: str) -> Path:
    """Write ``<base>.<lang>.yaml`` beside the base file; returns its path."""
    target = translation_target(base_path, lang)
    target.write_text(translation_text(base_values, shown, lang), "utf-8")
    return target


def parse_languages(text: str, option: str = "--languages") -> list[str]:
    """``en,es`` -> ["en", "es"]: each a language code as an issue's `language` takes it."""
    from .errors import ConfigError

    out: list[str] = []
    for part in text.replace(";", ",").split(","):
        code = part.strip()
        if not code:
            continue
        if not re.fullmatch(LANGUAGE_CODE, code):
            raise ConfigError(
                f"{option}: {code!r} is not a language code",
                key=option,
                hint="use codes such as en, es, fr or pt-BR, separated by commas",
            )
        if code not in out:
            out.append(code)
    if not out:
        raise ConfigError(f"{option} needs at least one language code, e.g. en,es", key=option)
    return out


def with_language(skeleton: str, lang: str) -> str:
    """`newsletter new`'s skeleton with its `language:` line set (it is commented out)."""
    line = re.compile(r"(?m)^# language: \S+ *(#.*)?$")
    if line.search(skeleton):
        return line.sub(f"language: {lang}", skeleton, count=1)
    return f"language: {lang}\n{skeleton}"


def translation_target(base_path: Path, lang: str) -> Path:
    return base_path.with_name(f"{base_path.stem}.{lang}{base_path.suffix}")
