"""`newsletter report` of a translated issue: the same figures for each language.

Each batch of a send carries one version of the issue (``batches.language``), and every
SendGrid event names its batch (``nl_batch``), so an event is counted in its batch's
language; one-click unsubscribes, which name no batch, go by the address's batch.  The
figures are summarised exactly as the whole issue's (report.summarise).
"""

from __future__ import annotations

from collections import defaultdict

from . import state
from .addresses import suppression_key
from .config import Workspace
from .events import EventRow, EventStore
from .report import IssueReport, spellings, summarise


def _delivers(name: str) -> bool:
    from .esp.registry import backend_class

    try:
        return backend_class(name).capabilities.delivers
    except Exception:  # a backend this version no longer has: it was a real one
        return True


def language_reports(ws: Workspace, issue_id: str) -> dict[str, IssueReport]:
    """One report per language the issue was sent in; empty when it went out in one
    language only (or before sends recorded languages)."""
    if not ws.state_db.exists():
        return {}
    db = state.connect(ws.state_db, readonly=True)
    try:
        sent: dict[str, int] = defaultdict(int)
        for language, backend, count in db.execute(
            "SELECT b.language, s.backend, SUM(b.recipients) FROM batches b"
            " JOIN sends s ON s.id=b.send_id WHERE s.issue_id=? AND s.test=0"
            " AND b.state='sent' AND b.language IS NOT NULL GROUP BY b.language, s.backend",
            (issue_id,),
        ):
            if _delivers(str(backend)):
                sent[str(language)] += int(count or 0)
        languages = {
            str(r[0])
            for r in db.execute(
                "SELECT DISTINCT b.language FROM batches b JOIN sends s ON s.id=b.send_id"
                " WHERE s.issue_id=? AND s.test=0 AND b.language IS NOT NULL",
                (issue_id,),
            )
        }
        if len(languages) < 2:
            return {}
        by_email = {
            str(key): str(language)
            for key, language in db.execute(
                "SELECT r.email_key, b.language FROM recipients r JOIN batches b"
                " ON b.id=r.batch_id WHERE r.issue_id=? AND b.language IS NOT NULL",
                (issue_id,),
            )
        }
        rows: dict[str, list[EventRow]] = defaultdict(list)
        for kind, email, at, url, machine, language in db.execute(
            "SELECT e.kind, e.email, e.at, e.url, e.machine, b.language FROM esp_events e"
            " LEFT JOIN batches b ON CAST(b.id AS TEXT)=e.batch_id"
            " WHERE e.issue_id=? ORDER BY e.at, e.event_id",
            (issue_id,),
        ):
            lang = language or by_email.get(suppression_key(email))
            if lang is not None:
                rows[str(lang)].append(EventRow(kind, email, int(at), url, bool(machine)))
    finally:
        db.close()
    store = EventStore(ws.state_db)
    try:
        extra: dict[str, list[tuple[str, int]]] = defaultdict(list)
        for email, at in store.one_click_unsubscribes_for(issue_id, spellings):
            lang = by_email.get(suppression_key(email))
            if lang is not None:
                extra[lang].append((email, at))
    finally:
        store.close()
    return {
        lang: summarise(issue_id, sent.get(lang, 0), rows.get(lang, []), extra.get(lang, []))
        for lang in sorted(languages)
    }
