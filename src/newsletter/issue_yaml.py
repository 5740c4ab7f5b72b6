"""The YAML side of reading an issue: the loader, where every value sits, and syntax errors.

ruamel.yaml's round-trip loader is used because it records the line and column of each key
and list item, which is what lets every later message point at a line, and because it keeps
comments: an unquoted `#data4all` at the end of a title is a comment to YAML, and
:func:`trailing_comments` finds it so that `check` can say the text was cut.  Quotes are
kept (``preserve_quotes``) to tell a quoted value, whose comment is deliberate, from a plain
one.  Dates stay text (pydantic parses them and names the field of a bad one), duplicate keys
are refused, and a syntax error is put in words staff can act on at its line
(:func:`yaml_problem`): ruamel's own wording ("expected <block end>, but found '?'") is
never shown.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.constructor import RoundTripConstructor

from .errors import format_path

MAX_NODES = 20_000

Position = tuple[int, int]  # 1-based line, column


class _Constructor(RoundTripConstructor):
    """Dates stay text here: pydantic parses them and reports a bad one with its field."""


_Constructor.add_constructor("tag:yaml.org,2002:timestamp", RoundTripConstructor.construct_yaml_str)


class _FastDocument(CommentedMap):
    """An issue read by issue_yaml_fast: its values, with the positions and comments
    record_positions(), plain() and trailing_comments() would have found in ruamel's."""

    fast_values: dict[str, Any]
    fast_positions: dict[str, Position]
    fast_comments: list[Comment]


class _IssueYAML(YAML):
    """ruamel.yaml's round-trip loader, whose load() first tries libyaml (issue_yaml_fast)."""

    def load(self, stream: Any) -> Any:
        if isinstance(stream, str):
            from .issue_yaml_fast import fast_read

            found = fast_read(stream, MAX_NODES)
            if found is not None:
                values, positions, comments = found
                doc = _FastDocument(values)
                doc.fast_values = values
                doc.fast_positions = positions
                doc.fast_comments = [Comment(*c) for c in comments]
                return doc
        return super().load(stream)


def yaml_loader() -> YAML:
    y = _IssueYAML(typ="rt")
    y.Constructor = _Constructor
    y.allow_duplicate_keys = False
    y.preserve_quotes = True  # a quoted value is a str subclass: see trailing_comments
    return y


class TooManyNodes(Exception):
    pass


def item_path(prefix: str, index: int) -> str:
    """`articles` and 0 -> `articles[1]`: list positions count from 1 (errors.format_path)."""
    return prefix + format_path((index,))


def record_positions(node: Any, prefix: str, out: dict[str, Position]) -> None:
    """Record 1-based (line, column) of every key's value and every list item.

    YAML aliases (`*name`) can make a small file expand exponentially; an issue has a
    few hundred values, so past MAX_NODES we stop instead of hanging.
    """
    if len(out) > MAX_NODES:
        raise TooManyNodes
    if isinstance(node, _FastDocument):
        out.update((f"{prefix}.{k}" if prefix else k, v) for k, v in node.fast_positions.items())
    elif isinstance(node, CommentedMap):
        for key in node:
            path = f"{prefix}.{key}" if prefix else str(key)
            try:
                line, col = node.lc.key(key)
            except (KeyError, TypeError, AttributeError):
                continue
            out[path] = (line + 1, col + 1)
            record_positions(node[key], path, out)
    elif isinstance(node, CommentedSeq):
        for i, item in enumerate(node):
            path = item_path(prefix, i)
            try:
                line, col = node.lc.item(i)
            except (KeyError, TypeError, AttributeError, IndexError):
                continue
            out[path] = (line + 1, col + 1)
            record_positions(item, path, out)


def plain(node: Any) -> Any:
    """Plain dicts and lists for pydantic (ruamel's types carry comments and positions)."""
    if isinstance(node, _FastDocument):
        node = node.fast_values  # plain already: copied below, as the caller may change it
    if isinstance(node, dict):
        return {str(k): plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [plain(v) for v in node]
    if hasattr(node, "value") and type(node).__name__.endswith("Int"):
        return int(node)
    if isinstance(node, str):
        return str(node)
    return node


@dataclass(frozen=True)
class Comment:
    """A comment after an unquoted value, on the same line: YAML cut the text there."""

    field: str  # e.g. articles[2].title
    line: int  # 1-based, where the `#` is
    column: int
    text: str  # the comment, `#` included, e.g. "#data4all"
    value: str | None  # what YAML kept of the value (None: nothing)


def trailing_comments(node: Any, prefix: str = "") -> list[Comment]:
    """Every comment that follows a plain (unquoted) value on the value's own line.

    ruamel keeps such a comment with the key or item it follows; one that starts on a later
    line is kept there too, but its text then begins with a line break.
    """
    out: list[Comment] = []
    if isinstance(node, _FastDocument):
        return [c for c in node.fast_comments if c.field.startswith(prefix)]
    if isinstance(node, CommentedMap):
        for key, value in node.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            out += _comment_after(node.ca.items.get(key), 2, path, value)
            out += trailing_comments(value, path)
    elif isinstance(node, CommentedSeq):
        for i, value in enumerate(node):
            path = item_path(prefix, i)
            out += _comment_after(node.ca.items.get(i), 0, path, value)
            out += trailing_comments(value, path)
    return out


def _comment_after(slots: Any, index: int, path: str, value: Any) -> list[Comment]:
    token = slots[index] if isinstance(slots, list) and len(slots) > index else None
    text = getattr(token, "value", None)
    # Only plain text is cut by a comment: a quoted value (a str subclass here) is whole.
    if token is None or not isinstance(text, str) or not text.startswith("#"):
        return []
    if value is not None and type(value) is not str:
        return []
    mark = token.start_mark
    return [Comment(path, mark.line + 1, mark.column + 1, text.split("\n", 1)[0].rstrip(), value)]
