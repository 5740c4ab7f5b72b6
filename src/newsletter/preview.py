"""`newsletter preview`: the issue as readers will see it, rebuilt while staff edit it.

One page shows four views side by side -- desktop, a 375 px phone, dark mode
and the plain-text part -- each an iframe of the email filled with sample
per-recipient values (the same ones preview.eml uses).

Live reload without websockets or a file watcher thread: the page polls
``/version`` every second, which only hashes the modification times of the
issue file, newsletter.toml and templates/**; when the hash differs from the
one the page was built with, the page reloads, and the next request rebuilds
(lazily, once, under a lock).  A broken issue or template never stops the
server: its problems are listed in the page (with the last good build, if
any, greyed out beneath), and the next save that fixes them brings the views
back.

``preview --as ADDRESS`` shows the issue as one subscriber on a list gets it: their
name in the greeting, and their unsubscribe link (signed with NEWSLETTER_SECRET, or
the development key without it), whose page speaks their language.

Dark mode: a page cannot make one iframe report ``prefers-color-scheme: dark``
while the others report light -- the media feature follows the browser or the
operating system for every frame.  So ``/email.html?dark=1`` serves a copy in
which each ``(prefers-color-scheme: dark)`` media feature is rewritten to one
that always matches (and ``light`` to one that never does), with
``color-scheme: dark`` declared.  The email's own dark rules are therefore
what the view shows, exactly as a client that honours them would apply them.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .build import BuiltIssue, compose, preview_eml
from .config import CONFIG_FILE, Workspace
from .errors import CheckFailed, ConfigError, HasProblems, InputError, NewsletterError, Problem
from .issue_pictures import media_type, shown_here
from .message import fill, mime_message
from .render import Renderer

log = logging.getLogger("newsletter.preview")

PAGE_TEMPLATE = "preview.html.j2"
DEFAULT_PORT = 8025
POLL_MS = 1000

_DARK_FEATURE = re.compile(r"\(\s*prefers-color-scheme\s*:\s*dark\s*\)", re.IGNORECASE)
_LIGHT_FEATURE = re.compile(r"\(\s*prefers-color-scheme\s*:\s*light\s*\)", re.IGNORECASE)
_COLOR_SCHEME_META = re.compile(
    r"<meta\s+name=[\"']?color-scheme[\"']?\s+content=[\"'][^\"']*[\"']\s*/?>", re.IGNORECASE
)
_HEAD_END = re.compile(r"</head>", re.IGNORECASE)


def force_dark(html: str) -> str:
    """A copy of the email whose dark-mode rules always apply (see the module docstring)."""
    out = _DARK_FEATURE.sub("(min-width: 0px)", html)
    out = _LIGHT_FEATURE.sub("(max-width: 0px)", out)
    out = _COLOR_SCHEME_META.sub('<meta name="color-scheme" content="dark">', out)
    style = "<style>:root { color-scheme: dark; }</style>"
    out, n = _HEAD_END.subn(style + "</head>", out, count=1)
    return out if n else style + out


def watched_files(root: Path, issue_path: Path) -> list[Path]:
    """What a preview depends on: the issue, newsletter.toml and every template."""
    files = [issue_path, root / CONFIG_FILE]
    templates = root / "templates"
    if templates.is_dir():
        files.extend(sorted(p for p in templates.rglob("*") if p.is_file()))
    pictures = issue_path.parent / issue_path.stem  # the issue's own picture files
    if pictures.is_dir():
        files.extend(sorted(p for p in pictures.rglob("*") if p.is_file()))
    return files


def fingerprint(paths: list[Path]) -> str:
    """A hash of paths, sizes and modification times: cheap enough to compute every second."""
    h = hashlib.sha256()
    for p in paths:
        try:
            st = os.stat(p)
            h.update(f"{p}\0{st.st_mtime_ns}\0{st.st_size}\n".encode())
        except OSError:
            h.update(f"{p}\0missing\n".encode())
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class Snapshot(HasProblems):
    """What the page shows for one version of the inputs."""

    version: str
    problems: list[Problem] = field(default_factory=list)
    built: BuiltIssue | None = None  # the build shown: this version's, or the last good one
    stale: bool = False  # True: `built` is an older build, this version could not be built
    html: str = ""
    dark_html: str = ""
    text: str = ""
    web_html: str = ""
    eml: bytes = b""


@dataclass(frozen=True)
class Reader:
    """The subscriber a preview shows the issue as (``preview --as``)."""

    email: str
    name: str | None
    first_name: str | None
    language: str | None
    list_name: str
    suppressed: bool = False  # unsubscribed (or bounced): a send would leave them out

    def describe(self) -> str:
        who = f"{self.name} <{self.email}>" if self.name else self.email
        language = f", language {self.language}" if self.language else ""
        gone = " (unsubscribed: a send leaves them out)" if self.suppressed else ""
        return f"{who}, list {self.list_name}{language}{gone}"


def find_reader(ws: Workspace, address: str, list_name: str | None = None) -> Reader:
    """The subscriber with this address: on `list_name`, else on the first list (by name)
    that has them.  A NewsletterError naming the lists looked at if nobody has it."""
    from .addresses import email_key, normalise_email
    from .rows import Subscriber
    from .subscribers import iter_list, list_names, list_path
    from .suppressions import SuppressionList

    try:
        key = email_key(normalise_email(address))
    except ValueError as exc:
        raise NewsletterError(f"--as: {address!r} is not an email address: {exc}") from None
    names = [list_name] if list_name else list_names(ws)
    for name in names:
        path = list_path(ws, name)
        for item in iter_list(path, name):
            if isinstance(item, Subscriber) and item.key == key:
                gone = SuppressionList(ws.suppressions_path).contains(item.email)
                return Reader(item.email, item.name, item.first_name, item.language, name, gone)
    where = f"list {list_name}" if list_name else f"any list ({', '.join(names) or 'none yet'})"
    raise NewsletterError(
        f"--as: {address} is not on {where} in {ws.subscribers_dir.name}/",
        hint="give the address of someone on a list, or leave out --as to see the sample reader",
    )


def _reader_values(ws: Workspace, built: BuiltIssue, reader: Reader) -> dict[str, str]:
    """The reader's placeholder values, exactly as a send would make them."""
    from .config import SECRET_ENV, env_secret, newsletter_secrets
    from .personalize import DEV_SECRET, Personalizer

    keys = newsletter_secrets() if env_secret(SECRET_ENV, required=False) else [DEV_SECRET]
    cfg = ws.config.send
    personalize = Personalizer(
        keys, str(cfg.unsubscribe_url), cfg.unsubscribe_mailto, built.language
    )
    return dict(personalize(reader).values)


def _reader_eml(ws: Workspace, built: BuiltIssue, reader: Reader, values: dict[str, str]) -> bytes:
    cfg = ws.config
    msg = mime_message(
        subject=built.subject,
        from_email=cfg.sender.from_email,
        from_name=cfg.sender.from_name,
        to_email=reader.email,
        to_name=reader.name,
        html_body=fill(built.html, values),
        text_body=fill(built.text, values),
        reply_to=cfg.sender.reply_to,
        headers={"X-Newsletter-Issue": built.issue_id},
    )
    return msg.as_bytes(policy=msg.policy.clone(max_line_length=998))


def problems_of(exc: Exception, ws_root: Path) -> list[Problem]:
    if isinstance(exc, (InputError, CheckFailed)):
        return list(exc.problems)
    if isinstance(exc, ConfigError):
        return [
            Problem(
                message=exc.message,
                path=ws_root / CONFIG_FILE,
                field=exc.key,
                hint=exc.hint,
                code="config",
            )
        ]
    if isinstance(exc, NewsletterError):
        return [Problem(message=exc.message, hint=exc.hint, code="error")]
    return [
        Problem(
            message=f"internal error: {type(exc).__name__}: {exc}",
            hint="this is a bug in newsletter; the terminal shows the details",
            code="internal",
        )
    ]


class Preview:
    """The preview of one issue: rebuilds lazily when its inputs change; thread-safe."""

    def __init__(self, root: Path, issue_path: Path, reader: Reader | None = None) -> None:
        self.root = root
        self.issue_path = issue_path
        self.reader = reader
        self._lock = threading.Lock()
        self._env_version: str | None = None
        self._ws: Workspace | None = None
        self._renderer: Renderer | None = None
        self._snapshot: Snapshot | None = None
        self._last_good: Snapshot | None = None

    def version(self) -> str:
        return fingerprint(watched_files(self.root, self.issue_path))

    def _environment(self) -> tuple[Workspace, Renderer]:
        """Workspace and Renderer, made again only when newsletter.toml or a template changed."""
        env_version = fingerprint(watched_files(self.root, self.issue_path)[1:])
        if self._ws is None or self._renderer is None or env_version != self._env_version:
            self._ws = self._renderer = None
            ws = Workspace(self.root)
            renderer = Renderer(ws)
            self._ws, self._renderer, self._env_version = ws, renderer, env_version
        return self._ws, self._renderer

    def current(self) -> Snapshot:
        """The snapshot for the inputs as they are now, rebuilding if they changed."""
        with self._lock:
            version = self.version()
            if self._snapshot is None or self._snapshot.version != version:
                self._snapshot = self._rebuild(version)
            return self._snapshot

    def _rebuild(self, version: str) -> Snapshot:
        try:
            ws, renderer = self._environment()
            built = compose(ws, self.issue_path, renderer)
        except Exception as exc:  # a preview shows every failure in the page, never crashes
            if not isinstance(exc, NewsletterError):
                log.exception("preview build failed")
            problems = problems_of(exc, self.root)
            last = self._last_good
            if last is None:
                return Snapshot(version=version, problems=problems)
            return Snapshot(
                version=version,
                problems=problems,
                built=last.built,
                stale=True,
                html=last.html,
                dark_html=last.dark_html,
                text=last.text,
                web_html=last.web_html,
                eml=last.eml,
            )
        reader = self.reader
        values = built.preview_values(ws) if reader is None else _reader_values(ws, built, reader)
        html = shown_here(fill(built.html, values), ws, built.issue_id)
        snap = Snapshot(
            version=version,
            problems=built.problems,
            built=built,
            html=html,
            dark_html=force_dark(html),
            text=fill(built.text, values),
            web_html=shown_here(built.web_html, ws, built.issue_id),
            eml=preview_eml(ws, built)
            if reader is None
            else _reader_eml(ws, built, reader, values),
        )
        self._last_good = snap
        return snap


def display_path(p: Problem, root: Path) -> str:
    where = p.location()
    if p.path is not None:
        with contextlib.suppress(ValueError):  # outside the workspace: keep the full path
            where = where.replace(str(p.path), str(p.path.relative_to(root)), 1)
    return where


def create_app(ws: Workspace, issue_path: Path, reader: Reader | None = None) -> Any:
    """The starlette app of the preview server (no network access; binds where it is told)."""
    import jinja2
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
    from starlette.routing import Route

    preview = Preview(ws.root, issue_path, reader)
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(ws.pages_dir)),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    no_store = {"Cache-Control": "no-store"}

    def page(request: Request) -> Response:
        snap = preview.current()
        built = snap.built
        try:
            issue_label = issue_path.relative_to(ws.root)
        except ValueError:
            issue_label = issue_path
        problems = [
            {
                "severity": p.severity,
                "where": display_path(p, ws.root),
                "field": p.field,
                "message": p.message,
                "hint": p.hint,
            }
            for p in sorted(snap.problems, key=lambda p: p.severity != "error")
        ]
        html = env.get_template(PAGE_TEMPLATE).render(
            version=snap.version,
            subject=built.subject if built else None,
            issue_file=str(issue_label),
            problems=problems,
            errors=len(snap.errors),
            warnings=len(snap.warnings),
            stale=snap.stale,
            has_build=built is not None,
            poll_ms=POLL_MS,
            reader=reader.describe() if reader else None,
        )
        return HTMLResponse(html, headers=no_store)

    def _need_build() -> Snapshot:
        snap = preview.current()
        if snap.built is None:
            from starlette.exceptions import HTTPException

            raise HTTPException(409, "the issue has errors; see the preview page")
        return snap

    def email_html(request: Request) -> Response:
        snap = _need_build()
        body = snap.dark_html if request.query_params.get("dark") == "1" else snap.html
        return HTMLResponse(body, headers=no_store)

    def email_txt(request: Request) -> Response:
        return PlainTextResponse(_need_build().text, headers=no_store)

    def web_html(request: Request) -> Response:
        return HTMLResponse(_need_build().web_html, headers=no_store)

    def picture(request: Request) -> Response:
        """The issue's own pictures, not yet published: the views show them from here."""
        from starlette.exceptions import HTTPException

        built = _need_build().built
        data = built.pictures.files.get(request.path_params["name"]) if built else None
        if data is None:
            raise HTTPException(404, "no such picture in this issue")
        media = media_type(request.path_params["name"])
        return Response(data, media_type=media, headers=no_store)

    def eml(request: Request) -> Response:
        snap = _need_build()
        assert snap.built is not None
        headers = {
            **no_store,
            "Content-Disposition": f'attachment; filename="{snap.built.issue_id}-preview.eml"',
        }
        return Response(snap.eml, media_type="message/rfc822", headers=headers)

    def version(request: Request) -> Response:
        return JSONResponse({"version": preview.version()}, headers=no_store)

    app = Starlette(
        routes=[
            Route("/", page),
            Route("/email.html", email_html),
            Route("/email.txt", email_txt),
            Route("/web.html", web_html),
            Route("/images/{name}", picture),
            Route("/preview.eml", eml),
            Route("/version", version),
        ]
    )
    app.state.preview = preview
    return app


def check_issue_path(issue_path: Path) -> None:
    """The one failure that stops the preview before it starts: no such file."""
    if not issue_path.is_file():
        raise NewsletterError(
            f"{issue_path}: file not found",
            hint="pass an issue file, e.g. issues/2019-09.yaml (`newsletter new` makes one)",
        )
