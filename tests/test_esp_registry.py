"""The backend registry and capabilities: a backend is one registry line; whatever a send
asks that its backend cannot do stops it with a ConfigError naming the setting."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from conftest import REPO, TEST_ENV
from fakebackend import FakeBackend
from newsletter.config import Workspace
from newsletter.errors import ConfigError
from newsletter.esp.base import Scheduling
from newsletter.esp.registry import BACKENDS, backend_choices, open_backend
from newsletter.plan import SendOptions
from newsletter.send import SendSession
from test_send import FakeBuilt, set_send_config, write_list


def session(ws: Path, through: Any, **options: Any) -> SendSession:
    """A send through the backend object ``through`` (None: the one options name)."""
    return SendSession(Workspace(ws), FakeBuilt(), SendOptions(**options), backend=through)  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def _secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEWSLETTER_SECRET", TEST_ENV["NEWSLETTER_SECRET"])


# --------------------------------------------------------------------------- capabilities


def test_send_at_on_a_backend_that_cannot_schedule(workspace: Path) -> None:
    when = datetime.now(UTC) + timedelta(hours=2)
    cannot = FakeBackend.with_capabilities(scheduling=None)()
    with pytest.raises(ConfigError) as err:
        session(workspace, cannot, lists=["sample"], send_at=when)
    assert err.value.key == "--send-at"
    assert "the fake provider cannot schedule a send" in err.value.message
    assert cannot.attempts == [] and cannot.schedules == []


def test_send_at_beyond_the_backends_limit(workspace: Path) -> None:
    short = Scheduling(max_ahead=timedelta(hours=1), cancel_margin=timedelta(minutes=1))
    backend = FakeBackend.with_capabilities(scheduling=short)()
    with pytest.raises(ConfigError) as err:
        session(
            workspace, backend, lists=["sample"], send_at=datetime.now(UTC) + timedelta(hours=2)
        )
    assert err.value.key == "--send-at" and "more than 1 hour ahead" in err.value.message
    assert err.value.hint == "the fake provider schedules at most 1 hour in advance"


def test_batch_size_above_the_backends_limit(workspace: Path) -> None:
    backend = FakeBackend.with_capabilities(max_batch=500)()
    set_send_config(workspace, batch_size=1000)
    with pytest.raises(ConfigError) as err:
        session(workspace, backend, lists=["sample"])
    assert err.value.key == "send.batch_size"
    assert "more than the fake provider takes in one request (500 recipients)" in err.value.message


def test_without_a_batch_size_the_backends_most_is_used(workspace: Path) -> None:
    backend = FakeBackend.with_capabilities(max_batch=4)()
    write_list(workspace, "ten", 10)
    s = session(workspace, backend, lists=["ten"])
    plan = s.plan()
    assert (plan.batch_size, plan.batches) == (4, 3)
    report = s.execute()
    s.close()
    assert [len(a.emails) for a in backend.attempts] == [4, 4, 2]
    assert report.recipients_sent == 10


def test_a_backend_without_per_recipient_values_posts_one_recipient_per_request(
    workspace: Path,
) -> None:
    single = FakeBackend.with_capabilities(substitutions=False)
    write_list(workspace, "three", 3)
    s = session(workspace, single(), lists=["three"])
    assert s.plan().batches == 3
    s.close()
    set_send_config(workspace, batch_size=10)
    with pytest.raises(ConfigError) as err:
        session(workspace, single(), lists=["three"])
    assert err.value.key == "send.batch_size"
    assert "cannot personalise several recipients in one request" in err.value.message


def test_tracking_on_a_backend_that_cannot_track(workspace: Path) -> None:
    blind = FakeBackend.with_capabilities(tracking=False)
    with pytest.raises(ConfigError) as err:
        session(workspace, blind(), lists=["sample"])
    assert err.value.key == "send.open_tracking"
    set_send_config(workspace, open_tracking=False, click_tracking=False)
    session(workspace, blind(), lists=["sample"]).close()  # nothing asked that it cannot do


def test_a_sandbox_switched_on_for_another_provider_is_not_ignored(workspace: Path) -> None:
    config = workspace / "newsletter.toml"
    config.write_text(
        config.read_text("utf-8").replace("sandbox_mode = false", "sandbox_mode = true"), "utf-8"
    )
    with pytest.raises(ConfigError) as err:
        session(workspace, FakeBackend(), lists=["sample"])
    assert err.value.key == "sendgrid.sandbox_mode"
    assert "they would really be delivered" in err.value.message
    # the outbox delivers nothing anyway; SendGrid honours its own sandbox
    session(workspace, None, lists=["sample"], backend="outbox").close()


def test_scheduled_send_through_a_backend_is_held_and_cancelled(workspace: Path) -> None:
    from newsletter.ledger import CANCELLED, SCHEDULED, Ledger
    from newsletter.schedule import cancel_send

    backend = FakeBackend()
    when = (datetime.now(UTC) + timedelta(days=5)).replace(microsecond=0)  # beyond SendGrid's 72 h
    s = session(workspace, backend, lists=["sample"], send_at=when)
    s.plan()
    report = s.execute()
    s.close()
    assert report.state == SCHEDULED
    assert {a.send_at for a in backend.attempts} == {int(when.timestamp())}
    with Ledger(workspace / ".newsletter" / "state.db") as ledger:
        [done] = cancel_send(Workspace(workspace), "2019-09", backend=backend, ledger=ledger)
    assert done.send.state == CANCELLED and backend.cancelled == backend.schedules


# --------------------------------------------------------------------------- registry


def test_auto_picks_the_first_backend_that_is_set_up(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = Workspace(workspace)
    assert open_backend(ws).name == "outbox"
    monkeypatch.setenv("SENDGRID_API_KEY", "SG.x")
    backend = open_backend(ws)
    assert backend.name == "sendgrid"
    backend.close()
    assert backend_choices() == ["auto", *BACKENDS]


def test_a_new_backend_is_one_registry_line(workspace: Path) -> None:
    """Registering tests/fakebackend.py (and nothing else) makes it a choice of --backend and
    of send.backend, and a send through it works end to end."""
    write_list(workspace, "five", 5)
    code = textwrap.dedent(
        """
        import sys
        from newsletter.esp import registry
        registry.BACKENDS["fake"] = "fakebackend:FakeBackend"
        from newsletter.cli import main
        sys.exit(main(sys.argv[1:]))
        """
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SENDGRID_", "NEWSLETTER_"))}
    env.update(TEST_ENV, PYTHONPATH=str(REPO / "tests"), COLUMNS="200")

    def newsletter(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", code, *args],
            cwd=workspace,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    helped = newsletter("send", "--help")
    assert "fake" in helped.stdout and "outbox" in helped.stdout, helped.stdout
    set_send_config(workspace, backend="fake")  # send.backend accepts it too
    planned = newsletter("send", "issues/2019-09.yaml", "--list", "five", "--dry-run")
    assert planned.returncode == 0, planned.stderr
    assert "dry run: nothing was sent" in planned.stdout  # it delivers: a dry run posts nothing
    sent = newsletter("send", "issues/2019-09.yaml", "--list", "five", "--backend", "fake", "--yes")
    assert sent.returncode == 0, sent.stderr
    assert "the fake provider" in sent.stdout  # the plan's destination, from describe()
    status = newsletter("status", "2019-09", "--format", "json")
    [row] = json.loads(status.stdout)["sends"]
    assert (row["backend"], row["state"], row["recipients_sent"]) == ("fake", "done", 5)


def test_an_unknown_backend_is_refused_with_the_choices(cli: Any) -> None:
    r = cli("send", "issues/2019-09.yaml", "--list", "sample", "--backend", "postmark")
    assert r.code == 2 and "Traceback" not in r.err
    assert "'postmark' is not one of 'auto', 'sendgrid', 'outbox'" in r.err


def test_the_cli_loads_no_provider_module_to_start() -> None:
    code = (
        "import sys, newsletter.cli.sending; "
        "print(sorted(m for m in ('httpx', 'newsletter.esp.sendgrid', 'newsletter.esp.outbox') "
        "if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "[]"
