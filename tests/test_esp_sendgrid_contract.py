"""Contract: our payloads, posted as the backend posts them, against SendGrid's own spec.

Prism (../shared/sendgrid/start-mock.sh) validates every request against Twilio's
published OpenAPI document for Mail Send and answers 202 only if it conforms.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from newsletter.config import Send, Workspace
from newsletter.errors import ProviderRejected
from newsletter.esp.base import MAX_BATCH, Batch, IssueContent
from newsletter.esp.sendgrid import SendGridBackend, SendGridSettings, build_payload
from newsletter.personalize import Personalizer
from prism import prism
from test_send import SECRET, _Sub

pytestmark = pytest.mark.prism


@pytest.fixture(scope="module")
def mock_url() -> Iterator[str]:
    with prism("tsg_mail_v3.json") as url:
        yield url


SENDGRID = SendGridSettings(
    asm_group_id=1234, asm_groups_to_display=[1234, 5678], sandbox_mode=True, ip_pool="newsletters"
)


@pytest.fixture(scope="module")
def settings(sample_workspace: Path) -> Send:
    return Workspace(sample_workspace).config.send


CONTENT = IssueContent(
    issue_id="2019-09",
    subject="Mesoamerica & Caribbean Digest — September 2019",
    html="<!doctype html><html><body><p>Dear %%first_name_html%%,</p>"
    '<a href="%%unsubscribe_url%%">Unsubscribe</a></body></html>',
    text="Dear %%first_name%%,\n\nUnsubscribe: %%unsubscribe_url%%\n",
    from_email="digest@news.example.org",
    from_name="Mesoamerica & Caribbean Digest",
    reply_to="communications@example.org",
)


def _batch(n: int, **kw: object) -> Batch:
    p = Personalizer([SECRET.encode()], "https://news.example.org/", "unsub@example.org", "en")
    people = [
        p(
            _Sub(
                f"reader{i}@example.org",
                None if i % 3 == 0 else f"Reader, No. {i}",
                None if i % 3 == 0 else "Reader",
                "sample" if i % 2 else "press",
            )
        )
        for i in range(n)
    ]
    return Batch("2019-09", "1", "2", 1, people, **kw)  # type: ignore[arg-type]


def test_a_full_batch_is_accepted(mock_url: str, settings: Send) -> None:
    backend = SendGridBackend("SG.contract-test", settings, host=mock_url, sendgrid=SENDGRID)
    assert backend.send_batch(CONTENT, _batch(3)).status == 202
    assert backend.send_batch(CONTENT, _batch(MAX_BATCH)).status == 202
    assert (
        backend.send_batch(replace(CONTENT, test=True, subject="[TEST] x"), _batch(1)).status == 202
    )


def test_a_scheduled_batch_is_accepted(mock_url: str, settings: Send) -> None:
    backend = SendGridBackend("SG.contract-test", settings, host=mock_url, sendgrid=SENDGRID)
    schedule_id = backend.create_schedule()  # POST /v3/mail/batch
    assert isinstance(schedule_id, str) and schedule_id
    batch = _batch(5, send_at=1_900_000_000, schedule_id=schedule_id)
    assert backend.send_batch(CONTENT, batch).status == 202


def test_invalid_payload_is_rejected_with_the_violation(
    mock_url: str,
    settings: Send,
) -> None:
    backend = SendGridBackend("SG.contract-test", settings, host=mock_url, sendgrid=SENDGRID)
    payload = build_payload(CONTENT, _batch(2), settings, SENDGRID)
    del payload["from"]
    with pytest.raises(ProviderRejected) as err:
        backend.post_payload(payload)
    assert err.value.status == 400
    assert "must have required property 'from'" in err.value.message
    assert "sl-violations" in (err.value.body or "")


def test_more_than_1000_personalizations_is_rejected(
    mock_url: str,
    settings: Send,
) -> None:
    backend = SendGridBackend("SG.contract-test", settings, host=mock_url, sendgrid=SENDGRID)
    payload = build_payload(CONTENT, _batch(MAX_BATCH + 1), settings, SENDGRID)
    with pytest.raises(ProviderRejected) as err:
        backend.post_payload(payload)
    assert err.value.status == 400 and "personalizations" in err.value.message
