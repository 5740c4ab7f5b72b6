"""Markdown (intro, summaries, closing) to email HTML and to plain text.

Raw HTML is disabled: staff text is never live markup, so `<script>` or
`<b onclick=…>` written in YAML comes out escaped.  Link validation (markdown-it's
hook, made stricter by :func:`refused_link`) leaves a `javascript:`, `data:`,
`vbscript:` or `file:` address, however disguised, and a protocol-relative
`//host` address as plain text; `check` names each one (:func:`parse_all_links`).
The text rendering walks the same tokens so both parts say the same thing;
links go on their own lines after the paragraph that cites them
(``text [1]`` … ``[1] https://…``), so that no mail client wraps or breaks a URL.
"""

from __future__ import annotations

import html
import re
import textwrap
from functools import lru_cache
from urllib.parse import unquote

from markdown_it import MarkdownIt
from markdown_it.token import Token

WIDTH = 72


_REFUSED_SCHEMES = {"javascript", "vbscript", "data", "file"}
_SCHEME = re.compile(r"^([a-z][a-z0-9+.-]*):")
# Browsers skip these anywhere in an address (tabs, line breaks) or around it (controls, spaces).
_SKIPPED = re.compile(r"[\x00-\x20\x7f-\x9f\u2028\u2029]")


def refused_link(url: str) -> str | None:
    """Why `url` may not be a link in an email: "protocol-relative", a scheme, or None.

    markdown-it's own check refuses `javascript:`, `vbscript:`, `file:` and most `data:`
    addresses as written.  This one first decodes entities and %-escapes until the address
    stops changing and drops what browsers skip (tabs, line breaks, leading controls and
    spaces), so disguised forms such as `java<tab>script:`, `jav%09ascript:` or
    `&#106;avascript:` are refused wherever they hide, and so is `data:image/…`.  An address
    starting with // takes its scheme from the page around it, which an email does not have.
    """
    probe = url
    for _ in range(5):
        decoded = unquote(html.unescape(probe))
        if decoded == probe:
            break
        probe = decoded
    probe = _SKIPPED.sub("", probe).lower()
    if probe.startswith(("//", "\\\\", "/\\", "\\/")):
        return "protocol-relative"
    scheme = _SCHEME.match(probe)
    if scheme and scheme.group(1) in _REFUSED_SCHEMES:
        return scheme.group(1)
    return None


class _EmailMarkdown(MarkdownIt):
    def validateLink(self, url: str) -> bool:  # noqa: N802 (markdown-it's hook)
        return refused_link(url) is None


class _AllLinks(MarkdownIt):
    def validateLink(self, url: str) -> bool:  # noqa: N802 (markdown-it's hook)
        return True


def _configure(md: MarkdownIt) -> MarkdownIt:
    # No code blocks: staff never mean one, and an accidentally indented line would become
    # a <pre> wider than a phone screen.
    return md.disable(["code", "fence"])


@lru_cache(maxsize=1)
def _md() -> MarkdownIt:
    return _configure(_EmailMarkdown("commonmark", {"html": False, "typographer": False}))


@lru_cache(maxsize=1)
def _md_all_links() -> MarkdownIt:
    return _configure(_AllLinks("commonmark", {"html": False, "typographer": False}))


def parse_all_links(source: str) -> list[Token]:
    """Tokens as the email's parser sees them, except that refused links stay links.

    `check` walks these to name every link that the email shows as plain text instead.
    """
    return list(_md_all_links().parse(source))


def to_html(source: str) -> str:
    """Email-safe HTML for a Markdown block."""
    return str(_md().render(source)).strip()


def wrap(text: str, width: int = WIDTH, indent: int = 0, first: bool = True) -> str:
    """Wrap prose without ever breaking a word or a URL across lines."""
    pad = " " * indent
    out = []
    for para in text.split("\n"):
        if not para.strip():
            out.append("")
            continue
        out.append(
            textwrap.fill(
                para,
                width=width,
                initial_indent=pad if first else "",
                subsequent_indent=pad,
                break_long_words=False,
                break_on_hyphens=False,
            )
        )
    return "\n".join(out)


def _inline_text(token: Token, links: list[str]) -> str:
    parts: list[str] = []
    href_stack: list[str | None] = []
    for child in token.children or []:
        if child.type in ("text", "code_inline"):
            parts.append(child.content)
        elif child.type in ("softbreak", "hardbreak"):
            parts.append(" " if child.type == "softbreak" else "\n")
        elif child.type == "link_open":
            href_stack.append(str(child.attrs.get("href", "")))
        elif child.type == "link_close":
            href = href_stack.pop() if href_stack else ""
            if not href:
                continue
            label = href.removeprefix("mailto:")
            if parts and parts[-1].strip() in (href, label):
                # A bare address stays as it is; a bare URL moves to its own line.
                if href.startswith(("http://", "https://")):
                    parts[-1] = parts[-1].replace(parts[-1].strip(), f"[{_ref(links, href)}]")
                continue
            parts.append(f" [{_ref(links, href)}]")
        elif child.type == "image":
            parts.append(f"[{child.content or 'image'}]")
    return "".join(parts)


def _ref(links: list[str], href: str) -> int:
    if href in links:
        return links.index(href) + 1
    links.append(href)
    return len(links)


def to_text(source: str, width: int = WIDTH) -> str:
    """Plain text for a Markdown block: wrapped paragraphs, lists, link references."""
    tokens = _md().parse(source)
    blocks: list[str] = []
    links: list[str] = []
    lists: list[list[int]] = []  # one [next number] per open list; 0 marks a bullet list
    items: list[str] = []  # lines of the outermost open list
    flushed = 0
    prefix = ""

    def flush_links() -> None:
        nonlocal flushed
        if len(links) > flushed:
            blocks.append("\n".join(f"[{i + 1}] {links[i]}" for i in range(flushed, len(links))))
            flushed = len(links)

    for tok in tokens:
        if tok.type in ("bullet_list_open", "ordered_list_open"):
            ordered = tok.type.startswith("ordered")
            lists.append([int(tok.attrs.get("start", 1) or 1) if ordered else 0])
        elif tok.type in ("bullet_list_close", "ordered_list_close"):
            lists.pop()
            if not lists:
                blocks.append("\n".join(items))
                items = []
                flush_links()
        elif tok.type == "list_item_open" and lists:
            n = lists[-1][0]
            prefix = f"{n}. " if n else "- "
            if n:
                lists[-1][0] = n + 1
        elif tok.type == "inline":
            text = _inline_text(tok, links)
            if lists:
                depth = (len(lists) - 1) * 3
                lead = prefix or " " * 2
                items.append(
                    textwrap.fill(
                        text,
                        width=width,
                        initial_indent=" " * depth + lead,
                        subsequent_indent=" " * (depth + len(lead)),
                        break_long_words=False,
                        break_on_hyphens=False,
                    )
                )
                prefix = ""
            else:
                blocks.append(wrap(text, width))
        elif tok.type == "paragraph_close" and not lists:
            flush_links()
        elif tok.type in ("fence", "code_block"):
            blocks.append(tok.content.rstrip("\n"))
        elif tok.type == "hr":
            blocks.append("-" * 20)
    flush_links()
    return "\n\n".join(b for b in blocks if b).strip()
