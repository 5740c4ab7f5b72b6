"""What `check` says about a translation: is it complete, and is it really translated?

Each problem is located in the translation's own file, at the line to fix:

* an article of the base issue with no counterpart here (named by its title), or one
  here that matches none (by ``id`` or position): error;
* a text still the same as the base's, or still marked ``# todo`` (as `newsletter
  translate` writes every text): warning (``--strict`` makes it fail);
* a text the base has and the translation left out (its intro, an article's category,
  a picture's alt text taken from the base): warning;
* a link or picture that differs from the base's: information, so a reviewer sees that
  the Spanish article links to another page on purpose.

A language with no words in the theme's labels.toml is checks.lint_language's error,
which runs on every translation as on every issue.
"""

from __future__ import annotations

import re
from typing import Any

from .errors import Problem, format_path
from .issue import Parsed
from .translations import TranslatedParsed, Translation

# Texts a translator translates.  `location` is left out of "still the same": a place
# name is often written alike in both languages.
TOP_TEXTS = ("subject", "preheader", "intro", "closing")
ARTICLE_TEXTS = ("title", "summary", "category", "location", "button")
SAME_EXEMPT = {"location"}
TODO = re.compile(r"#\s*todo\b", re.IGNORECASE)


def lint_translation(tr: Parsed) -> list[Problem]:
    """Every problem of a translation as such (none for an issue file)."""
    if not isinstance(tr, TranslatedParsed | Translation):
        return []
    base = tr.base.values if tr.base is not None else {}
    base_name = tr.base_path.name
    out = _articles(tr, base, base_name)
    marked = _marked(tr)
    out += marked
    done = {p.field for p in marked}
    out += [p for p in _same_or_missing(tr, base, base_name) if p.field not in done]
    out += _links(tr, base, base_name)
    return out


def _title(art: Any, index: int) -> str:
    title = art.get("title") if isinstance(art, dict) else None
    text = " ".join(title.split()) if isinstance(title, str) else f"article {index + 1}"
    return text if len(text) <= 70 else text[:67] + "..."


def _articles(tr: TranslatedParsed | Translation, base: dict[str, Any], name: str) -> list[Problem]:
    arts, base_arts = tr.values.get("articles"), base.get("articles")
    if not isinstance(base_arts, list):
        return []
    arts = arts if isinstance(arts, list) else []
    matches = tr.matches if len(tr.matches) == len(arts) else [None] * len(arts)
    out = []
    for i, (art, j) in enumerate(zip(arts, matches, strict=True)):
        if j is not None:
            continue
        wanted = art.get("id") if isinstance(art, dict) else None
        why = (
            f"no article of {name} has `id: {wanted}`"
            if wanted
            else f"{name} has only {len(base_arts)} articles"
        )
        out.append(
            tr.problem(
                format_path(("articles", i)),
                f"matches no article of {name} ({why})",
                hint="delete it, or give it the `id:` of the article it translates",
                code="translation_extra_article",
            )
        )
    found = {j for j in matches if j is not None}
    for j, art in enumerate(base_arts):
        if j in found:
            continue
        ident = art.get("id") if isinstance(art, dict) else None
        out.append(
            tr.problem(
                "articles",
                f"the article “{_title(art, j)}” ({format_path(('articles', j))} in {name}) "
                "is missing from this translation",
                hint=f"add its translation{f' with `id: {ident}`' if ident else ''} "
                f"at position {j + 1}",
                code="translation_missing_article",
            )
        )
    return out


def _marked(tr: Parsed) -> list[Problem]:
    """Texts still carrying `newsletter translate`'s `# todo` marker."""
    try:
        lines = tr.path.read_text("utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError):
        return []
    by_line: dict[int, str] = {}
    for name, (line, _col) in tr.positions.items():
        if len(name) > len(by_line.get(line, "")):
            by_line[line] = name  # `- title:` is the article's line and its title's
    out = []
    for number, text in enumerate(lines, 1):
        m = TODO.search(text)
        if m is None or text.lstrip().startswith("#"):
            continue
        key = by_line.get(number)
        out.append(
            Problem(
                message="is still marked for translation (`# todo`)",
                path=tr.path,
                line=number,
                column=m.start() + 1,
                field=key,
                hint="translate the text, then delete the `# todo` comment",
                severity="warning",
                code="translation_todo",
            )
        )
    return out


def _norm(value: Any) -> str | None:
    return " ".join(value.split()) if isinstance(value, str) and value.strip() else None


def _worth_translating(text: str) -> bool:
    return len(text) > 3 and any(c.isalpha() for c in text)


def _same_or_missing(
    tr: TranslatedParsed | Translation, base: dict[str, Any], name: str
) -> list[Problem]:
    pairs: list[tuple[str, Any, Any]] = [(k, tr.values.get(k), base.get(k)) for k in TOP_TEXTS]
    arts, base_arts = tr.values.get("articles"), base.get("articles")
    if isinstance(arts, list) and isinstance(base_arts, list):
        for i, (art, j) in enumerate(zip(arts, tr.matches, strict=False)):
            if j is None or not isinstance(art, dict) or not isinstance(base_arts[j], dict):
                continue
            src, at = base_arts[j], format_path(("articles", i))
            pairs += [(f"{at}.{k}", art.get(k), src.get(k)) for k in ARTICLE_TEXTS]
            image, base_image = art.get("image"), src.get("image")
            if isinstance(image, dict) and isinstance(base_image, dict):
                pairs.append((f"{at}.image.alt", image.get("alt"), base_image.get("alt")))
    out = []
    for field, value, original in pairs:
        mine, theirs = _norm(value), _norm(original)
        if theirs is None or not _worth_translating(theirs):
            continue
        leaf = field.rsplit(".", 1)[-1]
        if mine is None and leaf in ("button", "location"):
            continue  # the theme's own word ("Read more") in this language; a place name
        if mine is None:
            what = f"{name} has `{leaf}`; this translation has none"
            hint = f"add the translated `{leaf}:`"
        elif field not in tr.positions:
            what = f"is taken from {name}, untranslated"
            hint = f"write the translated `{leaf}:` here"
        elif mine == theirs and leaf not in SAME_EXEMPT:
            what = f"is the same as in {name}: not translated yet?"
            hint = "translate it (or ignore this warning if it is the same in both languages)"
        else:
            continue
        out.append(tr.problem(field, what, hint=hint, severity="warning", code="untranslated"))
    return out


def _links(tr: TranslatedParsed | Translation, base: dict[str, Any], name: str) -> list[Problem]:
    arts, base_arts = tr.values.get("articles"), base.get("articles")
    if not (isinstance(arts, list) and isinstance(base_arts, list)):
        return []
    out = []
    for i, (art, j) in enumerate(zip(arts, tr.matches, strict=False)):
        if j is None or not isinstance(art, dict) or not isinstance(base_arts[j], dict):
            continue
        at, src = format_path(("articles", i)), base_arts[j]
        image, base_image = art.get("image"), src.get("image")
        pairs = [(f"{at}.url", art.get("url"), src.get("url"))]
        if isinstance(image, dict) and isinstance(base_image, dict):
            pairs.append((f"{at}.image.src", image.get("src"), base_image.get("src")))
        for field, mine, theirs in pairs:
            if field in tr.positions and isinstance(mine, str) and mine != theirs:
                out.append(
                    tr.problem(
                        field,
                        f"differs from {name} ({theirs or 'none there'})",
                        hint="fine if this language has its own page or picture",
                        severity="info",
                        code="translation_link",
                    )
                )
    return out


_SHARED_LEAVES = ("date", "number", "greeting", "draft", "url", "image.src", "image.width")


def without_inherited(located: Parsed, problems: list[Problem]) -> list[Problem]:
    """A translation's problems less those about what it takes from its base (a draft, a
    link, a date it does not write): they are the base's, reported at the base's lines."""
    if not isinstance(located, TranslatedParsed | Translation):
        return problems
    return [
        p
        for p in problems
        if not (
            p.path == located.path
            and p.field
            and p.field not in located.positions
            and p.field.endswith(_SHARED_LEAVES)
            and p.code not in ("missing",)
        )
    ]
