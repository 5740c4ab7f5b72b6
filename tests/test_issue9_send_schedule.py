"""Issue 9, sending half: scheduling that says what it will do, and an outbox that keeps
each send apart.

Points 10 (--send-at in the forms people type; a time without a zone needs --timezone
or `send.timezone`; the plan and `status` show that zone and UTC), 11 (`status` of a
scheduled send says "scheduled for", `cancel` through the outbox does not speak of
SendGrid) and 12 (outbox/<issue>/<send>/, test copies and dry runs apart, a cancelled
send never mixed with a later one).
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from conftest import TEST_ENV, Cli
from newsletter.errors import ConfigError
from newsletter.schedule import parse_send_at, shown_time
from stub_sendgrid import StubSendGrid
from test_cli_send import sg_env
from test_send import set_send_config

NOW = datetime(2019, 9, 30, 14, 0, tzinfo=UTC)  # 08:00 in Costa Rica (UTC-6)
CR = "America/Costa_Rica"


# --------------------------------------------------------------------------- point 10


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("tomorrow 08:00", datetime(2019, 10, 1, 14, 0, tzinfo=UTC)),
        ("2019-10-01 08:00", datetime(2019, 10, 1, 14, 0, tzinfo=UTC)),
        ("2019-10-01T08:00", datetime(2019, 10, 1, 14, 0, tzinfo=UTC)),
        ("mañana 08:00", datetime(2019, 10, 1, 14, 0, tzinfo=UTC)),
        ("today 17:30", datetime(2019, 9, 30, 23, 30, tzinfo=UTC)),
        ("in 2 hours", datetime(2019, 9, 30, 16, 0, tzinfo=UTC)),
        ("2019-10-01T08:00+02:00", datetime(2019, 10, 1, 6, 0, tzinfo=UTC)),  # its own offset
    ],
)
def test_send_at_takes_the_forms_people_type(text: str, expected: datetime) -> None:
    when = parse_send_at(text, NOW, timezone=CR)
    assert when == expected
    assert when.tzinfo == ZoneInfo(CR)  # shown in the zone the user works in


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("tomorrow", "gives no time of day"),
        ("next week", "gives no time of day"),
        ("08:00", "gives a time but not the day"),
        ("whenever", "is not a date and time"),
        ("2019-09-29 08:00", "is in the past"),
        ("2019-10-05 08:00", "more than 72 hours ahead"),
    ],
)
def test_send_at_refuses_what_it_cannot_read_for_certain(text: str, words: str) -> None:
    with pytest.raises(ConfigError, match=words) as err:
        parse_send_at(text, NOW, timezone=CR)
    assert err.value.key == "--send-at"


def test_a_time_without_a_zone_needs_one_and_the_message_shows_how() -> None:
    for text in ("tomorrow 08:00", "2019-10-01 08:00"):
        with pytest.raises(ConfigError) as err:
            parse_send_at(text, NOW)
        assert "does not say in which time zone it is" in err.value.message
        assert "--timezone America/Costa_Rica" in str(err.value.hint)
        assert "2019-10-01T08:00-06:00" in str(err.value.hint)
    assert parse_send_at("2019-10-01T08:00Z", NOW) == datetime(2019, 10, 1, 8, tzinfo=UTC)
    assert parse_send_at("in 2 hours", NOW) == NOW + timedelta(hours=2)  # no zone needed
    with pytest.raises(ConfigError, match="'Costa Rica' is not a time zone name"):
        parse_send_at("tomorrow 08:00", NOW, timezone="Costa Rica")


def test_the_time_is_shown_in_the_zone_and_in_utc() -> None:
    when = parse_send_at("tomorrow 08:00", NOW, timezone=CR)
    assert shown_time(when) == "Tue 01 Oct 2019 08:00 America/Costa_Rica (14:00 UTC)"
    late = parse_send_at("today 20:00", NOW, timezone=CR)
    assert shown_time(late) == (
        "Mon 30 Sep 2019 20:00 America/Costa_Rica (Tue 01 Oct 2019 02:00 UTC)"
    )
    assert shown_time(datetime(2019, 10, 1, 8, tzinfo=UTC)) == "Tue 01 Oct 2019 08:00 UTC"


def test_words_are_read_only_when_send_at_is_given() -> None:
    """dateparser (and its language data) is imported by --send-at alone: other commands,
    and sends without it, start as fast as before."""
    code = (
        "import sys\n"
        "from newsletter.cli import main\n"
        "main(['send', '--help'])\n"
        "from newsletter.schedule import parse_send_at\n"
        "print('dateparser' in sys.modules, file=sys.stderr)\n"
        "from datetime import UTC, datetime\n"
        "parse_send_at('2019-10-01T08:00Z', datetime(2019, 9, 30, tzinfo=UTC))\n"
        "print('dateparser' in sys.modules, file=sys.stderr)\n"
        "parse_send_at('tomorrow 08:00', datetime(2019, 9, 30, tzinfo=UTC), timezone='UTC')\n"
        "print('dateparser' in sys.modules, file=sys.stderr)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60
    )
    assert out.stderr.split() == ["False", "False", "True"], out.stderr


def _in_hours(hours: int, zone: str = CR) -> str:
    """A wall-clock time `hours` from now in `zone`, as a person types it (no zone)."""
    return (datetime.now(ZoneInfo(zone)) + timedelta(hours=hours)).strftime("%Y-%m-%d %H:%M")


def test_cli_asks_for_a_zone_then_schedules_in_it_and_status_says_scheduled(
    cli: Cli, workspace: Path
) -> None:
    with StubSendGrid() as stub:
        env = sg_env(stub)
        when = _in_hours(5)
        r = cli("send", "issues/2019-09.yaml", "--list", "sample", "--send-at", when, env=env)
        assert r.code == 2 and "does not say in which time zone it is" in r.err
        assert "--timezone America/Costa_Rica" in r.err and stub.requests == []
        set_send_config(workspace, timezone=CR)
        r = cli(
            "send", "issues/2019-09.yaml", "--list", "sample", "--send-at", when, "--yes", env=env
        )
        assert r.code == 0, r.err
        [posted] = stub.sends()
    expected = datetime.strptime(when, "%Y-%m-%d %H:%M").replace(tzinfo=ZoneInfo(CR))
    assert posted.body["send_at"] == int(expected.timestamp())
    shown = shown_time(expected)
    assert shown.endswith(" UTC)") and " America/Costa_Rica (" in shown
    assert f"  scheduled for: {shown}" in r.out
    assert f"scheduled 4 recipients in 1 batch for {shown}" in r.out
    status = cli("status", env=env)
    assert f"via sendgrid  scheduled for {shown}" in status.out, status.out
    assert "4 planned, 4 scheduled, 0 pending" in status.out
    assert " sent" not in status.out.replace("batches 1/1 scheduled", "")
    madrid = cli("status", "--timezone", "Europe/Madrid", env=env)
    assert shown_time(expected, ZoneInfo("Europe/Madrid")) in madrid.out


def test_a_bad_send_timezone_setting_is_named(cli: Cli, workspace: Path) -> None:
    set_send_config(workspace, timezone="Costa Rica")
    r = cli("send", "issues/2019-09.yaml", "--list", "sample", "--backend", "outbox", "--dry-run")
    assert r.code == 2 and "send.timezone" in r.err and "America/Costa_Rica" in r.err


# --------------------------------------------------------------------------- points 11, 12


def _tree(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def test_the_outbox_keeps_each_send_apart(cli: Cli, workspace: Path) -> None:
    def send(*args: str) -> None:
        r = cli("send", "issues/2019-09.yaml", "--backend", "outbox", "--yes", *args, env=TEST_ENV)
        assert r.code == 0, r.err

    send("--list", "sample", "--dry-run")
    send("--test-to", "me@example.org, you@example.org")
    send("--list", "sample", "--send-at", _in_hours(5, "UTC"), "--timezone", "UTC")
    cancelled = cli("cancel", "2019-09", env=TEST_ENV)
    assert cancelled.code == 0, cancelled.err
    send("--list", "sample")
    send("--test-to", "me@example.org")
    folder = workspace / "outbox" / "2019-09"
    assert sorted(p.name for p in folder.iterdir()) == [
        "dry-run",
        "send-2-cancelled",
        "send-3",
        "test-1",
        "test-4",
    ]
    four = [
        f"batch-0001/0000{i}-{e}.eml"
        for i, e in enumerate(
            [
                "ana.lopez@example.org",
                "ben.carter@example.com",
                "diego.ramirez@example.org",
                "esther.moyo@example.com",
            ],
            start=1,
        )
    ]
    assert _tree(folder / "send-3") == ["batch-0001.json", *four]
    assert _tree(folder / "dry-run") == ["batch-0001.json", *four]
    assert _tree(folder / "send-2-cancelled") == ["SCHEDULED.txt", "batch-0001.json", *four]
    assert _tree(folder / "test-1") == [
        "batch-0001.json",
        "batch-0001/00001-me@example.org.eml",
        "batch-0001/00002-you@example.org.eml",
    ]
    assert _tree(folder / "test-4") == ["batch-0001.json", "batch-0001/00001-me@example.org.eml"]


def test_cancel_through_the_outbox_says_nothing_was_emailed(cli: Cli, workspace: Path) -> None:
    r = cli(
        "send",
        "issues/2019-09.yaml",
        "--list",
        "sample",
        "--backend",
        "outbox",
        "--yes",
        "--send-at",
        _in_hours(5),
        "--timezone",
        CR,
        env=TEST_ENV,
    )
    assert r.code == 0, r.err
    assert "4 recipients written to the outbox (nothing is emailed, then or now)" in r.out
    status = cli("status", "--timezone", CR)
    assert "scheduled for " in status.out and "America/Costa_Rica (" in status.out
    assert "(written to the outbox; nothing is emailed)" in status.out
    r = cli("cancel", "2019-09", "--timezone", CR)
    assert r.code == 0, r.err
    assert "SendGrid" not in r.out and "at the outbox" not in r.out
    assert r.out.startswith("cancelled scheduled send #1 of 2019-09 (was due ")
    assert "America/Costa_Rica (" in r.out
    assert (
        "it was only written to the outbox, so nothing was emailed; its files are now in "
        "outbox/2019-09/send-1-cancelled/"
    ) in r.out
    assert (workspace / "outbox" / "2019-09" / "send-1-cancelled" / "batch-0001.json").is_file()


def test_status_and_cancel_show_the_zone_the_send_was_scheduled_in(
    cli: Cli, workspace: Path
) -> None:
    """--timezone given on the command line only (no send.timezone): the zone is kept with
    the send, so a later `status` or `cancel` shows its time there, not in UTC."""
    with StubSendGrid() as stub:
        env = sg_env(stub)
        when = _in_hours(5, "Europe/Paris")
        r = cli(
            "send",
            "2019-09",
            "--list",
            "sample",
            "--send-at",
            when,
            "--timezone",
            "Europe/Paris",
            "--yes",
            env=env,
        )
        assert r.code == 0, r.err
        expected = datetime.strptime(when, "%Y-%m-%d %H:%M").replace(
            tzinfo=ZoneInfo("Europe/Paris")
        )
        shown = shown_time(expected, ZoneInfo("Europe/Paris"))
        assert " Europe/Paris (" in shown
        status = cli("status", env=env)
        assert f"scheduled for {shown}" in status.out, status.out
        cancelled = cli("cancel", "2019-09", env=env)
        assert cancelled.code == 0, cancelled.err
        assert shown in cancelled.out
