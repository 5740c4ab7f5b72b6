"""Read an issue YAML file into a validated model, keeping line numbers for every field.

Staff edit these files by hand, so every problem must point at a file, a line,
a column and a field path (``articles[3].image.alt``) and, for typos, suggest
the key they meant.  We parse with ruamel.yaml's round-trip loader because it
records where each key and item came from; pydantic does the validation, and
its error locations are mapped back onto those positions.  All problems in a
file are reported at once, not just the first.  The YAML side (loader, positions,
syntax errors in words) is issue_yaml.py; invisible characters are invisible.py.
"""

from __future__ import annotations

import datetime as dt
import difflib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AnyUrl,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    HttpUrl,
    StrictInt,
    UrlConstraints,
    ValidationError,
    field_validator,
)
from ruamel.yaml.comments import CommentedMap
from ruamel.yaml.error import YAMLError

from .errors import IssueError, NewsletterError, Problem, format_path
from .invisible import INVISIBLE, has_invisible, invisible_characters
from .issue_yaml import MAX_NODES as MAX_NODES
from .issue_yaml import Position as Position
from .issue_yaml import TooManyNodes, plain, record_positions, yaml_loader, yaml_problem

MAX_FILE_BYTES = 10_000_000
MAX_MARKDOWN_CHARS = 10_000
MAX_ARTICLES = 40

WebUrl = Annotated[AnyUrl, UrlConstraints(allowed_schemes=["http", "https"], host_required=True)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


def _date_text(value: Any) -> Any:
    """Dates are written YYYY-MM-DD; a bare number would be read as seconds since 1970."""
    if isinstance(value, dt.date):
        return value
    if not isinstance(value, str):
        raise ValueError("is not a date; write it as YYYY-MM-DD")
    try:
        return dt.date.fromisoformat(value.strip())
    except ValueError:
        raise ValueError("is not a date; write it as YYYY-MM-DD") from None


IssueDate = Annotated[dt.date, BeforeValidator(_date_text)]


class Image(_Model):
    """An article picture; ``alt`` is required because screen readers and blocked images need it."""

    src: HttpUrl = Field(description="https URL of the picture (600 px wide or more looks sharp)")
    alt: str = Field(
        min_length=1, max_length=300, description="what the picture shows, for screen readers"
    )
    width: int | None = Field(
        default=None, ge=16, le=552, description="display width in px (the column is 552 px)"
    )


class Article(_Model):
    title: str = Field(min_length=1, max_length=300)
    summary: str = Field(min_length=1, max_length=MAX_MARKDOWN_CHARS, description="Markdown")
    url: WebUrl = Field(description="link to the full story (https)")
    image: Image | None = None
    category: str | None = Field(default=None, max_length=80)
    location: str | None = Field(default=None, max_length=120)
    date: IssueDate | None = None
    button: str | None = Field(
        default=None, max_length=40, description='button text, default "Read more"'
    )


class Issue(_Model):
    """One monthly issue, as written in `issues/YYYY-MM.yaml`."""

    subject: str = Field(min_length=1, max_length=200, description="email subject line")
    preheader: str | None = Field(default=None, max_length=300, description="inbox preview text")
    date: IssueDate
    number: StrictInt | None = Field(default=None, ge=1)
    language: str | None = Field(default=None, pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})?$")
    intro: str | None = Field(default=None, max_length=MAX_MARKDOWN_CHARS, description="Markdown")
    articles: list[Article] = Field(min_length=1, max_length=MAX_ARTICLES)
    closing: str | None = Field(default=None, max_length=MAX_MARKDOWN_CHARS, description="Markdown")
    greeting: bool = Field(default=True, description="start with 'Hello <first name>,'")
    draft: bool = Field(
        default=False, description="a draft is not published in the archive nor sent"
    )

    @field_validator("subject", "preheader")
    @classmethod
    def _one_line(cls, value: str | None) -> str | None:
        if value is not None and ("\n" in value or "\r" in value):
            raise ValueError("must be a single line")
        return value


@dataclass
class Located:
    """The model plus where every field came from, for messages and lints."""

    issue: Issue
    path: Path
    positions: dict[str, Position] = field(default_factory=dict)

    @property
    def issue_id(self) -> str:
        return self.path.stem

    def where(self, field_path: str) -> Position | None:
        """Position of a field, or of its closest recorded parent."""
        probe = field_path
        while probe:
            if probe in self.positions:
                return self.positions[probe]
            cut = max(probe.rfind("."), probe.rfind("["))
            probe = probe[:cut] if cut > 0 else ""
        return None

    def problem(self, field_path: str, message: str, **kw: Any) -> Problem:
        # A missing top-level field has no position of its own: point at the file's start.
        pos = self.where(field_path) or (1, 1)
        return Problem(
            message=message,
            path=self.path,
            line=pos[0] if pos else None,
            column=pos[1] if pos else None,
            field=field_path,
            **kw,
        )


_CHILD_MODELS: dict[tuple[type[BaseModel], str], type[BaseModel]] = {
    (Issue, "articles"): Article,
    (Article, "image"): Image,
}


def _fields_at(loc: tuple[int | str, ...]) -> list[str]:
    """Field names that the model at `loc` (the parent of an unknown key) accepts."""
    model: type[BaseModel] | None = Issue
    for part in loc:
        if isinstance(part, int):
            continue
        model = _CHILD_MODELS.get((model, part)) if model else None
    return list(model.model_fields) if model else []


_FRIENDLY = {
    "missing": "required field is missing",
    "extra_forbidden": "unknown field",
    "string_too_short": "must not be empty",
    "too_short": "needs at least one entry",
    "url_parsing": "is not a web address (it must start with https://)",
    "url_scheme": "must be a web address starting with https://",
    "date_from_datetime_parsing": "is not a date; write it as YYYY-MM-DD",
    "date_parsing": "is not a date; write it as YYYY-MM-DD",
    "date_type": "is not a date; write it as YYYY-MM-DD",
    "string_type": "must be text",
    "int_parsing": "must be a whole number",
    "int_type": "must be a whole number",
    "list_type": "must be a list (each entry starting with '- ')",
    "model_type": "must be a group of fields (key: value lines, indented)",
    "model_attributes_type": "must be a group of fields (key: value lines, indented)",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
}


def _problems_from_validation(exc: ValidationError, located: Located) -> list[Problem]:
    problems = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        path = format_path(loc)
        kind = err["type"]
        message = _FRIENDLY.get(kind, err["msg"])
        hint = None
        if kind == "extra_forbidden":
            key = str(loc[-1])
            allowed = _fields_at(loc[:-1])
            close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
            hint = (
                f"did you mean `{close[0]}`?" if close else f"allowed fields: {', '.join(allowed)}"
            )
        elif kind == "string_too_long":
            limit = (err.get("ctx") or {}).get("max_length")
            size = len(err.get("input") or "")
            message = f"is too long ({size:,} characters; at most {limit:,})"
            hint = "keep the email short and link to the full text"
        elif kind == "too_long":
            message = f"has too many entries ({err['msg']})"
        elif kind == "missing" and loc and loc[-1] == "alt":
            hint = "describe the picture for people who cannot see it"
        elif kind == "missing":
            hint = f"add `{loc[-1]}:`"
        elif kind == "string_pattern_mismatch" and loc and loc[-1] == "language":
            message = "is not a language code"
            hint = "use a code such as en, es or pt-BR"
        elif kind.startswith("url") and str(err.get("input", "")).startswith("//"):
            hint = f"write the full address: https:{err['input']}"  # no page to take https from
        elif kind.startswith("url"):
            hint = "write the full address, e.g. https://www.example.org/page"
        elif kind in ("greater_than_equal", "less_than_equal"):
            ctx = err.get("ctx") or {}
            limit = ctx.get("ge", ctx.get("le"))
            message = f"must be {limit} or {'more' if kind == 'greater_than_equal' else 'less'}"
        elif kind == "value_error":
            message = err["msg"].removeprefix("Value error, ")
        problems.append(located.problem(path, message, hint=hint, code=kind))
    return problems


def read_issue(path: Path) -> Located:
    """Read and validate an issue file; raise IssueError listing every problem found."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise IssueError(
            Problem(
                message="file not found",
                path=path,
                hint="issues live in issues/YYYY-MM.yaml; `newsletter new` makes one",
            )
        ) from None
    except IsADirectoryError:
        raise IssueError(Problem(message="is a folder, not an issue file", path=path)) from None
    except OSError as exc:
        raise IssueError(Problem(message=f"cannot be read: {exc.strerror}", path=path)) from None
    if len(raw) > MAX_FILE_BYTES:
        raise IssueError(
            Problem(
                message=f"file is {len(raw):,} bytes; an issue file must be under {MAX_FILE_BYTES:,}",
                path=path,
                hint="an email links to long texts instead of containing them",
                code="too_large",
            )
        )
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        col = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise IssueError(
            Problem(
                message=f"not UTF-8 text (byte 0x{raw[exc.start]:02x} cannot be read)",
                path=path,
                line=line,
                column=col,
                hint="save the file as UTF-8 in your editor",
                code="encoding",
            )
        ) from None
    if not text.strip() or all(
        not ln.strip() or ln.lstrip().startswith("#") for ln in text.split("\n")
    ):
        raise IssueError(
            Problem(
                message="the file is empty",
                path=path,
                line=1,
                hint="start from `newsletter new`, which writes a commented skeleton",
                code="empty",
            )
        )
    # Invisible characters become spaces for parsing (same offsets, no extra YAML line breaks),
    # so that they can be reported in their field together with every other problem.
    raw_invisible = INVISIBLE.search(text) is not None
    clean = INVISIBLE.sub(" ", text) if raw_invisible else text
    try:
        data = yaml_loader().load(clean)
    except YAMLError as exc:
        raise IssueError(
            [*invisible_characters(path, text, clean), yaml_problem(path, exc)]
        ) from None
    if not isinstance(data, CommentedMap):
        raise IssueError(
            Problem(
                message="the file must be a set of `key: value` lines (subject, date, articles, …)",
                path=path,
                line=1,
                code="not_mapping",
                hint="start from `newsletter new`, which writes a commented skeleton",
            )
        )
    positions: dict[str, Position] = {}
    try:
        record_positions(data, "", positions)
    except TooManyNodes:
        raise IssueError(
            Problem(
                message=f"the file expands to more than {MAX_NODES:,} values",
                path=path,
                line=1,
                hint="remove repeated `*alias` references; write each article out in full",
                code="too_many_values",
            )
        ) from None
    values = plain(data)
    problems = (
        invisible_characters(path, text, clean) if raw_invisible or has_invisible(values) else []
    )
    located = Located(issue=None, path=path, positions=positions)  # type: ignore[arg-type]
    try:
        located.issue = Issue.model_validate(values)
    except ValidationError as exc:
        problems += _problems_from_validation(exc, located)
    if problems:
        raise IssueError(problems)
    return located


_ISSUE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def issue_id_of(arg: str) -> str:
    """`2019-09`, `issues/2019-09.yaml` and `2019-09.yaml` all name issue 2019-09."""
    name = Path(arg.strip()).name
    for suffix in (".yaml", ".yml"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    if not _ISSUE_ID.match(name):
        raise NewsletterError(
            f"{arg!r} is not an issue id",
            hint="give the issue's file name without .yaml, e.g. `newsletter report 2019-09`",
        )
    return name


def iter_issue_files(issues_dir: Path) -> Iterator[Path]:
    """Issue files in publication order (file names are YYYY-MM.yaml)."""
    yield from sorted(p for p in issues_dir.glob("*.y*ml") if p.suffix in (".yaml", ".yml"))


def json_schema() -> dict[str, Any]:
    """JSON Schema of the issue format, for editors (YAML language server) and CI."""
    schema = Issue.model_json_schema(mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "newsletter issue"
    return schema


Severity = Literal["error", "warning"]
