"""The studio's form and the issue's YAML file, each made from the other.

Staff edit in a form, but the issue stays the YAML file that git, `check` and `send` use, and a
reviewer reads its diff.  So a save is not "dump the form": the file as it is on disk is loaded
with ruamel.yaml's round-trip loader, only the values the form changed are replaced, and the
document is written back with the file's own indentation.  Comments, key order, quoting style,
block scalars and blank lines of everything else stay as they were, and a one-word change is a
one-line diff.  A new value keeps the quoting style of the one it replaces; ruamel's emitter
quotes whatever YAML would misread (a `#`, a leading `*`, a `: `), so text typed in the form
always reads back as the same text.

Articles carry a `key` ("o3": the fourth article of the file as loaded; anything else: new) so
that moving an article moves its YAML node, with its comments and any keys the form does not
show (an `id:`, an image `width:`).
"""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import io
import re
import threading
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError
from ruamel.yaml.scalarstring import (
    DoubleQuotedScalarString,
    FoldedScalarString,
    LiteralScalarString,
    SingleQuotedScalarString,
)
from ruamel.yaml.util import load_yaml_guess_indent

from .translation_checks import TODO  # the mark `newsletter translate` puts on each text

TEXT_FIELDS = ("subject", "preheader", "date", "number", "language", "intro", "closing")
FLAGS = {"greeting": True, "draft": False}  # the form's booleans, with their defaults
ARTICLE_FIELDS = ("title", "summary", "url", "category", "location", "date", "button")
IMAGE_FIELDS = ("src", "alt")
MARKDOWN_FIELDS = frozenset({"intro", "closing", "summary"})
_NEW_FILE_ORDER = ("subject", "preheader", "date", "number", "language", "greeting", "draft")
_YMD = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_SCALARS = (str, int, float, bool, dt.date, type(None))


class NotAForm(Exception):
    """The YAML cannot be shown as the form (a syntax error, or a shape the form lacks)."""


def _yaml(text: str) -> YAML:
    """A round-trip YAML that writes back in the file's own indentation, never rewrapping."""
    y = YAML(typ="rt")
    y.preserve_quotes = True
    y.allow_duplicate_keys = False
    y.width = 100_000  # never fold a long title onto two lines
    indent, block_seq_indent = 4, 2
    if text.strip():
        with contextlib.suppress(YAMLError):
            _, indent, block_seq_indent = load_yaml_guess_indent(text)
    y.indent(mapping=2, sequence=indent or 4, offset=block_seq_indent or 0)
    return y


_PARSED: dict[str, tuple[YAML, CommentedMap]] = {}  # the last texts loaded (see _load)
_DUMPING = threading.Lock()


def _load(text: str) -> tuple[YAML, CommentedMap]:
    """The text's document, to change freely.  The page sends the whole form on every pause
    in typing, always against the same file: parsing it (twice, with the indentation guess)
    costs ten times a copy of the parsed document, so the last few are kept."""
    if text in _PARSED:
        y, data = _PARSED[text]
        return y, copy.deepcopy(data)
    y = _yaml(text)
    if not text.strip():
        return y, CommentedMap()
    try:
        data = y.load(text)
    except YAMLError as exc:
        raise NotAForm(f"the file is not valid YAML: {exc}") from None
    if data is None:
        return y, CommentedMap()
    if not isinstance(data, CommentedMap):
        raise NotAForm("the file is not a set of `key: value` lines")
    while len(_PARSED) >= 4:
        _PARSED.pop(next(iter(_PARSED)))
    _PARSED[text] = (y, data)
    return y, copy.deepcopy(data)


def _text(value: Any) -> str:
    """A scalar as the form shows it."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def _scalar(data: Any, key: str, where: str) -> str:
    value = data.get(key)
    if not isinstance(value, _SCALARS):
        raise NotAForm(f"{where}{key} holds a list or a group of values; the form has one text")
    return _text(value)


def form_of(text: str) -> dict[str, Any]:
    """The form's values for an issue file's text (see the studio contract); NotAForm if the
    file cannot be shown as a form."""
    _, data = _load(text)
    form: dict[str, Any] = {name: _scalar(data, name, "") for name in TEXT_FIELDS}
    for name, default in FLAGS.items():
        value = data.get(name, default)
        form[name] = value if isinstance(value, bool) else default
    articles = data.get("articles")
    if articles is None:
        articles = []
    if not isinstance(articles, list):
        raise NotAForm("articles is not a list of articles")
    form["articles"] = []
    for i, art in enumerate(articles):
        where = f"articles[{i + 1}]."
        if not isinstance(art, dict):
            raise NotAForm(f"articles[{i + 1}] is not a set of `key: value` lines")
        item: dict[str, Any] = {"key": f"o{i}"}
        item.update({name: _scalar(art, name, where) for name in ARTICLE_FIELDS})
        image = art.get("image")
        if image is None:
            image = {}
        if not isinstance(image, dict):
            raise NotAForm(f"{where}image is not a set of `src:` and `alt:` lines")
        item["image"] = {name: _scalar(image, name, where + "image.") for name in IMAGE_FIELDS}
        form["articles"].append(item)
    return form


def _typed(name: str, value: str) -> Any:
    """The YAML value for text typed in the form: numbers and dates as YAML writes them."""
    if name == "number" and value.strip().isdigit():
        return int(value.strip())
    if name == "date" and _YMD.match(value.strip()):
        try:
            return dt.date.fromisoformat(value.strip())
        except ValueError:
            return value  # 2019-02-30 stays text, and `check` says why
    return value


def _styled(old: Any, new: Any, markdown: bool) -> Any:
    """`new` in the quoting style of `old` (a block for Markdown with line breaks)."""
    if not isinstance(new, str):
        return new
    if isinstance(old, (LiteralScalarString, FoldedScalarString)) or (markdown and "\n" in new):
        return LiteralScalarString(new.rstrip("\n") + "\n" if new.strip() else new)
    if "\n" in new:
        return DoubleQuotedScalarString(new)
    if isinstance(old, DoubleQuotedScalarString):
        return DoubleQuotedScalarString(new)
    if isinstance(old, SingleQuotedScalarString):
        return SingleQuotedScalarString(new)
    return new  # plain: ruamel quotes it if YAML would misread it


def _set(data: CommentedMap, name: str, value: str, *, markdown: bool = False) -> None:
    """Set one text field, touching the file only if the form changed it."""
    old = data.get(name)
    if name in data and _text(old) == value:
        return
    if not value.strip():
        if name in data:
            del data[name]
        return
    new = _styled(old, _typed(name, value), markdown)
    if name in data:
        data[name] = new
        _drop_todo(data, name)
    else:
        _insert(data, name, new)


def _drop_todo(data: CommentedMap, name: str) -> None:
    """A text changed in the form is a text translated: its `# todo: translate` mark goes
    (in a text editor the translator deletes it; the form has no comments to delete)."""
    entry = data.ca.items.get(name)
    if not entry:
        return
    token = entry[2] if len(entry) > 2 else None
    if token is not None and TODO.match(token.value.lstrip()):
        rest = token.value.split("\n", 1)[1] if "\n" in token.value else ""
        if rest:  # blank lines or comment lines after it stay
            token.value, token.column = "\n" + rest, 0
        else:
            entry[2] = None
    if len(entry) > 3 and isinstance(entry[3], list):  # after a block scalar's `|`
        entry[3] = [c for c in entry[3] if not TODO.match(str(c).lstrip())] or None


def _insert(data: CommentedMap, name: str, value: Any) -> None:
    """A new top-level key goes where a person would put it, not at the end of the file."""
    order = [*_NEW_FILE_ORDER, "intro", "articles", "closing"]
    if name in order:
        later = [k for k in order[order.index(name) + 1 :] if k in data]
        if later:
            data.insert(list(data.keys()).index(later[0]), name, value)
            return
    data[name] = value


def _set_flag(data: CommentedMap, name: str, value: Any) -> None:
    if not isinstance(value, bool):
        return
    if name in data:
        if data[name] != value or not isinstance(data[name], bool):
            data[name] = value
    elif value != FLAGS[name]:
        _insert(data, name, value)


def _article(node: CommentedMap, item: dict[str, Any]) -> CommentedMap:
    for name in ARTICLE_FIELDS:
        _set(node, name, str(item.get(name, "")), markdown=name in MARKDOWN_FIELDS)
    image = item.get("image") or {}
    src, alt = str(image.get("src", "")), str(image.get("alt", ""))
    old = node.get("image")
    if not src.strip() and not alt.strip():
        if isinstance(old, CommentedMap) and any(k not in IMAGE_FIELDS for k in old):
            _set(old, "src", "")
            _set(old, "alt", "")
        elif "image" in node:
            del node["image"]
        return node
    if not isinstance(old, CommentedMap):
        old = CommentedMap()
        keys = list(node.keys())
        after = [k for k in ("category", "location", "date", "button") if k in node]
        at = keys.index(after[0]) if after else len(keys)
        node.insert(at, "image", old)
    _set(old, "src", src)
    _set(old, "alt", alt)
    return node


def _articles(data: CommentedMap, items: list[dict[str, Any]]) -> None:
    old = data.get("articles")
    old_list: list[Any] = list(old) if isinstance(old, list) else []
    new: list[Any] = []
    used: set[int] = set()
    for item in items:
        key = str(item.get("key", ""))
        node: CommentedMap | None = None
        if key.startswith("o") and key[1:].isdigit():
            index = int(key[1:])
            if index < len(old_list) and index not in used and isinstance(old_list[index], dict):
                node = old_list[index]
                used.add(index)
        new.append(_article(node if node is not None else CommentedMap(), item))
    if isinstance(old, CommentedSeq):
        if [id(n) for n in new] == [id(n) for n in old_list]:
            return  # same articles in the same order: leave the sequence (and its comments)
        comments = {id(old_list[i]): c for i, c in old.ca.items.items() if i < len(old_list)}
        old.clear()
        old.ca.items.clear()
        for i, node in enumerate(new):
            old.append(node)
            if id(node) in comments:
                old.ca.items[i] = comments[id(node)]
    elif new or "articles" in data:
        seq = CommentedSeq(new)
        if "articles" in data:
            data["articles"] = seq
        else:
            _insert(data, "articles", seq)


def apply_form(text: str, form: dict[str, Any]) -> str:
    """The file's text with the form's values in it (everything the form did not change kept
    byte for byte).  NotAForm if the text cannot take a form (then the text editor is used)."""
    y, data = _load(text)
    for name in TEXT_FIELDS:
        if name in form:
            _set(data, name, str(form[name] or ""), markdown=name in MARKDOWN_FIELDS)
    for name in FLAGS:
        if name in form:
            _set_flag(data, name, form[name])
    if isinstance(form.get("articles"), list):
        _articles(data, [a for a in form["articles"] if isinstance(a, dict)])
    out = io.StringIO()
    with _DUMPING:  # a YAML instance keeps its emitter while dumping; two at once would mix
        y.dump(data, out)
    return out.getvalue()


def skeleton(month: dt.date) -> str:
    """The commented skeleton of a month's issue (`newsletter new`, the studio's first run)."""
    from importlib import resources

    text = resources.files("newsletter").joinpath("skeleton.yaml").read_text("utf-8")
    return text.format(
        month_name=f"{month:%B}", year=month.year, stem=f"{month:%Y-%m}", date=f"{month:%Y-%m}-28"
    )
