"""The lints behind `newsletter check`: what would go wrong in an inbox, found before sending.

Each returns :class:`~newsletter.errors.Problem` objects located in the issue file (via the
model's recorded positions), in newsletter.toml, or in a theme template.  The checks live
by what they read, and this module is where callers find all four:

* :func:`lint_issue`, the issue's words and links: issue_checks.py;
* :func:`lint_config`, brand colours and links in newsletter.toml: here;
* :func:`lint_theme`, the theme's MJML against the table in mjml_schema.toml: theme_checks.py;
* :func:`lint_output`, the email subscribers will receive (size, alt text, footer, words
  in the issue's language): here;
* :func:`lint_unbuildable`, all of them that can run on an issue file with errors, so that
  `check` shows every problem in one run: here.
"""

from __future__ import annotations

import functools
import html as html_mod
import re
import tomllib
from html.parser import HTMLParser
from pathlib import Path

from pydantic import HttpUrl

from .config import CONFIG_FILE, Config, Workspace
from .errors import Problem, format_path
from .issue import Located, Parsed
from .issue_checks import PREHEADER_MAX, PREHEADER_MIN, SUBJECT_MAX, lint_issue
from .message import UNSUBSCRIBE_URL
from .picture_src import is_remote
from .theme_checks import MJML_TAGS, is_mjml_tag, lint_theme

__all__ = [
    "GMAIL_CLIP_BYTES",
    "MIN_CONTRAST",
    "MJML_TAGS",
    "PREHEADER_MAX",
    "PREHEADER_MIN",
    "SAMPLE_UNSUBSCRIBE_URL",
    "SIZE_WARNING_BYTES",
    "SUBJECT_MAX",
    "TRACKED_LINK_BYTES",
    "contrast",
    "lint_config",
    "lint_issue",
    "lint_output",
    "lint_language",
    "lint_theme",
    "lint_unbuildable",
]

GMAIL_CLIP_BYTES = 102_000
SIZE_WARNING_BYTES = 90_000
MIN_CONTRAST = 4.5

# A realistic per-recipient unsubscribe URL, so the size check counts what is really sent.
SAMPLE_UNSUBSCRIBE_URL = "https://news.example.org/u/" + "x" * 120
TRACKED_LINK_BYTES = 300  # a SendGrid click-tracking URL, with room to spare


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
    # (setting, text colour, background colour, what, level, what to change)
    pairs = [
        (
            "brand.text",
            brand.text,
            brand.surface,
            "body text on the article background",
            "error",
            "choose a darker brand.text (or a lighter brand.surface)",
        ),
        (
            "brand.primary",
            "#ffffff",
            brand.primary,
            "button text (white) on brand.primary",
            "error",
            "choose a darker brand.primary: the button text is always white",
        ),
        (
            "brand.muted",
            brand.muted,
            brand.background,
            "footer text on brand.background",
            "warning",
            "choose a darker brand.muted (or a lighter brand.background)",
        ),
        (
            "brand.accent",
            brand.accent,
            brand.surface,
            "category labels on the article background",
            "warning",
            "choose a darker brand.accent",
        ),
    ]
    for key, fg, bg, what, severity, advice in pairs:
        ratio = contrast(fg, bg)
        if ratio < MIN_CONTRAST:
            out.append(
                Problem(
                    message=f"contrast of {what} is {ratio:.2f}:1; at least {MIN_CONTRAST}:1 is needed",
                    path=config_path,
                    field=key,
                    severity=severity,
                    code="contrast",
                    hint=advice,
                )
            )
    links = {
        "organisation.website": cfg.organisation.website,
        "archive.base_url": cfg.archive.base_url,
        "send.unsubscribe_url": cfg.send.unsubscribe_url,
    }
    logo = cfg.organisation.logo_url
    if logo and is_remote(logo):  # a file of the workspace: issue_pictures.py checks it
        links["organisation.logo_url"] = HttpUrl(logo)
    for i, s in enumerate(cfg.social):
        links[format_path(("social", i, "url"))] = s.url
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
# A start tag's name, as HTMLParser reads it (html.parser's tagfind_tolerant).
_TAG_NAME = re.compile(r"[a-zA-Z][^\t\n\r\f />\x00]*")
# Tags whose content HTMLParser reads differently (raw text): always parsed in full.
_RAW_TEXT = {"script", "style", "textarea", "title", "xmp", "iframe", "noembed", "noframes"}
_RAW_TEXT |= {"noscript", "plaintext"}


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.imgs_without_alt: list[str] = []
        self.hrefs: list[str] = []
        self.mj_tags: set[str] = set()

    def parse_starttag(self, i: int) -> int:
        """Skip the tags this check does not read without parsing their attributes.

        An email is hundreds of table cells with long style attributes, and HTMLParser
        parses every attribute of every tag: skipping them halves the check on the output.
        Where the tag ends is found as HTMLParser finds it (check_for_whole_start_tag, its
        own first step); img, a, MJML and raw-text tags go through HTMLParser in full.
        """
        found = _TAG_NAME.match(self.rawdata, i + 1)
        if found is not None:
            tag = found.group().lower()
            if tag not in ("img", "a") and tag not in _RAW_TEXT and not is_mjml_tag(tag):
                return self.check_for_whole_start_tag(i)
        return super().parse_starttag(i)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "img" and not (a.get("alt") or "").strip():
            self.imgs_without_alt.append(a.get("src") or "?")
        elif tag == "a" and a.get("href") is not None:
            self.hrefs.append(a.get("href") or "")
        if is_mjml_tag(tag):
            self.mj_tags.add(tag)


def lint_output(
    located: Located, cfg: Config, html: str, text: str, theme_dir: Path
) -> list[Problem]:
    """Checks on what subscribers will receive (after inlining)."""
    out: list[Problem] = lint_language(located, cfg, theme_dir)
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
    return needle in html or html_mod.escape(needle, quote=False) in html


# ---------------------------------------------------------------- the theme's words
LABELS_FILE = "labels.toml"


@functools.lru_cache(maxsize=8)
def _label_languages(text: str) -> tuple[frozenset[str], str]:
    """The top-level keys of a labels.toml, and its language tables in words ("en, es").

    Kept by the file's text: the theme's labels are the same from one build to the next."""
    labels = tomllib.loads(text)
    return frozenset(labels), ", ".join(sorted(k for k, v in labels.items() if isinstance(v, dict)))


def lint_language(located: Parsed, cfg: Config, theme_dir: Path) -> list[Problem]:
    """An issue in a language the theme has no words for would greet readers in English."""
    labels_path = theme_dir / LABELS_FILE
    try:
        languages, known = _label_languages(labels_path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return []  # no labels at all, or broken: the renderer says so with the file's line
    given = located.values.get("language")
    language = given if isinstance(given, str) else cfg.language
    if language in languages or language.split("-")[0] in languages:
        return []
    root = theme_dir.parent.parent  # the workspace: templates/<theme>/ is in it
    shown = labels_path.relative_to(root) if labels_path.is_relative_to(root) else labels_path
    message = (
        f"there are no words for language `{language}` in {shown}, so the email would say "
        '"Hello" and "Read more" in English'
    )
    hint = (
        f"use a language the theme has ({known}), or add a [{language}] table to {shown}: "
        "copy the [en] table and translate each text"
    )
    if isinstance(given, str):
        return [located.problem("language", message, hint=hint, code="language_labels")]
    return [  # the workspace's default language
        Problem(
            message=message,
            path=root / CONFIG_FILE,
            field="language",
            hint=hint,
            code="language_labels",
        )
    ]


def lint_unbuildable(ws: Workspace, path: Path) -> list[Problem]:
    """Every problem of an issue file that has errors: those errors, the checks on the
    fields that could be read, and the checks on the configuration and the theme."""
    from .issue_pictures import gather
    from .translation_checks import lint_translation, without_inherited
    from .translations import load_any

    parsed, problems = load_any(path)  # an issue file, or a translation of one
    if parsed is not None:
        problems += lint_issue(parsed) + lint_language(parsed, ws.config, ws.theme_dir)
        problems += lint_translation(parsed)
        problems = without_inherited(parsed, problems)
        problems += gather(ws, parsed, prepare=False).problems
    return problems + lint_config(ws.config, ws.config_path) + lint_theme(ws.theme_dir)
