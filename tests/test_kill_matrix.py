"""The kill matrix, in-suite size (issue 7): SIGKILL and SIGTERM at ten points of a
2,970-recipient send (3,000 rows with invalid, duplicate and suppressed ones; batches
of 250), each followed by the README's resume path, checked on the stand-in's record.

The scenarios run three at a time (tests/killmatrix.py: each its own workspace, its own
stand-in, real `newsletter send` processes) in one module fixture: the 20 take about 40 s
of CPU, under a minute on two cores; each test reads its scenario's outcome, so a
failure names the scenario.  ``-k`` runs only the scenarios it selects.  The big matrix (every batch
boundary and every wait, both signals): benchmarks/bench_kill_matrix.py.
"""

from __future__ import annotations

import signal
import time

import pytest

from killmatrix import WAITS, Outcome, Scenario, Setup, matrix, run_matrix, table

SETUP = Setup()  # 3,000 rows, 2,970 to reach, 12 batches
POINTS = [
    ("in_flight", 1),  # at the first batch
    ("in_flight", 6),
    ("in_flight", -1),  # at the last batch
    ("after_post", 1),  # right after a post
    ("after_post", 7),
    ("between", 4),  # between batches, no waits
    ("pacing", 3),  # during --rate pacing
    ("backoff", 5),  # during a 5xx backoff
    ("rate_limit", 8),  # during a 429 wait
    ("finishing", -1),  # after everything was posted, while finishing
]
SCENARIOS = matrix([signal.SIGKILL, signal.SIGTERM], POINTS)
CLEAN_PAUSE = [sc for sc in SCENARIOS if sc.point in WAITS or sc.sig != signal.SIGKILL]


def _name(sc: Scenario) -> str:
    return sc.name


@pytest.fixture(scope="module")
def outcomes(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Outcome]:
    """Every scenario that this run selected, three at a time."""
    selected: dict[str, Scenario] = {}
    for item in request.session.items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        sc = params.get("scenario")
        if isinstance(sc, Scenario) and getattr(item, "module", None) is request.module:
            selected[sc.name] = sc
    root = tmp_path_factory.mktemp("kill-matrix")
    started = time.monotonic()
    results = run_matrix(list(selected.values()), root, SETUP, workers=3)
    print(f"\nkill matrix: {len(results)} scenarios in {time.monotonic() - started:.1f} s")
    print(table(results))
    return {o.scenario.name: o for o in results}


def _story(o: Outcome) -> str:
    commands = ", ".join(f"{c} -> {code}" for c, code in o.commands)
    return (
        f"{o.scenario.name}: first process exit {o.first_exit} with {o.sends_at_kill} requests "
        f"received; {o.unknown_after_kill} unknown batch(es); then {commands}; "
        f"problems: {o.problems}; notes: {o.notes}; its stderr ends: {o.err_tail()!r}"
    )


@pytest.mark.parametrize("scenario", SCENARIOS, ids=_name)
def test_every_recipient_exactly_once_after_a_kill_and_the_resume_path(
    scenario: Scenario, outcomes: dict[str, Outcome]
) -> None:
    """Nobody twice, nobody lost, nobody suppressed or unlisted, and the send ends done."""
    o = outcomes[scenario.name]
    assert o.kept_promise, _story(o)
    assert (o.recipients, o.mailed, o.duplicates, o.lost) == (2970, 2970, 0, 0), _story(o)
    assert (o.suppressed_mailed, o.unlisted_mailed) == (0, 0)
    assert o.final_state == "done", _story(o)
    # The kill came where it was meant to: the process was still running, and for the
    # points tied to one request the stand-in had received exactly that many.
    if scenario.point != "finishing":
        assert not o.finished_before_kill, _story(o)
    n = scenario.n if scenario.n > 0 else SETUP.batches + 1 + scenario.n
    if scenario.point in ("in_flight", *WAITS):  # the next request cannot have left
        assert o.sends_at_kill == n, _story(o)
    if scenario.point == "after_post":  # the signal leaves as the 202 is written
        assert n <= o.sends_at_kill <= n + 1, _story(o)
    if scenario.sig == signal.SIGKILL and not o.finished_before_kill:
        assert o.first_exit == -signal.SIGKILL, _story(o)
    if scenario.sig == signal.SIGKILL and scenario.point == "in_flight":
        # The one kill that must ask: the request was out.  SendGrid (the stand-in) had
        # it, so --skip-unknown is the choice that reaches everyone once.
        assert o.unknown_after_kill == 1 and o.unknown_unreached == 0, _story(o)
        assert o.commands == [("--resume", 1), ("--resume --skip-unknown", 0)], _story(o)


@pytest.mark.parametrize("scenario", CLEAN_PAUSE, ids=_name)
def test_a_kill_during_a_wait_or_a_sigterm_needs_only_a_plain_resume(
    scenario: Scenario, outcomes: dict[str, Outcome]
) -> None:
    """During pacing, a 5xx backoff or a 429 wait no request is out, so nothing may be left
    unknown; SIGTERM pauses like Ctrl-C (exit 130, "paused").  `--resume --yes` alone
    finishes the send, without asking."""
    o = outcomes[scenario.name]
    assert o.misses() == [], _story(o)
    assert o.unknown_after_kill == 0 and o.plain_resume, _story(o)
    assert o.commands[0][0].startswith("--resume") and len(o.commands) == 1, _story(o)
    if scenario.sig == signal.SIGTERM and scenario.point != "finishing":
        assert o.first_exit == 130 and "paused" in o.first_err, _story(o)
        assert "Traceback" not in o.first_err


def test_the_matrix_is_big_enough() -> None:
    """Issue 7 asks for at least 20 scenarios, both signals, every kind of point."""
    assert len(SCENARIOS) >= 20
    assert {sc.sig for sc in SCENARIOS} == {signal.SIGKILL, signal.SIGTERM}
    assert {sc.point for sc in SCENARIOS} >= {
        "in_flight",
        "after_post",
        "between",
        "finishing",
        *WAITS,
    }
    assert SETUP.recipients >= 3000 and SETUP.batches >= 10
