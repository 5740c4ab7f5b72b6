"""The issue's own words and links, checked for what would go wrong in an inbox.

Each problem is located at the field's line in the issue file (the model's recorded
positions), so staff can fix it where they wrote it.  The Markdown fields are walked with
every link kept, even those the email's parser refuses, so that a link shown as plain text
in the email is named here instead of vanishing unnoticed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from markdown_it.token import Token

from . import markup
from .errors import Problem
from .issue import Located

SUBJECT_MAX = 78
PREHEADER_MIN, PREHEADER_MAX = 40, 140


def _warn(located: Located, field: str, message: str, **kw: Any) -> Problem:
    return located.problem(field, message, severity="warning", **kw)


def lint_issue(located: Located) -> list[Problem]:
    issue = located.issue
    out: list[Problem] = []
    if issue.draft:
        out.append(
            _warn(
                located,
                "draft",
                "the issue is marked as a draft: it is left out of the archive and cannot be sent",
                hint="remove the `draft: true` line when it is ready",
                code="draft",
            )
        )
    if len(issue.subject) > SUBJECT_MAX:
        out.append(
            _warn(
                located,
                "subject",
                f"is {len(issue.subject)} characters; phones cut it after about {SUBJECT_MAX}",
                hint="put the most important words first",
                code="subject_long",
            )
        )
    if not issue.preheader:
        out.append(
            _warn(
                located,
                "preheader",
                "is missing; inboxes will show the first words of the email instead",
                hint=f"add `preheader:` with {PREHEADER_MIN}-{PREHEADER_MAX} characters",
                code="preheader_missing",
            )
        )
    elif not PREHEADER_MIN <= len(issue.preheader) <= PREHEADER_MAX:
        out.append(
            _warn(
                located,
                "preheader",
                f"is {len(issue.preheader)} characters; "
                f"{PREHEADER_MIN}-{PREHEADER_MAX} shows well in inboxes",
                code="preheader_length",
            )
        )
    for i, art in enumerate(issue.articles):
        base = f"articles[{i}]"
        if art.url.scheme != "https":
            out.append(
                _warn(
                    located,
                    f"{base}.url",
                    "link is not https",
                    hint="use the https:// address; many clients flag http links",
                    code="not_https",
                )
            )
        if art.image and art.image.src.scheme != "https":
            out.append(
                _warn(
                    located,
                    f"{base}.image.src",
                    "image is not https",
                    hint="Gmail and Outlook block or warn on http images",
                    code="not_https",
                )
            )
    markdown_fields = [("intro", issue.intro), ("closing", issue.closing)] + [
        (f"articles[{i}].summary", a.summary) for i, a in enumerate(issue.articles)
    ]
    for field, source in markdown_fields:
        if source:
            out.extend(_lint_markdown(located, field, source))
    return out


_RAW_TAG = re.compile(r"</?[a-zA-Z][a-zA-Z0-9]*(\s[^<>]*)?/?>")


def _walk(tokens: Iterable[Token]) -> Iterable[Token]:
    for tok in tokens:
        yield tok
        if tok.children:
            yield from _walk(tok.children)


def _refused_link(located: Located, field: str, href: str, why: str) -> Problem:
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


def _lint_markdown(located: Located, field: str, source: str) -> list[Problem]:
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
