"""Read an issue YAML file into a validated model, keeping line numbers for every field.

Staff edit these files by hand, so every problem must point at a file, a line,
a column and a field path (``articles[3].image.alt``) and, for typos, suggest
the key they meant.  We parse with ruamel.yaml's round-trip loader because it
records where each key and item came from; pydantic does the validation, and
its error locations are mapped back onto those positions.  All problems in a
file are reported at once, not just the first.
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
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.constructor import RoundTripConstructor
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from .errors import IssueError, NewsletterError, Problem, format_path

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


Position = tuple[int, int]  # 1-based line, column


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


class _TooManyNodes(Exception):
    pass


def _positions(node: Any, prefix: str, out: dict[str, Position]) -> None:
    """Record 1-based (line, column) of every key's value and every list item.

    YAML aliases (`*name`) can make a small file expand exponentially; an issue has a
    few hundred values, so past MAX_NODES we stop instead of hanging.
    """
    if len(out) > MAX_NODES:
        raise _TooManyNodes
    if isinstance(node, CommentedMap):
        for key in node:
            path = f"{prefix}.{key}" if prefix else str(key)
            try:
                line, col = node.lc.key(key)
            except (KeyError, TypeError, AttributeError):
                continue
            out[path] = (line + 1, col + 1)
            _positions(node[key], path, out)
    elif isinstance(node, CommentedSeq):
        for i, item in enumerate(node):
            path = f"{prefix}[{i}]"
            try:
                line, col = node.lc.item(i)
            except (KeyError, TypeError, AttributeError, IndexError):
                continue
            out[path] = (line + 1, col + 1)
            _positions(item, path, out)


def _plain(node: Any) -> Any:
    """Plain dicts and lists for pydantic (ruamel's types carry comments and positions)."""
    if isinstance(node, dict):
        return {str(k) if not isinstance(k, str) else k: _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    if hasattr(node, "value") and type(node).__name__.endswith("Int"):
        return int(node)
    if isinstance(node, str):
        return str(node)
    return node


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


def _yaml_problem(path: Path, exc: YAMLError) -> Problem:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    line = mark.line + 1 if mark is not None else None
    col = mark.column + 1 if mark is not None else None
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    context = getattr(exc, "context", None)
    hint = "check the indentation and that text with ': ' or '#' is in quotes"
    code = "yaml_syntax"
    if "found duplicate key" in str(exc):
        key = str(exc).split('found duplicate key "', 1)[-1].split('"', 1)[0]
        problem = f'the key "{key}" appears twice'
        hint = "keep one of them; each key may appear once per block"
        code = "duplicate_key"
        mark = getattr(exc, "problem_mark", None)
        if mark is not None:
            line, col = mark.line + 1, mark.column + 1
    elif "'\\t'" in str(exc):
        problem = "a tab character is used for indentation"
        hint = "indent with spaces only; set your editor to insert spaces"
        code = "tab"
    elif context and isinstance(exc, MarkedYAMLError):
        problem = f"{context}: {problem}"
    return Problem(
        message=f"YAML syntax error: {problem}",
        path=path,
        line=line,
        column=col,
        hint=hint,
        code=code,
    )


class _Constructor(RoundTripConstructor):
    """Dates stay text here: pydantic parses them and reports a bad one with its field."""


_Constructor.add_constructor("tag:yaml.org,2002:timestamp", RoundTripConstructor.construct_yaml_str)


def _yaml() -> YAML:
    y = YAML(typ="rt")
    y.Constructor = _Constructor
    y.allow_duplicate_keys = False
    return y


MAX_NODES = 20_000
MAX_SHOWN = 20  # invisible characters listed one by one

# Characters an editor does not show that still reach the email: C0/C1 controls (Word's
# Shift+Enter is U+000B) and Unicode's line and paragraph separators.  In a subject they break
# the mail header; in any text they are invisible debris.  YAML reads U+0085, U+2028 and U+2029
# as line breaks (which would shift every later line number), and a double-quoted "\v", "\L" or
# "\u2028" produces them with no odd byte in the file: both the file and the values are scanned.
_INVISIBLE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029]")
_INVISIBLE_NAMES = {
    0x0B: "line break from Word's Shift+Enter",
    0x0C: "page-break character",
    0x1C: "separator character",
    0x1D: "separator character",
    0x1E: "separator character",
    0x1F: "separator character",
    0x85: "next-line character",
    0x2028: "line-separator character",
    0x2029: "paragraph-separator character",
}
_ESCAPE = re.compile(r"\\(x[0-9A-Fa-f]{2}|u[0-9A-Fa-f]{4}|U[0-9A-Fa-f]{8}|.)", re.S)
_SHORT_ESCAPES = dict(zip("0abtnvfreNLP", "\0\a\b\t\n\v\f\r\x1b\x85\u2028\u2029", strict=True))
InvisibleHit = tuple[int, str, str | None]  # offset in the file, the character, its escape


def _scalars(clean: str) -> list[tuple[int, int, str, ScalarNode]]:
    """(start, end, field path, node) of every key and value, from the node tree's marks."""
    out: list[tuple[int, int, str, ScalarNode]] = []
    seen: set[int] = set()

    def walk(node: Node, path: str) -> None:
        if id(node) in seen:  # an alias: its text was visited where it is defined
            return
        seen.add(id(node))
        if isinstance(node, ScalarNode):
            out.append((node.start_mark.index, node.end_mark.index, path, node))
        elif isinstance(node, MappingNode):
            for key, value in node.value:
                name = str(key.value) if isinstance(key, ScalarNode) else "?"
                sub = f"{path}.{name}" if path else name
                walk(key, sub)
                walk(value, sub)
        elif isinstance(node, SequenceNode):
            for i, item in enumerate(node.value):
                walk(item, f"{path}[{i}]")

    try:
        root = _yaml().compose(clean)
    except YAMLError:
        return out  # the syntax error is reported on its own; the characters keep no field
    if root is not None:
        walk(root, "")
    return out


def _escaped_hits(text: str, start: int, end: int) -> Iterator[InvisibleHit]:
    """Escapes in a double-quoted scalar that stand for an invisible character."""
    for m in _ESCAPE.finditer(text, start, end):
        code = m.group(1)
        char = chr(int(code[1:], 16)) if len(code) > 1 else _SHORT_ESCAPES.get(code, "")
        if _INVISIBLE.fullmatch(char):
            yield m.start(), char, m.group()


def _invisible_characters(path: Path, text: str, clean: str) -> list[Problem]:
    """Every invisible character, raw or escaped, at its line and column and in its field."""
    scalars = _scalars(clean)
    raw: list[tuple[InvisibleHit, str | None]] = []
    escaped: list[tuple[InvisibleHit, str | None]] = []
    total = 0  # a pasted document can hold thousands: list the first ones, count the rest
    for m in _INVISIBLE.finditer(text):
        total += 1
        if len(raw) < MAX_SHOWN:
            field = next((f for s, e, f, _ in scalars if s <= m.start() < e), None)
            raw.append(((m.start(), m.group(), None), field))
    for start, end, field, node in scalars:
        if node.style == '"' and _INVISIBLE.search(str(node.value)):
            for hit in _escaped_hits(text, start, end):
                total += 1
                if len(escaped) < MAX_SHOWN:
                    escaped.append((hit, field))
    hits = sorted(raw + escaped, key=lambda h: h[0][0])[:MAX_SHOWN]
    problems = []
    for (offset, char, escape), field in hits:
        line = text.count("\n", 0, offset) + 1
        col = offset - (text.rfind("\n", 0, offset) + 1) + 1
        name = _INVISIBLE_NAMES.get(ord(char), "control character")
        if escape:
            hint = f"delete `{escape}` at column {col}: it stands for that character"
        else:
            hint = (
                f"retype the text or delete the character at column {col}; "
                "it often comes from text pasted from Word or a web page"
            )
        problems.append(
            Problem(
                message=f"contains an invisible {name} (U+{ord(char):04X})",
                path=path,
                line=line,
                column=col,
                field=field,
                hint=hint,
                code="control_character",
            )
        )
    if total > len(hits):
        problems.append(
            Problem(
                message=f"and {total - len(hits):,} more invisible characters",
                path=path,
                hint="paste the text again as plain text with Ctrl+Shift+V, then check again",
                code="control_character",
            )
        )
    return problems


def _has_invisible(value: Any) -> bool:
    if isinstance(value, str):
        return _INVISIBLE.search(value) is not None
    if isinstance(value, dict):
        return any(_has_invisible(k) or _has_invisible(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_invisible(v) for v in value)
    return False


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
    raw_invisible = _INVISIBLE.search(text) is not None
    clean = _INVISIBLE.sub(" ", text) if raw_invisible else text
    try:
        data = _yaml().load(clean)
    except YAMLError as exc:
        raise IssueError(
            [*_invisible_characters(path, text, clean), _yaml_problem(path, exc)]
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
        _positions(data, "", positions)
    except _TooManyNodes:
        raise IssueError(
            Problem(
                message=f"the file expands to more than {MAX_NODES:,} values",
                path=path,
                line=1,
                hint="remove repeated `*alias` references; write each article out in full",
                code="too_many_values",
            )
        ) from None
    plain = _plain(data)
    problems = (
        _invisible_characters(path, text, clean) if raw_invisible or _has_invisible(plain) else []
    )
    located = Located(issue=None, path=path, positions=positions)  # type: ignore[arg-type]
    try:
        located.issue = Issue.model_validate(plain)
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
