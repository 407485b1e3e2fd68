"""Shared by the `gcsearch run` tests: tiny study files, running the CLI, reading the stored trials."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import optuna
import pytest

from gcsearch.cli import main
from gcsearch.run.functions import TrialFunctions

# A proxy small enough that a trial takes well under a second on one CPU core.
TINY_PROXY = """
[proxy]
dataset = "synthetic"
image_size = 16
train_size = 128
val_size = 64
epochs = {epochs}
batch_size = 32
"""

# Baseline + gc r4 at c4/c5 x after_1x1/after_add: a 5-point grid (6 with stages c3 too).
GRID = """
name = "{name}"
description = "a tiny grid for the tests"
backbone = "proxy"
width = 8
sampler = "grid"
seed = 0
objectives = ["accuracy", "flops"]

[space]
stages = {stages}
position = ["after_1x1", "after_add"]

[fixed]
block = "gc"
ratio = 4

[budget]
baseline_repeats = 1  # one seed per point keeps the counts these tests assert simple
"""

# Six candidates (no baseline outside a grid) for a sampler that proposes.
SAMPLED = """
name = "{name}"
backbone = "proxy"
width = 8
sampler = "{sampler}"
seed = 0
objectives = ["accuracy", "flops"]

[space]
stages = ["c3", "c4", "c5"]
position = ["after_1x1", "after_add"]

[fixed]
block = "gc"
ratio = 4
"""


def write_grid(path: Path, name: str, *, stages: str = '["c4", "c5"]', epochs: int = 1, extra: str = "",
               proxy: str = TINY_PROXY) -> Path:
    path.write_text(GRID.format(name=name, stages=stages) + extra + proxy.format(epochs=epochs))
    return path


def write_sampled(path: Path, name: str, *, sampler: str = "random", epochs: int = 1, extra: str = "") -> Path:
    path.write_text(SAMPLED.format(name=name, sampler=sampler) + extra + TINY_PROXY.format(epochs=epochs))
    return path


def on_cpu(args: tuple[str, ...] | list[str]) -> list[str]:
    """`gcsearch run` arguments with `--device cpu` added unless they name a device: the default, auto, would
    train on a GPU wherever there is one, and these tests check CPU results (tests marked `cuda` ask for it)."""
    args = list(args)
    if args[:1] == ["run"] and not any(a == "--device" or a.startswith("--device=") for a in args):
        args += ["--device", "cpu"]
    return args


def run_cli(*args: str, functions: TrialFunctions | None = None) -> int:
    """`gcsearch run ...` in this process, on the CPU unless a device is given, its trials built, measured and
    trained by `functions` (default: the real functions); the exit code."""
    try:
        main(on_cpu(["run", *args]), functions=functions)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def cli_output(*args: str) -> tuple[int, str, str]:
    """Any `gcsearch ...` command in this process (`run` on the CPU unless a device is given): (exit code,
    stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(on_cpu(args))
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
    return code, out.getvalue(), err.getvalue()


def postgres_url_or_skip() -> str:
    """The test PostgreSQL URL: skip when GCSEARCH_TEST_POSTGRES_URL is unset, fail when it is set but unreachable."""
    from gcsearch.errors import RuntimeFailure
    from gcsearch.storage.urls import mask_url
    from gcsearch.storage.writer import open_storage

    url = os.environ.get("GCSEARCH_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("GCSEARCH_TEST_POSTGRES_URL is not set (.ci/run sets it to the machine's PostgreSQL)")
    try:
        open_storage(url)
    except RuntimeFailure as exc:
        pytest.fail(f"GCSEARCH_TEST_POSTGRES_URL={mask_url(url)} is set but unreachable: {exc}")
    return url


def load(storage: str, name: str) -> optuna.Study:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return optuna.load_study(study_name=name, storage=storage)


def states(study: optuna.Study) -> dict[str, int]:
    out: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        out[t.state.name] = out.get(t.state.name, 0) + 1
    return out


def snapshot(trial: optuna.trial.FrozenTrial) -> tuple[Any, ...]:
    """What must not change once a trial has finished."""
    return (trial.number, trial.state, trial.values, trial.datetime_start, trial.datetime_complete,
            trial.params, trial.user_attrs)


def gcsearch_process(*args: str, cwd: Path, **kwargs: Any) -> subprocess.Popen:
    """`python -m gcsearch ...` as a child process (its own session, so signals reach it alone); `run` on the
    CPU unless a device is given."""
    # One thread per process: tiny models gain nothing from more, and the tests must not slow to a crawl
    # when other work shares the machine.
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "gcsearch", *on_cpu(args)], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
                            **kwargs)


def wait_until(condition, timeout: float, what: str, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"the process ended (exit {proc.returncode}) before {what}:\n{proc.stdout.read()}")
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}")


def running_with_epochs(storage: str, name: str, epochs: int = 1) -> optuna.trial.FrozenTrial | None:
    """A RUNNING trial that has finished at least `epochs` epochs, if any."""
    try:
        study = load(storage, name)
    except KeyError:
        return None
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        if len(t.user_attrs.get("accuracies") or ()) >= epochs:
            return t
    return None


def kill_when(proc: subprocess.Popen, condition, what: str, timeout: float = 120) -> None:  # noqa: ANN001
    """SIGKILL the process group of `proc` as soon as `condition()` holds (the test fails if it never does)."""
    import signal

    try:
        wait_until(condition, timeout, what, proc)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
