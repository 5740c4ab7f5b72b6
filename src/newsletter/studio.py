"""The studio's work behind the page: one issue file, its form, its live preview, its saves.

The page sends the whole form on every pause in typing; the issue is rebuilt in memory from
the file's text with the form applied (:func:`studio_yaml.apply_form`) by the same pipeline
`build` runs, with a renderer kept warm between requests (made again only when
newsletter.toml or a template changes), so what the page shows, and the problems beside each
field, are what `check` and `send` would say of the file once saved.

Saving never loses work and never overwrites someone else's: a form with errors is saved all
the same (as a text editor would), and a file that changed on disk since the page loaded it
is not overwritten (:class:`Conflict`); the page offers to reload it or to keep both.
Nothing is written outside the workspace's `issues/` folder.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .atomic import write_atomic
from .build import BuiltIssue, compose
from .config import Workspace
from .errors import CheckFailed, NewsletterError, Problem
from .message import fill
from .preview import display_path, fingerprint, force_dark, problems_of, watched_files
from .render import Renderer
from .studio_yaml import NotAForm, apply_form, form_of, skeleton
from .words import plural

CONFLICT_INFIX = ".conflict-"


def version_of(data: bytes | None) -> str | None:
    """What the page compares to notice an edit made outside it: a hash of the file's bytes."""
    return None if data is None else hashlib.sha256(data).hexdigest()


def next_month(today: dt.date) -> dt.date:
    return (today.replace(day=28) + dt.timedelta(days=4)).replace(day=1)


def newest_issue(issues_dir: Path) -> Path | None:
    """The issue the studio opens when none is named: the last one by file name (YYYY-MM)."""
    from .issue import iter_issue_files

    files = list(iter_issue_files(issues_dir)) if issues_dir.is_dir() else []
    return files[-1] if files else None


def inside_issues(ws: Workspace, path: Path) -> Path:
    """`path` if it is a file name directly in the workspace's issues/ folder (the only place
    the studio writes), else a NewsletterError saying so."""
    folder = ws.issues_dir.resolve()
    resolved = path.resolve()
    if resolved.parent != folder or resolved.suffix not in (".yaml", ".yml"):
        raise NewsletterError(
            f"{path}: the studio edits issue files in {ws.issues_dir.name}/ "
            "(issues/YYYY-MM.yaml) only",
            hint=f"move or copy the file into {ws.issues_dir}",
        )
    return resolved


class Conflict(NewsletterError):
    """The issue file changed on disk since the page loaded it: saving would overwrite that."""


@dataclass
class Outcome:
    """What one preview gives the page."""

    problems: list[Problem]
    built: BuiltIssue | None


class Studio:
    """One issue being edited in the page; thread-safe (one build at a time)."""

    def __init__(self, ws: Workspace, issue_path: Path | None) -> None:
        self.root = ws.root
        self.issue_path = inside_issues(ws, issue_path) if issue_path is not None else None
        self._lock = threading.Lock()
        self._ws = ws
        self._renderer: Renderer | None = None
        self._env_version: str | None = None
        self._texts: dict[str, str] = {}  # version -> text, for "keep both"
        self._last: tuple[bytes, Outcome] | None = None
        self.picture_key = ""  # in the address of the preview's pictures (see studio_app.Guard)
        self.pictures: dict[str, bytes] = {}

    # -- the environment ----------------------------------------------------------------

    def _environment(self) -> tuple[Workspace, Renderer]:
        """Workspace and a warm Renderer, made again when newsletter.toml or a template changed."""
        issue = self.issue_path or self.root / "issues" / "none.yaml"
        env_version = fingerprint(watched_files(self.root, issue)[1:])
        if self._renderer is None or env_version != self._env_version:
            self._ws = Workspace(self.root)
            self._renderer = Renderer(self._ws)
            self._env_version = env_version
        return self._ws, self._renderer

    @property
    def workspace(self) -> Workspace:
        return self._ws

    def label(self, path: Path | None = None) -> str | None:
        path = path or self.issue_path
        if path is None:
            return None
        try:
            return str(path.relative_to(self.root.resolve()))
        except ValueError:
            return str(path)

    def read(self) -> bytes | None:
        if self.issue_path is None:
            return None
        try:
            return self.issue_path.read_bytes()
        except FileNotFoundError:
            return None

    def version(self) -> str | None:
        return version_of(self.read())

    # -- building -------------------------------------------------------------------------

    def text_for(self, payload: dict[str, Any], base: str | None = None) -> str:
        """The issue text a request stands for: its `text`, or its `form` applied to the file
        (or to the text the page loaded, `base`)."""
        if isinstance(payload.get("text"), str):
            return str(payload["text"])
        form = payload.get("form")
        if not isinstance(form, dict):
            raise NewsletterError("the request has neither a form nor a text")
        if base is None:
            data = self.read()
            base = data.decode("utf-8-sig", errors="replace") if data is not None else ""
        return apply_form(base, form)

    def outcome(self, text: str) -> Outcome:
        """Build `text` as the issue file (not saved); the same text twice is built once."""
        raw = text.encode("utf-8")
        with self._lock:
            if self._last is not None and self._last[0] == raw:
                return self._last[1]
            assert self.issue_path is not None
            try:
                ws, renderer = self._environment()
                built = compose(ws, self.issue_path, renderer, raw=raw)
                result = Outcome(built.problems, built)
            except Exception as exc:  # the page shows every failure; the studio never stops
                result = Outcome(problems_of(exc, self.root), None)
            self._last = (raw, result)
            return result

    def preview_json(self, outcome: Outcome) -> dict[str, Any] | None:
        from .issue_pictures import shown_here

        built = outcome.built
        if built is None:
            return None
        self.pictures = built.pictures.files  # shown by the page until the next good build
        html = fill(built.html, built.preview_values(self._ws))
        # The issue's own pictures are not published yet: the views take them from here.
        html = shown_here(html, self._ws, built.issue_id, f"/images/{self.picture_key}/")
        return {
            "html": html,
            "dark_html": force_dark(html),
            "text": fill(built.text, built.preview_values(self._ws)),
            "subject": built.subject,
        }

    def problems_json(self, problems: list[Problem]) -> list[dict[str, Any]]:
        ordered = sorted(problems, key=lambda p: p.severity != "error")
        return [
            {
                "field": p.field,
                "severity": p.severity,
                "message": p.message,
                "hint": p.hint,
                "line": p.line,
                "where": display_path(p, self.root),
            }
            for p in ordered
        ]

    def report(self, text: str) -> dict[str, Any]:
        """Problems, counts and preview of a text, as the page takes them."""
        out = self.outcome(text)
        errors = sum(p.severity == "error" for p in out.problems)
        return {
            "problems": self.problems_json(out.problems),
            "counts": {"errors": errors, "warnings": len(out.problems) - errors},
            "preview": self.preview_json(out),
        }

    def state(self) -> dict[str, Any]:
        """Everything the page needs to (re)load: the form or the text, problems, preview."""
        if self.issue_path is None:
            return {
                "mode": "none",
                "file": None,
                "version": None,
                "form": None,
                "text": "",
                "problems": [],
                "counts": {"errors": 0, "warnings": 0},
                "preview": None,
                "suggested": f"{next_month(dt.date.today()):%Y-%m}",
            }
        data = self.read() or b""
        text = data.decode("utf-8-sig", errors="replace")
        version = version_of(data) or ""
        self._texts = {version: text}
        try:
            form: dict[str, Any] | None = form_of(text)
        except NotAForm:
            form = None
        return {
            "uploads": True,  # pictures can be picked from this computer (POST /api/picture)
            "mode": "form" if form is not None else "text",
            "file": self.label(),
            "version": version,
            "form": form,
            "text": text,
            **self.report(text),
        }

    # -- saving ---------------------------------------------------------------------------

    def save(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Write the form (or text) to the issue file, atomically; Conflict if the file changed
        since the page loaded `payload["version"]` (unless resolving by keeping both)."""
        assert self.issue_path is not None
        loaded = str(payload.get("version") or "")
        base = self._texts.get(loaded)
        with self._lock:
            on_disk = self.read()
            changed = on_disk is not None and version_of(on_disk) != loaded
            if changed and payload.get("resolve") == "keep-both":
                return self._keep_both(self.text_for(payload, base))
            if changed or (on_disk is None and loaded):
                raise Conflict(
                    f"{self.label()} was changed outside the studio since you opened it "
                    "(in a text editor, or by git)",
                    hint="Reload it to see those changes (your edits here are dropped), or keep "
                    "both: your version is saved beside it as a separate file.",
                )
            text = self.text_for(payload, base)
            data = text.encode("utf-8")
            write_atomic(self.issue_path, data)
        version = version_of(data) or ""
        self._texts = {version: text}
        report = self.report(text)
        errors = report["counts"]["errors"]
        message = f"Saved {self.label()}."
        if errors:
            message = (
                f"Saved {self.label()} with {plural(errors, 'error')}: check and send will "
                "refuse it until they are fixed."
            )
        return {"saved": self.label(), "version": version, "message": message, **report}

    def _keep_both(self, text: str) -> dict[str, Any]:
        assert self.issue_path is not None
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        target = self.issue_path.with_name(f"{self.issue_path.stem}{CONFLICT_INFIX}{stamp}.yaml")
        n = 1
        while target.exists():
            n += 1
            target = target.with_name(f"{self.issue_path.stem}{CONFLICT_INFIX}{stamp}-{n}.yaml")
        write_atomic(target, text.encode("utf-8"))
        return {
            "saved": self.label(target),
            "reload": True,
            "message": f"Your version was saved as {self.label(target)}; the form now shows "
            f"{self.label()} as it is on disk. Copy what you need across, then delete "
            f"{target.name}.",
        }

    def add_picture(self, filename: str, data: bytes) -> dict[str, Any]:
        """Keep a picked picture in the issue's own folder; the `src` to put in the form."""
        from .pictures import store_upload

        assert self.issue_path is not None
        src = store_upload(self.issue_path, filename, data)
        return {
            "src": src,
            "message": f"Added {src} (kept beside the issue, in {src.split('/')[0]}/).",
        }

    def create(self, month_text: str) -> dict[str, Any]:
        """Write the skeleton of a month's issue and edit it (the page's first-run offer)."""
        try:
            month = dt.datetime.strptime(month_text, "%Y-%m").date()
        except ValueError:
            raise NewsletterError(f"{month_text!r} is not a month; write it as YYYY-MM") from None
        target = self._ws.issues_dir / f"{month:%Y-%m}.yaml"
        with self._lock:
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                write_atomic(target, skeleton(month).encode("utf-8"))
            self.issue_path = inside_issues(self._ws, target)
            self._last = None
        return {"file": self.label()}

    # -- test copies ----------------------------------------------------------------------

    def send_test(self, addresses: str, payload: dict[str, Any]) -> str:
        """Send a test copy of what the page shows (saved or not) through the configured
        backend, the `send --test-to` way; what happened, in a sentence."""
        from .esp.outbox import send_folder
        from .plan import SendOptions
        from .send import SendSession, parse_test_addresses

        copies = parse_test_addresses(addresses)
        out = self.outcome(self.text_for(payload, self._texts.get(str(payload.get("version")))))
        errors = [p for p in out.problems if p.severity == "error"]
        if out.built is None or errors:
            raise CheckFailed(errors or out.problems)
        options = SendOptions(
            test_to=[email for email, _ in copies],
            test_names={email: name for email, name in copies if name},
        )
        session = SendSession(self._ws, out.built, options)
        try:
            plan = session.plan()
            report = session.execute()
        finally:
            session.close()
        who = ", ".join(email for email, _ in copies)
        if report.state != "done":
            raise NewsletterError(f"the test copy was not sent: {report.message or report.state}")
        if plan.delivers:
            return f"Sent a test copy to {who} through {plan.destination}."
        folder = send_folder(self._ws.outbox_dir, plan.issue_id, report.send_id, test=True)
        try:
            shown = folder.relative_to(self.root)
        except ValueError:
            shown = folder
        return f"Written to the outbox: {shown}/ (nothing was emailed)."
