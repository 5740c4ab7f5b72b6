"""Issue 9, sending half: what `send`, `status`, `cancel`, `report` and `--help` say.

Points 2 (a dry run of a draft says so first), 3 (every problem, with its level and the
path as the workspace shows it), 13 (the outbox never reads as "sent"; `report` of an
outbox-only issue says why it has no figures) and 17 (plain help texts, "1 recipient").
Everything is asserted on the real command's output.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from conftest import Cli, run_cli
from stub_sendgrid import StubSendGrid
from test_cli_send import sg_env

DRY = ("send", "issues/2019-09.yaml", "--list", "sample", "--backend", "outbox", "--dry-run")


def make_draft(workspace: Path) -> Path:
    path = workspace / "issues" / "2019-09.yaml"
    path.write_text("draft: true\n" + path.read_text("utf-8"), "utf-8")
    return path


# --------------------------------------------------------------------------- point 2


def test_a_dry_run_of_a_draft_says_first_that_it_cannot_be_sent(cli: Cli, workspace: Path) -> None:
    make_draft(workspace)
    r = cli(*DRY)
    assert r.code == 0, r.err
    first = r.out.splitlines()[0]
    assert first.startswith("DRAFT: issues/2019-09.yaml is marked `draft: true`"), r.out
    assert "cannot be sent" in first and "dry run only shows what a send would do" in first
    assert "Send plan for 2019-09" in r.out.splitlines()[1]
    last = r.out.strip().splitlines()[-1]
    assert last.startswith("dry run: wrote 1 batch file and 4 .eml files")
    assert "this draft cannot be sent until its `draft: true` line is removed" in last
    real = cli(*DRY[:-1], "--yes")
    assert real.code == 1
    assert "error: issues/2019-09.yaml is marked as a draft, so it cannot be sent" in real.err


def test_a_test_copy_of_a_draft_says_only_test_copies_can_go(cli: Cli, workspace: Path) -> None:
    make_draft(workspace)
    r = cli(
        "send", "issues/2019-09.yaml", "--test-to", "me@example.org", "--backend", "outbox", "--yes"
    )
    assert r.code == 0, r.err
    assert r.out.startswith("DRAFT: issues/2019-09.yaml is marked `draft: true`, so only test")


# --------------------------------------------------------------------------- point 3


def _broken(workspace: Path) -> None:
    """One error (an impossible date) and two warnings (a draft, an http link)."""
    path = make_draft(workspace)
    text = path.read_text("utf-8")
    text = re.sub(r"^date: .*$", "date: 2019-13-45", text, count=1, flags=re.M)
    text = text.replace("url: https://", "url: http://", 1)
    path.write_text(text, "utf-8")


def _problem_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if "issues/2019-09.yaml:" in line]


def test_a_refused_send_lists_errors_and_warnings_each_with_its_level(
    cli: Cli, workspace: Path
) -> None:
    _broken(workspace)
    r = cli(*DRY)
    assert r.code == 1
    lines = _problem_lines(r.err)
    assert len(lines) == 4, r.err  # 1 error, 2 warnings, and the summary
    assert lines[0].startswith("error: issues/2019-09.yaml:") and "not a real date" in lines[0]
    assert all(line.startswith("warning: issues/2019-09.yaml:") for line in lines[1:3])
    assert any("draft" in line for line in lines[1:3])
    assert any("not https" in line for line in lines[1:3])
    assert lines[3] == (
        "issues/2019-09.yaml: 1 error, 2 warnings: nothing was sent; fix the errors "
        "(`newsletter check issues/2019-09.yaml` lists them again), then send again"
    )
    assert str(workspace) not in r.err and "Traceback" not in r.err
    assert not (workspace / "outbox").exists()


def test_paths_are_the_workspaces_from_another_folder_too(workspace: Path) -> None:
    _broken(workspace)
    r = run_cli(
        "-w",
        str(workspace),
        *DRY[:1],
        str(workspace / "issues" / "2019-09.yaml"),
        *DRY[2:],
        cwd=workspace.parent,
    )
    assert r.code == 1
    assert _problem_lines(r.err)[0].startswith("error: issues/2019-09.yaml:7:1: date:")
    assert str(workspace) not in r.err


def test_a_broken_list_is_named_as_the_user_knows_it(cli: Cli, workspace: Path) -> None:
    (workspace / "subscribers" / "broken.csv").write_text('email,name\n"bad\n', "utf-8")
    r = cli("send", "issues/2019-09.yaml", "--list", "broken", "--backend", "outbox", "--dry-run")
    assert r.code == 1
    [line] = [line for line in r.err.splitlines() if line.startswith("error:")]
    assert line.startswith("error: subscribers/broken.csv:2: "), line
    assert "/tmp" not in line and "Traceback" not in r.err


# --------------------------------------------------------------------------- point 13


def test_an_outbox_send_says_written_to_the_outbox_never_sent(cli: Cli, workspace: Path) -> None:
    r = cli("send", "issues/2019-09.yaml", "--list", "sample", "--backend", "outbox", "--yes")
    assert r.code == 0, r.err
    assert (
        "4 recipients written to the outbox (nothing was emailed) in 1 batch: "
        "outbox/2019-09/send-1/; send #1 is done"
    ) in r.out
    assert "sent 4" not in r.out
    shown = cli("status")
    assert "via outbox  done (written to the outbox; nothing is emailed)" in shown.out
    assert "4 planned, 4 written, 0 pending" in shown.out


def test_report_of_an_outbox_only_issue_says_there_are_no_delivery_events(
    cli: Cli, workspace: Path
) -> None:
    assert (
        cli("send", "issues/2019-09.yaml", "--list", "sample", "--backend", "outbox", "--yes").code
        == 0
    )
    r = cli("report", "2019-09")
    assert r.code == 0, r.err
    assert r.out.startswith(
        "note: 2019-09 was only written to the outbox (nothing was emailed): outbox sends "
        "get no delivery events, so there are no deliveries, opens or clicks to report"
    )
    assert re.search(r"written to the outbox\s*│\s*4\s*│", r.out), r.out
    data = cli("report", "2019-09", "--format", "json").out
    assert '"outbox": 4' in data and '"sent": 0' in data


# --------------------------------------------------------------------------- point 17


def test_one_recipient_is_one_recipient_everywhere(cli: Cli, workspace: Path) -> None:
    (workspace / "subscribers" / "one.csv").write_text("email\nsolo@example.org\n", "utf-8")
    with StubSendGrid() as stub:
        env = sg_env(stub)
        sent = cli("send", "issues/2019-09.yaml", "--list", "one", "--yes", env=env)
        assert sent.code == 0, sent.err
        assert "sent 1 recipient in 1 batch; send #1 is done" in sent.out
        declined = cli(
            "send", "issues/2019-09.yaml", "--list", "one", "--force-resend", env=env, input="n\n"
        )
        assert "Send 2019-09 to 1 recipient?" in declined.out
        shown = cli("status", env=env)
        test = cli("send", "issues/2019-09.yaml", "--test-to", "me@example.org", "--yes", env=env)
        assert "test copy sent to 1 address (test send #2)" in test.out
    for text in (sent.out, sent.err, declined.out, shown.out, test.out):
        assert not re.search(r"\b1 (recipients|batches|addresses|subscribers)\b", text), text
        assert "(s)" not in text and "(es)" not in text, text


HELP_NOISE = ("<list[str]>", "<float range>", "<int range>", "x>=", "<=x<=", "<str>", "<path>")


@pytest.mark.parametrize(
    "command",
    [
        "send",
        "status",
        "cancel",
        "preview",
        "serve",
        "report",
        "studio",
        "translate",
        "signup-form",
        "new",
        "check",
        "build",
        "archive",
    ],
)
def test_help_texts_have_no_type_names_and_nothing_cut_short(
    command: str, sample_workspace: Path
) -> None:
    r = run_cli(command, "--help", cwd=sample_workspace, env={"COLUMNS": "80"})
    assert r.code == 0, r.err
    for noise in HELP_NOISE:
        assert noise not in r.out, (noise, r.out)
    usage = r.out.splitlines()[0]
    assert "{" not in usage and "[[" not in usage, usage
    listing = run_cli("--help", cwd=sample_workspace, env={"COLUMNS": "80"}).out
    [line] = [line for line in listing.splitlines() if line.split()[:1] == [command]]
    assert not line.endswith("..."), line  # its one-line description is whole


def test_send_help_names_the_values_people_type(sample_workspace: Path) -> None:
    out = run_cli("send", "--help", cwd=sample_workspace, env={"COLUMNS": "80"}).out
    for option in ("--list NAME", "--tag TAG", "--send-at TIME", "--timezone ZONE", "--rate N"):
        assert option in out, out
    assert "Maria Comms" in out  # --test-to takes a name


def test_a_rate_below_the_minimum_is_still_refused(cli: Cli) -> None:
    r = cli(*DRY, "--rate", "0")
    assert r.code == 2 and "--rate" in r.err and "0.01" in r.err
