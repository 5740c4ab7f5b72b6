"""The lints behind `newsletter check`: what would go wrong in an inbox, found before sending.

Each returns :class:`~newsletter.errors.Problem` objects located in the issue
file (via the model's recorded positions), in newsletter.toml, or in a theme
template.  mjml-python (MRML) has no validator and silently drops unknown tags
and attributes, so the theme's MJML is checked here against the components and
attributes MJML defines.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from markdown_it.token import Token

from . import markup
from .config import CONFIG_FILE, Config
from .errors import Problem
from .issue import Located
from .message import UNSUBSCRIBE_URL

GMAIL_CLIP_BYTES = 102_000
SIZE_WARNING_BYTES = 90_000
SUBJECT_MAX = 78
PREHEADER_MIN, PREHEADER_MAX = 40, 140
MIN_CONTRAST = 4.5

# A realistic per-recipient unsubscribe URL, so the size check counts what is really sent.
SAMPLE_UNSUBSCRIBE_URL = "https://news.example.org/u/" + "x" * 120
TRACKED_LINK_BYTES = 300  # a SendGrid click-tracking URL, with room to spare


def _warn(located: Located, field: str, message: str, **kw: Any) -> Problem:
    return located.problem(field, message, severity="warning", **kw)


# ---------------------------------------------------------------- the issue itself
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


# ---------------------------------------------------------------- the configuration
def _luminance(hex_colour: str) -> float:
    def channel(c: int) -> float:
        s = c / 255
        return s / 12.92 if s <= 0.03928 else float(((s + 0.055) / 1.055) ** 2.4)

    r, g, b = (int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))
    return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b)


def contrast(a: str, b: str) -> float:
    la, lb = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def lint_config(cfg: Config, config_path: Path) -> list[Problem]:
    out: list[Problem] = []
    brand = cfg.brand
    pairs = [
        ("brand.text", brand.text, brand.surface, "body text on the article background", "error"),
        (
            "brand.primary",
            "#ffffff",
            brand.primary,
            "button text (white) on brand.primary",
            "error",
        ),
        (
            "brand.muted",
            brand.muted,
            brand.background,
            "footer text on brand.background",
            "warning",
        ),
        (
            "brand.accent",
            brand.accent,
            brand.surface,
            "category labels on the article background",
            "warning",
        ),
    ]
    for key, fg, bg, what, severity in pairs:
        ratio = contrast(fg, bg)
        if ratio < MIN_CONTRAST:
            out.append(
                Problem(
                    message=f"contrast of {what} is {ratio:.2f}:1; at least {MIN_CONTRAST}:1 is needed",
                    path=config_path,
                    field=key,
                    severity=severity,
                    code="contrast",
                    hint="pick a darker text colour or a lighter background",
                )
            )
    links = {
        "organisation.website": cfg.organisation.website,
        "archive.base_url": cfg.archive.base_url,
        "send.unsubscribe_url": cfg.send.unsubscribe_url,
    }
    if cfg.organisation.logo_url:
        links["organisation.logo_url"] = cfg.organisation.logo_url
    for i, s in enumerate(cfg.social):
        links[f"social[{i}].url"] = s.url
    for key, url in links.items():
        if url.scheme != "https":
            out.append(
                Problem(
                    message="link is not https",
                    path=config_path,
                    field=key,
                    severity="warning",
                    code="not_https",
                )
            )
    return out


# ---------------------------------------------------------------- the built output
class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.imgs_without_alt: list[str] = []
        self.hrefs: list[str] = []
        self.mj_tags: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "img" and not (a.get("alt") or "").strip():
            self.imgs_without_alt.append(a.get("src") or "?")
        elif tag == "a" and a.get("href") is not None:
            self.hrefs.append(a.get("href") or "")
        if tag.startswith("mj-") or tag == "mjml":
            self.mj_tags.add(tag)


def lint_output(
    located: Located, cfg: Config, html: str, text: str, theme_dir: Path
) -> list[Problem]:
    """Checks on what subscribers will receive (after inlining)."""
    out: list[Problem] = []
    path = located.path
    tags = _Tags()
    tags.feed(html)
    size = len(html.replace(UNSUBSCRIBE_URL, SAMPLE_UNSUBSCRIBE_URL).encode("utf-8"))
    if cfg.send.click_tracking:
        # SendGrid rewrites every web link to a tracking URL of a few hundred bytes.
        size += sum(
            TRACKED_LINK_BYTES - len(h) for h in tags.hrefs if h.startswith(("http:", "https:"))
        )
    if size > GMAIL_CLIP_BYTES:
        out.append(
            Problem(
                message=f"the email is {size:,} bytes; Gmail clips messages over {GMAIL_CLIP_BYTES:,} "
                "(the end, with the unsubscribe link, is hidden)",
                path=path,
                severity="error",
                code="size",
                hint="shorten summaries or move articles to the next issue",
            )
        )
    elif size > SIZE_WARNING_BYTES:
        out.append(
            Problem(
                message=f"the email is {size:,} bytes, close to Gmail's {GMAIL_CLIP_BYTES:,}-byte clipping",
                path=path,
                severity="warning",
                code="size",
            )
        )
    template = theme_dir / "email.mjml.j2"
    for src in tags.imgs_without_alt:
        out.append(
            Problem(
                message=f"image without alt text in the output: {src}",
                path=template,
                code="img_alt",
                hint="give every mj-image an alt attribute",
            )
        )
    for tag in sorted(tags.mj_tags):
        out.append(
            Problem(
                message=f"<{tag}> was left in the HTML: MJML does not know it",
                path=template,
                code="mjml_unknown",
            )
        )
    for href in tags.hrefs:
        if not href.strip() or href.strip() == "#":
            out.append(
                Problem(message="a link has an empty address", path=template, code="empty_link")
            )
    org = cfg.organisation.postal_address
    if not _contains_text(html, org) or " ".join(org.split()) not in " ".join(text.split()):
        out.append(
            Problem(
                message="the postal address is missing from the email",
                path=template,
                code="postal_address",
                hint=f"bulk email must show it; set organisation.postal_address in {CONFIG_FILE} "
                "and keep {{ org.postal_address }} in the footer",
            )
        )
    if f'href="{UNSUBSCRIBE_URL}"' not in html or UNSUBSCRIBE_URL not in text:
        out.append(
            Problem(
                message="the unsubscribe link is missing from the email",
                path=template,
                code="unsubscribe",
                hint="keep {{ placeholders.unsubscribe_url }} in the footer and text.txt.j2",
            )
        )
    return out


def _contains_text(html: str, needle: str) -> bool:
    import html as html_mod

    return needle in html or html_mod.escape(needle, quote=False) in html


# ---------------------------------------------------------------- the theme's MJML
_CONTENT = {
    "mj-text",
    "mj-image",
    "mj-button",
    "mj-divider",
    "mj-spacer",
    "mj-table",
    "mj-raw",
    "mj-social",
    "mj-navbar",
    "mj-accordion",
    "mj-carousel",
}
_COMMON = {
    "css-class",
    "mj-class",
    "padding",
    "padding-top",
    "padding-bottom",
    "padding-left",
    "padding-right",
    "container-background-color",
}
MJML_TAGS: dict[str, tuple[set[str], set[str]]] = {
    # tag: (allowed parents, allowed attributes)
    "mjml": (set(), {"lang", "dir", "owa"}),
    "mj-head": ({"mjml"}, set()),
    "mj-body": ({"mjml"}, {"width", "background-color", "css-class"}),
    "mj-title": ({"mj-head"}, set()),
    "mj-preview": ({"mj-head"}, set()),
    "mj-style": ({"mj-head"}, {"inline"}),
    "mj-font": ({"mj-head"}, {"name", "href"}),
    "mj-breakpoint": ({"mj-head"}, {"width"}),
    "mj-attributes": ({"mj-head"}, set()),
    "mj-all": ({"mj-attributes"}, {"font-family"}),
    "mj-raw": (
        {"mj-head", "mj-body", "mj-column", "mj-section", "mj-wrapper", "mj-hero"},
        {"position"},
    ),
    "mj-wrapper": (
        {"mj-body"},
        {
            "background-color",
            "background-url",
            "border",
            "border-radius",
            "full-width",
            "text-align",
            "padding",
        }
        | _COMMON,
    ),
    "mj-section": (
        {"mj-body", "mj-wrapper"},
        {
            "background-color",
            "background-url",
            "background-repeat",
            "background-size",
            "background-position",
            "border",
            "border-top",
            "border-bottom",
            "border-left",
            "border-right",
            "border-radius",
            "direction",
            "full-width",
            "text-align",
        }
        | _COMMON,
    ),
    "mj-group": (
        {"mj-section"},
        {"width", "vertical-align", "background-color", "direction", "css-class"},
    ),
    "mj-column": (
        {"mj-section", "mj-group"},
        {
            "width",
            "vertical-align",
            "background-color",
            "inner-background-color",
            "border",
            "border-radius",
            "inner-border",
            "inner-border-radius",
        }
        | _COMMON,
    ),
    "mj-hero": (
        {"mj-body", "mj-wrapper"},
        {
            "mode",
            "height",
            "background-url",
            "background-width",
            "background-height",
            "background-color",
            "vertical-align",
        }
        | _COMMON,
    ),
    "mj-text": (
        {"mj-column", "mj-hero"},
        {
            "color",
            "font-family",
            "font-size",
            "font-style",
            "font-weight",
            "line-height",
            "letter-spacing",
            "height",
            "text-decoration",
            "text-transform",
            "align",
        }
        | _COMMON,
    ),
    "mj-image": (
        {"mj-column", "mj-hero"},
        {
            "src",
            "srcset",
            "sizes",
            "alt",
            "title",
            "href",
            "target",
            "rel",
            "name",
            "width",
            "height",
            "align",
            "border",
            "border-radius",
            "fluid-on-mobile",
            "usemap",
        }
        | _COMMON,
    ),
    "mj-button": (
        {"mj-column", "mj-hero"},
        {
            "href",
            "target",
            "rel",
            "title",
            "name",
            "background-color",
            "color",
            "font-family",
            "font-size",
            "font-style",
            "font-weight",
            "line-height",
            "letter-spacing",
            "height",
            "width",
            "text-decoration",
            "text-transform",
            "text-align",
            "vertical-align",
            "align",
            "border",
            "border-radius",
            "inner-padding",
        }
        | _COMMON,
    ),
    "mj-divider": (
        {"mj-column", "mj-hero"},
        {"border-color", "border-style", "border-width", "width", "align"} | _COMMON,
    ),
    "mj-spacer": ({"mj-column", "mj-hero"}, {"height"} | _COMMON),
    "mj-table": (
        {"mj-column", "mj-hero"},
        {
            "width",
            "align",
            "cellpadding",
            "cellspacing",
            "color",
            "font-family",
            "font-size",
            "line-height",
            "table-layout",
            "border",
        }
        | _COMMON,
    ),
}
_ANY: set[str] = set()  # attributes not checked (components the theme does not use)
MJML_TAGS["mj-social"] = ({"mj-column", "mj-hero"}, _ANY)
MJML_TAGS["mj-social-element"] = ({"mj-social"}, _ANY)
MJML_TAGS["mj-navbar"] = ({"mj-column", "mj-hero"}, _ANY)
MJML_TAGS["mj-navbar-link"] = ({"mj-navbar"}, _ANY)
# Inside mj-attributes, component names carry default attributes of that component.
for _tag in list(MJML_TAGS):
    if _tag not in ("mjml", "mj-head", "mj-attributes", "mj-all", "mj-body"):
        MJML_TAGS[_tag][0].add("mj-attributes")


class _MjmlLinter(HTMLParser):
    """Walks a template's MJML (Jinja syntax left in) with line numbers."""

    def __init__(self, path: Path) -> None:
        super().__init__(convert_charrefs=True)
        self.path = path
        self.stack: list[str] = []
        self.problems: list[Problem] = []
        self.raw_depth = 0

    def _problem(self, message: str, hint: str | None = None) -> None:
        line, col = self.getpos()
        self.problems.append(
            Problem(
                message=message, path=self.path, line=line, column=col + 1, code="mjml", hint=hint
            )
        )

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if not (tag.startswith("mj-") or tag == "mjml"):
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
        if not (tag.startswith("mj-") or tag == "mjml") or tag not in MJML_TAGS:
            return
        if tag in self.stack:
            while self.stack and self.stack.pop() != tag:
                pass
        else:
            self._problem(f"</{tag}> closes a tag that is not open")


def lint_theme(theme_dir: Path) -> list[Problem]:
    """Static MJML checks on every template of the theme (file and line exact)."""
    out: list[Problem] = []
    for path in sorted(theme_dir.glob("*.mjml.j2")):
        linter = _MjmlLinter(path)
        source = path.read_text("utf-8")
        # Partials are fragments: pretend they sit where the layout includes them.
        if path.name.startswith("_"):
            linter.stack = ["mjml", "mj-body"]
        linter.feed(
            re.sub(r"\{#.*?#\}", lambda m: "\n" * m.group(0).count("\n"), source, flags=re.S)
        )
        linter.close()
        out.extend(linter.problems)
    return out
