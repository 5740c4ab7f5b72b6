"""Read an issue YAML file into a validated model, keeping line numbers for every field.

Staff edit these files by hand, so every problem must point at a file, a line,
a column and a field path (``articles[3].image.alt``) and, for typos, suggest
the key they meant.  We parse with ruamel.yaml's round-trip loader because it
records where each key and item came from; pydantic does the validation, and
its error locations are mapped back onto those positions.  All problems in a
file are reported at once, not just the first.  The YAML side (loader, positions,
syntax errors in words) is issue_yaml.py; invisible characters are invisible.py.

A file with errors still says what could be read (:func:`load_issue` returns it as a
:class:`Parsed` without the fields in error), so that `check` reports the warnings about the
rest in the same run instead of after the errors are fixed.  Positions in lists count from 1
(``articles[1]`` is the first article), as in every message (errors.format_path).
"""

from __future__ import annotations

import calendar
import datetime as dt
import difflib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AnyUrl,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
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
from .issue_yaml import (
    Comment,
    TooManyNodes,
    plain,
    record_positions,
    trailing_comments,
    yaml_loader,
)
from .issue_yaml import Position as Position
from .languages import translation_name
from .picture_src import PictureSrc
from .yaml_words import yaml_problem

MAX_FILE_BYTES = 10_000_000
MAX_MARKDOWN_CHARS = 10_000
MAX_ARTICLES = 40

WebUrl = Annotated[AnyUrl, UrlConstraints(allowed_schemes=["http", "https"], host_required=True)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


_YMD = re.compile(r"^(\d{4})-(\d{1,2})-(\d{1,2})$")


def _date_text(value: Any) -> Any:
    """Dates are written YYYY-MM-DD; a bare number would be read as seconds since 1970.

    A date in the right form that no calendar has (2019-10-32) says why, in words.
    """
    if isinstance(value, dt.date):
        return value
    if not isinstance(value, str):
        raise ValueError("is not a date; write it as YYYY-MM-DD")
    try:
        return dt.date.fromisoformat(value.strip())
    except ValueError:
        pass
    m = _YMD.match(value.strip())
    if m:
        year, month, day = (int(g) for g in m.groups())
        if not 1 <= month <= 12:
            raise ValueError(f"is not a real date (there is no month {month}; months go 1 to 12)")
        days = calendar.monthrange(year, month)[1]
        name = calendar.month_name[month] + (f" {year}" if month == 2 else "")
        if not 1 <= day <= days:
            raise ValueError(f"is not a real date ({name} has {days} days)")
    raise ValueError("is not a date; write it as YYYY-MM-DD")


IssueDate = Annotated[dt.date, BeforeValidator(_date_text)]


class Image(_Model):
    """An article picture; ``alt`` is required because screen readers and blocked images need it."""

    src: PictureSrc = Field(
        min_length=1, description="https address, or a file beside the issue: 2019-10/market.jpg"
    )
    alt: str = Field(
        min_length=1, max_length=300, description="what the picture shows, for screen readers"
    )
    width: int | None = Field(
        default=None, ge=16, le=552, description="display width in px (the column is 552 px)"
    )


class Article(_Model):
    id: str | None = Field(default=None, max_length=80, description="names it in translations")
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
class Parsed:
    """What the YAML gave, before or beside the model: for messages and lints.

    ``values`` are the fields as written (plain dicts and lists), less any field that failed
    validation; ``comments`` are the comments that cut an unquoted text short.
    """

    path: Path
    values: dict[str, Any]
    positions: dict[str, Position]
    comments: list[Comment]

    @property
    def issue_id(self) -> str:
        return self.path.stem

    @property
    def web_path(self) -> str:
        """Where its browser version is published, under archive.base_url."""
        return f"{self.issue_id}/"

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


@dataclass
class Located(Parsed):
    """A valid issue: the model plus where every field came from."""

    issue: Issue


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


# What to write after a key left empty (`subject:` with nothing after it).
_WHAT = {
    "subject": "the email's subject line",
    "date": "the publication date as YYYY-MM-DD",
    "title": "the article's title",
    "summary": "two or three sentences about the story",
    "url": "the address of the full story",
    "src": "the picture's https address or file (2019-10/market.jpg)",
    "alt": "what the picture shows",
    "draft": "true or false",
    "greeting": "true or false",
}


def _empty(err: Any) -> bool:
    """`subject:` with nothing after it (None), or `subject: ""`."""
    if err["type"] == "missing":
        return False
    return err.get("input", 0) is None or err["type"] == "string_too_short"


def _problems_from_validation(exc: ValidationError, located: Parsed) -> list[Problem]:
    problems = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        path = format_path(loc)
        kind = err["type"]
        message = _FRIENDLY.get(kind, err["msg"])
        hint = None
        if _empty(err):
            message = "is empty"
            if loc and isinstance(loc[-1], int):
                hint = "write its fields after the dash, or delete the dash"
            elif loc and loc[-1] == "articles":
                hint = "add at least one article, starting with `- title:`"
            elif loc:
                hint = f"write {_WHAT.get(str(loc[-1]), 'a value')} after `{loc[-1]}:`"
        elif kind == "extra_forbidden":
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


def read_issue(path: Path, raw: bytes | None = None) -> Located:
    """Read and validate an issue file; raise IssueError listing every problem found."""
    parsed, problems = load_issue(path, raw)
    if problems or not isinstance(parsed, Located):
        raise IssueError(problems)
    return parsed


def load_issue(
    path: Path,
    raw: bytes | None = None,
    fill: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> tuple[Parsed | None, list[Problem]]:
    """What could be read of an issue file, and every error found reading it.

    The first is a :class:`Located` when the file is valid, a :class:`Parsed` holding the
    fields that were read when some are in error, and None when nothing could be read
    (a missing file, a YAML syntax error).  `raw` is the file's content when it is not on disk
    yet (the studio's unsaved form); messages still name `path`.  `fill` completes the values
    before validation (a translation takes its dates and links from its base issue).
    """
    try:
        raw = path.read_bytes() if raw is None else raw
    except FileNotFoundError:
        return None, [
            Problem(
                message="file not found",
                path=path,
                hint="issues live in issues/YYYY-MM.yaml; `newsletter new` makes one",
            )
        ]
    except IsADirectoryError:
        return None, [Problem(message="is a folder, not an issue file", path=path)]
    except OSError as exc:
        return None, [Problem(message=f"cannot be read: {exc.strerror}", path=path)]
    if len(raw) > MAX_FILE_BYTES:
        return None, [
            Problem(
                message=f"file is {len(raw):,} bytes; an issue file must be under {MAX_FILE_BYTES:,}",
                path=path,
                hint="an email links to long texts instead of containing them",
                code="too_large",
            )
        ]
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        col = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        return None, [
            Problem(
                message=f"not UTF-8 text (byte 0x{raw[exc.start]:02x} cannot be read)",
                path=path,
                line=line,
                column=col,
                hint="save the file as UTF-8 in your editor",
                code="encoding",
            )
        ]
    if not text.strip() or all(
        not ln.strip() or ln.lstrip().startswith("#") for ln in text.split("\n")
    ):
        return None, [
            Problem(
                message="the file is empty",
                path=path,
                line=1,
                hint="start from `newsletter new`, which writes a commented skeleton",
                code="empty",
            )
        ]
    # Invisible characters become spaces for parsing (same offsets, no extra YAML line breaks),
    # so that they can be reported in their field together with every other problem.
    raw_invisible = INVISIBLE.search(text) is not None
    clean = INVISIBLE.sub(" ", text) if raw_invisible else text
    try:
        data = yaml_loader().load(clean)
    except YAMLError as exc:
        return None, [*invisible_characters(path, text, clean), yaml_problem(path, exc, clean)]
    if not isinstance(data, CommentedMap):
        return None, [
            Problem(
                message="the file must be a set of `key: value` lines (subject, date, articles, …)",
                path=path,
                line=1,
                code="not_mapping",
                hint="start from `newsletter new`, which writes a commented skeleton",
            )
        ]
    positions: dict[str, Position] = {}
    try:
        record_positions(data, "", positions)
    except TooManyNodes:
        return None, [
            Problem(
                message=f"the file expands to more than {MAX_NODES:,} values",
                path=path,
                line=1,
                hint="remove repeated `*alias` references; write each article out in full",
                code="too_many_values",
            )
        ]
    values = plain(data)
    if fill is not None:
        values = fill(values)
    problems = (
        invisible_characters(path, text, clean) if raw_invisible or has_invisible(values) else []
    )
    parsed = Parsed(path, values, positions, trailing_comments(data))
    try:
        issue = Issue.model_validate(values)
    except ValidationError as exc:
        problems += _problems_from_validation(exc, parsed)
        for err in exc.errors():
            _leave_out(values, tuple(err["loc"]))
        return parsed, problems
    return Located(path, values, positions, parsed.comments, issue), problems


def _leave_out(values: Any, loc: tuple[int | str, ...]) -> None:
    """Drop the value at `loc` (a field in error) so that lints see only what was read."""
    for part in loc[:-1]:
        try:
            values = values[part]
        except (KeyError, IndexError, TypeError):
            return
    last = loc[-1] if loc else None
    if isinstance(values, dict) and last in values:
        del values[last]
    elif isinstance(values, list) and isinstance(last, int) and 0 <= last < len(values):
        values[last] = None  # keep the others at their positions


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


def issue_file(issues_dir: Path, arg: Path) -> Path:
    """The file an ISSUE argument names: a path as given, or an issue id (`2019-10`, as
    `status` and `report` take) for issues/2019-10.yaml."""
    if arg.exists() or arg.suffix in (".yaml", ".yml") or len(arg.parts) != 1:
        return arg
    for suffix in (".yaml", ".yml"):
        if (issues_dir / f"{arg.name}{suffix}").is_file():
            return issues_dir / f"{arg.name}{suffix}"
    return issues_dir / f"{arg.name}.yaml"  # not there: reading it says "file not found"


def iter_issue_files(issues_dir: Path) -> Iterator[Path]:
    """Issue files in publication order (file names are YYYY-MM.yaml); the studio's copies of
    a version that met an edit on disk (YYYY-MM.conflict-….yaml) are not issues, nor are
    translations (YYYY-MM.es.yaml beside YYYY-MM.yaml: part of their issue)."""
    yield from sorted(
        p
        for p in issues_dir.glob("*.y*ml")
        if p.suffix in (".yaml", ".yml")
        and ".conflict-" not in p.stem
        and translation_name(p) is None
    )


def json_schema() -> dict[str, Any]:
    """JSON Schema of the issue format, for editors (YAML language server) and CI."""
    schema = Issue.model_json_schema(mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "newsletter issue"
    return schema


Severity = Literal["error", "warning"]
