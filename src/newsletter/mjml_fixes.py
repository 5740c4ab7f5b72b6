"""Where mjml-python's HTML differs from the official MJML compiler's, put right around it.

We compile with mjml-python (MRML, in Rust: fast, no Node.js).  The official compiler
(MJML 5) is the reference: tests/test_mjml_reference.py compiles the theme with both and
compares what readers and Outlook see.  Three differences mattered; each is corrected
here, before or after compiling, rather than in a fork of mjml-python:

1. MRML cannot read a unitless ``0`` in a padding (``padding="0 24px 20px"``): it then
   counts no padding at all, so every width it derives from a padding is too large.  The
   one that showed is mj-divider's Outlook-only table, written 600px wide inside a 552px
   cell (Outlook for Windows can widen the whole email to fit it); an image wider than
   its padded cell would get the same wrong width.  :func:`prepare` writes ``0px``.
2. MRML drops mj-button's ``title`` (the hover tip and the name screen readers give each
   "Read more" button).  :func:`prepare` marks every button that has a title with a
   class; :func:`finish` puts the title on that button's link and removes the class.
   (Only a title written on the mj-button itself: not one from mj-attributes or mj-class.)
3. MRML writes a ``vertical-align`` attribute on the button's cell, which is not HTML
   (MJML uses the value only for the inner cell's ``valign``).  :func:`finish` drops it.

Both steps are a few regular expressions over the source and the HTML (well under a
millisecond for an issue), so building stays fast.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field

MARKER = "mjfix-title-"

# A padding attribute's name and quoted value (starting with the literal keeps it fast;
# _px_zeros checks what precedes it). Text staff write never holds a bare quote.
_PADDING = re.compile(r"""padding(?:-(?:top|right|bottom|left))?\s*=\s*("[^"]*"|'[^']*')""")
_UNITLESS_ZERO = re.compile(r"(?<![\w.])[+-]?0*\.?0+(?![\w.%])")
_BODY = re.compile(r"<mj-body\b")
_BUTTON = re.compile(r"<mj-button\b")
# One mj-* start tag; quoted values may hold ">".
_MJ_TAG = re.compile(r"""<mj-[a-z-]+(?:\s+[\w:-]+\s*=\s*(?:"[^"]*"|'[^']*'))*\s*/?>""")
_ATTR = re.compile(r"""\s([\w:-]+)\s*=\s*(?:"([^"]*)"|'([^']*)')""")
_CSS_CLASS = re.compile(r"""(\scss-class\s*=\s*)(["'])(.*?)\2""")
_TAG_END = re.compile(r"\s*/?>$")

# In the HTML a `name="` can only be an attribute: text and style never hold a bare quote.
_STRAY_VALIGN = re.compile(r' vertical-align="[^"]*"')
_MARKED = re.compile(MARKER + r"(\d+)\b")
_BUTTON_TAG = re.compile(r'<(?:a|p)\b(?:\s+href="[^"]*")?')


@dataclass(frozen=True)
class Prepared:
    """The MJML to hand to mjml-python, and the button titles :func:`finish` puts back."""

    source: str
    titles: list[str] = field(default_factory=list)


def _attributes(tag: str) -> dict[str, str]:
    return {m[1]: html.unescape(m[2] if m[2] is not None else m[3]) for m in _ATTR.finditer(tag)}


def _px_zeros(m: re.Match[str]) -> str:
    """`padding="0 24px"` -> `padding="0px 24px"` (also inner-padding, padding-left...)."""
    before = m.string[max(0, m.start() - 7) : m.start()]
    is_attribute = before[-1:].isspace() or (before.endswith("inner-") and before[:1].isspace())
    if not is_attribute or "0" not in m[1]:
        return m[0]
    return m[0][: m.start(1) - m.start()] + _UNITLESS_ZERO.sub("0px", m[1])


def _mark_button(tag: str, index: int) -> str:
    """Add the marker class `mjfix-title-<index>` to an mj-button start tag."""
    marker = f"{MARKER}{index}"
    found = _CSS_CLASS.search(tag)
    if found:
        value = f"{found[3]} {marker}".strip()
        return tag[: found.start()] + f"{found[1]}{found[2]}{value}{found[2]}" + tag[found.end() :]
    end = _TAG_END.search(tag)
    cut = end.start() if end else len(tag) - 1
    return f'{tag[:cut]} css-class="{marker}"{tag[cut:]}'


def prepare(source: str) -> Prepared:
    """The MJML with paddings MRML can read and each titled mj-button marked (see module doc)."""
    source = _PADDING.sub(_px_zeros, source)
    body = _BODY.search(source)
    titles: list[str] = []
    parts: list[str] = []
    pos = 0
    for m in _BUTTON.finditer(source, body.start() if body else len(source)):
        tag = _MJ_TAG.match(source, m.start())
        title = _attributes(tag[0]).get("title") if tag else None
        if tag and title:
            parts.append(source[pos : tag.start()] + _mark_button(tag[0], len(titles)))
            pos = tag.end()
            titles.append(title)
    parts.append(source[pos:])
    return Prepared(source="".join(parts), titles=titles)


def finish(compiled: str, prepared: Prepared) -> str:
    """mjml-python's HTML with the button titles back and no stray `vertical-align`."""
    out = _STRAY_VALIGN.sub("", compiled)
    if not prepared.titles:
        return out
    parts: list[str] = []
    pos = 0
    for m in _MARKED.finditer(out):
        start, end = out.rfind(' class="', pos, m.start()), out.find('"', m.end())
        index = int(m[1])
        in_class = start >= 0 and not any(c in out[start + 8 : m.start()] for c in '"<>')
        if not in_class or end < 0 or index >= len(prepared.titles):
            continue  # the word in text, not our marker
        classes = " ".join(c for c in out[start + 8 : end].split() if c != m[0])
        parts.append(out[pos:start] + (f' class="{classes}"' if classes else ""))
        pos = end + 1
        button = _BUTTON_TAG.search(out, pos)
        if button is None:
            continue
        title = html.escape(prepared.titles[index], quote=True)
        parts.append(out[pos : button.end()] + f' title="{title}"')
        pos = button.end()
    parts.append(out[pos:])
    return "".join(parts)
