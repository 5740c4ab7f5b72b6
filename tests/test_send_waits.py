"""A crash or a signal while a send waits (pacing, a 5xx backoff, a 429 wait) leaves
nothing in doubt: the batch provably never left, so a plain ``--resume`` posts it.

Only a process that dies while a request is out leaves an "unknown" batch
(tests/test_send_faults.py covers that case, and tests/test_kill_matrix.py kills
a send at many points).  Here the waits are long and the kill lands in them.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from conftest import run_cli
from newsletter.ledger import B_READY, B_SENT, DONE, PAUSED, Ledger
from stub_sendgrid import StubSendGrid, ok, rate_limited, status
from test_send import set_send_config, write_list
from test_send_faults import _cli_env, _start_send


def _wait_for_answer(stub: StubSendGrid, n: int, timeout: float = 60) -> None:
    """Until the n-th mail send was received (and, one moment later, answered)."""
    assert stub.wait_for_sends(n, timeout=timeout), f"request {n} never came"
    time.sleep(0.3)  # the answer is written at once; the process is then in its wait


def _batches(ws: Path) -> list[str]:
    with Ledger(ws / ".newsletter" / "state.db") as ledger:
        [summary] = ledger.sends("2019-09")
        return [b.state for b in ledger.batches(summary.id)]


@pytest.mark.parametrize(
    ("kill", "script", "config"),
    [
        pytest.param(
            signal.SIGKILL,
            (ok(), rate_limited(30.0, from_answer=True)),
            {},
            id="sigkill-during-429-wait",
        ),
        pytest.param(
            signal.SIGKILL,
            (ok(), status(503)),
            {"backoff_base": 30.0, "backoff_max": 30.0},
            id="sigkill-during-5xx-backoff",
        ),
        pytest.param(signal.SIGKILL, (ok(),), {"rate": 0.05}, id="sigkill-during-pacing"),
    ],
)
def test_a_kill_during_a_wait_leaves_no_unknown_batch(
    workspace: Path,
    stub: StubSendGrid,
    kill: signal.Signals,
    script: tuple[object, ...],
    config: dict[str, float],
) -> None:
    expected = write_list(workspace, "big", 2500, suppressed=3)
    set_send_config(workspace, **config)
    stub.script(*script)  # type: ignore[arg-type]
    proc = _start_send(workspace, stub.url, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_for_answer(stub, len(script))
    finally:
        proc.send_signal(kill)
        proc.wait(timeout=30)
    posted = len(stub.sends(accepted_only=False))
    assert posted == len(script)  # killed in the wait: nothing more went out
    states = _batches(workspace)
    assert states == [B_SENT, B_READY], states  # the waiting batch never left

    shown = run_cli("status", "2019-09", cwd=workspace, env=_cli_env(stub.url))
    assert "no answer" not in shown.out and "unknown" not in shown.out.replace("0 unknown", "")

    set_send_config(workspace, backoff_base=0.05, backoff_max=0.1, rate=1000.0)
    done = run_cli(
        "send", "issues/2019-09.yaml", "--resume", "--yes", cwd=workspace, env=_cli_env(stub.url)
    )
    assert done.code == 0, done.err
    assert Counter(stub.emails()) == Counter(expected)  # everyone exactly once
    with Ledger(workspace / ".newsletter" / "state.db") as ledger:
        [summary] = ledger.sends("2019-09")
        assert (summary.state, summary.recipients_sent, summary.recipients_unknown) == (
            DONE,
            len(expected),
            0,
        )


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_sigterm_and_sighup_pause_like_ctrl_c(
    workspace: Path, stub: StubSendGrid, sig: signal.Signals
) -> None:
    """Sent during a long 5xx backoff: the send pauses at once, cleanly, exit 130."""
    expected = write_list(workspace, "big", 2500)
    set_send_config(workspace, backoff_base=60.0, backoff_max=60.0)
    stub.script(ok(), status(503))
    proc = _start_send(
        workspace, stub.url, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        _wait_for_answer(stub, 2)
        started = time.monotonic()
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=30)
        took = time.monotonic() - started
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert f"{sig.name}: pausing after the batch in flight" in err
    assert "paused by the user" in err and "--resume" in err and "Traceback" not in err
    assert took < 10  # did not sit out the 60 s backoff
    assert _batches(workspace) == [B_SENT, B_READY]
    with Ledger(workspace / ".newsletter" / "state.db") as ledger:
        [summary] = ledger.sends("2019-09")
        assert summary.state == PAUSED

    set_send_config(workspace, backoff_base=0.05, backoff_max=0.1)
    done = run_cli(
        "send", "issues/2019-09.yaml", "--resume", "--yes", cwd=workspace, env=_cli_env(stub.url)
    )
    assert done.code == 0, done.err
    assert Counter(stub.emails()) == Counter(expected)


def test_a_closed_terminal_pauses_the_send_cleanly(workspace: Path, stub: StubSendGrid) -> None:
    """The send runs in a terminal (a pty) that is closed mid-send, as when an SSH session
    drops: every later write to it fails, yet the send pauses with no unknown batch, and
    --resume finishes it exactly once."""
    import os
    import pty

    expected = write_list(workspace, "big", 3000)
    set_send_config(workspace, batch_size=50, rate=20.0)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SENDGRID_", "NEWSLETTER_"))}
    env.update(_cli_env(stub.url))
    command = [sys.executable, "-m", "newsletter", "send", "issues/2019-09.yaml"]
    command += ["--list", "big", "--yes", "--backend", "sendgrid"]
    pid, fd = pty.fork()
    if pid == 0:  # the child: the send, with the pty as its terminal
        os.chdir(workspace)
        os.execve(sys.executable, command, env)
    try:
        assert stub.wait_for_sends(5, timeout=60)
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:  # keep reading, as a terminal does
            try:
                os.read(fd, 4096)
            except OSError:
                break
    finally:
        os.close(fd)  # the terminal hangs up: the kernel sends SIGHUP
    _, status_ = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status_) == 130
    with Ledger(workspace / ".newsletter" / "state.db") as ledger:
        [summary] = ledger.sends("2019-09")
        assert summary.state == PAUSED and summary.batches_unknown == 0
    set_send_config(workspace, rate=1000.0)
    done = run_cli(
        "send", "issues/2019-09.yaml", "--resume", "--yes", cwd=workspace, env=_cli_env(stub.url)
    )
    assert done.code == 0, done.err
    assert Counter(stub.emails()) == Counter(expected)
