"""Racing against the full grid: does racing keep the front while training at most half the trials?

Two parts, each printing ratios measured side by side:

- `simulate`: studies with known true means. Every candidate of seed s measures
  true mean + the seed's shared effect (its start, which cancels in the pairing) + its own noise; one candidate is
  much noisier than the rest. Each study draws one (candidates x max_repeats) table, so racing and the full grid
  (max_repeats seeds for everyone) read the same numbers. Counted: the studies whose final front holds every
  true front member, the A/A studies (every true mean equal) with any `better`/`worse` verdict of the report
  (Holm), and the trials each trains.
- `real`: one paired grid of the built-in proxy run twice in one storage, as a full grid of max_repeats seeds
  and as a race with the same cap (the starts are trained once and shared), then both reports compared.

    python benchmarks/racing.py simulate --studies 1000 [--max-repeats 5] [--noise 0.3]
    python benchmarks/racing.py real --workers 2
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gcsearch.report.noise import BETTER, WORSE, paired_verdicts  # noqa: E402
from gcsearch.study.racing import Entry, front_of, replay
from gcsearch.study.spec import DEFAULT_MAX_REPEATS  # noqa: E402
from gcsearch.study.spec import DEFAULT_RACE_MARGIN as DEFAULT_MARGIN  # noqa: E402

CONTROL = "control"
# True accuracy deltas (points) of 16 candidates, in order of cost (candidate i costs i + 1, the control 0).
# "gc": as the built-in proxy measures GC placements (most within +-0.2 points of the control, a few real
# gains); true front: the control, c3 (+0.4), c7 (+0.8), c13 (+1.2). "spread": most candidates separated
# from the control by 0.3-3 points; true front: the control, c1, c4, c8, c14. c12 is the noisy one in both.
DESIGNS: dict[str, tuple[float, ...]] = {
    "gc": (-0.1, 0.0, -0.2, 0.4, 0.1, -0.1, 0.2, 0.8, 0.0, 0.5, -0.2, 0.1, -3.0, 1.2, 0.3, 0.9),
    "spread": (-0.3, 0.4, -1.0, 0.1, 0.9, -2.0, 0.3, -0.2, 1.4, 0.0, -0.6, 1.0, -3.0, 0.6, 1.8, -0.1),
}
NOISY = 12
NOISE = 0.1  # a trial's own std (points): a paired difference's std is ~0.14, the built-in proxy's 0.06-0.21
NOISY_FACTOR = 10.0  # the noisy candidate's own std, in multiples of NOISE
SEED_EFFECT = 3.0  # std of a seed's shared effect (its start)


def true_front(deltas: tuple[float, ...]) -> set[str]:
    entries = [Entry(CONTROL, {0: 0.0}, (0.0,))] + [Entry(f"c{i}", {0: d}, (i + 1.0,)) for i, d in enumerate(deltas)]
    return {e.key for e in front_of(entries, CONTROL)}


def draw_table(rng: random.Random, deltas: tuple[float, ...], seeds: int, noise: float = NOISE
               ) -> dict[str, dict[int, float]]:
    effects = [rng.gauss(0.0, SEED_EFFECT) for _ in range(seeds)]
    table = {CONTROL: {s: 80.0 + effects[s] + rng.gauss(0.0, noise) for s in range(seeds)}}
    for i, d in enumerate(deltas):
        sd = NOISY_FACTOR * noise if i == NOISY else noise
        table[f"c{i}"] = {s: 80.0 + d + effects[s] + rng.gauss(0.0, sd) for s in range(seeds)}
    return table


def costs(key: str) -> tuple[float]:
    return (0.0,) if key == CONTROL else (int(key[1:]) + 1.0,)


def race(table: dict[str, dict[int, float]], max_repeats: int, margin: float) -> dict[str, dict[int, float]]:
    """Run the race on a drawn table: reveal each point when the race asks for it."""
    seen: dict[str, dict[int, float]] = {k: {} for k in table}
    while True:
        state = replay([Entry(k, v, costs(k)) for k, v in seen.items()], CONTROL, max_repeats, margin)
        if state.done:
            return seen
        for key, seed in state.wanted:
            seen[key][seed] = table[key][seed]


def judged(results: dict[str, dict[int, float]]) -> tuple[set[str], int]:
    """The observed front and the number of better/worse verdicts (the report's paired verdicts, Holm)."""
    front = {e.key for e in front_of([Entry(k, v, costs(k)) for k, v in results.items()], CONTROL)}
    keys = [k for k in results if k != CONTROL]
    verdicts = paired_verdicts([results[k] for k in keys], results[CONTROL])
    return front, sum(v.verdict in (BETTER, WORSE) for v in verdicts)


def simulate(studies: int, max_repeats: int, margin: float, seed: int, design: str, noise: float = NOISE
             ) -> dict[str, object]:
    rng = random.Random(seed)
    deltas = DESIGNS[design]
    aa = tuple(0.0 for _ in deltas)
    wanted = true_front(deltas)
    out = {"race": {"front_kept": 0, "aa_false": 0, "trials": 0, "aa_trials": 0},
           "grid": {"front_kept": 0, "aa_false": 0, "trials": 0, "aa_trials": 0}}
    started = time.perf_counter()
    for _ in range(studies):
        table = draw_table(rng, deltas, max_repeats, noise)
        for name, results in (("race", race(table, max_repeats, margin)), ("grid", table)):
            front, _ = judged(results)
            out[name]["front_kept"] += wanted <= front
            out[name]["trials"] += sum(map(len, results.values()))
        table = draw_table(rng, aa, max_repeats, noise)
        for name, results in (("race", race(table, max_repeats, margin)), ("grid", table)):
            _, false = judged(results)
            out[name]["aa_false"] += false > 0
            out[name]["aa_trials"] += sum(map(len, results.values()))
    summary: dict[str, object] = {"design": design, "studies": studies, "candidates": len(deltas),
                                  "max_repeats": max_repeats, "margin": margin, "seed": seed, "noise": noise,
                                  "true_front": sorted(wanted),
                                  "seconds": round(time.perf_counter() - started, 1)}
    for name, figures in out.items():
        summary[name] = {"front_kept": figures["front_kept"] / studies, "aa_false": figures["aa_false"] / studies,
                         "trials": figures["trials"] / studies, "aa_trials": figures["aa_trials"] / studies}
    summary["trial_ratio"] = out["race"]["trials"] / out["grid"]["trials"]
    summary["aa_trial_ratio"] = out["race"]["aa_trials"] / out["grid"]["aa_trials"]
    return summary


# The built-in placement grid cut to 12 candidates: four stage sets x three positions, a block in every residual
# block; its proxy (paired: each seed's start trained once, every candidate fine-tuned half an epoch).
REAL = """
name = "{name}"
backbone = "proxy"
width = 16
sampler = "grid"
seed = 0
objectives = ["accuracy", "flops"]
[space]
stages = ["c3", "c4", "c5", "c3-c5"]
position = ["after_1x1", "after_3x3", "after_add"]
[fixed]
block = "gc"
ratio = 16
blocks = "all"
[budget]
{budget}
[proxy]
dataset = "synthetic"
image_size = 32
train_size = 3000
val_size = 1000
epochs = 3
batch_size = 64
lr = 0.1
weight_decay = 5e-4
label_smoothing = 0.1
schedule = "onecycle"
start = "baseline"
finetune_epochs = 0.5
finetune_lr = 0.02
"""


def _gcsearch(*args: str) -> str:
    out = subprocess.run([sys.executable, "-m", "gcsearch", *args], check=True, capture_output=True, text=True,
                         env={**os.environ, "COLUMNS": "200"})
    return out.stdout


def run_real(max_repeats: int, workers: int, folder: Path) -> dict[str, object]:
    """The full grid (max_repeats seeds for everyone), then the race with the same cap, in one storage (the
    starts are trained by the first and shared by the second); each timed, both reports compared."""
    folder.mkdir(parents=True, exist_ok=True)
    db = folder / "racing.db"
    if db.exists():
        raise SystemExit(f"{db} exists: give another --dir")
    out: dict[str, object] = {"max_repeats": max_repeats, "workers": workers, "uptime": _uptime()}
    reports = {}
    for name, budget in (("full", f"repeats = {max_repeats}\nbaseline_repeats = {max_repeats}"),
                         ("race", f"race = true\nmax_repeats = {max_repeats}")):
        path = folder / f"{name}.toml"
        path.write_text(REAL.format(name=name, budget=budget))
        started = time.perf_counter()
        _gcsearch("run", "--study", str(path), "--storage", str(db), "--workers", str(workers), "--quiet",
                  "--device", "cpu", "--artifacts", str(folder / "artifacts"))
        seconds = time.perf_counter() - started
        report = json.loads(_gcsearch("report", "--study", name, "--storage", str(db), "--all", "--format", "json"))
        rows = report["rows"]
        reports[name] = rows
        out[name] = {"seconds": round(seconds, 1), "trials": sum(r["n"] for r in rows),
                     "front": sorted(r["label"] for r in rows if r["pareto"]),
                     "tied": sorted(r["label"] for r in rows if r["pareto"] and r.get("tied")),
                     "near": sorted(r["label"] for r in rows if r.get("near_front")),
                     "verdicts": {v: sum(r["verdict"] == v for r in rows) for v in ("better", "worse", "within noise")},
                     "race": {r["label"]: [r["n"], r.get("race")] for r in rows if r.get("race")}}
        out["uptime_after_" + name] = _uptime()
    full, race = out["full"], out["race"]
    out["front_differs_by"] = front_check(db)
    out["front_ok"] = all(d["full_grid"] in (TIED, NEAR) for d in out["front_differs_by"])
    out["trial_ratio"] = race["trials"] / full["trials"]
    return out


TIED, NEAR = "front, tied (*≈)", "off the front, near it (≈)"


def front_check(db: Path) -> list[dict[str, object]]:
    """Each candidate in one front and not the other, and what the full grid's report marks it: a front member
    tied with the front's most accurate one, or (a race front member the full grid leaves off) within seed
    noise of every full-grid front member that dominates it (near the front) or separated from one."""
    from gcsearch.report.build import read_report

    full = read_report(str(db), "full", show_all=True)
    race = read_report(str(db), "race", show_all=True)
    in_full = {r.label: r for r in full.candidates}
    front_full, front_race = {r.label for r in full.front}, {r.label for r in race.front}
    out: list[dict[str, object]] = []
    for label in sorted(front_full ^ front_race):
        row = in_full[label]
        if label in front_full:
            mark = TIED if row.tied else "front, not tied"
        else:
            mark = NEAR if row.near_front else "off the front, separated from a member dominating it"
        out.append({"label": label, "front_of": "full" if label in front_full else "race", "full_grid": mark})
    return out


def _uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="part", required=True)
    sim = sub.add_parser("simulate")
    sim.add_argument("--studies", type=int, default=1000)
    sim.add_argument("--max-repeats", type=int, default=DEFAULT_MAX_REPEATS)
    sim.add_argument("--noise", type=float, default=NOISE, help="a trial's own std (points)")
    sim.add_argument("--margin", type=float, default=DEFAULT_MARGIN)
    sim.add_argument("--seed", type=int, default=0)
    sim.add_argument("--design", choices=sorted(DESIGNS), default="gc")
    real = sub.add_parser("real")
    real.add_argument("--max-repeats", type=int, default=DEFAULT_MAX_REPEATS)
    real.add_argument("--workers", type=int, default=2)
    real.add_argument("--dir", default="/tmp/gcsearch-racing")
    args = parser.parse_args(argv)
    if args.part == "simulate":
        print(json.dumps(simulate(args.studies, args.max_repeats, args.margin, args.seed, args.design, args.noise)))
    else:
        print(json.dumps(run_real(args.max_repeats, args.workers, Path(args.dir))))


if __name__ == "__main__":
    main()
