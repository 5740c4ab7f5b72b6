"""Most issue files read with libyaml (PyYAML's C parser), 5-10x faster than ruamel.yaml.

ruamel.yaml's round-trip loader (issue_yaml.py) is pure Python: reading an issue was a
third of a warm build.  What an issue needs from it is three things: the values, where each
key and list item sits, and the comments that cut a plain text short.  libyaml's events give
the first two directly (with marks), and the third is found in the text around the values.

This reader answers only when it is sure to give exactly what the round-trip loader gives,
and says None otherwise, so that ruamel.yaml reads the file as before (and words any error):

* YAML 1.2 as ruamel.yaml reads it: `yes`/`no` are text, dates stay text (pydantic reads
  them), decimal whole numbers are numbers; any other number form (floats, 0x, 0o, 1_000,
  leading zeros), tags, anchors and aliases, merge keys, flow collections (`[a, b]`),
  directives, several documents, tabs, line breaks other than \\n, a duplicate key or an
  empty list item: None;
* an end-of-line comment is accounted for only where ruamel.yaml keeps it after a value
  (`key: value  # comment`, `key:  # comment` with the value below, `- item  # comment`),
  giving the same :class:`~newsletter.issue_yaml.Comment`; any other: None;
* any error of libyaml: None (ruamel.yaml finds and words it).

tests/test_issue_yaml_fast.py compares the two readers on the sample, the skeleton and a few
hundred variants of them.
"""

from __future__ import annotations

import bisect
import importlib
import re
from typing import Any

from .errors import format_path

try:  # PyYAML built with libyaml; without it, ruamel.yaml reads every file
    _yaml: Any = importlib.import_module("yaml")
    _CParser: Any = importlib.import_module("yaml._yaml").CParser
except ImportError:  # pragma: no cover - PyYAML is a dependency, libyaml is in its wheels
    _yaml = _CParser = None

# ruamel.yaml's YAML 1.2 resolvers (ruamel/yaml/resolver.py) for plain scalars.
_NULL = {"", "~", "null", "Null", "NULL"}
_BOOL = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}
_FLOAT = re.compile(
    r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |[-+]?\.[0-9_]+(?:[eE][-+][0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.X,
)
_INT = re.compile(
    r"""^(?:[-+]?0b[0-1_]+
    |[-+]?0o?[0-7_]+
    |[-+]?[0-9_]+
    |[-+]?0x[0-9a-fA-F_]+)$""",
    re.X,
)
_TIMESTAMP = re.compile(
    r"""^(?:[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]
    |[0-9][0-9][0-9][0-9] -[0-9][0-9]? -[0-9][0-9]?
    (?:[Tt]|[ \t]+)[0-9][0-9]?
    :[0-9][0-9] :[0-9][0-9] (?:\.[0-9]*)?
    (?:[ \t]*(?:Z|[-+][0-9][0-9]?(?::[0-9][0-9])?))?)$""",
    re.X,
)
_DECIMAL = re.compile(r"-?(?:0|[1-9][0-9]*)")
# Text this reader leaves to ruamel.yaml: tabs, line breaks YAML 1.1 and 1.2 read differently,
# a byte-order mark, a directive (%YAML), a flow collection, a tag, an anchor or alias.
_NOT_HERE = re.compile(r"[\t\r\x85\u2028\u2029\ufeff]|^%", re.M)
_EOL_COMMENT = re.compile(r"[ ]#")


class _Unsure(Exception):
    """Something this reader does not do exactly as ruamel.yaml: it reads the file."""


def fast_read(
    text: str, max_nodes: int
) -> tuple[dict[str, Any], dict[str, tuple[int, int]], list[tuple[str, int, int, str, Any]]] | None:
    """(values, positions, comments as (field, line, column, text, value)), or None.

    ``values`` are plain dicts, lists, str, int, bool and None, as issue_yaml.plain() makes
    them; positions are 1-based, as record_positions() records them.
    """
    if _CParser is None or _NOT_HERE.search(text):
        return None
    reader = _Reader(text, max_nodes)
    try:
        values = reader.document()
        comments = reader.comments()
    except (_Unsure, RecursionError):
        return None
    except _yaml.YAMLError:
        return None
    return values, reader.positions, comments


def _plain(value: str) -> Any:
    """A plain scalar's value as ruamel.yaml's round-trip loader (with dates as text) makes it."""
    if value in _NULL:
        return None
    if value in _BOOL:
        return _BOOL[value]
    first = value[0]
    if first in "-+0123456789.":
        if _DECIMAL.fullmatch(value):
            return int(value)
        if _FLOAT.match(value) or _INT.match(value):
            raise _Unsure  # floats, 0x, 0o, 1_000, 007, +5: ruamel.yaml's own number types
        return value  # a date (timestamp), which stays text, or text that starts with a digit
    if value in ("<<", "="):
        raise _Unsure  # merge key, value key
    return value


class _Reader:
    def __init__(self, text: str, max_nodes: int) -> None:
        self.text = text
        self.parser = _CParser(text)
        self.events = _yaml.events
        self.max_nodes = max_nodes
        self.positions: dict[str, tuple[int, int]] = {}
        self.spans: list[tuple[int, int]] = []  # every scalar, in the order of the text
        # (index after which a comment would start, field, value, plain text or None: a key)
        self.after: list[tuple[int, str, Any, bool | None]] = []

    def _next(self) -> Any:
        return self.parser.get_event()

    def document(self) -> dict[str, Any]:
        ev = self.events
        if not isinstance(self._next(), ev.StreamStartEvent):
            raise _Unsure
        start = self._next()
        if not isinstance(start, ev.DocumentStartEvent) or start.version or start.tags:
            raise _Unsure
        root = self._next()
        if not isinstance(root, ev.MappingStartEvent):
            raise _Unsure  # not a mapping: ruamel.yaml reads it and issue.py words it
        values = self._mapping(root, "")
        if not isinstance(self._next(), ev.DocumentEndEvent):
            raise _Unsure
        if not isinstance(self._next(), ev.StreamEndEvent):
            raise _Unsure  # a second document
        return values

    def _record(self, path: str, mark: Any) -> None:
        if len(self.positions) >= self.max_nodes:
            raise _Unsure  # record_positions() says how many values were too many
        self.positions[path] = (mark.line + 1, mark.column + 1)

    def _node(self, event: Any, path: str) -> Any:
        ev = self.events
        if isinstance(event, ev.ScalarEvent):
            return self._scalar(event)
        if isinstance(event, ev.MappingStartEvent):
            return self._mapping(event, path)
        if isinstance(event, ev.SequenceStartEvent):
            return self._sequence(event, path)
        raise _Unsure  # an alias

    def _scalar(self, event: Any) -> Any:
        if event.tag is not None or event.anchor is not None:
            raise _Unsure
        self.spans.append((event.start_mark.index, event.end_mark.index))
        if event.style:  # quoted or block: text
            return event.value
        return _plain(event.value)

    def _mapping(self, event: Any, prefix: str) -> dict[str, Any]:
        if event.tag is not None or event.anchor is not None or event.flow_style:
            raise _Unsure
        out: dict[str, Any] = {}
        while True:
            key_event = self._next()
            if isinstance(key_event, self.events.MappingEndEvent):
                return out
            if not isinstance(key_event, self.events.ScalarEvent):
                raise _Unsure  # a complex key
            key = self._scalar(key_event)
            if key is None or isinstance(key, bool):
                raise _Unsure
            name = str(key)
            if name in out:
                raise _Unsure  # ruamel.yaml refuses duplicate keys, in its words
            path = f"{prefix}.{name}" if prefix else name
            self._record(path, key_event.start_mark)
            value_event = self._next()
            out[name] = value = self._node(value_event, path)
            if isinstance(value_event, self.events.ScalarEvent):
                self._remember(value_event, path, value)
            else:  # `key:  # comment` above a list or a group: ruamel.yaml keeps no Comment
                self.after.append((key_event.end_mark.index, path, value, None))

    def _sequence(self, event: Any, prefix: str) -> list[Any]:
        if event.tag is not None or event.anchor is not None or event.flow_style:
            raise _Unsure
        out: list[Any] = []
        while True:
            item = self._next()
            if isinstance(item, self.events.SequenceEndEvent):
                return out
            if isinstance(item, self.events.ScalarEvent) and not item.style and not item.value:
                raise _Unsure  # an empty item (`- ` alone)
            path = prefix + format_path((len(out),))
            self._record(path, item.start_mark)
            out.append(value := self._node(item, path))
            if isinstance(item, self.events.ScalarEvent):
                self._remember(item, path, value)

    def _remember(self, event: Any, path: str, value: Any) -> None:
        """Where a comment after this scalar would start, for comments()."""
        plain_text = not event.style and (value is None or type(value) is str)
        self.after.append((event.end_mark.index, path, value, plain_text))

    def comments(self) -> list[tuple[str, int, int, str, Any]]:
        """The end-of-line comments after plain values; _Unsure for any other."""
        text = self.text
        found: dict[int, tuple[str, Any, bool]] = {}  # where the `#` is -> the value before
        for end, path, value, plain_text in self.after:
            line_end = text.find("\n", end)
            line_end = len(text) if line_end < 0 else line_end
            rest = text[end:line_end]
            if plain_text is None:  # after a key: its colon first
                if not rest.lstrip(" ").startswith(":"):
                    continue
                rest = rest.lstrip(" ")[1:]
                end = line_end - len(rest)
            stripped = rest.lstrip(" ")
            if stripped.startswith("#") and stripped != rest:
                found[end + len(rest) - len(stripped)] = (path, value, bool(plain_text))
        starts = [start for start, _ in self.spans]
        out = []
        comment_end = -1  # the end of the line of the last comment found
        for match in _EOL_COMMENT.finditer(text):
            at = match.start() + 1
            if at < comment_end:
                continue  # a `#` inside a comment
            line_start = text.rfind("\n", 0, at) + 1
            line_end = text.find("\n", at)
            line_end = len(text) if line_end < 0 else line_end
            inside = bisect.bisect_right(starts, at) - 1
            if inside >= 0 and at < self.spans[inside][1]:
                continue  # a `#` in a quoted or block text
            comment_end = line_end
            before = text[line_start:at].lstrip(" ")
            if not before or before.startswith("#"):
                continue  # a comment on a line of its own: ruamel.yaml keeps no Comment
            if at not in found:
                raise _Unsure  # after a key whose value is below, a flow collection, ...
            path, value, plain_text = found[at]
            if plain_text:
                comment = text[at:line_end].rstrip()
                line = text.count("\n", 0, at) + 1
                out.append((path, line, at - line_start + 1, comment, value))
        return out
