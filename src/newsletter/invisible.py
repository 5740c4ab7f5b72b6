"""Invisible characters in an issue file, found at their line, column and field.

Characters an editor does not show still reach the email: C0/C1 controls (Word's
Shift+Enter is U+000B) and Unicode's line and paragraph separators.  In a subject they
break the mail header; in any text they are invisible debris.  YAML reads U+0085, U+2028
and U+2029 as line breaks (which would shift every later line number), and a double-quoted
"\\v", "\\L" or "\\u2028" produces them with no odd byte in the file: so read_issue parses a
copy with each raw one made a space (same offsets), and both the file and the values are
scanned here.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ruamel.yaml.error import YAMLError
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from .errors import Problem
from .issue_yaml import item_path, yaml_loader

MAX_SHOWN = 20  # invisible characters listed one by one

INVISIBLE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029]")
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
                walk(item, item_path(path, i))

    try:
        root = yaml_loader().compose(clean)
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
        if INVISIBLE.fullmatch(char):
            yield m.start(), char, m.group()


def invisible_characters(path: Path, text: str, clean: str) -> list[Problem]:
    """Every invisible character, raw or escaped, at its line and column and in its field.

    `text` is the file as read, `clean` the same with every raw invisible character made a
    space (what was parsed).
    """
    scalars = _scalars(clean)
    raw: list[tuple[InvisibleHit, str | None]] = []
    escaped: list[tuple[InvisibleHit, str | None]] = []
    total = 0  # a pasted document can hold thousands: list the first ones, count the rest
    for m in INVISIBLE.finditer(text):
        total += 1
        if len(raw) < MAX_SHOWN:
            field = next((f for s, e, f, _ in scalars if s <= m.start() < e), None)
            raw.append(((m.start(), m.group(), None), field))
    for start, end, field, node in scalars:
        if node.style == '"' and INVISIBLE.search(str(node.value)):
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


def has_invisible(value: Any) -> bool:
    """Whether any key or text in the parsed data holds one (a double-quoted escape made it)."""
    if isinstance(value, str):
        return INVISIBLE.search(value) is not None
    if isinstance(value, dict):
        return any(has_invisible(k) or has_invisible(v) for k, v in value.items())
    if isinstance(value, list):
        return any(has_invisible(v) for v in value)
    return False
