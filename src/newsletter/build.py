"""Build one issue: read and model everything first, check it, write the files last.

This is the pipeline the data-flow sketch names (issue -> render -> inline ->
message), run once per issue.  Like pelican, nothing is written until every
step has succeeded and `check` found no error, so a failed build never leaves
half an output folder behind.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path

from .atomic import write_atomic
from .checks import lint_config, lint_issue, lint_output, lint_theme
from .config import Workspace
from .errors import CheckFailed, HasProblems, Problem
from .inline import inline_css
from .issue import Located
from .issue_pictures import IMAGES_FOLDER, IssuePictures, gather
from .message import ALL_PLACEHOLDERS, fill, mime_message, substitutions
from .render import EMAIL_TEMPLATE, Renderer, compile_mjml
from .translation_checks import lint_translation, without_inherited
from .translations import read_any

PREVIEW_NAME = "Ana"
PREVIEW_EMAIL = "preview@example.org"


@dataclass(frozen=True)
class BuiltIssue(HasProblems):
    """Everything a send or a preview needs, made once per issue."""

    issue_id: str
    source: Path
    subject: str
    preheader: str
    language: str
    html: str  # inlined email HTML, with per-recipient placeholders
    text: str  # plain-text part, with per-recipient placeholders
    web_html: str  # browser version: no placeholders, no unsubscribe link
    mjml: str
    located: Located
    draft: bool = False
    problems: list[Problem] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    pictures: IssuePictures = field(default_factory=IssuePictures)  # local files, prepared

    def preview_values(self, ws: Workspace) -> dict[str, str]:
        """Sample per-recipient values for previews and preview.eml."""
        base = str(ws.config.send.unsubscribe_url).rstrip("/")
        return substitutions(PREVIEW_NAME, f"{base}/u/preview", self.language, f"{base}/p/preview")


def compose(
    ws: Workspace, path: Path, renderer: Renderer | None = None, raw: bytes | None = None
) -> BuiltIssue:
    """Read, render, compile, inline and lint; raises IssueError/TemplateError, never writes.

    `raw` is the issue's text when it is not saved yet (the studio); messages name `path`."""
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    located = read_any(path, raw)  # an issue, or a translation (its base's id)
    t1 = time.perf_counter()
    timings["read"] = t1 - t0
    r = renderer or Renderer(ws)
    pictures = gather(ws, located)  # the issue's own picture files, prepared for email
    mjml_src = r.mjml(located, web=False, pictures=pictures)
    web_src = r.mjml(located, web=True, pictures=pictures)
    t2 = time.perf_counter()
    timings["render"] = t2 - t1
    template = ws.theme_dir / EMAIL_TEMPLATE
    compiled = compile_mjml(mjml_src, template=template)
    web_html = compile_mjml(web_src, template=template)
    t3 = time.perf_counter()
    timings["compile"] = t3 - t2
    html = inline_css(compiled)
    t4 = time.perf_counter()
    timings["inline"] = t4 - t3
    text = r.text(located, pictures)
    t5 = time.perf_counter()
    timings["text"] = t5 - t4
    problems = without_inherited(  # a translation: what it takes from its base is not its own
        located,
        lint_issue(located)
        + lint_config(ws.config, ws.config_path)
        + lint_theme(ws.theme_dir)
        + lint_output(located, ws.config, html, text, ws.theme_dir)
        + pictures.problems
        + lint_translation(located),
    )
    if any(p in web_html for p in ALL_PLACEHOLDERS):
        problems.append(
            Problem(
                message="the browser version contains per-recipient placeholders",
                path=template,
                code="web_placeholder",
                hint="wrap them in {% if not web %} … {% endif %}",
            )
        )
    timings["check"] = time.perf_counter() - t5
    timings["total"] = time.perf_counter() - t0
    issue = located.issue
    return BuiltIssue(
        issue_id=located.issue_id,
        source=path,
        subject=issue.subject,
        preheader=issue.preheader or "",
        language=issue.language or ws.config.language,
        html=html,
        text=text,
        web_html=web_html,
        mjml=mjml_src,
        located=located,
        draft=issue.draft,
        problems=problems,
        timings=timings,
        pictures=pictures,
    )


def build_issue(
    ws: Workspace, issue_path: Path, *, strict: bool = False, renderer: Renderer | None = None
) -> BuiltIssue:
    """Compose an issue and refuse (CheckFailed) when check finds errors (or warnings, strict)."""
    built = compose(ws, issue_path, renderer)
    if built.errors or (strict and built.warnings):
        raise CheckFailed(built.problems)
    return built


def preview_eml(ws: Workspace, built: BuiltIssue) -> bytes:
    """A complete multipart/alternative message with sample values; byte-identical per input."""
    cfg = ws.config
    values = built.preview_values(ws)
    digest = hashlib.sha256((built.html + built.text).encode()).hexdigest()
    issue_date = built.located.issue.date
    domain = cfg.sender.from_email.rpartition("@")[2]
    msg = mime_message(
        subject=built.subject,
        from_email=cfg.sender.from_email,
        from_name=cfg.sender.from_name,
        to_email=PREVIEW_EMAIL,
        to_name=PREVIEW_NAME,
        html_body=fill(built.html, values),
        text_body=fill(built.text, values),
        reply_to=cfg.sender.reply_to,
        headers={"X-Newsletter-Issue": built.issue_id},
        date=dt.datetime.combine(issue_date, dt.time(8, 0), tzinfo=dt.UTC),
        message_id=f"<{built.issue_id}.preview.{digest[:12]}@{domain}>",
        boundary=f"==newsletter-{digest[:24]}==",
    )
    return msg.as_bytes()


@dataclass(frozen=True)
class BuildOutput:
    folder: Path
    files: dict[str, Path]


def write_build(ws: Workspace, built: BuiltIssue, out_dir: Path) -> BuildOutput:
    """Write email.html, email.txt, web.html and preview.eml under out_dir/<issue>/."""
    folder = out_dir / built.located.web_path  # a translation: <issue>/<language>/
    payloads = {
        "email.html": built.html.encode("utf-8"),
        "email.txt": built.text.encode("utf-8"),
        "web.html": built.web_html.encode("utf-8"),
        "preview.eml": preview_eml(ws, built),
    }
    files = {}
    for name, data in payloads.items():
        write_atomic(folder / name, data)
        files[name] = folder / name
    files.update(_write_pictures(folder / IMAGES_FOLDER, built.pictures.files))
    return BuildOutput(folder=folder, files=files)


def _write_pictures(folder: Path, pictures: dict[str, bytes]) -> dict[str, Path]:
    """The prepared pictures, under images/; those of an earlier build that are no longer
    used are removed, so the folder holds exactly what `archive` publishes."""
    if folder.is_dir():
        for old in folder.iterdir():
            if old.name not in pictures and old.is_file():
                old.unlink()
    files = {}
    for name, data in pictures.items():
        target = folder / name
        if not (target.is_file() and target.read_bytes() == data):
            write_atomic(target, data)
        files[f"{IMAGES_FOLDER}/{name}"] = target
    return files
