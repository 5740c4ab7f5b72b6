"""How did an issue do?  Counts and rates from the ledger and the stored events, and a chart.

Every count is of *addresses*, not events: a reader who opens an issue five
times is one open.  Opens that SendGrid flags as machine opens
(``sg_machine_open``, e.g. Apple Mail Privacy Protection fetching every image)
are counted apart, because they say the mail arrived, not that anyone read it.

Delivery figures are rates of the recipients sent (from the ledger), through a
backend that delivers: what was only written to the outbox was never emailed, so no
event will ever come for it; it is counted apart and the report says so;
engagement figures (opens, clicks, unsubscribes, spam reports) are rates of
the deliveries.  One-click unsubscribes come through our own server and carry
no issue id, so each is given to the latest issue that address got before
unsubscribing.  Addresses are compared by their suppression key: SendGrid
writes an IDN domain in ASCII (xn--), our links carry it in Unicode, and events
stored before both were normalised may hold either.
"""

from __future__ import annotations

import html
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from itertools import chain
from pathlib import Path

from email_validator import EmailNotValidError, validate_email

from .addresses import suppression_key
from .atomic import write_atomic
from .config import Workspace
from .errors import NewsletterError
from .events import EventRow, EventStore

TOP_LINKS = 10


@dataclass(frozen=True)
class LinkStat:
    url: str
    unique: int
    total: int


@dataclass(frozen=True)
class Point:
    at: int  # unix seconds, start of the bucket
    opens: int  # cumulative unique human openers
    machine_opens: int  # cumulative addresses with machine opens only so far
    clicks: int  # cumulative unique clickers


@dataclass
class IssueReport:
    issue_id: str
    sent: int
    delivered: int = 0
    deferred: int = 0
    bounced: int = 0
    blocked: int = 0
    dropped: int = 0
    unique_opens: int = 0
    machine_opens: int = 0
    open_events: int = 0
    unique_clicks: int = 0
    click_events: int = 0
    unsubscribes: int = 0
    spam_reports: int = 0
    top_links: list[LinkStat] = field(default_factory=list)
    timeline: list[Point] = field(default_factory=list)
    first_event: int | None = None
    last_event: int | None = None
    outbox: int = 0  # recipients only written to the outbox: never emailed, so no events
    note: str | None = None  # what the reader must know to read the figures

    def rates(self) -> dict[str, float | None]:
        def ratio(a: int, b: int) -> float | None:
            return round(a / b, 4) if b else None

        return {
            "delivered": ratio(self.delivered, self.sent),
            "deferred": ratio(self.deferred, self.sent),
            "bounced": ratio(self.bounced, self.sent),
            "blocked": ratio(self.blocked, self.sent),
            "dropped": ratio(self.dropped, self.sent),
            "unique_opens": ratio(self.unique_opens, self.delivered),
            "machine_opens": ratio(self.machine_opens, self.delivered),
            "unique_clicks": ratio(self.unique_clicks, self.delivered),
            "click_to_open": ratio(self.unique_clicks, self.unique_opens),
            "unsubscribes": ratio(self.unsubscribes, self.delivered),
            "spam_reports": ratio(self.spam_reports, self.delivered),
        }

    def as_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["rates"] = self.rates()
        for key in ("first_event", "last_event"):
            value = data[key]
            data[key] = _iso(value) if isinstance(value, int) else None
        data["timeline"] = [{**asdict(p), "at": _iso(p.at)} for p in self.timeline]
        return data


def _iso(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


def _bucket_seconds(span: int) -> int:
    for size in (600, 3600, 3 * 3600, 6 * 3600, 24 * 3600):
        if span / size <= 96:
            return size
    return 7 * 24 * 3600


def summarise(
    issue_id: str,
    sent: int,
    rows: Iterable[EventRow],
    extra_unsubscribes: Iterable[tuple[str, int]] = (),
) -> IssueReport:
    """Count one issue's events (pure: no I/O, so it is easy to check by hand)."""
    people: dict[str, set[str]] = defaultdict(set)
    human_first: dict[str, int] = {}
    machine_first: dict[str, int] = {}
    click_first: dict[str, int] = {}
    link_people: dict[str, set[str]] = defaultdict(set)
    link_total: dict[str, int] = defaultdict(int)
    report = IssueReport(issue_id=issue_id, sent=sent)
    times: list[int] = []
    for row in rows:
        times.append(row.at)
        people[row.kind].add(row.email)
        if row.kind == "open":
            report.open_events += 1
            first = machine_first if row.machine else human_first
            first.setdefault(row.email, row.at)
        elif row.kind == "click":
            report.click_events += 1
            click_first.setdefault(row.email, row.at)
            if row.url:
                link_people[row.url].add(row.email)
                link_total[row.url] += 1
    unsubscribed = {
        suppression_key(email)
        for email in chain(
            people["unsubscribe"],
            people["group_unsubscribe"],
            (email for email, _ in extra_unsubscribes),
        )
    }
    machine_only = {e: t for e, t in machine_first.items() if e not in human_first}
    report.delivered = len(people["delivered"])
    report.deferred = len(people["deferred"])
    report.bounced = len(people["bounced"])
    report.blocked = len(people["blocked"])
    report.dropped = len(people["dropped"])
    report.unique_opens = len(human_first)
    report.machine_opens = len(machine_only)
    report.unique_clicks = len(click_first)
    report.unsubscribes = len(unsubscribed)
    report.spam_reports = len(people["spamreport"])
    if not report.sent:
        # No ledger (e.g. events imported from elsewhere): the addresses seen are the floor.
        report.sent = len(set().union(*people.values())) if people else 0
    links = [LinkStat(url, len(who), link_total[url]) for url, who in link_people.items()]
    links.sort(key=lambda s: (-s.unique, -s.total, s.url))
    report.top_links = links[:TOP_LINKS]
    if times:
        report.first_event, report.last_event = min(times), max(times)
        report.timeline = _timeline(
            report.first_event, report.last_event, human_first, machine_only, click_first
        )
    return report


def _timeline(
    start: int, end: int, opens: dict[str, int], machine: dict[str, int], clicks: dict[str, int]
) -> list[Point]:
    size = _bucket_seconds(max(end - start, 1))
    first = start - start % size
    count = (end - first) // size + 1

    def cumulative(firsts: dict[str, int]) -> list[int]:
        per = [0] * count
        for at in firsts.values():
            per[(at - first) // size] += 1
        total, out = 0, []
        for n in per:
            total += n
            out.append(total)
        return out

    o, m, c = cumulative(opens), cumulative(machine), cumulative(clicks)
    return [Point(first + i * size, o[i], m[i], c[i]) for i in range(count)]


def _recipients_sent(ws: Workspace, issue_id: str) -> tuple[int, int]:
    """(recipients emailed, recipients only written to the outbox) over the issue's real
    sends; (0, 0) when nothing was ever sent from this workspace."""
    if not ws.state_db.exists():
        return 0, 0
    from .esp.registry import backend_class
    from .ledger import Ledger

    def delivers(name: str) -> bool:
        try:
            return backend_class(name).capabilities.delivers
        except Exception:  # a backend this version no longer has: it was a real one
            return True

    emailed = outbox = 0
    with Ledger(ws.state_db) as ledger:
        for s in ledger.sends(issue_id):
            if s.test:
                continue
            if delivers(s.backend):
                emailed += s.recipients_sent
            else:
                outbox += s.recipients_sent
    return emailed, outbox


def outbox_note(issue_id: str, emailed: int, outbox: int) -> str | None:
    if not outbox:
        return None
    people = f"{outbox:,} recipient{'' if outbox == 1 else 's'}"
    if not emailed:
        return (
            f"{issue_id} was only written to the outbox (nothing was emailed): outbox sends "
            "get no delivery events, so there are no deliveries, opens or clicks to report"
        )
    return (
        f"{people} of {issue_id} were only written to the outbox (nothing was emailed): "
        "they are not counted, because outbox sends get no delivery events"
    )


def spellings(email: str) -> list[str]:
    """Every form an address may be stored under: its key, and its key with an ASCII domain."""
    key = suppression_key(email)
    forms = [key]
    local, at, domain = key.rpartition("@")
    if at and not domain.isascii():
        try:
            ascii_domain = validate_email("x@" + domain, check_deliverability=False).ascii_domain
        except EmailNotValidError:
            return forms
        forms.append(f"{local}@{ascii_domain}".lower())
    return forms


def build_report(ws: Workspace, issue_id: str | None = None) -> IssueReport:
    """The report of one issue (default: the one with the latest events)."""
    store = EventStore(ws.state_db)
    try:
        from .signup_settings import CONFIRMATIONS

        # Confirmation emails are not an issue: never the default, reported only by name.
        known = [i for i in (store.issues() if ws.state_db.exists() else []) if i != CONFIRMATIONS]
        if issue_id is None:
            if not known:
                raise NewsletterError(
                    "no events recorded yet, so there is nothing to report",
                    hint="name the issue (`newsletter report 2019-09`), or check that SendGrid's"
                    " Event Webhook posts to `newsletter serve` at /webhooks/sendgrid",
                )
            issue_id = known[-1]
        sent, outbox = _recipients_sent(ws, issue_id)
        if sent == 0 and outbox == 0 and issue_id not in known:
            raise NewsletterError(
                f"issue {issue_id}: no sends and no events recorded",
                hint=f"issues with events: {', '.join(known)}"
                if known
                else "send the issue first (`newsletter send`)",
            )
        rows = store.rows(issue_id) if ws.state_db.exists() else []
        extra = (
            store.one_click_unsubscribes_for(issue_id, spellings) if ws.state_db.exists() else []
        )
        report = summarise(issue_id, sent, rows, extra)
        report.outbox = outbox
        report.note = outbox_note(issue_id, sent, outbox)
        return report
    finally:
        store.close()


# --- chart -------------------------------------------------------------------------------

_W, _H = 720, 360
_L, _R, _T, _B = 56, 24, 48, 56  # margins


def _tick_step(peak: int) -> int:
    """A round step (1, 2, 5, 10, 20, 50, ...) giving at most five gridlines."""
    magnitude = 1
    while True:
        for m in (1, 2, 5):
            if m * magnitude * 5 >= peak:
                return m * magnitude
        magnitude *= 10


def chart_svg(report: IssueReport, title: str | None = None) -> str:
    """Cumulative unique opens and clicks over time, as a self-contained SVG (text escaped)."""
    esc = html.escape
    heading = title or f"Issue {report.issue_id}: opens and clicks over time"
    points = report.timeline
    step = _tick_step(max([1] + [max(p.opens, p.clicks, p.machine_opens) for p in points]))
    ticks = -(-max([1] + [max(p.opens, p.clicks, p.machine_opens) for p in points]) // step)
    peak = step * ticks
    plot_w, plot_h = _W - _L - _R, _H - _T - _B
    n = max(len(points) - 1, 1)

    def xy(i: int, value: int) -> str:
        return f"{_L + plot_w * i / n:.1f},{_T + plot_h * (1 - value / peak):.1f}"

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{_H}"'
        f' viewBox="0 0 {_W} {_H}" font-family="Helvetica, Arial, sans-serif" font-size="12"'
        ' role="img">',
        f"<title>{esc(heading)}</title>",
        f'<rect width="{_W}" height="{_H}" fill="#ffffff"/>',
        f'<text x="{_L}" y="24" font-size="15" font-weight="bold" fill="#1f2933">'
        f"{esc(heading)}</text>",
    ]
    for k in range(ticks + 1):  # horizontal grid with whole-number counts
        value = step * k
        y = _T + plot_h * (1 - k / ticks)
        parts.append(f'<line x1="{_L}" x2="{_W - _R}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e5e7eb"/>')
        parts.append(
            f'<text x="{_L - 8}" y="{y + 4:.1f}" text-anchor="end" fill="#52606d">{value}</text>'
        )
    if points:
        for i in sorted({0, len(points) // 2, len(points) - 1}):
            label = datetime.fromtimestamp(points[i].at, UTC).strftime("%Y-%m-%d %H:%M")
            x = _L + plot_w * i / n
            anchor = "start" if i == 0 else "end" if i == len(points) - 1 else "middle"
            parts.append(
                f'<text x="{x:.1f}" y="{_H - _B + 18}" text-anchor="{anchor}"'
                f' fill="#52606d">{esc(label)}</text>'
            )
        series = [
            ("opens", "#0b5394", "", "unique opens"),
            ("clicks", "#b45309", "", "unique clicks"),
            ("machine_opens", "#9ca3af", ' stroke-dasharray="5 4"', "machine opens"),
        ]
        for index, (attr, colour, dash, label) in enumerate(series):
            coords = " ".join(xy(i, getattr(p, attr)) for i, p in enumerate(points))
            parts.append(
                f'<polyline fill="none" stroke="{colour}" stroke-width="2.5"{dash}'
                f' points="{coords}"/>'
            )
            lx = _L + index * 150
            parts.append(
                f'<line x1="{lx}" x2="{lx + 24}" y1="{_H - 14}" y2="{_H - 14}"'
                f' stroke="{colour}" stroke-width="3"{dash}/>'
            )
            parts.append(f'<text x="{lx + 30}" y="{_H - 10}" fill="#1f2933">{esc(label)}</text>')
    else:
        parts.append(
            f'<text x="{_W / 2}" y="{_H / 2}" text-anchor="middle" fill="#52606d">'
            "no opens or clicks recorded yet</text>"
        )
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def write_chart(ws: Workspace, report: IssueReport) -> Path:
    """Write build/<issue>/report.svg atomically; return its path."""
    folder = ws.build_dir / report.issue_id
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "report.svg"
    write_atomic(path, chart_svg(report).encode("utf-8"))
    return path
