"""The reader's pages, in their language: unsubscribe (confirm, done, not found, error and
test copy: a link from a ``--test-to`` copy, which unsubscribes nobody), sign-up and
preferences (:data:`READER_PAGES`).

Templates and their words live in the workspace (``templates/pages/``, words per
language in ``labels.toml``) so that staff can change them; they are checked when
the server starts, so a broken template is a ConfigError then, not a 500 later.
Every value is autoescaped, and ``{org}``/``{website}``/``{email}`` in the words are
filled in one pass, so no value is ever read as a placeholder or as markup.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from jinja2 import (
    ChoiceLoader,
    DictLoader,
    Environment,
    FileSystemLoader,
    StrictUndefined,
    TemplateError,
)
from starlette.requests import Request
from starlette.responses import HTMLResponse

from ..config import Workspace
from ..errors import ConfigError

# The pages carry the token in their URL: keep it out of Referer headers, caches and frames.
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Robots-Tag": "noindex, nofollow",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self';"
        " form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
}

PAGES = ("confirm.html", "done.html", "not_found.html", "error.html", "test_copy.html")
# Sign-up and preferences pages (server/signup.py, server/preferences.py).
READER_PAGES = (
    "subscribe.html",
    "subscribe_sent.html",
    "signup_confirm.html",
    "signup_done.html",
    "signup_review.html",
    "link_invalid.html",
    "preferences.html",
    "preferences_saved.html",
    "too_many.html",
)

# A workspace made before test copies had their own page still serves them: these are
# used when its templates/pages/ lacks the page or its words.
BUILTIN_PAGES = {
    "test_copy.html": (
        '{% extends "base.html" %}{% block content %}'
        '<h1 id="heading">{{ t.test_copy_heading }}</h1>'
        '<p id="test-copy">{{ t.test_copy_body_before }}<span class="address">{{ email }}'
        "</span>{{ t.test_copy_body_after }}</p>"
        '<p class="muted">{{ t.test_copy_note }}</p>{% endblock %}'
    )
}
BUILTIN_WORDS = {
    "test_copy_title": "Test copy",
    "test_copy_heading": "This is a test copy",
    "test_copy_body": "This link came in a test copy of the newsletter, sent to {email} to "
    "check it before it goes out. Nothing was changed: nobody was unsubscribed.",
    "test_copy_note": "In the copies readers receive, this link unsubscribes them.",
}

_FIELD = re.compile(r"\{(org|website|email)\}")
_FONT_SAFE = re.compile(r"[^A-Za-z0-9 ,\-]")


def _fill(text: str, values: Mapping[str, str]) -> str:
    """Fill {org}/{website}/{email} in one pass, so a value is never read as a placeholder."""
    return _FIELD.sub(lambda m: values.get(m.group(1), m.group(0)), text)


@dataclass(frozen=True)
class Pages:
    """The unsubscribe pages: Jinja2 (autoescaped) templates and their words per language."""

    env: Environment
    labels: dict[str, dict[str, str]]
    default_language: str
    common: dict[str, Any]

    @classmethod
    def load(cls, ws: Workspace) -> Pages:
        folder = ws.pages_dir
        labels_path = folder / "labels.toml"
        try:
            raw = tomllib.loads(labels_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(
                f"{labels_path}: cannot read the page words: {exc}",
                key="templates/pages/labels.toml",
            ) from None
        english = {**BUILTIN_WORDS, **{k: str(v) for k, v in raw.get("en", {}).items()}}
        labels: dict[str, dict[str, str]] = {}
        for lang, table in raw.items():
            if not isinstance(table, dict):
                raise ConfigError(
                    f"{labels_path}: `{lang}` must be a table like [en]", key=f"labels.{lang}"
                )
            labels[lang.lower()] = {**english, **{k: str(v) for k, v in table.items()}}
        if not labels:
            raise ConfigError(f"{labels_path}: no languages defined", key="labels")
        cfg = ws.config
        env = Environment(
            loader=ChoiceLoader([FileSystemLoader(str(folder)), DictLoader(BUILTIN_PAGES)]),
            autoescape=True,
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        brand = cfg.brand
        font = _FONT_SAFE.sub("", brand.font_family).strip() or "Helvetica, Arial, sans-serif"
        common: dict[str, Any] = {
            "org": cfg.organisation.name,
            "postal_address": cfg.organisation.postal_address,
            "website": str(cfg.organisation.website),
            "brand": brand,
            "font_family": font,
        }
        default = cfg.language.split("-")[0].lower()
        pages = cls(env, labels, default if default in labels else next(iter(labels)), common)
        for name in (*PAGES, *READER_PAGES):
            try:
                env.get_template(name)
            except TemplateError as exc:
                raise ConfigError(
                    f"{folder / name}: {exc}", key=f"templates/pages/{name}"
                ) from None
        return pages

    def pick_language(self, *wanted: str | None, accept: str | None = None) -> str:
        """The first wanted language we have, else the best of Accept-Language, else the default."""
        for item in wanted:
            if item:
                code = item.strip().lower().split("-")[0]
                if code in self.labels:
                    return code
        if accept:
            ranked: list[tuple[float, int, str]] = []
            for index, part in enumerate(accept.split(",")[:20]):
                tag, _, params = part.strip().partition(";")
                q = 1.0
                params = params.strip()
                if params.startswith("q="):
                    try:
                        q = float(params[2:])
                    except ValueError:
                        q = 0.0
                ranked.append((-q, index, tag.strip().lower().split("-")[0]))
            for neg_q, _, code in sorted(ranked):
                if neg_q < 0 and code in self.labels:
                    return code
        return self.default_language

    def render(
        self,
        name: str,
        lang: str,
        *,
        email: str = "",
        status: int = 200,
        headers: Mapping[str, str] | None = None,
        **extra: Any,
    ) -> HTMLResponse:
        """The page ``name`` in ``lang``; ``extra``: more values for its template."""
        words = self.labels[lang]
        values = {"org": self.common["org"], "website": self.common["website"], "email": email}
        t: dict[str, str] = {}
        for key, text in words.items():
            t[key] = _fill(text, values)
            before, sep, after = text.partition("{email}")
            if sep:
                t[key + "_before"] = _fill(before, values)
                t[key + "_after"] = _fill(after, values)
            else:
                t[key + "_before"], t[key + "_after"] = t[key], ""
        others = [
            (code, w.get("language_name", code)) for code, w in self.labels.items() if code != lang
        ]
        html = self.env.get_template(name).render(
            **self.common,
            lang=lang,
            t=t,
            title=t.get(name.removesuffix(".html") + "_title", self.common["org"]),
            email=email,
            other_languages=others,
            languages=[(code, w.get("language_name", code)) for code, w in self.labels.items()],
            **extra,
        )
        return HTMLResponse(html, status_code=status, headers={**PAGE_HEADERS, **(headers or {})})


def language(pages: Pages, request: Request, form_lang: str | None = None) -> str:
    """The page language: the form's, else the link's ``?lang=``, else Accept-Language."""
    return pages.pick_language(
        form_lang,
        request.query_params.get("lang"),
        accept=request.headers.get("accept-language"),
    )
