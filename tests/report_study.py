"""A hand-made study for the report tests, written through Optuna's own API as `gcsearch run` stores one.

Objectives accuracy (maximize) and flops (minimize); FLOPs in raw multiply-adds, accuracy in %. The values
are chosen so that the front, the ranks and the hypervolume can be worked out by hand (see test_report.py).

    candidate      trials  accuracy        GFLOPs  params  feasible
    B baseline     1       70              1.0     10 M    yes
    C gc @ c4      1       72              1.5     12 M    yes
    A gc @ c3      3 (+1)  74, 75, 76      2.0     12 M    yes      (+1: a trial reused from A's first)
    D gc @ c5      1       71              1.8      9 M    yes
    E gc @ c2      1       69              3.0     13 M    yes
    X gc @ c3-c5   1       90              0.5      8 M    no (over max_flops)
    failed, pruned and running trials with tempting values that must never show up.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState, create_trial

from gcsearch.space import ArchSpec

G = 1_000_000_000
M = 1_000_000
MAX_FLOPS = 4 * G
STUDY = "hand"

SPECS = {
    "B": ArchSpec(block="none"),
    "C": ArchSpec(block="gc", stages=["c4"]),
    "A": ArchSpec(block="gc", stages=["c3"]),
    "D": ArchSpec(block="gc", stages=["c5"]),
    "E": ArchSpec(block="gc", stages=["c2"]),
    "X": ArchSpec(block="gc", stages=["c3", "c4", "c5"]),
}
COSTS = {"B": (1.0 * G, 10 * M), "C": (1.5 * G, 12 * M), "A": (2.0 * G, 12 * M), "D": (1.8 * G, 9 * M),
         "E": (3.0 * G, 13 * M), "X": (0.5 * G, 8 * M)}


def study_meta(objectives: tuple[str, ...] = ("accuracy", "flops")) -> dict[str, Any]:
    directions = {"accuracy": "maximize", "flops": "minimize", "params": "minimize", "latency": "minimize"}
    return {
        "version": "0.1.0", "objectives": [{"name": n, "direction": directions[n]} for n in objectives],
        "study_file": "", "study": {}, "proxy_fingerprint": "test", "sampler": "grid", "repeats": 3,
        "proxy": {"dataset": "synthetic", "image_size": 32, "train_size": 512, "val_size": 256, "epochs": 4,
                  "batch_size": 64, "lr": 0.1, "weight_decay": 5e-4, "label_smoothing": 0.1, "schedule": "onecycle"},
        "backbone": "proxy", "constraints": {"max_flops": MAX_FLOPS, "max_params": None}, "input_size": [3, 32, 32],
    }


def attrs(name: str, accuracy: float, repeat: int = 0, **extra: Any) -> dict[str, Any]:
    spec = SPECS[name]
    flops, params = COSTS[name]
    base_flops, base_params = COSTS["B"]
    out = {
        "spec": spec.to_dict(), "key": spec.key, "label": spec.label(), "flops": int(flops), "params": int(params),
        "block_flops": int(flops - base_flops), "block_params": int(params - base_params),
        "accuracy": accuracy, "accuracies": [accuracy - 3, accuracy - 1, accuracy], "train_seconds": 1.5,
        "epochs": 3, "seed": repeat, "repeat": repeat, "device": "cpu",
        "versions": {"gcsearch": "0.1.0", "torch": "2.13.0", "optuna": optuna.__version__, "python": "3.11"},
    }
    out.update(extra)
    return out


def complete(name: str, accuracy: float, repeat: int = 0, **extra: Any) -> optuna.trial.FrozenTrial:
    flops = COSTS[name][0]
    return create_trial(values=[accuracy, flops], user_attrs=attrs(name, accuracy, repeat, **extra),
                        constraints={"max_flops": float(flops - MAX_FLOPS) if name != "X" else 1.0},
                        state=TrialState.COMPLETE)


def build_hand_study(path: Path | str, name: str = STUDY) -> str:
    """Write the study into SQLite file `path` (or a storage URL); return its storage URL."""
    url = path if isinstance(path, str) and "://" in path else f"sqlite:///{path}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(storage=url, study_name=name, directions=["maximize", "minimize"])
    study.set_user_attr("gcsearch", study_meta())
    study.add_trial(complete("B", 70.0))                      # 0
    study.add_trial(complete("A", 74.0, 0))                   # 1
    study.add_trial(complete("C", 72.0))                      # 2
    study.add_trial(complete("X", 90.0))                      # 3: infeasible
    study.add_trial(complete("A", 75.0, 1))                   # 4
    study.add_trial(complete("D", 71.0))                      # 5
    study.add_trial(create_trial(state=TrialState.FAIL,       # 6
                                 user_attrs={**attrs("E", 99.0), "fail_reason": "diverged at epoch 2"}))
    study.add_trial(create_trial(state=TrialState.PRUNED,     # 7
                                 user_attrs={**attrs("C", 98.0), "pruned_epoch": 1, "prune_reason": "dominated"},
                                 intermediate_values={1: 98.0}))
    # 8: written the way the runner does it, through ask/tell and trial.set_constraint.
    trial = study.ask()
    for key, value in attrs("A", 76.0, 2).items():
        trial.set_user_attr(key, value)
    trial.set_constraint("max_flops", COSTS["A"][0] - MAX_FLOPS)
    study.tell(trial, [76.0, COSTS["A"][0]])
    study.add_trial(complete("E", 69.0))                      # 9
    study.add_trial(complete("A", 74.0, 0, reused_from=1))    # 10: repeats trial 1, counted once
    study.ask()                                               # 11: still running
    return url
