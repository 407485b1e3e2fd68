"""Report speed: `gcsearch report` on a study of 10,000 finished trials, against Optuna's own get_trials.

Builds a study the way `gcsearch run` stores one (every user attribute of the contract, constraints as
Optuna 5 system attributes) in a temporary SQLite file, then times, alternating and taking medians:

  (a) gcsearch.report.build.read_report: read the storage and build the whole report (rows, ranks, hypervolume)
  (b) optuna.load_study(...).get_trials(): Optuna's reader alone, before any analysis
  (c) the command end to end in a fresh process: `gcsearch report --all -f csv -o FILE` (imports included)

Writing 10,000 trials through `study.add_trials` takes minutes (one transaction per trial), so the study is
created through Optuna's API and the trials are inserted in bulk with SQLAlchemy into Optuna's own table
definitions (`optuna.storages._rdb.models`), so every column is encoded as Optuna encodes it; a sample is
then read back through `optuna.load_study` and compared before anything is timed.

    python benchmarks/report_speed.py            # 10,000 trials
    python benchmarks/report_speed.py --trials 1000 --runs 3
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy as sa
from optuna.storages._rdb import models
from optuna.trial import TrialState

from gcsearch.space import ArchSpec

OBJECTIVES = [{"name": "accuracy", "direction": "maximize"}, {"name": "flops", "direction": "minimize"}]
MAX_FLOPS = 60_000_000
VERSIONS = {"gcsearch": "0.1.0", "torch": "2.13.0", "optuna": optuna.__version__, "python": "3.11"}


def candidate_specs(count: int) -> list[ArchSpec]:
    """`count` distinct valid candidates (baseline first) from a grid over block, ratio, stages, position, width."""
    stage_sets = [["c2"], ["c3"], ["c4"], ["c5"], ["c3", "c4"], ["c4", "c5"], ["c3", "c4", "c5"],
                  ["c2", "c3", "c4", "c5"]]
    specs: list[ArchSpec] = [ArchSpec(block="none")]
    seen = {specs[0].key}
    for width in (16, 8, 24, 32, 12, 20, 28, 40, 48, 56, 64):
        for block in ("gc", "se", "snl", "nl"):
            for ratio in ((4, 8, 16, 32) if block in ("gc", "se") else (None,)):
                for stages in stage_sets:
                    for position in ("after_1x1", "after_3x3", "after_add"):
                        for blocks in ("all", "last"):
                            try:
                                spec = ArchSpec(width=width, block=block, ratio=ratio, stages=stages,
                                                position=position, blocks=blocks)
                            except ValueError:
                                continue
                            if spec.key not in seen:
                                seen.add(spec.key)
                                specs.append(spec)
                            if len(specs) >= count:
                                return specs
    return specs


def study_attrs(repeats: int) -> dict[str, Any]:
    return {
        "version": "0.1.0", "objectives": OBJECTIVES, "study_file": "", "study": {},
        "proxy": {"dataset": "synthetic", "data_dir": None, "image_size": 32, "train_size": 5000, "val_size": 1000,
                  "epochs": 10, "batch_size": 256, "lr": 0.4, "weight_decay": 5e-4, "label_smoothing": 0.1,
                  "schedule": "onecycle"},
        "proxy_fingerprint": "bench", "sampler": "random", "repeats": repeats, "backbone": "proxy",
        "constraints": {"max_flops": MAX_FLOPS, "max_params": None}, "input_size": [3, 32, 32],
    }


def trial_payloads(n_trials: int, repeats: int, seed: int) -> list[dict[str, Any]]:
    """Per trial: values, user attributes and constraints, as `gcsearch run` would store them."""
    rng = random.Random(seed)
    specs = candidate_specs(max(1, n_trials // repeats))
    out = []
    for i in range(n_trials):
        spec = specs[(i // repeats) % len(specs)]
        repeat = i % repeats
        crng = random.Random(spec.key)  # per-candidate values, the same for every repeat
        width = spec.width or 16
        base_flops = 40_000_000 * (width / 16) ** 2
        block_flops = 0 if spec.block == "none" else int(base_flops * crng.uniform(0.002, 0.4))
        flops = int(base_flops) + block_flops
        params = int(170_000 * (width / 16) ** 2) + (0 if spec.block == "none" else crng.randint(1_000, 60_000))
        accuracy = 60 + 10 * (1 - 1 / (1 + flops / 4e7)) + crng.gauss(0, 1.5) + rng.gauss(0, 0.3)
        attrs = {
            "spec": spec.to_dict(), "key": spec.key, "label": spec.label(), "flops": flops, "params": params,
            "block_flops": block_flops, "block_params": params - int(170_000 * (width / 16) ** 2),
            "accuracy": accuracy, "accuracies": [round(accuracy * (e + 1) / 10, 4) for e in range(10)],
            "train_seconds": rng.uniform(10, 20), "epochs": 10, "seed": repeat, "repeat": repeat, "device": "cpu",
            "versions": VERSIONS,
        }
        out.append({"values": [accuracy, float(flops)], "user_attrs": attrs,
                    "constraints": {"max_flops": float(flops - MAX_FLOPS)}})
    return out


def build_study(path: str | Path, n_trials: int, *, name: str = "bench", repeats: int = 3, seed: int = 0,
                extra_states: bool = True) -> list[dict[str, Any]]:
    """Write a study of `n_trials` COMPLETE trials (plus a few PRUNED/FAIL/RUNNING ones) into SQLite `path`.

    Returns the COMPLETE trials' payloads in trial-number order.
    """
    url = f"sqlite:///{path}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(storage=url, study_name=name, directions=[o["direction"] for o in OBJECTIVES])
    study.set_user_attr("gcsearch", study_attrs(repeats))
    study_id = study._study_id
    payloads = trial_payloads(n_trials, repeats, seed)
    states = [TrialState.COMPLETE] * n_trials
    if extra_states:
        states += [TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING]

    engine = sa.create_engine(url)
    start = dt.datetime(2026, 1, 1, 12, 0, 0)
    trials_rows, values_rows, user_rows, system_rows = [], [], [], []
    with engine.begin() as conn:
        first_id = (conn.execute(sa.text("SELECT COALESCE(MAX(trial_id), 0) FROM trials")).scalar() or 0) + 1
        for number, state in enumerate(states):
            trial_id = first_id + number
            began = start + dt.timedelta(seconds=15 * number)
            done = began + dt.timedelta(seconds=14) if state != TrialState.RUNNING else None
            trials_rows.append({"trial_id": trial_id, "number": number, "study_id": study_id, "state": state,
                                "datetime_start": began, "datetime_complete": done})
            if state == TrialState.COMPLETE:
                p = payloads[number]
                for objective, value in enumerate(p["values"]):
                    values_rows.append({"trial_id": trial_id, "objective": objective, "value": value,
                                        "value_type": models.TrialValueModel.TrialValueType.FINITE})
                for key, value in p["user_attrs"].items():
                    user_rows.append({"trial_id": trial_id, "key": key, "value_json": json.dumps(value)})
                for key, value in p["constraints"].items():
                    system_rows.append({"trial_id": trial_id, "key": f"constraints:{key}",
                                        "value_json": json.dumps(value)})
            elif state == TrialState.PRUNED:
                user_rows.append({"trial_id": trial_id, "key": "prune_reason", "value_json": json.dumps("dominated")})
            elif state == TrialState.FAIL:
                user_rows.append({"trial_id": trial_id, "key": "fail_reason", "value_json": json.dumps("diverged")})
        conn.execute(sa.insert(models.TrialModel.__table__), trials_rows)
        conn.execute(sa.insert(models.TrialValueModel.__table__), values_rows)
        conn.execute(sa.insert(models.TrialUserAttributeModel.__table__), user_rows)
        conn.execute(sa.insert(models.TrialSystemAttributeModel.__table__), system_rows)
    engine.dispose()
    return payloads


def check_with_optuna(path: str | Path, name: str, payloads: list[dict[str, Any]], sample: int = 50) -> None:
    """Read a sample back through Optuna's own API: the bulk rows must be what add_trial would have written."""
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{path}")
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    assert len(trials) == len(payloads), (len(trials), len(payloads))
    for t in trials[:: max(1, len(trials) // sample)]:
        p = payloads[t.number]
        assert t.values == p["values"], (t.number, t.values, p["values"])
        assert t.user_attrs == p["user_attrs"], t.number
        assert t.constraints == p["constraints"], t.number


def _time(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=5, help="alternating runs of (a) and (b); (c) runs 3 times")
    args = parser.parse_args()

    from gcsearch.report.build import read_report

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.db"
        t0 = time.perf_counter()
        payloads = build_study(path, args.trials)
        built = time.perf_counter() - t0
        check_with_optuna(path, "bench", payloads)
        print(f"built {args.trials} finished trials in {built:.1f} s ({path.stat().st_size / 1e6:.1f} MB); "
              f"a sample read back through optuna.load_study matches")

        ours, theirs = [], []
        for _ in range(args.runs):
            ours.append(_time(lambda: read_report(str(path), "bench", show_all=True)))
            theirs.append(_time(lambda: optuna.load_study(study_name="bench", storage=f"sqlite:///{path}")
                                .get_trials(deepcopy=False)))
        rep = read_report(str(path), "bench", show_all=True)
        cli = []
        out = Path(tmp) / "report.csv"
        for _ in range(3):
            cli.append(_time(lambda: subprocess.run(
                [sys.executable, "-m", "gcsearch", "report", "--storage", str(path), "--all", "-f", "csv",
                 "-o", str(out)], check=True, capture_output=True)))
        a, b, c = statistics.median(ours), statistics.median(theirs), statistics.median(cli)
        print(f"report rows: {len(rep.candidates)} candidates, front {len(rep.front)}, "
              f"hypervolume {rep.hypervolume:.4g} {rep.hypervolume_unit}")
        print(f"(a) read_report, whole report:       {a:6.2f} s  (median of {args.runs})")
        print(f"(b) optuna get_trials, reading only:  {b:6.2f} s  (median of {args.runs})")
        print(f"(c) gcsearch report, fresh process:   {c:6.2f} s  (median of 3)")
        print(f"ratio (b)/(a): {b / a:.1f}x; goal: (c) <= 5 s: {'met' if c <= 5 else 'MISSED'}")


if __name__ == "__main__":
    main()
