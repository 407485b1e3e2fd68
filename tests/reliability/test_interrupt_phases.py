"""SIGTERM and Ctrl-C (SIGINT) in each phase of a trial: exit 130, a consistent database, and a resume.

The signal is raised from inside the phase itself (the run's functions get a wrapper around the function that
does that phase's work; the write is Optuna's `Study.tell`), so each phase is hit deterministically; Python
runs the handler right there, exactly as when the signal comes from outside while that code runs. The order
within a trial is the runner's: measuring (FLOPs, params), building (the model that trains), training,
writing (telling Optuna the result).
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState
from reliability_helpers import FIGURES, by_state, finished, grid_size, lost, trials_of, write_grid
from run_helpers import on_cpu

from gcsearch.cli import main
from gcsearch.run.functions import TrialFunctions, default_functions

SIGNALS = {"SIGTERM": signal.SIGTERM, "SIGINT": signal.SIGINT}
VICTIM = 1  # the phase is interrupted in the second trial, so one finished trial is there to keep


@pytest.fixture(autouse=True)
def ctrl_c_raises() -> Iterator[None]:
    """Ctrl-C as a terminal delivers it to a foreground process: Python's KeyboardInterrupt. A test process
    started in the background (`cmd &` from a script) inherits SIGINT ignored, and a process that ignores it
    rightly stays deaf to it, so the handler is set here rather than inherited."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


class Trigger:
    """Raises `signum` the first time `phase` runs in trial VICTIM (counted by calls of that phase)."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        self.calls = 0
        self.fired = False

    def __call__(self) -> None:
        self.calls += 1
        if self.calls == VICTIM + 1 and not self.fired:
            self.fired = True
            signal.raise_signal(self.signum)


def _wrapped(original: Callable[..., Any], before: Callable[..., None] | None = None,
             after: Callable[..., None] | None = None, when: Callable[..., bool] = lambda *a, **k: True
             ) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        hit = when(*args, **kwargs)
        if hit and before:
            before()
        result = original(*args, **kwargs)
        if hit and after:
            after()
        return result

    return wrapper


def _arm(phase: str, trigger: Trigger, monkeypatch: pytest.MonkeyPatch) -> TrialFunctions:
    """The functions the run gets, with `trigger` inside `phase` (the write is Optuna's, so it is patched there)."""
    functions = default_functions()
    if phase == "measuring":
        return replace(functions, measure=_wrapped(functions.measure, before=trigger))
    if phase == "building":
        return replace(functions, build=_wrapped(functions.build, before=trigger))
    if phase == "training":  # in the middle of the training loop: after its first step
        original = functions.train

        def train(*args: Any, on_step: Callable[[int, int], None] | None = None, **kwargs: Any) -> Any:
            trigger_now = [True]

            def step(i: int, total: int) -> None:
                if trigger_now[0] and i >= 1:
                    trigger_now[0] = False
                    trigger()
                if on_step:
                    on_step(i, total)

            return original(*args, on_step=step, **kwargs)

        return replace(functions, train=train)
    if phase in ("writing", "written"):  # just before the result is stored, or just after
        def completes(self: optuna.Study, trial: Any, values: Any = None, **kwargs: Any) -> bool:
            return values is not None
        hook = {"before": trigger} if phase == "writing" else {"after": trigger}
        monkeypatch.setattr(optuna.Study, "tell", _wrapped(optuna.Study.tell, when=completes, **hook))
        return functions
    raise AssertionError(phase)


def _run(*args: str, functions: TrialFunctions | None = None) -> int:
    try:
        main(on_cpu(["run", *args]), functions=functions)
    except SystemExit as exc:
        return int(exc.code or 0)
    except KeyboardInterrupt:  # pragma: no cover - would mean the CLI let an interruption escape
        pytest.fail("KeyboardInterrupt escaped gcsearch.cli.main")
    return 0


@pytest.mark.parametrize("sig", list(SIGNALS))
@pytest.mark.parametrize("phase", ["measuring", "building", "training", "writing", "written"])
def test_an_interrupted_phase_exits_130_and_the_next_run_resumes(phase: str, sig: str, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    name = f"{phase}-{sig.lower()}"
    path = write_grid(tmp_path / "s.toml", name, stage_sets=2, positions=2, epochs=2)
    n = grid_size(2, 2)
    db = f"sqlite:///{tmp_path / 'g.db'}"
    args = ("--study", str(path), "--storage", db, "--quiet", "--heartbeat", "1")
    trigger = Trigger(SIGNALS[sig])
    with monkeypatch.context() as patch:
        code = _run(*args, functions=_arm(phase, trigger, patch))
    err = capsys.readouterr().err
    assert trigger.fired, f"the {phase} phase was never reached"
    assert code == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the runner put the default handler back

    trials = trials_of(db, name)
    states = by_state(trials)
    assert "RUNNING" not in states, states  # no trial left that the next run would have to wait for
    victim = trials[VICTIM]
    assert trials[0].state == TrialState.COMPLETE
    if phase == "written":  # the result was stored before the signal came: it stays, nothing is queued again
        assert victim.state == TrialState.COMPLETE and "fail_reason" not in victim.user_attrs
        assert states == {"COMPLETE": 2, "WAITING": n - 2}
    else:
        assert victim.state == TrialState.FAIL and victim.user_attrs["fail_reason"] == "interrupted"
        again = [t for t in trials if t.state == TrialState.WAITING and t.user_attrs["key"] == victim.user_attrs["key"]]
        assert len(again) == 1  # queued again, to run first
        assert states == {"COMPLETE": 1, "FAIL": 1, "WAITING": n - 1}
    before = finished(db, name)

    assert _run(*args) == 0
    trials = trials_of(db, name)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == n == len({t.user_attrs["key"] for t in complete})
    assert by_state(trials) == ({"COMPLETE": n} if phase == "written" else {"COMPLETE": n, "FAIL": 1})
    assert lost(before, finished(db, name)) == []
    FIGURES["interrupts"] += 1
