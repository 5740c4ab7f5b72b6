"""Fetch every address of an issue once, politely, and say in words what a reader would get.

`check --links` asks each site for each link of the issue (HEAD, or GET where a site
refuses HEAD) and each remote picture (GET: its first bytes tell its size in pixels),
follows up to 5 redirects itself (to tell a permanent move, a loop, or a step from https
down to http), and gives up on an answer after 10 seconds.  At most 8 requests are under
way at once, and at most 2 to the same site (host and port), so that checking an issue
looks like a reader, not an attack; the User-Agent names the tool.

The outcome of each address is a list of :class:`Finding` (empty: it works); the words for
where each address is written in the issue are in issue_links.py, which also keeps the
24-hour cache.  httpx does the HTTP, Pillow reads the pictures' headers.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Literal
from urllib.parse import urljoin, urlsplit

import httpx

from . import __version__

DEFAULT_TIMEOUT = 10.0
MAX_REDIRECTS = 5
AT_ONCE = 8
PER_SITE = 2
BIG_PICTURE_BYTES = 1_000_000
EMAIL_WIDTH = 552
USER_AGENT = f"newsletter-link-check/{__version__} (checks the links of an email newsletter)"
_CHUNK = 16_384

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Finding:
    """One thing wrong with an address, in words; ``transient`` ones are not cached."""

    severity: Severity
    code: str
    message: str
    hint: str | None = None
    transient: bool = False


@dataclass(frozen=True)
class Target:
    url: str
    picture: bool = False


@dataclass
class _Limits:
    timeout: float
    at_once: asyncio.Semaphore
    per_site: dict[str, asyncio.Semaphore] = field(default_factory=dict)

    def site(self, url: str) -> asyncio.Semaphore:
        netloc = urlsplit(url).netloc.lower()
        if netloc not in self.per_site:
            self.per_site[netloc] = asyncio.Semaphore(PER_SITE)
        return self.per_site[netloc]


def check_all(
    targets: Iterable[Target], *, timeout: float = DEFAULT_TIMEOUT
) -> dict[Target, list[Finding]]:
    """Every target fetched (8 at once, 2 per site); its findings, empty when all is well."""
    unique = list(dict.fromkeys(targets))
    if not unique:
        return {}
    return asyncio.run(_check_all(unique, timeout))


async def _check_all(targets: list[Target], timeout: float) -> dict[Target, list[Finding]]:
    limits = _Limits(timeout, asyncio.Semaphore(AT_ONCE))
    async with httpx.AsyncClient(
        follow_redirects=False,
        timeout=httpx.Timeout(timeout),
        headers={"User-Agent": USER_AGENT, "Accept": "*/*"},
        limits=httpx.Limits(max_connections=AT_ONCE, max_keepalive_connections=AT_ONCE),
    ) as client:
        results = await asyncio.gather(*(_check(client, limits, t) for t in targets))
    return dict(zip(targets, results, strict=True))


async def _check(client: httpx.AsyncClient, limits: _Limits, target: Target) -> list[Finding]:
    findings: list[Finding] = []
    seen = {target.url}
    current = target.url
    permanent = False
    for _hop in range(MAX_REDIRECTS + 1):
        try:
            status, location, picture = await _ask(client, limits, current, target.picture)
        except Exception as exc:  # every way a fetch fails becomes words (_failure)
            return [*findings, _failure(exc, limits.timeout)]
        if location is None:
            break
        following = urljoin(current, location)
        if status in (301, 308):
            permanent = True
        if current.startswith("https:") and following.startswith("http:"):
            findings.append(
                Finding(
                    "warning",
                    "link_leaves_https",
                    f"goes from https to an http address on the way ({following})",
                    "readers' browsers may warn; link to an https address if the site has one",
                )
            )
        if following in seen:
            return [
                *findings,
                Finding(
                    "error",
                    "redirect_loop",
                    "sends the reader round in a circle of redirects (it never reaches a page)",
                    "open it in a browser: the site is broken, or link to another page",
                ),
            ]
        seen.add(following)
        current = following
    else:
        return [
            *findings,
            Finding(
                "error",
                "too_many_redirects",
                f"redirects more than {MAX_REDIRECTS} times (readers' browsers give up)",
                "open it in a browser and link to the address it ends at",
            ),
        ]
    findings += _status(status)
    if permanent and status < 400:
        findings.append(
            Finding(
                "warning",
                "moved_permanently",
                f"has moved for good to {current}",
                f"use the new address: {current}",
            )
        )
    if target.picture and status < 400:
        findings += picture or []
    return findings


async def _ask(
    client: httpx.AsyncClient, limits: _Limits, url: str, picture: bool
) -> tuple[int, str | None, list[Finding] | None]:
    """(status, redirect location, picture findings) for one request, HEAD then GET."""
    async with limits.site(url), limits.at_once:
        async with asyncio.timeout(limits.timeout):
            if not picture:
                try:
                    head = await client.head(url)
                except (httpx.RemoteProtocolError, httpx.ReadError):
                    head = None  # a server that hangs up on HEAD: ask again with GET
                if head is not None:
                    location = head.headers.get("location") if head.is_redirect else None
                    if head.status_code < 400 or location:
                        return head.status_code, location, None
            async with client.stream("GET", url) as resp:
                location = resp.headers.get("location") if resp.is_redirect else None
                if not picture or location or resp.status_code >= 400:
                    return resp.status_code, location, None
                return resp.status_code, None, await _picture(resp)


async def _picture(resp: httpx.Response) -> list[Finding]:
    """A remote picture's size from its first bytes; what is wrong for an email."""
    from PIL import ImageFile

    length = resp.headers.get("content-length")
    size = int(length) if length and length.isdigit() else None
    parser = ImageFile.Parser()
    read = 0
    dims: tuple[int, int] | None = None
    broken = False
    async for chunk in resp.aiter_bytes(_CHUNK):
        read += len(chunk)
        if dims is None and not broken:
            try:
                parser.feed(chunk)
            except Exception:  # Pillow's parsers raise many kinds on a non-picture
                broken = True
            if parser.image is not None:
                dims = parser.image.size
        if (dims is not None or broken) and (size is not None or read > BIG_PICTURE_BYTES):
            break
    if dims is None and parser.image is not None:
        dims = parser.image.size
    if dims is None:
        kind = resp.headers.get("content-type", "unknown").split(";")[0].strip()
        return [
            Finding(
                "error",
                "remote_not_picture",
                f"is not a picture (the site sends {kind or 'something else'})",
                "use the address of the picture file itself (right-click it, copy image address)",
            )
        ]
    out = []
    total = size if size is not None else read
    if total > BIG_PICTURE_BYTES:
        exactly = f"{total / 1_000_000:.1f} MB" if size is not None else "over 1 MB"
        out.append(
            Finding(
                "warning",
                "remote_picture_heavy",
                f"is a picture of {exactly}; every subscriber downloads it, slowly on a phone",
                "use a copy under 1 MB, or put the file beside the issue: build prepares it",
            )
        )
    if dims[0] < EMAIL_WIDTH:
        out.append(
            Finding(
                "warning",
                "remote_picture_narrow",
                f"is {dims[0]} px wide; the email shows it {EMAIL_WIDTH} px wide, so it will "
                "look blurry",
                f"use a picture at least {EMAIL_WIDTH} px wide ({2 * EMAIL_WIDTH} px is sharp "
                "on phones)",
            )
        )
    return out


def _status(status: int) -> list[Finding]:
    if status < 400:
        return []
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "error"
    if status in (404, 410):
        what = "is not there" if status == 404 else "has been removed"
        return [
            Finding(
                "error",
                f"link_{status}",
                f"the page {what} ({status} {phrase})",
                "find where the page moved and link there, or remove the link",
            )
        ]
    if status < 500:
        return [
            Finding(
                "warning",
                "link_refused",
                f"the site answered {status} {phrase}; some sites refuse programs like this "
                "check, so it may still work for readers",
                "open it in a browser to be sure",
                transient=status == 429,
            )
        ]
    return [
        Finding(
            "warning",
            "link_server_error",
            f"the site had an error ({status} {phrase})",
            "try again later, and open it in a browser; if it stays broken, link elsewhere",
            transient=True,
        )
    ]


def _causes(exc: BaseException) -> list[BaseException]:
    out: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and len(out) < 10:
        out.append(current)
        current = current.__cause__ or current.__context__
    return out


def _failure(exc: Exception, timeout: float) -> Finding:
    """A failed fetch, in words: no such site, refused, a bad certificate, too slow."""
    chain = _causes(exc)
    text = " ".join(str(e) for e in chain).lower()
    if any(isinstance(e, (TimeoutError, httpx.TimeoutException)) for e in chain):
        return Finding(
            "warning",
            "link_timeout",
            f"did not answer within {timeout:g} seconds",
            "the site may be slow or down: open it in a browser, or check again later",
            transient=True,
        )
    if any(isinstance(e, ssl.SSLError) for e in chain) or "certificate" in text or "ssl" in text:
        return Finding(
            "error",
            "link_tls",
            "the site's secure connection (TLS certificate) is broken; browsers show a warning",
            "check the address; if it is right, tell the site's owner",
        )
    if any(isinstance(e, ConnectionRefusedError) for e in chain) or "refused" in text:
        return Finding(
            "error",
            "link_refused_connection",
            "the site refuses connections (nothing answers at that address)",
            "check the address; the site may be down",
            transient=True,
        )
    dns_words = ("name or service not known", "nodename nor servname", "name resolution")
    if any(w in text for w in dns_words) or "getaddrinfo" in text or "no address" in text:
        return Finding(
            "error",
            "link_dns",
            "no site has this name (the address's host does not exist)",
            "check the spelling of the address",
        )
    return Finding(
        "warning",
        "link_failed",
        f"could not be fetched ({type(exc).__name__}: {str(exc) or 'no detail'})",
        "open it in a browser to be sure",
        transient=True,
    )
