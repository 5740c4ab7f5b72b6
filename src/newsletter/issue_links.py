"""`check --links`: every address of an issue, where it is written, and what it gave.

The addresses are the articles' links and remote pictures, the links inside the Markdown
texts, and the footer's (organisation.website, the logo, [[social]]) in newsletter.toml.
Each is fetched once (linkcheck.py) however often it appears, and each problem is then
reported at every place that writes it, with the field and the address, as `check`
reports everything else (and in its ``--format json``).

Answers are kept for 24 hours in ``.newsletter/links.json``, so that running `check
--links` again while fixing one link does not ask every site again; a passing failure
(a timeout, a site's 500) is never kept.  ``--links=fresh`` asks again anyway.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from . import markup
from .atomic import write_atomic
from .config import Workspace
from .errors import Problem, format_path
from .issue import Parsed
from .linkcheck import DEFAULT_TIMEOUT, Finding, Target, check_all
from .picture_src import is_remote

CACHE_FILE = "links.json"
CACHE_SECONDS = 24 * 3600
_CACHE_VERSION = 1


@dataclass(frozen=True)
class Place:
    """Where an address is written: the file, its line, the field."""

    path: Path
    line: int | None
    column: int | None
    field: str


def targets_of(ws: Workspace, parsed: Parsed) -> dict[Target, list[Place]]:
    """Every web address of the issue and its footer, with the places that write it."""
    found: dict[Target, list[Place]] = {}

    def add(url: Any, field: str, *, picture: bool = False, where: Parsed | None = parsed) -> None:
        if not isinstance(url, str) or not url.strip().lower().startswith(("http:", "https:")):
            return
        pos = where.where(field) if where else None
        path = where.path if where else ws.config_path
        place = Place(path, pos[0] if pos else None, pos[1] if pos else None, field)
        found.setdefault(Target(url.strip(), picture), []).append(place)

    values = parsed.values
    for field in ("intro", "closing"):
        for href in _markdown_links(values.get(field)):
            add(href, field)
    articles = values.get("articles")
    for i, art in enumerate(articles if isinstance(articles, list) else []):
        if not isinstance(art, dict):
            continue
        add(art.get("url"), format_path(("articles", i, "url")))
        image = art.get("image")
        src = image.get("src") if isinstance(image, dict) else None
        if isinstance(src, str) and is_remote(src.strip()):
            add(src, format_path(("articles", i, "image", "src")), picture=True)
        for href in _markdown_links(art.get("summary")):
            add(href, format_path(("articles", i, "summary")))
    org = ws.config.organisation
    add(str(org.website), "organisation.website", where=None)
    if org.logo_url and is_remote(org.logo_url):
        add(org.logo_url, "organisation.logo_url", picture=True, where=None)
    for i, social in enumerate(ws.config.social):
        add(str(social.url), format_path(("social", i, "url")), where=None)
    return found


def _markdown_links(source: Any) -> Iterator[str]:
    """The web links a Markdown text shows (those the email refuses are reported by check)."""
    if not isinstance(source, str) or not source.strip():
        return
    stack = list(markup.parse_all_links(source))
    while stack:
        tok = stack.pop(0)
        if tok.children:
            stack[:0] = tok.children
        if tok.type == "link_open":
            href = str(tok.attrs.get("href", ""))
            if not markup.refused_link(href):
                yield href


def check_links(
    ws: Workspace,
    parsed: Parsed,
    *,
    fresh: bool = False,
    timeout: float = DEFAULT_TIMEOUT,
    now: Callable[[], float] = time.time,
) -> list[Problem]:
    """Fetch what the cache does not know (or everything, ``fresh``); one problem per place."""
    places = targets_of(ws, parsed)
    cache_path = ws.state_dir / CACHE_FILE
    cache = {} if fresh else _read_cache(cache_path, now())
    known = {t: cache[_key(t)] for t in places if _key(t) in cache}
    fetched = check_all([t for t in places if t not in known], timeout=timeout)
    if fetched:
        _write_cache(cache_path, fetched, now())
    problems: list[Problem] = []
    for target, where in places.items():
        for finding in known.get(target) or fetched.get(target) or []:
            problems.extend(_problem(target, finding, place) for place in where)
    return problems


def _problem(target: Target, finding: Finding, place: Place) -> Problem:
    what = "picture" if target.picture else "link"
    return Problem(
        message=f"{what} {target.url} {finding.message}",
        path=place.path,
        line=place.line,
        column=place.column,
        field=place.field,
        hint=finding.hint,
        severity=finding.severity,
        code=finding.code,
    )


def _key(target: Target) -> str:
    return f"{'picture' if target.picture else 'link'} {target.url}"


def _read_cache(path: Path, now: float) -> dict[str, list[Finding]]:
    """Answers under 24 hours old; a damaged or foreign file is ignored (asked again)."""
    try:
        data = json.loads(path.read_text("utf-8"))
        if data.get("version") != _CACHE_VERSION:
            return {}
        out = {}
        for key, entry in data["entries"].items():
            if 0 <= now - float(entry["at"]) < CACHE_SECONDS:
                out[key] = [Finding(**f) for f in entry["findings"]]
        return out
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def _write_cache(path: Path, fetched: dict[Target, list[Finding]], now: float) -> None:
    """The answers just fetched, added to those still fresh (a passing failure is not kept)."""
    try:
        old = json.loads(path.read_text("utf-8")).get("entries", {})
    except (OSError, ValueError, AttributeError):
        old = {}
    entries = {k: v for k, v in old.items() if isinstance(v, dict) and _key_fresh(v, now)}
    for target, findings in fetched.items():
        if any(f.transient for f in findings):
            entries.pop(_key(target), None)
            continue
        entries[_key(target)] = {"at": now, "findings": [asdict(f) for f in findings]}
    body = json.dumps({"version": _CACHE_VERSION, "entries": entries}, indent=1, sort_keys=True)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, body.encode("utf-8"))
    except OSError:
        pass  # a read-only workspace: the links are asked again next time


def _key_fresh(entry: dict[str, Any], now: float) -> bool:
    try:
        return 0 <= now - float(entry["at"]) < CACHE_SECONDS
    except (KeyError, TypeError, ValueError):
        return False
