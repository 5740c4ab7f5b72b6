"""The YAML side of reading an issue: the loader, where every value sits, and syntax errors.

ruamel.yaml's round-trip loader is used because it records the line and column of each key
and list item, which is what lets every later message point at a line.  Dates stay text
(pydantic parses them and names the field of a bad one), duplicate keys are refused, and a
syntax error is put in words staff can act on (a tab, a key written twice) at its line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.constructor import RoundTripConstructor
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from .errors import Problem

MAX_NODES = 20_000

Position = tuple[int, int]  # 1-based line, column


class _Constructor(RoundTripConstructor):
    """Dates stay text here: pydantic parses them and reports a bad one with its field."""


_Constructor.add_constructor("tag:yaml.org,2002:timestamp", RoundTripConstructor.construct_yaml_str)


def yaml_loader() -> YAML:
    y = YAML(typ="rt")
    y.Constructor = _Constructor
    y.allow_duplicate_keys = False
    return y


class TooManyNodes(Exception):
    pass


def record_positions(node: Any, prefix: str, out: dict[str, Position]) -> None:
    """Record 1-based (line, column) of every key's value and every list item.

    YAML aliases (`*name`) can make a small file expand exponentially; an issue has a
    few hundred values, so past MAX_NODES we stop instead of hanging.
    """
    if len(out) > MAX_NODES:
        raise TooManyNodes
    if isinstance(node, CommentedMap):
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
            path = f"{prefix}[{i}]"
            try:
                line, col = node.lc.item(i)
            except (KeyError, TypeError, AttributeError, IndexError):
                continue
            out[path] = (line + 1, col + 1)
            record_positions(item, path, out)


def plain(node: Any) -> Any:
    """Plain dicts and lists for pydantic (ruamel's types carry comments and positions)."""
    if isinstance(node, dict):
        return {str(k) if not isinstance(k, str) else k: plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [plain(v) for v in node]
    if hasattr(node, "value") and type(node).__name__.endswith("Int"):
        return int(node)
    if isinstance(node, str):
        return str(node)
    return node


def yaml_problem(path: Path, exc: YAMLError) -> Problem:
    """A YAML syntax error at its line and column, in words (a tab, a duplicate key)."""
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
