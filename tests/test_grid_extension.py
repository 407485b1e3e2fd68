"""A study grows: values added to a grid's [space] are queued and run on resume, the old trials keep counting,
and every dimension is its own Optuna parameter, so Optuna's own tools (importance, the dashboard) see them.
A change Optuna cannot record (a sampler's choices) is refused before anything is written."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from run_helpers import cli_output, load, run_cli, snapshot, states, write_grid, write_sampled

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'grow.db'}"


def test_an_extended_grid_runs_its_new_points_and_keeps_the_old(tmp_path: Path, db: str) -> None:
    path = write_grid(tmp_path / "grow.toml", "grow", stages='["c4"]')
    assert run_cli("--study", str(path), "--storage", db, "--quiet") == 0
    first = load(db, "grow").get_trials()
    assert [t.state for t in first] == [TrialState.COMPLETE] * 3  # the baseline, c4 x 2 positions

    write_grid(path, "grow", stages='["c4", "c5"]')  # a value added to [space]: two new points
    code, out, err = cli_output("run", "--study", str(path), "--storage", db, "--quiet")
    assert code == 0, err
    assert "grow: done, 5/5 finished (5 complete, 0 pruned, 0 failed); 2 trained" in " ".join(out.split())
    study = load(db, "grow")
    trials = study.get_trials()
    assert states(study) == {"COMPLETE": 5}
    assert [snapshot(t) for t in trials[:3]] == [snapshot(t) for t in first]  # the old trials untouched
    assert [t.params for t in trials[3:]] == [{"stages": "c5", "position": "after_1x1"},
                                              {"stages": "c5", "position": "after_add"}]

    code, out, err = cli_output("report", "--study", "grow", "--storage", db, "-f", "json", "--all")
    assert code == 0, err
    labels = {row["label"] for row in json.loads(out)["rows"]}
    assert {"gc r4 @ c5 after_1x1 all", "gc r4 @ c5 after_add all"} <= labels and len(labels) == 5

    # Run again: nothing is left, nothing is added.
    assert run_cli("--study", str(path), "--storage", db, "--quiet") == 0
    assert len(load(db, "grow").get_trials()) == 5


def test_optuna_importance_sees_each_dimension_of_a_finished_grid(tmp_path: Path, db: str) -> None:
    path = write_grid(tmp_path / "dims.toml", "dims", stages='["c4", "c5"]')
    assert run_cli("--study", str(path), "--storage", db, "--quiet") == 0
    study = load(db, "dims")
    assert states(study) == {"COMPLETE": 5}
    importances = optuna.importance.get_param_importances(study, target=lambda t: -t.values[0])
    assert set(importances) == {"stages", "position"}
    assert all(v >= 0 for v in importances.values())


def test_a_sampler_whose_choices_changed_is_refused_and_nothing_is_written(tmp_path: Path, db: str) -> None:
    path = write_sampled(tmp_path / "tpe.toml", "tpe", extra="[budget]\ntrials = 2\n")
    assert run_cli("--study", str(path), "--storage", db, "--quiet") == 0
    file = tmp_path / "grow.db"
    before = hashlib.sha256(file.read_bytes()).hexdigest()
    path.write_text(path.read_text().replace('stages = ["c3", "c4", "c5"]', 'stages = ["c2", "c3", "c4", "c5"]'))
    code, out, err = cli_output("run", "--study", str(path), "--storage", db, "--quiet")
    assert code == 2
    assert err.strip().splitlines() == [
        f"error: {path}:space.stages: study 'tpe' in {db} records stages with the choices c3, c4, c5 and Optuna "
        "cannot change that once a trial has it; this file gives the choices c2, c3, c4, c5: give the study "
        "another name, use another --storage, or restore the earlier settings"]
    assert hashlib.sha256(file.read_bytes()).hexdigest() == before
    assert states(load(db, "tpe")) == {"COMPLETE": 2}


def test_a_grid_made_before_per_dimension_parameters_grows_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                               ) -> None:
    """compat.db records its points as one `candidate` parameter: its queued point keeps it, a new point gets
    its dimension."""
    fixture = Path(__file__).resolve().parent / "fixtures" / "compat"
    for name in ("compat.db", "compat.toml"):
        (tmp_path / name).write_bytes((fixture / name).read_bytes())
    monkeypatch.chdir(tmp_path)
    toml = tmp_path / "compat.toml"
    toml.write_text(toml.read_text().replace("ratio = [4, 8]", "ratio = [4, 8, 2]"))
    code, out, err = cli_output("run", "--study", "compat.toml", "--storage", "sqlite:///compat.db", "--quiet")
    assert code == 0, err
    assert "compat: done, 4/4 finished (4 complete, 0 pruned, 0 failed); 2 trained" in " ".join(out.split())
    trials = load("sqlite:///compat.db", "compat").get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4
    assert [t.params for t in trials] == [{"candidate": "none (baseline)"}, {"candidate": "gc r4 @ c4 after_1x1 all"},
                                          {"candidate": "gc r8 @ c4 after_1x1 all"}, {"ratio": 2}]
