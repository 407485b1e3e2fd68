"""A proxy that learned nothing gives accuracies near 1 / classes; `run` and `report` say so instead of
presenting them as results."""

from __future__ import annotations

import contextlib
import io
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from run_helpers import cli_output, write_grid

from gcsearch.cli import main
from gcsearch.run.functions import TrialFunctions, default_functions
from gcsearch.training.chance import Chance, chance_of
from gcsearch.training.loop import TrainResult
from gcsearch.training.synthetic import SYNTHETIC_CLASSES

pytestmark = pytest.mark.usefixtures("one_thread")


def test_the_chance_level_and_the_accuracy_that_cannot_be_told_from_it() -> None:
    assert SYNTHETIC_CLASSES == 5  # the built-in set: the README's 20%
    chance = Chance(classes=5, val_size=1000)
    assert chance.level == 20.0
    assert chance.ceiling == pytest.approx(23.795, abs=1e-3)  # 20% + 3 x sqrt(0.2 x 0.8 / 1000)
    assert chance.at_chance(23.7) and chance.at_chance(5.0) and not chance.at_chance(23.9)
    assert not chance.at_chance(None) and not chance.at_chance(float("nan"))
    assert Chance(10, 10_000).ceiling == pytest.approx(10.9)
    assert chance_of(None, 1000) is None and chance_of(5, 1000) == chance


def scripted(accuracies: dict[str, float]) -> TrialFunctions:
    """The real functions, with training replaced by a fixed accuracy per candidate label (no time spent)."""
    def train(model: Any, data: Any, proxy: Any, *, seed: int, device: Any, on_epoch: Any = None,
              on_step: Any = None) -> TrainResult:
        accuracy = accuracies[model.gcsearch_label]
        return TrainResult(accuracy=accuracy, accuracies=[accuracy], epochs=1)

    real = default_functions()

    def build(spec: Any, **kwargs: Any) -> Any:
        model = real.build(spec, **kwargs)
        model.gcsearch_label = spec.label()
        return model

    return replace(real, build=build, train=train, weights=lambda *a, **k: b"")


def run_scripted(tmp_path: Path, accuracies: dict[str, float]) -> tuple[str, str]:
    """Run a 3-point grid whose trials end at `accuracies`: (its output on one line, the storage URL)."""
    db = f"sqlite:///{tmp_path / 'scripted.db'}"
    path = write_grid(tmp_path / "scripted.toml", "scripted", stages='["c4"]')
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            main(["run", "--study", str(path), "--storage", db, "--quiet", "--device", "cpu", "--artifacts", "none"],
                 functions=scripted(accuracies))
        except SystemExit as exc:
            assert not exc.code
    return " ".join(out.getvalue().split()), db


BASELINE, AFTER_1X1, AFTER_ADD = "none (baseline)", "gc r4 @ c4 after_1x1 all", "gc r4 @ c4 after_add all"


def test_run_and_report_name_the_trials_at_chance_level(tmp_path: Path) -> None:
    # TINY_PROXY validates on 64 images of 5 classes: at most 20% + 3 x 5% = 35% is at chance.
    out, db = run_scripted(tmp_path, {BASELINE: 31.25, AFTER_1X1: 70.0, AFTER_ADD: 65.5})
    assert "trial 0 none (baseline) (repeat 0): 31.25% (at chance level, 20%)," in out
    assert "trial 1 gc r4 @ c4 after_1x1 all (repeat 0): 70.00%, " in out
    assert ("1 of 3 trials at chance level (20% for 5 classes, at most 35.00% on 64 images): their results "
            "cannot be told from guessing") in out

    code, report, err = cli_output("report", "--study", "scripted", "--storage", db, "--all")
    assert code == 0, err
    lines = report.splitlines()
    assert ("chance level 20% (5 classes); at most 35.00% is at chance (3 standard errors of guessing on 64 "
            "validation images)") in lines
    assert "at chance: baseline (1 of 3 candidates)" in lines

    code, report, err = cli_output("report", "--study", "scripted", "--storage", db, "-f", "json")
    assert code == 0, err
    chance = json.loads(report)["study"]["chance"]
    assert (chance["level"], chance["ceiling"], chance["classes"], chance["val_size"]) == (20.0, 35.0, 5, 64)
    assert len(chance["candidates_at_chance"]) == 1 and chance["all_at_chance"] is False


def test_a_study_wholly_at_chance_is_called_so(tmp_path: Path) -> None:
    out, db = run_scripted(tmp_path, {BASELINE: 20.0, AFTER_1X1: 23.0, AFTER_ADD: 18.75})
    assert ("every trial is at chance level (20% for 5 classes, at most 35.00% on 64 images): the proxy learned "
            "nothing, so this front means nothing") in out
    code, report, err = cli_output("report", "--study", "scripted", "--storage", db)
    assert code == 0, err
    assert ("at chance: every candidate; the proxy learned nothing, so neither the ranks nor the front mean "
            "anything (train longer, or on more or larger images)") in report.splitlines()


def test_a_study_above_chance_says_nothing_of_it(tmp_path: Path) -> None:
    out, db = run_scripted(tmp_path, {BASELINE: 80.0, AFTER_1X1: 90.0, AFTER_ADD: 85.0})
    assert "at chance" not in out and "scripted: done, 3/3 finished" in out
    code, report, err = cli_output("report", "--study", "scripted", "--storage", db)
    assert code == 0 and "at chance" not in report and "baseline (block none): accuracy 80.00" in report
