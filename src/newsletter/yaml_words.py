"""YAML syntax errors in plain words, with the line: what a communications officer can fix.

ruamel's own messages ("expected <block end>, but found '?'") say nothing to someone who
is not a programmer.  :func:`yaml_problem` looks at the text around the error (the
indentation of the line and the one above, where a quote opens and closes, a colon in
an unquoted value, a tab, a missing dash) and says what is wrong in those terms.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ruamel.yaml.error import YAMLError
from ruamel.yaml.tokens import (
    FlowMappingEndToken,
    FlowMappingStartToken,
    FlowSequenceEndToken,
    FlowSequenceStartToken,
    ScalarToken,
    Token,
)

from .errors import Problem
from .issue_yaml import yaml_loader

_TEXT_FIELDS = "subject|preheader|intro|closing|title|summary|category|location|button|alt"
_KEY_LINE = re.compile(r"^(?P<lead>\s*(?:-\s+)*)(?P<key>[A-Za-z_][\w-]*)\s*:(?=\s|$)")
_KEY_VALUE = re.compile(r"^(?P<lead>\s*(?:-\s+)*)(?P<key>[A-Za-z_][\w-]*)\s*:\s+(?P<value>.*)$")


@dataclass(frozen=True)
class _Said:
    line: int  # 1-based
    column: int
    message: str
    hint: str
    code: str = "yaml_syntax"


class _Source:
    """The parsed text, line by line, with what a message needs to know about a line."""

    def __init__(self, text: str) -> None:
        self.lines = text.split("\n")

    def line(self, row: int) -> str:  # 0-based row
        return self.lines[row] if 0 <= row < len(self.lines) else ""

    @staticmethod
    def indent(line: str) -> int:
        return len(line) - len(line.lstrip(" "))

    @staticmethod
    def key_column(line: str) -> int:
        """Where a line's content starts, after any list dashes (`  - title:` -> 4)."""
        m = re.match(r"^(\s*(?:-\s+)*)", line)
        return len(m.group(1)) if m else 0

    def above(self, row: int) -> int | None:
        """The closest row above `row` with content (not blank, not only a comment)."""
        for r in range(row - 1, -1, -1):
            stripped = self.lines[r].strip()
            if stripped and not stripped.startswith("#"):
                return r
        return None

    def open_columns(self, row: int) -> list[int]:
        """Columns a line at `row` could start at: each block still open above it."""
        columns: list[int] = []
        limit: int | None = None
        r = self.above(row)
        while r is not None:
            line = self.lines[r]
            for col in (self.key_column(line), self.indent(line)):
                if (limit is None or col < limit) and col not in columns:
                    columns.append(col)
            limit = min(columns) if columns else None
            if limit == 0:
                break
            r = self.above(r)
        return sorted(columns, reverse=True)

    def parent_key(self, row: int, column: int) -> str | None:
        """The key of the block that a line at (row, column) sits in (`articles`)."""
        r = self.above(row)
        while r is not None:
            line = self.lines[r]
            m = _KEY_LINE.match(line)
            if m and len(m.group("lead")) < column:
                return m.group("key")
            r = self.above(r)
        return None


def quoted(value: str) -> str:
    """`value` in the quotes that keep it whole, as a suggestion to copy."""
    value = value.strip()
    if '"' not in value:
        return f'"{value}"'
    if "'" not in value:
        return f"'{value}'"
    return '"' + value.replace('"', '\\"') + '"'


def _spaces(n: int) -> str:
    return f"{n} space" if n == 1 else f"{n} spaces"


def _tokens_before(text: str, index: int) -> list[Token]:
    """The scanner's tokens that end at or before `index` (the scanner may stop earlier)."""
    tokens: list[Token] = []
    try:
        for token in yaml_loader().scan(text):
            if token.end_mark.index > index:
                break
            tokens.append(token)
    except YAMLError:
        pass
    return tokens


def _duplicate(src: _Source, exc: YAMLError) -> _Said:
    key = str(exc).split('found duplicate key "', 1)[-1].split('"', 1)[0]
    mark, start = exc.problem_mark, getattr(exc, "context_mark", None)  # type: ignore[attr-defined]
    row, col = mark.line, mark.column
    first = None
    if start is not None:
        pattern = re.compile(rf"^\s*(?:-\s+)*{re.escape(key)}\s*:")
        first = next((r for r in range(start.line, row) if pattern.match(src.line(r))), start.line)
    where = f" (lines {first + 1} and {row + 1})" if first is not None else ""
    if start is not None and src.line(start.line)[: start.column].strip(" ").endswith("-"):
        dash = src.line(start.line)[: start.column].rstrip().rfind("-")
        parent = src.parent_key(start.line, dash + 1)
        entry = "article" if parent == "articles" else "list entry"
        return _Said(
            row + 1,
            col + 1,
            f'"{key}" appears twice in the same {entry}{where}',
            f"if a new {entry} starts on line {row + 1}, begin it with a dash: "
            f"`{' ' * dash}- {src.line(row).strip()}`",
            "duplicate_key",
        )
    return _Said(
        row + 1,
        col + 1,
        f'the key "{key}" appears twice{where}',
        "keep one of them; each key may appear once per block",
        "duplicate_key",
    )


def _early_quote(src: _Source, token: ScalarToken, row: int) -> _Said:
    """A quoted text followed by more text: a quote inside it closed it, or it never closed."""
    start, end = token.start_mark, token.end_mark
    mark = token.style
    if start.line < end.line:  # it runs on to the next quote mark, lines later
        return _Said(
            start.line + 1,
            start.column + 1,
            f"the quote that opens here is not closed on this line, so the text runs on to "
            f"line {end.line + 1}",
            f"end the text with {mark} on line {start.line + 1}",
            "unclosed_quote",
        )
    rest = src.line(row)[start.column :].rstrip()
    # `"The "First" story"`: the text is between the outer quotes; `"First" story`: all of it.
    text = rest[1:-1] if len(rest) > 1 and rest.endswith(mark) else rest
    if mark == '"':
        fix = f'write \\" for a quote inside the text, or put it in single quotes: {quoted(text)}'
    else:
        fix = (
            "write an apostrophe inside single quotes twice (''), or put the text in double "
            f"quotes: {quoted(text)}"
        )
    return _Said(
        end.line + 1,
        end.column,
        "a quote closes before the end of the text, so the rest of the line cannot be read",
        fix,
        "early_quote",
    )


def _indentation(src: _Source, row: int) -> _Said | None:
    line = src.line(row)
    stripped = line.strip()
    here = src.indent(line)
    prev_row = src.above(row)
    if prev_row is None:
        return None
    prev = src.line(prev_row)
    expected = src.key_column(prev)
    if re.match(r"^-[^\s-]", stripped):
        return _Said(
            row + 1,
            here + 1,
            "a dash that starts a list entry needs a space after it",
            f"write `{' ' * here}- {stripped[1:]}`",
            "indentation",
        )
    # A line that lines up with the dashes of a list above, without a dash of its own.
    dashes = []  # of a list still open above (a line further out closes it)
    r: int | None = prev_row
    while r is not None and src.indent(src.line(r)) >= here:
        if src.indent(src.line(r)) == here and src.line(r).lstrip().startswith("- "):
            dashes.append(r)
        r = src.above(r)
    if not stripped.startswith("-") and dashes and here < expected:
        parent = src.parent_key(dashes[0], here + 1)
        entry = "article" if parent == "articles" else "list entry"
        return _Said(
            row + 1,
            here + 1,
            f"this line lines up with the dashes of the list above (`{parent}`) but has no dash",
            f"if a new {entry} starts here, begin it with a dash: `{' ' * here}- {stripped}`; "
            f"otherwise indent it by {_spaces(expected)} like the line above",
            "missing_dash",
        )
    if here < expected:
        columns = [c for c in src.open_columns(row) if c != here]
        could = ", ".join(str(c) for c in columns[:-1])
        could = f"{could} or {columns[-1]} spaces" if could else _spaces(columns[-1])
        return _Said(
            row + 1,
            here + 1,
            f"this line is indented less than the one above ({_spaces(here)}; line "
            f"{prev_row + 1} has {expected})",
            f"start it at {could}, lined up with the lines it belongs with; the fields of "
            "one article all start in the same column",
            "indentation",
        )
    if here > expected:
        return _Said(
            row + 1,
            here + 1,
            f"this line is indented more than the one above ({_spaces(here)}; line "
            f"{prev_row + 1} has {expected})",
            f"start it at {_spaces(expected)} like the line above; only the lines of a text "
            "under `field: |` go further in",
            "indentation",
        )
    return None


def _bare_text(row: int) -> _Said:
    """A line of text with no `field:` where the file expects one (a comment without #)."""
    return _Said(
        row + 1,
        1,
        'this line is not a "field: value" line, so the lines after it cannot be read',
        "if it is a comment, start it with #; the file is made of `field: value` lines",
    )


def _colon(src: _Source, row: int, col: int) -> _Said:
    head = _KEY_LINE.match(src.line(row))
    if head and col == len(head.group("lead")) + len(head.group("key")):
        # A sound `field: value` line read as part of a text above it: a line of text that
        # no field owns (a comment without its #), or this line indented too far.
        start, r = row, src.above(row)
        while r is not None and not _KEY_LINE.match(src.line(r)):
            start, r = r, src.above(r)
        if start != row:
            return _bare_text(start)
        said = _indentation(src, row)
        if said is not None:
            return said
    m = _KEY_VALUE.match(src.line(row))
    if m and re.fullmatch(_TEXT_FIELDS, m.group("key")):
        name, value = m.group("key"), m.group("value")
        hint = f"put the whole text in quotes: {name}: {quoted(value)}"
    else:
        hint = 'put the whole text in double quotes: title: "Labour: a new deal"'
    return _Said(
        row + 1,
        col + 1,
        'this line has ": " inside a text that is not in quotes, so it reads as the start '
        "of another field",
        hint,
        "colon_in_text",
    )


def _starter(src: _Source, row: int, col: int, char: str) -> _Said:
    line = src.line(row)
    m = _KEY_VALUE.match(line)
    if m and len(m.group("lead")) + len(m.group("key")) < col:
        fix = f"write {m.group('key')}: {quoted(m.group('value'))}"
    else:
        fix = "put the whole text in double quotes"
    shown = "a backquote (`)" if char == "`" else f"`{char}`"
    return _Said(
        row + 1,
        col + 1,
        f"a text that starts with {shown} must be in quotes (YAML reads that character as an "
        "instruction)",
        fix,
        "special_character",
    )


def _explain(text: str, exc: YAMLError) -> _Said:
    src = _Source(text)
    message = str(exc)
    problem = getattr(exc, "problem", None) or ""
    context = getattr(exc, "context", None) or ""
    mark = getattr(exc, "problem_mark", None)
    start = getattr(exc, "context_mark", None)
    row = mark.line if mark is not None else 0
    col = mark.column if mark is not None else 0
    if "found duplicate key" in message and mark is not None:
        return _duplicate(src, exc)
    if "'\\t'" in message:
        tab = src.line(row).find("\t")
        return _Said(
            row + 1,
            (tab if tab >= 0 else col) + 1,
            "a tab character is used for indentation",
            "indent with spaces only; set your editor to insert spaces when you press Tab",
            "tab",
        )
    if "mapping values are not allowed" in problem:
        return _colon(src, row, col)
    if "quoted scalar" in context and start is not None:
        if "end of stream" in problem or "document" in problem:
            quote = src.line(start.line)[start.column : start.column + 1]
            return _Said(
                start.line + 1,
                start.column + 1,
                "the quote that opens here is never closed",
                f"end the text with {quote} on this line",
                "unclosed_quote",
            )
        if "escape" in problem:
            return _Said(
                row + 1,
                col + 1,
                "a backslash (\\) inside double quotes starts a special character, and this "
                "one is not known",
                "write \\\\ for a backslash, or put the text in single quotes",
            )
    if "sequence entries are not allowed" in problem:
        return _Said(
            row + 1,
            col + 1,
            'a "- " cannot start a list on the same line as its field',
            "if it is text, put it in quotes; a list starts on the next line, each entry "
            'indented under the field and starting with "- "',
        )
    if "could not find expected ':'" in problem and start is not None:
        line = src.line(start.line)
        glued = re.match(r"^(\s*(?:-\s+)*)(\w+):(\S.*)$", line)
        if glued:
            return _Said(
                start.line + 1,
                start.column + 1,
                "a colon after a field name needs a space after it",
                f"write `{glued.group(1)}{glued.group(2)}: {glued.group(3)}`",
            )
        return _Said(
            start.line + 1,
            start.column + 1,
            'this line is not a "field: value" line, and not part of a text above it',
            "write the field name, a colon and a space before the value; a text that goes "
            "on over several lines is indented under its field",
        )
    if "cannot start any token" in problem or "undefined alias" in problem:
        char = src.line(row)[col : col + 1]
        return _starter(src, row, col, char)
    if "flow" in context and start is not None:  # `{Guatemala City` or `[First] story`
        char = src.line(start.line)[start.column : start.column + 1]
        return _starter(src, start.line, start.column, char)
    if "anchor" in context or "alias" in context or "tag" in context or "block scalar" in context:
        first = start if start is not None else mark
        if first is not None:
            char = src.line(first.line)[first.column : first.column + 1]
            return _starter(src, first.line, first.column, char)
    if "document start" in problem:  # the file's first lines are not `field: value` ones
        first = next(
            (r for r, ln in enumerate(src.lines) if ln.strip() and not ln.lstrip().startswith("#")),
            0,
        )
        return _bare_text(first)
    if "expected <block end>" in problem and mark is not None:
        tokens = _tokens_before(text, mark.index)
        last = tokens[-1] if tokens else None
        if isinstance(last, ScalarToken) and last.style in ('"', "'") and last.end_mark.line == row:
            return _early_quote(src, last, row)
        if isinstance(last, (FlowSequenceEndToken, FlowMappingEndToken)):
            opener = next(
                t
                for t in reversed(tokens)
                if isinstance(t, (FlowSequenceStartToken, FlowMappingStartToken))
            )
            at = opener.start_mark
            return _starter(src, at.line, at.column, src.line(at.line)[at.column])
        said = _indentation(src, row)
        if said is not None:
            return said
    return _Said(
        row + 1,
        col + 1,
        "this line cannot be read as part of the issue",
        "check that it lines up with the lines above it, and put a text that contains "
        "': ' or ' #', or starts with a special character, in double quotes",
    )


def yaml_problem(path: Path, exc: YAMLError, text: str) -> Problem:
    """A YAML syntax error in words, at the line to fix (`text` is what was parsed)."""
    said = _explain(text, exc)
    return Problem(
        message=said.message,
        path=path,
        line=said.line,
        column=said.column,
        hint=said.hint,
        code=said.code,
    )
