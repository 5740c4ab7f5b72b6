"""The kill matrix (issue 7): kill a real `newsletter send` at a chosen point, follow the
README's resume path, and check on the stand-in SendGrid's record that every recipient
was mailed exactly once, nobody lost, no suppressed or unlisted address mailed.

A scenario is (signal, point); points are reached from the stand-in's side
(tests/stub_sendgrid.py), not by sleeping blindly.  N counts mail sends from 1
(negative: from the end, -1 the last batch):

    in_flight@N   request N received, its answer held 1 s (accepted): kill at once
    after_post@N  kill from the stand-in's thread the instant its 202 to N is written
    between@N     20 ms after the 202 to N: forming or starting the next batch
    pacing@N      `--rate 1`, 0.2 s after the 202 to N: waiting to pace
    backoff@N     N gets a 503 (backoff_base 2 s), 0.2 s later: waiting to retry
    rate_limit@N  N gets a 429 (X-RateLimit-Reset 3 s after it), 0.3 s later
    finishing     10 ms after the last 202: the send is finishing

Then ``send ISSUE --resume --yes``; only if that stops on a batch that got no answer,
the choice the README leaves to the user, made as one who looked the batch up at
SendGrid would (every personalization carries its ``nl_batch``): ``--skip-unknown``
when the stand-in had it (it counts a received request as delivered), and
``--resend-unknown`` when it never arrived (killed after the batch was marked
posting, before its request was out: skipping would lose it).  ``Setup(choice=
"skip")`` always skips.  The ledger is read with sqlite3, so any version of the
code can run (``Setup.tree``: a checkout of another commit).  The promise (``Outcome.problems``) and what
issue 7 adds (``Outcome.misses``: a kill during a wait leaves nothing unknown, so a
plain --resume suffices; SIGTERM/SIGHUP pause cleanly, exit 130) are kept apart.

Used by tests/test_kill_matrix.py and benchmarks/bench_kill_matrix.py.
"""

from __future__ import annotations

import math
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from conftest import REPO, SAMPLE_ISSUE, TEST_ENV
from stub_sendgrid import Action, Recorded, StubSendGrid, hang, ok, rate_limited, status
from test_send import set_send_config, write_list

ISSUE = SAMPLE_ISSUE  # issues/2019-09.yaml
LIST = "big"

# point: (what the send is doing, seconds from the stand-in's event to the kill)
POINTS: dict[str, tuple[str, float]] = {
    "in_flight": ("request out, answer held", 0.0),
    "after_post": ("the instant of a 202", 0.0),
    "between": ("20 ms after a 202 (no waits)", 0.02),
    "pacing": ("waiting for --rate", 0.2),
    "backoff": ("waiting to retry a 503", 0.2),
    "rate_limit": ("waiting for a 429's reset", 0.3),
    "finishing": ("after the last 202", 0.01),
}
WAITS = frozenset({"pacing", "backoff", "rate_limit"})
PAUSE_SIGNALS = frozenset({signal.SIGINT, signal.SIGTERM, signal.SIGHUP})
UNKNOWN_STATES = ("posting", "unknown")  # a batch whose request left without an answer


@dataclass(frozen=True)
class Scenario:
    sig: signal.Signals
    point: str
    n: int  # the mail send the point is tied to, from 1; negative: from the end

    def __post_init__(self) -> None:
        if self.point not in POINTS or self.n == 0:
            raise ValueError(f"no such kill point: {self.point}@{self.n}")

    @property
    def name(self) -> str:
        where = str(self.n) if self.n > 0 else "last" if self.n == -1 else f"last{self.n + 1}"
        return f"{self.sig.name}-{self.point}@{where}"


@dataclass(frozen=True)
class Setup:
    """One scenario's send: the list, the [send] settings and the code that runs."""

    recipients: int = 3000
    invalid: int = 20
    duplicates: int = 20
    suppressed: int = 30
    batch_size: int = 250
    timeout: float = 5.0  # send.timeout; an in-flight answer is held 1 s
    # The waits are long enough for a busy machine: the kill comes 0.2-0.3 s into them.
    backoff_base: float = 2.0  # a 503 makes the send wait 1 to 2 s
    rate: float = 1.0  # --rate for the pacing points (a second: room on a busy machine)
    reset_in: float = 3.0  # a 429's X-RateLimit-Reset, from its answer
    tree: Path | None = None  # another checkout: its src/ runs, its workspace files are used
    choice: Literal["informed", "skip"] = "informed"  # for a batch that got no answer
    command_timeout: float = 60.0

    @property
    def batches(self) -> int:
        return math.ceil((self.recipients - self.suppressed) / self.batch_size)


@dataclass
class Outcome:
    scenario: Scenario
    recipients: int = 0  # who should get the issue
    mailed: int = 0  # personalizations the stand-in accepted
    duplicates: int = 0  # extra copies
    lost: int = 0  # expected recipients never mailed
    suppressed_mailed: int = 0  # suppressed addresses in any request
    unlisted_mailed: int = 0  # addresses not on the list in any request
    first_exit: int | None = None
    first_err: str = ""
    finished_before_kill: bool = False  # the send ended by itself first
    sends_at_kill: int = 0  # requests the stand-in had received when the signal went
    state_after_kill: str = ""  # the send's state in the ledger right after the kill
    unknown_after_kill: int = 0  # batches the kill left posted without an answer
    unknown_unreached: int = 0  # ... of which the stand-in never received the request
    commands: list[tuple[str, int]] = field(default_factory=list)  # resume commands run
    plain_resume: bool = False  # `--resume --yes` alone was enough
    final_state: str = ""
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)  # the promise broken (or no resume)
    notes: list[str] = field(default_factory=list)

    @property
    def kept_promise(self) -> bool:
        return not self.problems

    def err_tail(self, lines: int = 4) -> str:
        """The end of what the killed process printed, without the list's warnings."""
        said = [x for x in self.first_err.splitlines() if not x.startswith("warning:")]
        return "\n".join(said[-lines:])

    def misses(self) -> list[str]:
        """What issue 7 adds beyond the promise: waits leave nothing unknown, so a plain
        --resume suffices; SIGTERM/SIGHUP pause cleanly (exit 130, "paused", no unknown)."""
        sc, out = self.scenario, []
        if sc.point in WAITS:
            if self.unknown_after_kill:
                out.append(
                    f"a kill while {POINTS[sc.point][0]} left {self.unknown_after_kill} unknown batch(es)"
                )
            if not self.plain_resume:
                out.append("a plain --resume was not enough")
        if sc.sig in PAUSE_SIGNALS:
            # Once the send is recorded done there is nothing left to pause: the process
            # may end 0, or (the signal came as it exited) die of the signal.
            # A signal that lands while the last batch is in flight lets that batch finish:
            # the send is then done (exit 0), with nothing left to pause.
            ended_done = self.state_after_kill == "done" and (
                sc.point == "finishing" or self.first_exit == 0
            )
            if self.first_exit != 130 and not ended_done:
                out.append(f"{sc.sig.name}: exit code {self.first_exit}, not 130")
            if self.first_exit == 130 and "paused" not in self.first_err:
                out.append(f'{sc.sig.name}: no "paused" in what it printed')
            if self.unknown_after_kill:
                out.append(f"{sc.sig.name} left {self.unknown_after_kill} unknown batch(es)")
        return out


# --------------------------------------------------------------------------- one scenario


def make_workspace(ws: Path, tree: Path = REPO) -> Path:
    """A workspace like the `workspace` fixture's (tests/conftest.py)."""
    ws.mkdir(parents=True)
    shutil.copy(tree / "newsletter.toml", ws / "newsletter.toml")
    shutil.copytree(tree / "templates", ws / "templates")
    (ws / "issues").mkdir()
    shutil.copy(tree / SAMPLE_ISSUE, ws / SAMPLE_ISSUE)
    shutil.copytree(tree / "subscribers", ws / "subscribers")
    return ws


def cli_env(stub_url: str, pythonpath: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SENDGRID_", "NEWSLETTER_"))}
    env.update(
        NEWSLETTER_SECRET=TEST_ENV["NEWSLETTER_SECRET"],
        SENDGRID_API_KEY="SG.test-key",
        SENDGRID_API_HOST=stub_url,
        COLUMNS="200",
    )
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    return env


def _script(point: str, n: int, setup: Setup) -> list[Action]:
    before = [ok()] * (n - 1)
    if point == "in_flight":
        return [*before, hang(1.0, accepted=True)]  # answered 202 a second later
    if point == "backoff":
        return [*before, status(503)]
    if point == "rate_limit":
        return [*before, rate_limited(setup.reset_in, from_answer=True)]
    return []


def _query(ws: Path, sql: str, *params: object) -> list[tuple[object, ...]]:
    db = ws / ".newsletter" / "state.db"
    if not db.exists():
        return []
    con = sqlite3.connect(db)
    try:
        return list(con.execute(sql, params))
    except sqlite3.OperationalError:  # the send died before it made its tables
        return []
    finally:
        con.close()


def ledger_rows(ws: Path) -> tuple[list[str], Counter[str]]:
    """(every send's state, batch states counted), read straight from the SQLite file."""
    sends = [str(r[0]) for r in _query(ws, "SELECT state FROM sends ORDER BY id")]
    batches = Counter(
        {
            str(r[0]): int(str(r[1]))
            for r in _query(ws, "SELECT state, COUNT(*) FROM batches GROUP BY state")
        }
    )
    return sends, batches


def unknown_batch_ids(ws: Path) -> set[str]:
    """The ledger ids of batches posted without an answer."""
    marks = ",".join("?" * len(UNKNOWN_STATES))
    return {
        str(r[0])
        for r in _query(ws, f"SELECT id FROM batches WHERE state IN ({marks})", *UNKNOWN_STATES)
    }


def batches_received(stub: StubSendGrid) -> set[str]:
    """The ledger ids of the batches the stand-in accepted a request of (``nl_batch``)."""
    return {
        str(p.get("custom_args", {}).get("nl_batch"))
        for r in stub.sends()
        for p in r.body["personalizations"]
    }


def _addresses(path: Path) -> set[str]:
    if not path.exists():
        return set()
    lines = path.read_text("utf-8").splitlines()[1:]
    return {a for a in (line.split(",", 1)[0].strip().lower() for line in lines) if "@" in a}


class _Killer:
    """Sends the signal once, from the stand-in's serving thread or the harness."""

    def __init__(
        self, proc: subprocess.Popen[bytes], sig: signal.Signals, stub: StubSendGrid
    ) -> None:
        self.proc, self.sig, self.stub = proc, sig, stub
        self.sent = False  # the kill point was reached
        self.delivered = False  # ... and the process was still running then
        self.sends_at_kill = 0
        self._lock = threading.Lock()

    def __call__(self) -> None:
        with self._lock:
            if self.sent:
                return
            self.sent = True
            self.sends_at_kill = self.stub.stats["sends"]
            if self.proc.poll() is None:
                try:
                    self.proc.send_signal(self.sig)
                    self.delivered = True
                except ProcessLookupError:
                    pass


def run_scenario(sc: Scenario, root: Path, setup: Setup | None = None) -> Outcome:
    """Run one scenario in ``root`` (a fresh folder): its workspace, its stand-in."""
    setup = setup or Setup()
    started = time.monotonic()
    out = Outcome(sc)
    ws = make_workspace(root / "ws", setup.tree or REPO)
    expected = write_list(
        ws,
        LIST,
        setup.recipients,
        invalid=setup.invalid,
        duplicates=setup.duplicates,
        suppressed=setup.suppressed,
    )
    set_send_config(
        ws,
        batch_size=setup.batch_size,
        timeout=setup.timeout,
        backoff_base=setup.backoff_base,
        backoff_max=setup.backoff_base * 2,
    )
    n = sc.n if sc.n > 0 else setup.batches + 1 + sc.n
    if sc.point == "finishing":
        n = setup.batches
    if not 1 <= n <= setup.batches:
        raise ValueError(f"{sc.name}: the send has only {setup.batches} batches")
    with StubSendGrid() as stub:
        env = cli_env(stub.url, str(setup.tree / "src") if setup.tree else None)
        stub.script(*_script(sc.point, n, setup))
        args = ["send", ISSUE, "--list", LIST, "--yes", "--backend", "sendgrid"]
        if sc.point == "pacing":
            args += ["--rate", str(setup.rate)]
        with (root / "first.out").open("wb") as fout, (root / "first.err").open("wb") as ferr:
            proc = subprocess.Popen(
                [sys.executable, "-m", "newsletter", *args],
                cwd=ws,
                env=env,
                stdout=fout,
                stderr=ferr,
            )
            killer = _Killer(proc, sc.sig, stub)
            try:
                _kill_at(sc.point, n, stub, proc, killer, setup.command_timeout)
                proc.wait(timeout=setup.command_timeout)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
                    out.problems.append(f"the first process did not stop after {sc.sig.name}")
        out.first_exit = proc.returncode
        out.first_err = (root / "first.err").read_text("utf-8", "replace")
        out.sends_at_kill = killer.sends_at_kill
        out.finished_before_kill = not killer.delivered
        if not killer.delivered and proc.returncode:
            out.problems.append(
                f"the send failed by itself (exit {proc.returncode}): {out.err_tail(2)}"
            )
        elif not killer.delivered:
            out.notes.append("the send ended before the signal")
        out.state_after_kill = ",".join(ledger_rows(ws)[0])
        if (
            sc.sig in PAUSE_SIGNALS
            and proc.returncode == -sc.sig
            and out.state_after_kill == "done"
        ):
            out.notes.append(f"{sc.sig.name} after the send was recorded done killed it")
        unknown = unknown_batch_ids(ws)
        out.unknown_after_kill = len(unknown)
        out.unknown_unreached = len(unknown - batches_received(stub))
        if out.unknown_unreached:
            how = "half-sent" if stub.truncated else "not yet sent"
            out.notes.append(f"the unknown batch's request never arrived ({how})")
        _resume(ws, env, out, setup)
        _figures(ws, stub, expected, out)
    sends, batches = ledger_rows(ws)
    out.final_state = ",".join(sends)
    if sends[-1:] != ["done"]:
        out.problems.append(f"the send is {out.final_state or 'not in the ledger'}, not done")
    if any(batches[s] for s in UNKNOWN_STATES):
        out.problems.append("batches are still unknown at the end")
    out.seconds = time.monotonic() - started
    return out


def _kill_at(
    point: str,
    n: int,
    stub: StubSendGrid,
    proc: subprocess.Popen[bytes],
    killer: _Killer,
    timeout: float,
) -> None:
    """Wait for the point on the stand-in's side (or the process's end), then kill."""
    if point == "after_post":

        def at_answer(number: int, record: Recorded) -> None:
            if number == n:
                killer()

        stub.on_answer = at_answer  # the signal leaves from the thread that wrote the 202
    reached: Callable[[float], bool]
    if point == "in_flight":
        reached = lambda t: stub.wait_for_sends(n, t)  # noqa: E731
    else:
        reached = lambda t: stub.wait_for_answers(n, t)  # noqa: E731
    deadline = time.monotonic() + timeout
    while not reached(0.02):
        if proc.poll() is not None or time.monotonic() > deadline:
            return
    delay = POINTS[point][1]
    if delay:
        time.sleep(delay)
    killer()


def _resume(ws: Path, env: dict[str, str], out: Outcome, setup: Setup) -> None:
    """The README's path: --resume; the user's choice only when it stops on a batch that
    got no answer."""
    timeout = setup.command_timeout
    plain = _cli(ws, env, timeout, "send", ISSUE, "--resume", "--yes")
    out.commands.append(("--resume", plain.returncode))
    if plain.returncode == 0:
        out.plain_resume = True
        return
    if "no paused, failed or interrupted send" in plain.stderr:
        out.plain_resume = True  # the send had finished: nothing to resume
        out.commands[-1] = ("--resume (nothing to resume)", plain.returncode)
        return
    asks = plain.returncode == 1 and "--skip-unknown" in plain.stderr and "answer" in plain.stderr
    if not asks:
        out.problems.append(f"--resume failed (exit {plain.returncode}): {_tail(plain.stderr)}")
        return
    resend = setup.choice == "informed" and out.unknown_unreached == out.unknown_after_kill > 0
    option = "--resend-unknown" if resend else "--skip-unknown"
    chosen = _cli(ws, env, timeout, "send", ISSUE, "--resume", option, "--yes")
    out.commands.append((f"--resume {option}", chosen.returncode))
    if chosen.returncode != 0:
        out.problems.append(
            f"--resume {option} failed (exit {chosen.returncode}): {_tail(chosen.stderr)}"
        )


def _cli(
    ws: Path, env: dict[str, str], timeout: float, *args: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "newsletter", *args],
        cwd=ws,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def _tail(text: str, lines: int = 3) -> str:
    return " / ".join(text.strip().splitlines()[-lines:])


def _figures(ws: Path, stub: StubSendGrid, expected: Sequence[str], out: Outcome) -> None:
    accepted = Counter(e.lower() for e in stub.emails())
    anything = {e.lower() for e in stub.emails(accepted_only=False)}
    wanted = {e.lower() for e in expected}
    listed = _addresses(ws / "subscribers" / f"{LIST}.csv")
    suppressed = _addresses(ws / "subscribers" / "suppressions.csv")
    out.recipients = len(wanted)
    out.mailed = sum(accepted.values())
    out.duplicates = sum(c - 1 for c in accepted.values() if c > 1)
    out.lost = len(wanted - accepted.keys())
    out.suppressed_mailed = len(anything & suppressed)
    out.unlisted_mailed = len(anything - listed)
    for what, count in (
        ("duplicate(s)", out.duplicates),
        ("lost", out.lost),
        ("suppressed address(es) mailed", out.suppressed_mailed),
        ("unlisted address(es) mailed", out.unlisted_mailed),
    ):
        if count:
            out.problems.append(f"{count} {what}")


# --------------------------------------------------------------------------- many


def matrix(signals: Iterable[signal.Signals], points: Iterable[tuple[str, int]]) -> list[Scenario]:
    pts = list(points)
    return [Scenario(s, p, n) for s in signals for p, n in pts]


def run_matrix(
    scenarios: Sequence[Scenario],
    root: Path,
    setup: Setup | None = None,
    *,
    workers: int = 3,
    on_done: Callable[[Outcome], None] | None = None,
    budget: float | None = None,
) -> list[Outcome]:
    """Every scenario in its own folder under ``root`` and its own stand-in, ``workers`` at
    a time (each is mostly one CLI process; the stand-ins share this process).  With a
    ``budget`` (seconds), scenarios not started by then are left out of the result."""
    end = None if budget is None else time.monotonic() + budget

    def one(sc: Scenario) -> Outcome | None:
        if end is not None and time.monotonic() > end:
            return None
        folder = root / sc.name
        folder.mkdir(parents=True)
        try:
            result = run_scenario(sc, folder, setup)
        except Exception as exc:  # a harness failure is reported as that scenario's
            result = Outcome(sc, problems=[f"harness error: {exc!r}"])
        if on_done is not None:
            on_done(result)
        return result

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return [o for o in pool.map(one, scenarios) if o is not None]


def totals(outcomes: Sequence[Outcome]) -> dict[str, int]:
    return {
        "scenarios": len(outcomes),
        "recipients": sum(o.recipients for o in outcomes),
        "duplicates": sum(o.duplicates for o in outcomes),
        "lost": sum(o.lost for o in outcomes),
        "suppressed_mailed": sum(o.suppressed_mailed for o in outcomes),
        "unlisted_mailed": sum(o.unlisted_mailed for o in outcomes),
        "plain_resume": sum(o.plain_resume for o in outcomes),
        "skip_resume": sum(any("skip" in c for c, _ in o.commands) for o in outcomes),
        "resend_resume": sum(any("resend" in c for c, _ in o.commands) for o in outcomes),
        "unknown_after_kill": sum(o.unknown_after_kill > 0 for o in outcomes),
        "unknown_unreached": sum(o.unknown_unreached > 0 for o in outcomes),
        "promise_broken": sum(not o.kept_promise for o in outcomes),
        "misses": sum(bool(o.misses()) for o in outcomes),
    }


def table(outcomes: Sequence[Outcome]) -> str:
    """One line per scenario and a total line: the figures issue 7's closing note asks for.

    exit: the killed process's exit code; @kill: requests the stand-in had received at
    the kill; unkn: batches it left unknown (!: SendGrid never got it); resume: plain
    --resume was enough, or it asked and --skip-unknown / --resend-unknown followed."""
    head = (
        f"{'scenario':<26} {'exit':>4} {'@kill':>5} {'unkn':>4} {'resume':<7} "
        f"{'recip':>6} {'dup':>4} {'lost':>5} {'supp':>4} {'unl':>4} {'s':>5}  result"
    )
    rows = [head, "-" * len(head)]
    for o in outcomes:
        resume = "plain" if o.plain_resume else "failed"
        if len(o.commands) > 1:
            resume = "+resend" if "resend" in o.commands[-1][0] else "+skip"
        unknown = str(o.unknown_after_kill) + ("!" if o.unknown_unreached else "")
        verdict = "; ".join(o.problems + o.misses()) or "ok"
        if o.notes:
            verdict += f" ({'; '.join(o.notes)})"
        rows.append(
            f"{o.scenario.name:<26} {o.first_exit if o.first_exit is not None else '-':>4} "
            f"{o.sends_at_kill:>5} {unknown:>4} {resume:<7} {o.recipients:>6} "
            f"{o.duplicates:>4} {o.lost:>5} {o.suppressed_mailed:>4} {o.unlisted_mailed:>4} "
            f"{o.seconds:>5.1f}  {verdict}"
        )
    t = totals(outcomes)
    rows.append("-" * len(head))
    rows.append(
        f"{t['scenarios']} scenarios, {t['recipients']:,} recipients: {t['duplicates']} duplicates, "
        f"{t['lost']} lost, {t['suppressed_mailed']} suppressed mailed, {t['unlisted_mailed']} "
        f"unlisted mailed; plain --resume sufficed in {t['plain_resume']}, "
        f"--skip-unknown was chosen in {t['skip_resume']} and --resend-unknown in "
        f"{t['resend_resume']} (unknown batches SendGrid never got: {t['unknown_unreached']}); "
        f"{t['promise_broken']} broke the promise, {t['misses']} missed issue 7's extras"
    )
    return "\n".join(rows)
