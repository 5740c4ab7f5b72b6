"""Pull SendGrid's suppression lists into `subscribers/suppressions.csv`.

The webhook may miss events (the server was down longer than SendGrid's 24-hour
retry window, or the webhook was never configured), so `newsletter suppressions
sync` asks SendGrid directly: global unsubscribes, bounces, spam reports and, if
``[sendgrid] asm_group_id`` is set, that unsubscribe group.  It pages with
``limit``/``offset`` and asks only for entries created since the previous sync
(kept in the SQLite state, with an hour of overlap: entries already on file are
skipped, so overlap costs nothing and a late-indexed entry is not missed).  It
also merges the suppressions `newsletter serve` accepted but could not write to
the CSV at the time (``pending_suppressions``), so fixing the file and running a
sync is enough even while the server is down.

This is the only module that knows these endpoints' shapes.  The HTTP client is
httpx with an injectable transport, so tests can stand anything in for SendGrid.
The API host and a rate limit's wait are read as the send reads them
(:func:`newsletter.esp.sendgrid.api_host`, :func:`newsletter.retry.retry_after`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from ..addresses import normalise_email
from ..config import Workspace
from ..errors import ProviderError, ProviderRejected, ProviderUnavailable
from ..events import EventStore
from ..retry import retry_after
from ..suppression_file import Suppression
from ..suppression_writes import add_suppressions, merge_pending
from .sendgrid import API_KEY_ENV, SendGridSettings, api_host, api_key

PAGE_SIZE = 500  # SendGrid's maximum for these endpoints
MAX_PAGES = 20_000  # 10 million entries: past this something is wrong (an API ignoring offset)
OVERLAP_SECONDS = 3600
STATE_KEY = "sendgrid_suppressions_synced_at"
MAX_WAIT_SECONDS = 60.0

# (name, path, our reason)
LISTS = (
    ("unsubscribes", "/v3/suppression/unsubscribes", "unsubscribed"),
    ("bounces", "/v3/suppression/bounces", "bounced"),
    ("spam_reports", "/v3/suppression/spam_reports", "spam"),
)


@dataclass
class ListResult:
    name: str
    fetched: int = 0
    added: int = 0
    pages: int = 0
    invalid: list[str] = field(default_factory=list)


@dataclass
class SyncResult:
    since: int | None
    synced_at: int
    lists: list[ListResult]

    @property
    def added(self) -> int:
        return sum(r.added for r in self.lists)

    def as_dict(self) -> dict[str, object]:
        return {
            "since": _iso(self.since) if self.since is not None else None,
            "synced_at": _iso(self.synced_at),
            "added": self.added,
            "lists": [
                {
                    "name": r.name,
                    "fetched": r.fetched,
                    "added": r.added,
                    "pages": r.pages,
                    "invalid": r.invalid,
                }
                for r in self.lists
            ],
        }


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


def _retry_after(response: httpx.Response, attempt: int) -> float:
    """Seconds to wait: what the answer asks (:func:`retry_after`), else back off; at most
    a minute, so a sync never hangs for long on one page."""
    wait = retry_after(response.headers, time.time())
    if wait is None:
        wait = 2.0**attempt
    return min(wait, MAX_WAIT_SECONDS)


class SuppressionsAPI:
    """GETs against SendGrid's suppression endpoints, with bounded retries on 429/5xx."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 30.0,
        max_retries: int = 4,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.client = httpx.Client(
            base_url=base_url,
            headers={
                "Authorization": f"Bearer {api_key}",
                "Accept": "application/json",
                "User-Agent": "newsletter-suppressions-sync",
            },
            timeout=timeout,
            transport=transport,
        )
        self.max_retries = max_retries
        self.sleep = sleep

    def close(self) -> None:
        self.client.close()

    def get(self, path: str, params: dict[str, int] | None = None) -> Any:
        """Decoded JSON of a 2xx answer; ProviderRejected/ProviderUnavailable otherwise."""
        attempt = 0
        while True:
            attempt += 1
            try:
                response = self.client.get(path, params=params)
            except httpx.TransportError as exc:
                if attempt > self.max_retries:
                    raise ProviderUnavailable(
                        f"SendGrid API at {self.client.base_url} did not answer GET {path}: {exc}"
                    ) from None
                self.sleep(min(2.0**attempt, MAX_WAIT_SECONDS))
                continue
            status = response.status_code
            body = response.text[:2000]
            if status == 429 or status >= 500:
                if attempt > self.max_retries:
                    raise ProviderUnavailable(
                        f"SendGrid answered {status} to GET {path} {attempt} times; try later",
                        status=status,
                        body=body,
                        retry_after=_retry_after(response, attempt),
                    )
                self.sleep(_retry_after(response, attempt))
                continue
            if status in (401, 403):
                raise ProviderRejected(
                    f"SendGrid refused GET {path}: {status} {body}",
                    status=status,
                    body=body,
                    hint=f"check that {API_KEY_ENV} is right and its API key has"
                    " 'Suppressions' read access",
                )
            if not 200 <= status < 300:
                raise ProviderRejected(
                    f"SendGrid answered {status} to GET {path}: {body}", status=status, body=body
                )
            try:
                return response.json()
            except ValueError:  # JSONDecodeError, UnicodeDecodeError, a 5000-digit number
                raise ProviderError(
                    f"SendGrid's answer to GET {path} is not JSON: {body[:200]!r}",
                    status=status,
                    body=body,
                ) from None

    def pages(
        self, path: str, since: int | None, page_size: int = PAGE_SIZE
    ) -> Iterator[list[Any]]:
        """Each page of a limit/offset list until a short page ends it."""
        previous: list[Any] | None = None
        for number in range(MAX_PAGES):
            params = {"limit": page_size, "offset": number * page_size}
            if since is not None:
                params["start_time"] = since
            page = self.get(path, params)
            if not isinstance(page, list):
                raise ProviderError(
                    f"SendGrid's answer to GET {path} is not a list: {str(page)[:200]}",
                    body=str(page)[:2000],
                )
            if page and page == previous:  # an API ignoring offset would loop forever
                raise ProviderError(
                    f"SendGrid returned the same page twice for GET {path} (offset ignored?)"
                )
            yield page
            if len(page) < page_size:
                return
            previous = page
        raise ProviderError(f"GET {path}: more than {MAX_PAGES} pages; stopping")


def _entry(
    item: Any, reason: str, source: str, now: float, result: ListResult
) -> Suppression | None:
    raw: object
    created: object = None
    if isinstance(item, str):
        raw = item
    elif isinstance(item, dict):
        raw, created = item.get("email"), item.get("created")
    else:
        result.invalid.append(str(item)[:200])
        return None
    if not isinstance(raw, str):
        result.invalid.append(str(item)[:200])
        return None
    try:
        email = normalise_email(raw)
    except ValueError:
        result.invalid.append(raw[:200])
        return None
    ts = now  # for a missing or nonsense date (NaN fails every comparison): when we saw it
    if isinstance(created, int | float) and not isinstance(created, bool) and 0 <= created < 2**33:
        ts = created
    return Suppression(email=email, reason=reason, source=source, at=_iso(ts))


def sync_suppressions(ws: Workspace, api: SuppressionsAPI, *, full: bool = False) -> SyncResult:
    """Fetch every list, merge into suppressions.csv, then remember when (only on success)."""
    store = EventStore(ws.state_db)
    try:
        merge_pending(store, ws.suppressions_path)
        last = None if full else store.get_state(STATE_KEY)
        since = max(0, int(last) - OVERLAP_SECONDS) if last and last.isdigit() else None
        started = int(time.time())
        results: list[ListResult] = []
        sources: list[tuple[ListResult, str, str, Iterator[list[Any]]]] = [
            (ListResult(name), reason, f"sendgrid:{name}", api.pages(path, since))
            for name, path, reason in LISTS
        ]
        group = ws.config.provider(SendGridSettings).asm_group_id
        if group is not None:
            path = f"/v3/asm/groups/{group}/suppressions"  # one unpaged list of addresses
            sources.append(
                (
                    ListResult(f"group {group}"),
                    "unsubscribed",
                    f"sendgrid:group:{group}",
                    iter([api.get(path)]),
                )
            )
        for result, reason, source, pages in sources:
            entries: list[Suppression] = []
            for page in pages:
                if not isinstance(page, list):
                    raise ProviderError(f"SendGrid's {result.name} answer is not a list")
                result.pages += 1
                result.fetched += len(page)
                for item in page:
                    entry = _entry(item, reason, source, started, result)
                    if entry is not None:
                        entries.append(entry)
            result.added = len(add_suppressions(ws.suppressions_path, entries))
            results.append(result)
        store.set_state(STATE_KEY, str(started))
        return SyncResult(since=since, synced_at=started, lists=results)
    finally:
        store.close()


def api_from_workspace(ws: Workspace) -> SuppressionsAPI:
    key = api_key()
    assert key is not None
    return SuppressionsAPI(api_host(ws), key, timeout=ws.config.send.timeout)
