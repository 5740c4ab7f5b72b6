"""Issue model -> MJML (Jinja2) -> HTML (mjml-python), and the plain-text part.

Jinja2 runs with autoescape on (everything staff write is text, never markup)
and StrictUndefined (a typo in a template fails the build instead of printing
nothing).  The HTML is built once per issue with placeholders for per-recipient
values (see :mod:`newsletter.message`); nothing here runs per subscriber.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from . import markup, mjml_fixes
from .config import Config, Workspace
from .errors import Problem, TemplateError
from .issue import Located
from .issue_pictures import IssuePictures, logo_view, picture_view
from .message import FIRST_NAME_HTML, FIRST_NAME_TEXT, PREFERENCES_URL, UNSUBSCRIBE_URL

EMAIL_TEMPLATE = "email.mjml.j2"
TEXT_TEMPLATE = "text.txt.j2"
LABELS_FILE = "labels.toml"
RTL_LANGUAGES = {"ar", "he", "fa", "ur", "yi", "ps", "sd", "ug", "dv", "ckb"}


def _autoescape(name: str | None) -> bool:
    return name is None or not name.endswith(".txt.j2")


@dataclass(frozen=True)
class Rendered:
    mjml: str
    html: str


class Renderer:
    """One per workspace theme: the Jinja2 environment and labels are made once."""

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self.config: Config = ws.config
        self.theme_dir = ws.theme_dir
        if not (self.theme_dir / EMAIL_TEMPLATE).is_file():
            raise TemplateError(
                Problem(
                    message=f"theme `{self.config.theme}` has no {EMAIL_TEMPLATE}",
                    path=self.theme_dir / EMAIL_TEMPLATE,
                    field="theme",
                    hint=f"set `theme` in newsletter.toml to a folder of {ws.templates_dir}",
                    code="missing_template",
                )
            )

    @cached_property
    def env(self) -> jinja2.Environment:
        env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(self.theme_dir)),
            autoescape=_autoescape,
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=True,
            auto_reload=False,
        )
        env.filters["md_text"] = markup.to_text
        env.filters["wrap"] = markup.wrap
        return env

    @cached_property
    def labels(self) -> dict[str, dict[str, Any]]:
        path = self.theme_dir / LABELS_FILE
        if not path.is_file():
            return {}
        try:
            return tomllib.loads(path.read_text("utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise TemplateError(Problem(message=f"cannot read labels: {exc}", path=path)) from None

    def labels_for(self, language: str) -> dict[str, Any]:
        base = dict(self.labels.get("en", {}))
        base.update(self.labels.get(language.split("-")[0], {}))
        base.update(self.labels.get(language, {}))
        self._check_labels(language, base)
        return base

    def _check_labels(self, language: str, labels: dict[str, Any]) -> None:
        """Catch a translator's slip (a misspelt {field}, eleven months) with its key."""
        path = self.theme_dir / LABELS_FILE
        months = labels.get("months")
        if months is not None and (
            not isinstance(months, list) or len(months) != 12 or not all(months)
        ):
            raise TemplateError(
                Problem(
                    message=f"[{language}] months must list the 12 month names",
                    path=path,
                    field=f"{language}.months",
                    code="labels",
                )
            )
        sample = {"day": 1, "month": "May", "year": 2019, "org": "Org"}
        for key in ("month_year", "day_month_year", "why"):
            value = labels.get(key)
            if value is None:
                continue
            try:
                str(value).format(**sample)
            except (KeyError, IndexError, ValueError) as exc:
                raise TemplateError(
                    Problem(
                        message=f"[{language}] {key} = {value!r}: unknown or broken "
                        f"placeholder ({exc})",
                        path=path,
                        field=f"{language}.{key}",
                        hint="placeholders are {day}, {month}, {year} and {org}",
                        code="labels",
                    )
                ) from None

    def context(
        self, located: Located, *, web: bool, pictures: IssuePictures | None = None
    ) -> dict[str, Any]:
        """What the theme's templates see; ``pictures``: the issue's own picture files,
        shown by the address `archive` publishes them at (issue_pictures.py)."""
        issue = located.issue
        cfg = self.config
        lang = issue.language or cfg.language
        labels = self.labels_for(lang)
        rtl = lang.split("-")[0].lower() in RTL_LANGUAGES
        months = labels.get("months") or [str(m) for m in range(1, 13)]

        def long_date(d: Any) -> str:
            return str(labels.get("day_month_year", "{day} {month} {year}")).format(
                day=d.day, month=months[d.month - 1], year=d.year
            )

        articles = []
        for art in issue.articles:
            meta = [m for m in (art.category, art.location) if m]
            if art.date:
                meta.append(long_date(art.date))
            articles.append(
                {
                    "title": art.title,
                    "summary": art.summary,
                    "summary_html": Markup(markup.to_html(art.summary)),
                    "url": str(art.url),
                    "image": picture_view(art.image, pictures),
                    "button": art.button,
                    "meta": " · ".join(meta),
                }
            )
        archive_url = str(cfg.archive.base_url)
        website = str(cfg.organisation.website)
        return {
            "issue": issue,
            "issue_id": located.issue_id,
            "lang": lang,
            "dir": "rtl" if rtl else "ltr",
            "start": "right" if rtl else "left",  # where lines of text begin
            "labels": labels,
            "web": web,
            "org": {
                "name": cfg.organisation.name,
                "postal_address": cfg.organisation.postal_address,
                "website": website,
                "website_label": website.split("://", 1)[-1].rstrip("/"),
                "logo_url": logo_view(cfg.organisation.logo_url, pictures),
                "logo_width": cfg.organisation.logo_width,
            },
            "brand": cfg.brand,
            "social": [{"name": s.name, "url": str(s.url)} for s in cfg.social],
            "articles": articles,
            "intro_html": Markup(markup.to_html(issue.intro)) if issue.intro else "",
            "closing_html": Markup(markup.to_html(issue.closing)) if issue.closing else "",
            "issue_date": str(labels.get("month_year", "{month} {year}")).format(
                month=months[issue.date.month - 1], year=issue.date.year
            ),
            "web_url": f"{archive_url.rstrip('/')}/{located.web_path}",  # this language's page
            "archive_url": archive_url,
            "why": str(labels.get("why", "")).format(org=cfg.organisation.name),
            "placeholders": {
                "first_name": FIRST_NAME_HTML,
                "unsubscribe_url": UNSUBSCRIBE_URL,
                "preferences_url": PREFERENCES_URL,
            },
        }

    def _render(self, name: str, context: dict[str, Any]) -> str:
        try:
            return self.env.get_template(name).render(context)
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateError(
                Problem(
                    message=f"template syntax error: {exc.message}",
                    path=Path(exc.filename or self.theme_dir / name),
                    line=exc.lineno,
                    code="template_syntax",
                )
            ) from None
        except jinja2.TemplateNotFound as exc:
            raise TemplateError(
                Problem(
                    message=f"template `{exc.name}` not found",
                    path=self.theme_dir / name,
                    code="missing_template",
                    hint=f"templates live in {self.theme_dir}",
                )
            ) from None
        except jinja2.UndefinedError as exc:
            path, line = self._where(exc, name)
            raise TemplateError(
                Problem(
                    message=f"template uses an undefined value: {exc.message}",
                    path=path,
                    line=line,
                    code="template_undefined",
                )
            ) from None
        except (jinja2.TemplateError, TypeError, ValueError, KeyError, IndexError) as exc:
            path, line = self._where(exc, name)
            raise TemplateError(
                Problem(
                    message=f"template error: {type(exc).__name__}: {exc}",
                    path=path,
                    line=line,
                    code="template_runtime",
                )
            ) from None

    def _where(self, exc: BaseException, name: str) -> tuple[Path, int | None]:
        """The theme file and line where rendering failed (Jinja2 maps its frames to them)."""
        found: tuple[Path, int | None] = (self.theme_dir / name, None)
        tb = exc.__traceback__
        theme = str(self.theme_dir)
        while tb is not None:
            filename = tb.tb_frame.f_code.co_filename
            if filename.startswith(theme):
                found = (Path(filename), tb.tb_lineno)
            tb = tb.tb_next
        return found

    def mjml(
        self, located: Located, *, web: bool = False, pictures: IssuePictures | None = None
    ) -> str:
        return self._render(EMAIL_TEMPLATE, self.context(located, web=web, pictures=pictures))

    def text(self, located: Located, pictures: IssuePictures | None = None) -> str:
        ctx = self.context(located, web=False, pictures=pictures)
        ctx["placeholders"] = {
            "first_name": FIRST_NAME_TEXT,
            "unsubscribe_url": UNSUBSCRIBE_URL,
            "preferences_url": PREFERENCES_URL,
        }
        text = self._render(TEXT_TEMPLATE, ctx)
        # Collapse runs of blank lines left by optional blocks; end with one newline.
        lines: list[str] = []
        for line in text.splitlines():
            line = line.rstrip()
            if not line and lines and not lines[-1]:
                continue
            lines.append(line)
        return "\n".join(lines).strip() + "\n"


def compile_mjml(source: str, *, template: Path | None = None) -> str:
    """MJML -> HTML with mjml-python (MRML, Rust); a parse error names the template.

    :mod:`newsletter.mjml_fixes` corrects, around the compiler, where MRML's HTML differs
    from the official MJML compiler's (tests/test_mjml_reference.py compares the two).
    """
    from mjml import mjml2html

    prepared = mjml_fixes.prepare(source)
    try:
        compiled = str(mjml2html(prepared.source, disable_comments=True))
    except Exception as exc:  # MRML raises plain exceptions with its parser message
        raise TemplateError(
            Problem(
                message=f"MJML could not be compiled: {exc}",
                path=template,
                hint="check that every mj-* tag is closed and nested as MJML requires",
                code="mjml",
            )
        ) from None
    return mjml_fixes.finish(compiled, prepared)
