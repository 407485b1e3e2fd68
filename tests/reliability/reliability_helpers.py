"""Shared by the reliability tests: tiny studies, child processes, snapshots of finished trials, figures."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState
from run_helpers import on_cpu

# Totals over the session, printed by conftest.py; the README's "Reliability" section quotes them.
FIGURES: Counter[str] = Counter()
FIGURE_NAMES = {
    "trials_under_load": "trials finished by several workers at once, faults included",
    "kills": "worker processes killed with SIGKILL mid-study",
    "interrupts": "SIGTERM/SIGINT interruptions, one per phase of a trial",
    "storage_faults": "storage faults (lost server, full disk, read-only folder, bad files and URLs)",
    "bad_inputs": "bad inputs tried (fuzzed study files and specs, bad options)",
    "lost": "finished trials lost or changed",
}

# The smallest proxy that still trains: a trial takes about 0.1 s on one CPU thread.
PROXY = """
[proxy]
dataset = "synthetic"
image_size = 8
train_size = {train_size}
val_size = 32
epochs = {epochs}
batch_size = 32
"""

# 14 stage sets x 3 positions of a GC r2 block on a width-4 proxy with one residual block per stage, plus the
# block-less baseline: 43 grid points.
STAGE_SETS = ["c2", "c3", "c4", "c5", "c2,c3", "c3,c4", "c4,c5", "c3,c5", "c2,c5", "c3-c5", "c2-c5", "c2,c4",
              "c2,c3,c4", "c2,c4,c5"]
POSITIONS = ["after_1x1", "after_add", "after_3x3"]

GRID = """
name = "{name}"
backbone = "proxy"
width = 4
depth = [1, 1, 1, 1]
sampler = "grid"
seed = 0
objectives = ["accuracy", "flops"]

[space]
stages = {stages}
position = {positions}

[fixed]
block = "gc"
ratio = 2

[budget]
baseline_repeats = 1
"""


def write_grid(path: Path, name: str, *, stage_sets: int = len(STAGE_SETS), positions: int = len(POSITIONS),
               epochs: int = 1, train_size: int = 64) -> Path:
    """A grid of stage_sets x positions GC candidates plus the baseline."""
    text = GRID.format(name=name, stages=_toml_list(STAGE_SETS[:stage_sets]),
                       positions=_toml_list(POSITIONS[:positions]))
    path.write_text(text + PROXY.format(epochs=epochs, train_size=train_size))
    return path


def grid_size(stage_sets: int = len(STAGE_SETS), positions: int = len(POSITIONS)) -> int:
    return stage_sets * positions + 1


def _toml_list(items: list[str]) -> str:
    return "[" + ", ".join(f'"{i}"' for i in items) + "]"


def child_env(**extra: str) -> dict[str, str]:
    """The environment of a `gcsearch` child process: one OpenMP thread (tests/conftest.py says why)."""
    return {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200", "OMP_NUM_THREADS": "1", **extra}


def start(*args: str, cwd: Path, **env: str) -> subprocess.Popen:
    """`python -m gcsearch ...` in its own session (so killpg reaches it and its workers, nothing else); `run`
    on the CPU unless a device is given."""
    return subprocess.Popen([sys.executable, "-m", "gcsearch", *on_cpu(args)], cwd=cwd, env=child_env(**env),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def load(storage: str, name: str) -> optuna.Study | None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return optuna.load_study(study_name=name, storage=storage)
        except KeyError:
            return None


def trials_of(storage: str, name: str, states: tuple[TrialState, ...] | None = None) -> list[FrozenTrial]:
    study = load(storage, name)
    return [] if study is None else study.get_trials(deepcopy=False, states=states)


def by_state(trials: list[FrozenTrial]) -> dict[str, int]:
    return dict(Counter(t.state.name for t in trials))


def snapshot(trial: FrozenTrial) -> tuple[Any, ...]:
    """What must never change once a trial has finished."""
    return (trial.number, trial.state, trial.values, trial.datetime_start, trial.datetime_complete,
            trial.params, trial.user_attrs)


def finished(storage: str, name: str) -> dict[int, tuple[Any, ...]]:
    """Snapshots of the study's finished trials (COMPLETE, PRUNED, FAIL), by number."""
    return {t.number: snapshot(t) for t in trials_of(storage, name) if t.state.is_finished()}


def lost(before: dict[int, tuple[Any, ...]], after: dict[int, tuple[Any, ...]]) -> list[int]:
    """Trials finished in `before` that are missing or changed in `after`."""
    return [n for n, snap in before.items() if after.get(n) != snap]


def wait_for(condition, timeout: float, what: str, proc: subprocess.Popen | None = None) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the process ended (exit {proc.returncode}) before {what}:\n{proc.stdout.read()}")
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def worker_pids(parent: int) -> list[int]:
    """The local worker processes of `gcsearch run --workers` (multiprocessing spawn children of `parent`)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == parent and b"spawn_main" in cmdline and stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X"):
            pids.append(int(entry.name))
    return sorted(pids)
