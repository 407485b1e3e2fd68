"""Soak: four local workers on one SQLite file run a 43-point grid of short trials."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

from optuna.trial import TrialState
from reliability_helpers import FIGURES, by_state, grid_size, start, trials_of, write_grid


def test_four_workers_on_one_sqlite_file_run_every_grid_point_once(tmp_path: Path) -> None:
    path = write_grid(tmp_path / "soak.toml", "soak")
    n = grid_size()
    assert n == 43
    db = f"sqlite:///{tmp_path / 'soak.db'}"
    proc = start("run", "--study", str(path), "--storage", db, "--workers", "4", "--quiet", cwd=tmp_path)
    try:
        output, _ = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, output
    assert "locked" not in output.lower() and "traceback" not in output.lower(), output

    trials = trials_of(db, "soak")
    assert by_state(trials) == {"COMPLETE": n}  # nothing RUNNING, WAITING or FAIL left
    points = [(t.user_attrs["key"], t.user_attrs["repeat"]) for t in trials]
    assert len(set(points)) == n  # each grid point exactly once
    assert all(t.values is not None and 0 <= t.values[0] <= 100 and t.values[1] > 0 for t in trials)
    assert f"soak: done, {n}/{n} finished ({n} complete, 0 pruned, 0 failed)" in " ".join(output.split())
    workers = set(re.findall(r"\[worker (\d)\] trial \d+ ", output))
    assert len(workers) >= 2 and workers <= {"0", "1", "2", "3"}, output  # the work was shared
    with sqlite3.connect(tmp_path / "soak.db") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert all(t.state == TrialState.COMPLETE for t in trials)
    FIGURES["trials_under_load"] += len(trials)
