"""newsletter.toml: provider settings in their own table ([sendgrid]), the old [send] keys
still read with a one-time warning, and every error naming the key where it was written."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from newsletter.config import Workspace, load_config
from newsletter.errors import ConfigError
from newsletter.esp.sendgrid import SendGridSettings

DRY_RUN = ("send", "issues/2019-09.yaml", "--list", "sample", "--backend", "outbox")


def edit(ws: Path, old: str, new: str) -> Path:
    path = ws / "newsletter.toml"
    text = path.read_text("utf-8")
    assert old in text, old
    path.write_text(text.replace(old, new, 1), "utf-8")
    return path


def without_sendgrid_table(ws: Path) -> None:
    """An older newsletter.toml: no [sendgrid] table."""
    path = ws / "newsletter.toml"
    lines = path.read_text("utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("[sendgrid]"))
    end = next(i for i in range(start + 1, len(lines)) if lines[i].startswith("["))
    path.write_text("\n".join(lines[:start] + lines[end:]) + "\n", "utf-8")


def posted(ws: Path) -> dict[str, Any]:
    """The request the outbox wrote: what SendGrid would receive."""
    dry_run = ws / "outbox" / "2019-09" / "dry-run"  # a dry run's own folder (issue 9)
    data: dict[str, Any] = json.loads((dry_run / "batch-0001.json").read_text())
    return data


def test_sendgrid_settings_come_from_their_own_table(cli: Any, workspace: Path) -> None:
    edit(
        workspace,
        "[sendgrid]",
        '[sendgrid]\nasm_group_id = 42\nasm_groups_to_display = [42, 43]\nip_pool = "news"',
    )
    r = cli(*DRY_RUN, "--dry-run")
    assert r.code == 0, r.err
    assert "moved" not in r.err  # no deprecation warning
    body = posted(workspace)
    assert body["asm"] == {"group_id": 42, "groups_to_display": [42, 43]}
    assert body["ip_pool_name"] == "news"
    assert body["mail_settings"]["sandbox_mode"] == {"enable": False}


def test_old_send_keys_are_still_read_with_one_warning_naming_the_new_place(
    cli: Any, workspace: Path
) -> None:
    without_sendgrid_table(workspace)
    edit(workspace, "[send]\n", "[send]\nasm_group_id = 7\nsandbox_mode = true\n")
    r = cli(*DRY_RUN, "--dry-run")
    assert r.code == 0, r.err
    warnings = [line for line in r.err.splitlines() if "moved" in line]
    assert len(warnings) == 1, r.err
    assert (
        "`send.asm_group_id`, `send.sandbox_mode` have moved to the [sendgrid] table"
        in (warnings[0])
    )
    assert "still read" in warnings[0]
    body = posted(workspace)
    assert body["asm"] == {"group_id": 7}
    assert body["mail_settings"]["sandbox_mode"] == {"enable": True}


def test_the_warning_is_printed_once_per_process(
    workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    without_sendgrid_table(workspace)
    path = edit(workspace, "[send]\n", '[send]\nip_pool = "old"\n')
    first = load_config(path)
    second = load_config(path)
    assert first.provider(SendGridSettings).ip_pool == second.provider(SendGridSettings).ip_pool
    assert first.provider(SendGridSettings).ip_pool == "old"
    err = capsys.readouterr().err
    assert err.count("`send.ip_pool` has moved to the [sendgrid] table") == 1


def test_a_setting_in_both_places_is_an_error(cli: Any, workspace: Path) -> None:
    edit(workspace, "[send]\n", "[send]\nsandbox_mode = true\n")  # [sendgrid] also has it
    r = cli(*DRY_RUN, "--dry-run")
    assert r.code == 2 and "Traceback" not in r.err
    assert "`send.sandbox_mode` is also set as `sendgrid.sandbox_mode`" in r.err
    assert "delete it from [send]" in r.err


@pytest.mark.parametrize(
    ("old", "new", "key", "words"),
    [
        ("[sendgrid]", '[sendgrid]\nasm_group_id = "x"', "sendgrid.asm_group_id", "integer"),
        ("[send]\n", '[send]\nasm_group_id = "x"\n', "send.asm_group_id", "integer"),
        ("[sendgrid]", "[sendgrid]\nasm_grup_id = 1", "sendgrid.asm_grup_id", "unknown setting"),
        ("[send]\n", "[send]\nsandbox = true\n", "send.sandbox", "unknown setting"),
        ('backend = "auto"', 'backend = "postmark"', "send.backend", "auto, sendgrid, outbox"),
    ],
)
def test_errors_name_the_key_where_it_was_written(
    workspace: Path, old: str, new: str, key: str, words: str
) -> None:
    path = edit(workspace, old, new)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert err.value.key == key
    assert words in err.value.message


def test_a_provider_setting_that_is_not_a_table_is_an_error(workspace: Path) -> None:
    without_sendgrid_table(workspace)
    path = workspace / "newsletter.toml"
    path.write_text("sendgrid = 3\n" + path.read_text("utf-8"), "utf-8")
    with pytest.raises(ConfigError, match=r"`sendgrid` must be a table \(\[sendgrid\]\)"):
        load_config(path)


def test_tracking_stays_in_send_and_reaches_the_request(cli: Any, workspace: Path) -> None:
    edit(workspace, "open_tracking = true", "open_tracking = false")
    assert cli(*DRY_RUN, "--dry-run").code == 0
    assert posted(workspace)["tracking_settings"]["open_tracking"] == {"enable": False}


def test_batch_size_defaults_to_the_backends_most(workspace: Path) -> None:
    assert Workspace(workspace).config.send.batch_size is None  # the sample leaves it out
