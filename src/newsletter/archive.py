"""`newsletter archive`: a static web archive of every issue, plus an Atom feed.

Like `build`, it reads and checks everything first and writes last: one issue
with an error refuses the whole archive (CheckFailed listing every problem of
every issue), because a half-updated archive would silently drop an issue that
readers were already linked to.  The site is staged in a sibling folder and
swapped in, so `newsletter serve` never shows a half-written archive and issues
removed from issues/ disappear from it.

The output depends only on the inputs (no clock, no random names): the feed's
``updated`` is the newest issue's date, so a rebuild of unchanged issues is
byte-identical and a static host or a CDN sees no change.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from xml.etree import ElementTree as ET

from .archive_languages import (
    Version,
    compose_translations,
    language_feeds,
    language_pages,
    with_versions,
)
from .build import BuiltIssue, compose
from .config import Workspace
from .errors import CheckFailed, InputError, NewsletterError, Problem, TemplateError
from .issue import iter_issue_files
from .issue_pictures import IMAGES_FOLDER
from .render import Renderer

ATOM_NS = "http://www.w3.org/2005/Atom"
INDEX_TEMPLATE = "archive-index.html.j2"
MARKER = ".newsletter-archive"
MARKER_TEXT = (
    "This folder is written by `newsletter archive` and replaced on every run.\n"
    "Edit issues/*.yaml and templates/, not the files here.\n"
)
DEFAULT_FOLDER = "archive-site"


@dataclass(frozen=True)
class Entry:
    """One issue as the index page and the feed list it."""

    issue_id: str
    subject: str
    preheader: str
    date: dt.date
    number: int | None
    language: str
    url: str  # absolute: config.archive.base_url + <issue-id>/
    href: str  # relative to the index page
    display_date: str
    versions: tuple[Version, ...] = ()  # its languages, when it is translated


@dataclass(frozen=True)
class Site:
    """Every file of the archive, by path relative to its folder, before anything is written."""

    files: dict[str, bytes]
    entries: list[Entry]
    warnings: list[Problem] = field(default_factory=list)


def default_dir(ws: Workspace) -> Path:
    """Where `newsletter serve` looks for the archive (it serves it under /archive/)."""
    return ws.root / DEFAULT_FOLDER


def base_url(ws: Workspace) -> str:
    return str(ws.config.archive.base_url).rstrip("/") + "/"


def archive_title(ws: Workspace, labels: dict[str, object]) -> str:
    cfg = ws.config.archive
    return cfg.title or f"{ws.config.organisation.name} — {labels.get('archive', 'All issues')}"


def compose_all(
    ws: Workspace, *, strict: bool = False, renderer: Renderer | None = None
) -> tuple[list[BuiltIssue], list[Problem]]:
    """Compose every issue; return the builds and every problem (errors refuse the archive)."""
    r = renderer or Renderer(ws)
    built: list[BuiltIssue] = []
    problems: list[Problem] = []
    seen: dict[str, Path] = {}
    for path in iter_issue_files(ws.issues_dir):
        if path.stem in seen:
            problems.append(
                Problem(
                    message=f"has the same name as {seen[path.stem].name}; both would be "
                    f"published at {path.stem}/",
                    path=path,
                    code="duplicate_issue",
                    hint="keep one of the two files",
                )
            )
            continue
        seen[path.stem] = path
        try:
            b = compose(ws, path, r)
        except InputError as exc:
            problems.extend(exc.problems)
            continue
        if b.located.issue.draft:
            continue  # drafts are not published (and their draft warning is no problem here)
        problems.extend(b.problems)
        built.append(b)
    if strict:
        problems = [p if p.severity == "error" else _as_error(p) for p in problems]
    return built, problems


def _as_error(p: Problem) -> Problem:
    return Problem(
        message=p.message,
        path=p.path,
        line=p.line,
        column=p.column,
        field=p.field,
        hint=p.hint,
        severity="error",
        code=p.code,
    )


def build_site(ws: Workspace, *, strict: bool = False, renderer: Renderer | None = None) -> Site:
    """Everything the archive folder will hold; raises CheckFailed when any issue has errors."""
    if not ws.issues_dir.is_dir() or not any(iter_issue_files(ws.issues_dir)):
        raise NewsletterError(
            f"no issues in {ws.issues_dir}",
            hint="`newsletter new` writes one; the archive lists issues/*.yaml",
        )
    r = renderer or Renderer(ws)
    built, problems = compose_all(ws, strict=strict, renderer=r)
    translated, more = compose_translations(ws, built, r)  # <issue>/<language>/ pages
    problems += [_as_error(p) if strict else p for p in more if p.severity != "info"]
    if any(p.severity == "error" for p in problems):
        raise CheckFailed(problems)
    labels = r.labels_for(ws.config.language)
    base = base_url(ws)
    built.sort(key=lambda b: (b.located.issue.date, b.issue_id), reverse=True)
    entries = with_versions([_entry(b, base, labels) for b in built], built, translated, base)
    files: dict[str, bytes] = {MARKER: MARKER_TEXT.encode()}
    for b in built:
        files.update(language_pages(base, b, translated.get(b.issue_id, [])))
        for v in [b, *translated.get(b.issue_id, [])]:  # the emails point here: publish first
            for name, data in v.pictures.files.items():
                files[f"{b.issue_id}/{IMAGES_FOLDER}/{name}"] = data
    feeds = language_feeds(
        entries,
        built,
        translated,
        lambda items, lang, name: atom_feed(ws, items, r.labels_for(lang), lang=lang, name=name),
    )
    files.update(feeds)
    by_language = {name.split(".")[1]: name for name in feeds}
    files["index.html"] = index_page(ws, entries, labels, by_language).encode("utf-8")
    files["feed.xml"] = atom_feed(ws, entries, labels)
    return Site(
        files=files, entries=entries, warnings=[p for p in problems if p.severity == "warning"]
    )


def _entry(b: BuiltIssue, base: str, labels: dict[str, object]) -> Entry:
    issue = b.located.issue
    months = labels.get("months")
    month_names = (
        [str(m) for m in months]
        if isinstance(months, list) and len(months) == 12
        else [f"{m:02d}" for m in range(1, 13)]
    )
    display = str(labels.get("day_month_year", "{day} {month} {year}")).format(
        day=issue.date.day, month=month_names[issue.date.month - 1], year=issue.date.year
    )
    return Entry(
        issue_id=b.issue_id,
        subject=b.subject,
        preheader=b.preheader,
        date=issue.date,
        number=issue.number,
        language=b.language,
        url=f"{base}{b.issue_id}/",
        href=f"{b.issue_id}/",
        display_date=display,
    )


def index_page(
    ws: Workspace,
    entries: list[Entry],
    labels: dict[str, object],
    feeds: dict[str, str] | None = None,
) -> str:
    """The archive's front page, newest issue first (Jinja2, autoescaped); ``feeds``: the
    feed of each language (language -> file), when issues are translated."""
    import jinja2

    folder = ws.pages_dir
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(folder)),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    cfg = ws.config
    try:
        return env.get_template(INDEX_TEMPLATE).render(
            title=archive_title(ws, labels),
            lang=cfg.language,
            org=cfg.organisation,
            website=str(cfg.organisation.website),
            brand=cfg.brand,
            entries=entries,
            labels=labels,
            feed_href="feed.xml",
            feeds=feeds or {},
            base_url=base_url(ws),
        )
    except jinja2.TemplateNotFound:
        raise TemplateError(
            Problem(
                message=f"template `{INDEX_TEMPLATE}` not found",
                path=folder / INDEX_TEMPLATE,
                code="missing_template",
            )
        ) from None
    except jinja2.TemplateError as exc:
        line = getattr(exc, "lineno", None)
        raise TemplateError(
            Problem(
                message=f"archive page template: {exc}",
                path=folder / INDEX_TEMPLATE,
                line=line,
                code="template_syntax",
            )
        ) from None


def _rfc3339(d: dt.date) -> str:
    return f"{d.isoformat()}T00:00:00Z"


def atom_feed(
    ws: Workspace,
    entries: list[Entry],
    labels: dict[str, object],
    *,
    lang: str | None = None,
    name: str = "feed.xml",
) -> bytes:
    """RFC 4287 feed: one entry per issue, newest first; `updated` is the newest issue's date.
    ``lang`` and ``name``: one language's feed (feed.es.xml) of a translated archive."""
    base = base_url(ws)
    cfg = ws.config
    ET.register_namespace("", ATOM_NS)

    def sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
        el = ET.SubElement(parent, f"{{{ATOM_NS}}}{tag}", attrs)
        if text is not None:
            el.text = text
        return el

    feed = ET.Element(f"{{{ATOM_NS}}}feed", {"xml:lang": lang or cfg.language})
    sub(feed, "id", base if name == "feed.xml" else f"{base}{name}")
    sub(feed, "title", archive_title(ws, labels))
    sub(feed, "updated", _rfc3339(max(e.date for e in entries)))
    sub(feed, "link", rel="self", type="application/atom+xml", href=f"{base}{name}")
    sub(feed, "link", rel="alternate", type="text/html", href=base)
    author = sub(feed, "author")
    sub(author, "name", cfg.organisation.name)
    sub(author, "uri", str(cfg.organisation.website))
    sub(feed, "generator", "newsletter")
    for e in entries:
        entry = sub(feed, "entry")
        sub(entry, "id", e.url)
        sub(entry, "title", e.subject)
        sub(entry, "link", rel="alternate", type="text/html", href=e.url)
        sub(entry, "published", _rfc3339(e.date))
        sub(entry, "updated", _rfc3339(e.date))
        if e.preheader:
            sub(entry, "summary", e.preheader, type="text")
    ET.indent(feed, space="  ")
    body = ET.tostring(feed, encoding="unicode")
    return ('<?xml version="1.0" encoding="utf-8"?>\n' + body + "\n").encode("utf-8")


def _check_target(out_dir: Path) -> None:
    """Refuse to replace a folder that `newsletter archive` did not write (e.g. `-o .`)."""
    if out_dir.is_file():
        raise NewsletterError(
            f"{out_dir} is a file, not a folder", hint="pass another folder with -o"
        )
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / MARKER).is_file():
        raise NewsletterError(
            f"{out_dir} already holds files that `newsletter archive` did not write; "
            "nothing was written",
            hint="pass an empty or new folder with -o (the archive replaces the whole folder)",
        )


def _write_tree(folder: Path, files: dict[str, bytes]) -> None:
    for rel, data in sorted(files.items()):
        target = folder / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


def write_site(site: Site, out_dir: Path) -> list[Path]:
    """Stage the site next to out_dir, then swap it in; returns the files written."""
    _check_target(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.new-"))
    old: Path | None = None
    try:
        _write_tree(staging, site.files)
        os.chmod(staging, 0o755)
        if out_dir.exists():
            old = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.old-"))
            os.rmdir(old)
            os.rename(out_dir, old)
        os.rename(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if old is not None and old.exists() and not out_dir.exists():
            os.rename(old, out_dir)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return [out_dir / rel for rel in sorted(site.files) if rel != MARKER]
