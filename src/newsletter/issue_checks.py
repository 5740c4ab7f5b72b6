"""The issue's own words and links, checked for what would go wrong in an inbox.

Each problem is located at the field's line in the issue file (the recorded positions), so
staff can fix it where they wrote it.  The checks read the values as written
(:class:`~newsletter.issue.Parsed`), not the validated model, so that they also run on a
file with errors, on the fields that could be read: one `check` shows everything.  The
Markdown fields are walked with every link kept, even those the email's parser refuses, so
that a link shown as plain text in the email is named here instead of vanishing unnoticed.
"""

from __future__ import annotations

import calendar
import datetime as dt
import functools
import re
from collections.abc import Iterable, Iterator
from importlib import resources
from typing import Any

from markdown_it.token import Token

from . import markup
from .errors import Problem, format_path
from .issue import Parsed
from .issue_yaml import plain, yaml_loader
from .yaml_words import quoted

SUBJECT_MAX = 78
PREHEADER_MIN, PREHEADER_MAX = 40, 140
SKELETON = "skeleton.yaml"  # what `newsletter new` writes

# Texts where a comment after an unquoted value cuts words off (a URL or a date cannot
# hold " #", so a comment after one is deliberate).
_TEXT_KEYS = {"subject", "preheader", "intro", "closing"}
_ARTICLE_TEXT_KEYS = {"title", "summary", "category", "location", "button", "alt"}
# The skeleton's example texts that must not go out (its closing words and labels may).
_EXAMPLE_KEYS = {"subject", "preheader", "intro", "title", "summary", "url", "src", "alt"}


def _warn(located: Parsed, field: str, message: str, **kw: Any) -> Problem:
    return located.problem(field, message, severity="warning", **kw)


def _text(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) else None


def _articles(values: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(field path, fields) of each article that could be read."""
    articles = values.get("articles")
    if isinstance(articles, list):
        for i, art in enumerate(articles):
            if isinstance(art, dict):
                yield format_path(("articles", i)), art


def lint_issue(located: Parsed) -> list[Problem]:
    """Warnings and errors on the issue's words and links (on what could be read)."""
    values = located.values
    out: list[Problem] = []
    if values.get("draft") is True:
        out.append(
            _warn(
                located,
                "draft",
                "the issue is marked as a draft: it is left out of the archive and cannot be sent",
                hint="remove the `draft: true` line when it is ready",
                code="draft",
            )
        )
    out += _examples_left(located)
    out += _date_and_file_name(located)
    subject = _text(values.get("subject"))
    if subject is not None and len(subject) > SUBJECT_MAX:
        out.append(
            _warn(
                located,
                "subject",
                f"is {len(subject)} characters; phones cut it after about {SUBJECT_MAX}",
                hint="put the most important words first",
                code="subject_long",
            )
        )
    preheader = _text(values.get("preheader"))
    if not preheader and "preheader" not in located.positions:
        out.append(
            _warn(
                located,
                "preheader",
                "is missing; inboxes will show the first words of the email instead",
                hint=f"add `preheader:` with {PREHEADER_MIN}-{PREHEADER_MAX} characters",
                code="preheader_missing",
            )
        )
    elif preheader and not PREHEADER_MIN <= len(preheader) <= PREHEADER_MAX:
        out.append(
            _warn(
                located,
                "preheader",
                f"is {len(preheader)} characters; "
                f"{PREHEADER_MIN}-{PREHEADER_MAX} shows well in inboxes",
                code="preheader_length",
            )
        )
    markdown_fields = [("intro", values.get("intro")), ("closing", values.get("closing"))]
    for base, art in _articles(values):
        url = _text(art.get("url"))
        if url is not None and url.lower().startswith("http:"):
            out.append(
                _warn(
                    located,
                    f"{base}.url",
                    "link is not https",
                    hint="use the https:// address; many clients flag http links",
                    code="not_https",
                )
            )
        image = art.get("image")
        src = _text(image.get("src")) if isinstance(image, dict) else None
        if src is not None and src.lower().startswith("http:"):
            out.append(
                _warn(
                    located,
                    f"{base}.image.src",
                    "image is not https",
                    hint="Gmail and Outlook block or warn on http images",
                    code="not_https",
                )
            )
        markdown_fields.append((f"{base}.summary", art.get("summary")))
    for field, source in markdown_fields:
        if isinstance(source, str) and source.strip():
            out.extend(_lint_markdown(located, field, source))
    out += _cut_by_comments(located)
    return out


def _leaf(field: str) -> str:
    return re.sub(r"\[\d+\]", "", field).rsplit(".", 1)[-1]


def _cut_by_comments(located: Parsed) -> list[Problem]:
    """A `#hashtag` after an unquoted text is a comment to YAML: the email loses it."""
    out = []
    for c in located.comments:
        leaf = _leaf(c.field)
        in_article = c.field.startswith("articles[")
        if not (leaf in _ARTICLE_TEXT_KEYS if in_article else c.field in _TEXT_KEYS):
            continue
        kept = " ".join((c.value or "").split())
        whole = f"{kept} {c.text}" if kept else c.text
        out.append(
            Problem(
                message=f"`{c.text}` is read as a comment and left out of the email"
                + ("" if kept else f", so `{leaf}` is empty"),
                path=located.path,
                line=c.line,
                column=c.column,
                field=c.field,
                hint=f"quote the text to keep `{c.text}`: {leaf}: {quoted(whole)}",
                severity="warning",
                code="comment_in_text",
            )
        )
    return out


@functools.cache
def _skeleton_examples() -> dict[str, list[re.Pattern[str]]]:
    """The example texts of `newsletter new`'s skeleton, by field name.

    Read from skeleton.yaml itself (its commented optional fields included), so that editing
    the skeleton cannot leave this list behind.  The month and year in them match any.
    """
    text = resources.files("newsletter").joinpath(SKELETON).read_text("utf-8")
    text = text.format(month_name="\ue000", year="\ue001", stem="2000-01", date="2000-01-28")
    text = re.sub(r"(?m)^(\s*)# (\s*[a-z_]+:(?:\s.*)?)$", r"\1\2", text)
    found: dict[str, list[re.Pattern[str]]] = {}

    def walk(value: Any, key: str) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, k)
        elif isinstance(value, list):
            for v in value:
                walk(v, key)
        elif isinstance(value, str) and key in _EXAMPLE_KEYS:
            pattern = re.escape(value.strip()).replace("\ue000", r"\S+")
            found.setdefault(key, []).append(re.compile(pattern.replace("\ue001", r"\d{4}")))

    walk(plain(yaml_loader().load(text)), "")
    return found


def _examples_left(located: Parsed) -> list[Problem]:
    """Every example text of the skeleton still in the issue: it must not reach readers."""
    examples = _skeleton_examples()
    fields: list[tuple[str, Any]] = [
        (k, located.values.get(k)) for k in ("subject", "preheader", "intro")
    ]
    for base, art in _articles(located.values):
        fields += [(f"{base}.{k}", art.get(k)) for k in ("title", "summary", "url")]
        image = art.get("image")
        if isinstance(image, dict):
            fields += [(f"{base}.image.{k}", image.get(k)) for k in ("src", "alt")]
    out = []
    for field, value in fields:
        text = _text(value)
        leaf = _leaf(field)
        if text and any(p.fullmatch(text) for p in examples.get(leaf, [])):
            link = leaf in ("url", "src")
            shown = text if len(text) <= 60 else text[:57] + "..."
            out.append(
                located.problem(
                    field,
                    f"is still the example {'link' if link else 'text'} from `newsletter new`: "
                    f'"{shown}"',
                    hint="link to the real page" if link else "write the issue's own text here",
                    code="example_text",
                )
            )
    return out


def _date_and_file_name(located: Parsed) -> list[Problem]:
    """`date: 2019-11-28` in 2019-10.yaml: one of the two is wrong."""
    m = re.fullmatch(r"(\d{4})-(\d{2})", located.path.stem)
    date = _text(located.values.get("date"))
    if not m or date is None:
        return []
    try:
        day = dt.date.fromisoformat(date)
    except ValueError:
        return []
    year, month = int(m.group(1)), int(m.group(2))
    if (day.year, day.month) == (year, month) or not 1 <= month <= 12:
        return []
    return [
        _warn(
            located,
            "date",
            f"is {day.isoformat()}, but the file {located.path.name} is the issue of "
            f"{calendar.month_name[month]} {year}",
            hint=f"correct the date, or rename the file to {day:%Y-%m}.yaml (the file name is "
            "the issue's id in the archive and in sends)",
            code="date_file_name",
        )
    ]


_RAW_TAG = re.compile(r"</?[a-zA-Z][a-zA-Z0-9]*(\s[^<>]*)?/?>")


def _walk(tokens: Iterable[Token]) -> Iterable[Token]:
    for tok in tokens:
        yield tok
        if tok.children:
            yield from _walk(tok.children)


def _refused_link(located: Parsed, field: str, href: str, why: str) -> Problem:
    """A link the email shows as plain text (markup.refused_link), in words staff can act on."""
    shown = href if len(href) <= 60 else href[:57] + "..."
    if why == "protocol-relative":
        address = "https:" + "//" + href.lstrip("/\\")
        return located.problem(
            field,
            f"the link `{shown}` starts with // and has no https: in front, so it is "
            "shown as plain text",
            hint=f"write the full address: {address}",
            code="link_no_scheme",
        )
    return located.problem(
        field,
        f"the link `{shown}` is not a web address ({why}: addresses are not allowed in "
        "email), so it is shown as plain text",
        hint="link to a web page: [text](https://www.example.org/page)",
        code="unsafe_link",
    )


def _lint_markdown(located: Parsed, field: str, source: str) -> list[Problem]:
    out: list[Problem] = []
    # Every link as written, even those the email's parser refuses, so none vanishes unnoticed.
    for tok in _walk(markup.parse_all_links(source)):
        if tok.type == "image":
            out.append(
                located.problem(
                    field,
                    "pictures inside Markdown text are not supported (Outlook shows them "
                    "at full size)",
                    hint="give the article an `image:` with src and alt instead",
                    code="markdown_image",
                )
            )
        elif tok.type == "link_open":
            href = str(tok.attrs.get("href", ""))
            why = markup.refused_link(href)
            if why:
                out.append(_refused_link(located, field, href, why))
            elif href.startswith("http://"):
                out.append(_warn(located, field, f"link is not https: {href}", code="not_https"))
    if _RAW_TAG.search(source):
        out.append(
            _warn(
                located,
                field,
                "contains HTML tags, which are shown as plain text",
                hint="use Markdown instead: **bold**, *italic*, [text](https://...)",
                code="raw_html",
            )
        )
    return out
