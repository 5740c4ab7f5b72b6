"""A real send of an issue with its own pictures waits until they are published.

The archive's base_url points at a web server of our own on 127.0.0.1 that serves the
archive folder (tests/linkserver.py, /files/); SendGrid is the stub.  Before `archive`,
a send through SendGrid is refused with the missing addresses and nothing is posted; the
outbox is not held up; --skip-image-check sends anyway; after `archive` the send goes.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import Cli
from linkserver import LinkServer
from stub_sendgrid import StubSendGrid
from test_cli_send import sg_env
from test_pictures import FIRST_SRC, _put, _use, camera_photo


@pytest.fixture
def site(workspace: Path) -> Iterator[LinkServer]:
    s = LinkServer(files=workspace / "archive-site").start()
    yield s
    s.stop()


def test_send_refuses_until_the_pictures_are_published(
    cli: Cli, workspace: Path, stub: StubSendGrid, site: LinkServer
) -> None:
    toml = workspace / "newsletter.toml"
    toml.write_text(
        re.sub(
            r'base_url = "[^"]*"',
            f'base_url = "{site.url("/files/")}"',
            toml.read_text("utf-8"),
        ),
        "utf-8",
    )
    _put(workspace, "market.jpg", camera_photo())
    _use(workspace, {FIRST_SRC: "src: 2019-09/market.jpg"})
    env = sg_env(stub)

    outbox = cli("send", "2019-09", "--list", "sample", "--backend", "outbox", "--dry-run", "--yes")
    assert outbox.code == 0, outbox.err  # nothing leaves the machine: nothing to check
    assert site.requests == []

    refused = cli("send", "2019-09", "--list", "sample", "--yes", env=env)
    assert refused.code == 1, refused.out + refused.err
    [name] = [p.name for p in (workspace / ".newsletter" / "pictures").iterdir()]
    missing = re.search(
        rf"{re.escape(site.url('/files/2019-09/images/'))}market-[0-9a-f]{{8}}\.jpg", refused.err
    )
    assert missing, refused.err
    assert "not on the web yet" in refused.err and "newsletter archive" in refused.err
    assert "--skip-image-check" in refused.err and "Traceback" not in refused.err
    assert stub.sends() == []

    test_copy = cli("send", "2019-09", "--test-to", "me@example.org", "--yes", env=env)
    assert test_copy.code == 1 and stub.sends() == []  # a test copy would show them broken too
    skipped = cli(
        "send", "2019-09", "--test-to", "me@example.org", "--yes", "--skip-image-check", env=env
    )
    assert skipped.code == 0, skipped.err
    assert len(stub.sends()) == 1

    assert cli("archive").code == 0
    sent = cli("send", "2019-09", "--list", "sample", "--yes", env=env)
    assert sent.code == 0, sent.err
    assert len(stub.sends()) == 2
    [request] = stub.sends()[1:]
    html = next(c["value"] for c in request.body["content"] if c["type"] == "text/html")
    assert missing.group(0) in html
