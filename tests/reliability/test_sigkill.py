"""SIGKILL, the signal nothing can record: random workers of a running study are killed at random moments,
then the whole run; a final run must reach the target without losing or changing any finished trial."""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path

from optuna.trial import TrialState
from reliability_helpers import (
    FIGURES,
    by_state,
    finished,
    grid_size,
    lost,
    start,
    trials_of,
    wait_for,
    worker_pids,
    write_grid,
)
from run_helpers import run_cli

WORKER_KILLS = 3  # of the 4 workers; then the parent and the last worker together


def test_random_sigkills_lose_no_finished_trial(tmp_path: Path) -> None:
    seed = int.from_bytes(os.urandom(4), "little")
    rng = random.Random(seed)
    why = f"(random seed {seed})"
    # 43 points of 3 epochs: enough that the kills (at most 4 x 0.8 s) land while trials still run.
    path = write_grid(tmp_path / "kill.toml", "kill", epochs=3, train_size=128)
    n = grid_size()
    db = f"sqlite:///{tmp_path / 'kill.db'}"
    args = ("run", "--study", str(path), "--storage", db, "--quiet", "--heartbeat", "1")
    proc = start(*args, "--workers", "4", cwd=tmp_path)
    snapshots: list[dict] = []
    kills = 0
    try:
        wait_for(lambda: len(worker_pids(proc.pid)) == 4 and any(
            t.state == TrialState.COMPLETE for t in trials_of(db, "kill")), 180, "the first finished trial", proc)
        for _ in range(WORKER_KILLS):
            time.sleep(rng.uniform(0.1, 0.8))
            alive = worker_pids(proc.pid)
            assert alive and proc.poll() is None, f"the study ended before the kills {why}"
            snapshots.append(finished(db, "kill"))
            os.kill(rng.choice(alive), signal.SIGKILL)
            kills += 1
        time.sleep(rng.uniform(0.1, 0.8))
        survivors = worker_pids(proc.pid)
        assert survivors and proc.poll() is None, f"the study ended before the last kill {why}"
        snapshots.append(finished(db, "kill"))
        os.killpg(proc.pid, signal.SIGKILL)  # the parent and its last worker at once
        kills += 1 + len(survivors)
        output, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert "locked" not in output.lower() and "Traceback" not in output, output
    at_last_kill = trials_of(db, "kill")
    assert by_state(at_last_kill).get("COMPLETE", 0) < n, f"every point was done before the last kill {why}"

    # The final run takes over what the killed workers held (their heartbeats stopped) and finishes the grid.
    assert run_cli(*args[1:]) == 0
    trials = trials_of(db, "kill")
    states = by_state(trials)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == n == len({t.user_attrs["key"] for t in complete}), (states, why)
    assert "RUNNING" not in states and "WAITING" not in states, (states, why)
    # A failed trial is one that was running when its worker died, and each was run again.
    failed = [t for t in trials if t.state == TrialState.FAIL]
    retried = {t.system_attrs.get("failed_trial") for t in trials}
    assert all(t.number in retried or t.user_attrs.get("fail_reason") == "interrupted" for t in failed), why
    print(f"sigkill {why}: {kills} processes killed; at the last kill {by_state(at_last_kill)}; after the final "
          f"run {states}")
    final = finished(db, "kill")
    missing = [n for before in snapshots for n in lost(before, final)]
    FIGURES["lost"] += len(missing)
    assert missing == [], why
    FIGURES["kills"] += kills
    FIGURES["trials_under_load"] += len(complete)
