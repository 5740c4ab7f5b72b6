"""The outbox backend: the JSON SendGrid would receive, and an .eml a person can open."""

from __future__ import annotations

import email.policy
from email.parser import BytesParser
from pathlib import Path

import pytest

from newsletter import tokens
from newsletter.config import Workspace
from newsletter.esp.base import Batch, IssueContent
from newsletter.esp.outbox import OutboxBackend
from newsletter.esp.sendgrid import SendGridBackend
from newsletter.ledger import DONE, Ledger
from newsletter.personalize import DEV_SECRET, Personalizer
from stub_sendgrid import StubSendGrid
from test_send import SECRET, FakeBuilt, _Sub, run, set_send_config, write_list

CONTENT = IssueContent(
    issue_id="2019-09",
    subject="Digest for %%first_name%%",
    html='<p>Dear %%first_name_html%%,</p><a href="%%unsubscribe_url%%">Unsubscribe</a>',
    text="Dear %%first_name%%,\nUnsubscribe: %%unsubscribe_url%%\n",
    from_email="digest@news.example.org",
    from_name="Digest",
    reply_to="communications@example.org",
)


def _batch() -> Batch:
    p = Personalizer([SECRET.encode()], "https://news.example.org/", "unsub@example.org", "en")
    people = [
        _Sub("ana.lopez@example.org", "Ana López", "Ana", "sample"),
        _Sub("tom@example.com", "Tom <& Co>", "Tom <&>", "sample"),
        _Sub("nameless@example.net", None, None, "press"),
    ]
    return Batch("2019-09", "3", "17", 1, [p(s) for s in people])


def test_batch_json_is_byte_for_byte_what_the_sendgrid_backend_posts(
    workspace: Path, tmp_path: Path
) -> None:
    settings = Workspace(workspace).config.send
    batch = _batch()
    outbox = OutboxBackend(tmp_path / "outbox", settings)
    outcome = outbox.send_batch(CONTENT, batch)
    written = (tmp_path / "outbox" / "2019-09" / "send-3" / "batch-0001.json").read_bytes()
    assert outcome.status == 202 and outcome.detail.endswith("batch-0001.json")
    with StubSendGrid() as stub:
        SendGridBackend("SG.key", settings, host=stub.url).send_batch(CONTENT, batch)
        [posted] = stub.sends()
    assert written == posted.raw


def test_eml_parses_with_list_unsubscribe_and_filled_placeholders(
    workspace: Path, tmp_path: Path
) -> None:
    settings = Workspace(workspace).config.send
    OutboxBackend(tmp_path / "outbox", settings).send_batch(CONTENT, _batch())
    folder = tmp_path / "outbox" / "2019-09" / "send-3" / "batch-0001"
    files = sorted(folder.glob("*.eml"))
    assert [f.name for f in files] == [
        "00001-ana.lopez@example.org.eml",
        "00002-tom@example.com.eml",
        "00003-nameless@example.net.eml",
    ]
    parser = BytesParser(policy=email.policy.default)
    for path, first, list_name in zip(
        files, ("Ana", "Tom <&>", "reader"), ("sample", "sample", "press"), strict=True
    ):
        raw = path.read_bytes()
        assert b"%%" not in raw and b"=?utf-8?q?=3Chttps" not in raw
        msg = parser.parsebytes(raw)
        assert msg["Subject"] == f"Digest for {first}"
        assert msg["From"].addresses[0].addr_spec == "digest@news.example.org"
        unsubscribe = str(msg["List-Unsubscribe"])
        assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        https, mailto = (part.strip(" <>") for part in unsubscribe.split(","))
        assert mailto == "mailto:unsub@example.org?subject=unsubscribe"
        token, _, query = https.removeprefix("https://news.example.org/u/").partition("?")
        assert query.startswith("lang=")  # the unsubscribe page opens in their language
        who = tokens.verify_token(token, [SECRET.encode()])
        assert who.email == msg["To"].addresses[0].addr_spec and who.list_name == list_name
        plain_part, html_part = msg.get_body(("plain",)), msg.get_body(("html",))
        assert plain_part is not None and html_part is not None
        text, html = plain_part.get_content(), html_part.get_content()
        assert f"Dear {first}," in text and f"Unsubscribe: {https}" in text
        assert f'href="{https}"' in html
        if first == "Tom <&>":
            assert "Dear Tom &lt;&amp;&gt;," in html


def test_dry_run_writes_the_outbox_and_keeps_no_state(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    set_send_config(workspace, batch_size=10)
    expected = write_list(workspace, "big", 25, invalid=3)
    report = run(workspace, backend="outbox", lists=["big"], dry_run=True)
    assert report.recipients_sent == 25
    folder = workspace / "outbox" / "2019-09" / "dry-run"
    assert sorted(p.name for p in folder.glob("*.json")) == [
        "batch-0001.json",
        "batch-0002.json",
        "batch-0003.json",
    ]
    emls = sorted(folder.glob("batch-*/*.eml"))
    assert len(emls) == 25
    assert not (workspace / ".newsletter").exists()
    # dev key: links are signed with the labelled development secret, not a real one
    import json

    first = json.loads((folder / "batch-0001.json").read_text())["personalizations"][0]
    token = first["substitutions"]["%%unsubscribe_url%%"].split("?")[0].rsplit("/", 1)[1]
    assert tokens.verify_token(token, [DEV_SECRET]).email == expected[0]
    # a second dry run replaces the folder rather than mixing two runs
    write_list(workspace, "big", 4)
    run(workspace, backend="outbox", lists=["big"], dry_run=True)
    assert len(list(folder.glob("batch-*/*.eml"))) == 4


def test_real_outbox_send_is_recorded(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEWSLETTER_SECRET", SECRET)
    report = run(workspace, FakeBuilt(), backend="outbox", lists=["sample"])
    assert report.state == DONE and report.recipients_sent == 4  # 5 rows, 1 suppressed
    with Ledger(workspace / ".newsletter" / "state.db") as ledger:
        assert ledger.recipients_sent("2019-09") == 4
