"""Workers as real processes: SIGKILL and SIGTERM mid-trial, two local workers on SQLite and on PostgreSQL."""

from __future__ import annotations

import os
import signal
import uuid
import warnings
from pathlib import Path

import optuna
import pytest
import torch
from optuna.trial import TrialState
from run_helpers import (
    TINY_PROXY,
    gcsearch_process,
    load,
    postgres_url_or_skip,
    run_cli,
    running_with_epochs,
    snapshot,
    states,
    wait_until,
    write_grid,
)

# A proxy whose trials last long enough (several epochs) to be caught in the middle.
SLOW_PROXY = TINY_PROXY.replace("train_size = 128", "train_size = 256")
# Baseline + gc r4 at c2, c3, c4, c5 and c4+c5: a 6-point grid.
SIX = '["c2", "c3", "c4", "c5", "c4,c5"]'
SIX_GRID_EXTRA = ""


def _six_grid(path: Path, name: str) -> Path:
    text = write_grid(path, name, stages=SIX, epochs=2).read_text()
    path.write_text(text.replace('position = ["after_1x1", "after_add"]', 'position = ["after_1x1"]'))
    return path


def test_a_killed_worker_loses_nothing_and_an_interrupted_one_exits_130(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'gcsearch.db'}"
    path = write_grid(tmp_path / "kill.toml", "kill", epochs=4, proxy=SLOW_PROXY)
    args = ("run", "--study", str(path), "--storage", db, "--quiet", "--heartbeat", "1")

    def complete() -> list[optuna.trial.FrozenTrial]:
        try:
            return load(db, "kill").get_trials(states=(TrialState.COMPLETE,))
        except KeyError:
            return []

    # 1. SIGKILL in the middle of the second trial: no chance to record anything.
    first = gcsearch_process(*args, cwd=tmp_path)
    try:
        wait_until(lambda: len(complete()) >= 1 and running_with_epochs(db, "kill", 1) is not None, 300,
                   "a finished trial and one in its second epoch", first)
        killed = running_with_epochs(db, "kill", 1)
        assert killed is not None
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == -signal.SIGKILL
    done_before = [snapshot(t) for t in complete()]

    # 2. The next run finds the killed trial through its silent heartbeat and queues it again. It gets SIGTERM
    #    in the middle of a trial: that trial is recorded as interrupted and queued again; exit 130.
    second = gcsearch_process(*args, cwd=tmp_path)
    try:
        wait_until(lambda: load(db, "kill").get_trials()[killed.number].state == TrialState.FAIL, 180,
                   "the killed trial to be found stale", second)
        wait_until(lambda: len(complete()) > len(done_before) and running_with_epochs(db, "kill", 1) is not None,
                   300, "one more finished trial and a running one", second)
        interrupted = running_with_epochs(db, "kill", 1)
        assert interrupted is not None
        os.killpg(second.pid, signal.SIGTERM)
        second.wait(timeout=60)
        output = second.stdout.read()
    finally:
        if second.poll() is None:
            second.kill()
    assert second.returncode == 130, output
    assert "interrupted" in output

    study = load(db, "kill")
    trials = study.get_trials()
    stale = trials[killed.number]
    assert stale.state == TrialState.FAIL
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == killed.number]
    assert len(retries) == 1 and retries[0].user_attrs["key"] == killed.user_attrs["key"]
    stopped = trials[interrupted.number]
    assert stopped.state == TrialState.FAIL and stopped.user_attrs["fail_reason"] == "interrupted"
    queued_again = [t for t in trials if t.number > interrupted.number and t.state == TrialState.WAITING
                    and t.user_attrs["key"] == stopped.user_attrs["key"]]
    assert len(queued_again) == 1
    assert [snapshot(t) for t in complete()[: len(done_before)]] == done_before

    # 3. A third run finishes the grid: every point complete exactly once, nothing finished before is touched.
    assert run_cli(*args[1:]) == 0
    study = load(db, "kill")
    complete_keys = [t.user_attrs["key"] for t in study.get_trials(states=(TrialState.COMPLETE,))]
    assert len(complete_keys) == 5 == len(set(complete_keys))
    assert states(study) == {"COMPLETE": 5, "FAIL": 2}
    assert [snapshot(t) for t in complete()[: len(done_before)]] == done_before


def _two_workers_finish_a_six_point_grid(tmp_path: Path, storage: str, name: str, device: str = "cpu") -> None:
    path = _six_grid(tmp_path / "six.toml", name)
    proc = gcsearch_process("run", "--study", str(path), "--storage", storage, "--workers", "2", "--quiet",
                            "--device", device, cwd=tmp_path)
    try:
        output, _ = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, output
    assert "locked" not in output.lower() and "error" not in output.lower(), output
    study = load(storage, name)
    trials = study.get_trials()
    assert len(trials) == 6 and states(study) == {"COMPLETE": 6}
    points = {(t.user_attrs["key"], t.user_attrs["repeat"]) for t in trials}
    assert len(points) == 6  # each grid point exactly once
    assert f"{name}: done, 6/6 finished" in " ".join(output.split())
    workers = {line.split("]")[0].split("[")[-1] for line in output.splitlines() if "[worker " in line}
    assert workers <= {"worker 0", "worker 1"} and workers
    if device == "cuda":  # cuda:i round robin over the GPUs
        gpus = torch.cuda.device_count()
        assert {t.user_attrs["device"] for t in trials} <= {
            f"cuda:{i % gpus} {torch.cuda.get_device_name(i % gpus)}" for i in range(2)}


def test_two_local_workers_on_sqlite_run_each_grid_point_once(tmp_path: Path) -> None:
    _two_workers_finish_a_six_point_grid(tmp_path, f"sqlite:///{tmp_path / 'gcsearch.db'}", "six")


@pytest.mark.cuda
def test_two_local_workers_share_the_gpu(tmp_path: Path) -> None:
    _two_workers_finish_a_six_point_grid(tmp_path, f"sqlite:///{tmp_path / 'gcsearch.db'}", "six", device="cuda")


def test_two_local_workers_on_postgresql_run_each_grid_point_once(tmp_path: Path) -> None:
    url = postgres_url_or_skip()
    name = f"test-workers-{uuid.uuid4().hex[:12]}"
    try:
        _two_workers_finish_a_six_point_grid(tmp_path, url, name)
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                optuna.delete_study(study_name=name, storage=url)
            except KeyError:
                pass
