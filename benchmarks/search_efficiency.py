"""Search efficiency: hypervolume against training epochs spent, with and without early stopping.

Runs the built-in `joint` study (accuracy up, FLOPs down) in one process with one fixed seed, each run into
its own SQLite file under --workdir:

  (a) reference: a large random sample of the space, no pruning
  (b) the study's own sampler (TPE), no pruning
  (c) the study's own sampler with the "front" rule at its default settings (see gcsearch.study.pruning)

(b) and (c) have the same --trials target (finished trials, complete or pruned) and the same sampler seed,
so they propose the same candidates until the first pruned trial. For each run it prints the hypervolume
reached after a number of training epochs (gcsearch.report.build's hypervolume, one reference point for all three
runs), then the goal: (c)'s final hypervolume as a share of (b)'s, its epochs as a share of (b)'s, the
epochs each needed to reach 95% of (b)'s final hypervolume, and whether any candidate on (b)'s front that
(c) also sampled was pruned in (c). A replay of the rule over (b)'s full learning curves (no training)
shows how the margin and the warm-up trade epochs for wrongly pruned front members.

    python benchmarks/search_efficiency.py --quick --plot out/search_efficiency.png

Defaults are the settings of BENCHMARKS.md (the generated set at 16 x 16, 2,000 training and 1,000 validation
images, 6 epochs, 20 trials for (b) and (c), 40 for (a)); --quick shrinks the proxy to 600 training images and
5 epochs, 12 and 24 trials, for a smoke run. --dataset cifar10 --data-dir DIR --image-size 32 --device cuda
runs the same comparison on CIFAR-10 where it is on disk. The runner resumes studies, so rerunning with the
same --workdir picks up where an interrupted benchmark stopped.
"""

from __future__ import annotations

import argparse
import importlib.resources
import json
import math
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from gcsearch.report.build import build_report
from gcsearch.run.progress import Reporter, TrialOutcome
from gcsearch.run.setup import RunOptions, prepare
from gcsearch.run.worker import work
from gcsearch.storage.reader import read_study
from gcsearch.storage.records import StudyData, TrialRecord
from gcsearch.study.front_rule import Finished, front_verdict
from gcsearch.study.pruning import make_pruner

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

GOAL_HV_SHARE = 0.95
GOAL_EPOCH_SHARE = 0.60


@dataclass
class Result:
    """One run: its trials in the order they were run, the epochs each cost, the hypervolume curve."""

    name: str
    storage: str
    study: str
    data: StudyData
    seconds: float
    epochs: list[int] = field(default_factory=list)  # per trial, in trial order
    curve: list[tuple[int, float]] = field(default_factory=list)  # (epochs spent so far, hypervolume)

    @property
    def total_epochs(self) -> int:
        return sum(self.epochs)

    @property
    def final_hv(self) -> float:
        return self.curve[-1][1] if self.curve else 0.0

    def hv_at(self, budget: float) -> float:
        """Hypervolume after the last trial whose cumulative epochs fit in `budget`."""
        hv = 0.0
        for spent, value in self.curve:
            if spent > budget:
                break
            hv = value
        return hv

    def epochs_to(self, target: float) -> int | None:
        """Epochs spent when the hypervolume first reached `target`."""
        return next((spent for spent, value in self.curve if value >= target - 1e-12), None)

    def keys(self, state: str | None = None) -> set[str]:
        return {t.user_attrs["key"] for t in self.data.trials
                if t.user_attrs.get("key") and (state is None or t.state == state)}


def epochs_spent(trial: TrialRecord) -> int:
    """Training epochs a trial cost: all of them when complete, up to the prune epoch when pruned, 0 if reused."""
    attrs = trial.user_attrs
    if attrs.get("reused_from") is not None:
        return 0
    if trial.state == "PRUNED" and attrs.get("pruned_epoch") is not None:
        return int(attrs["pruned_epoch"])
    if trial.state == "COMPLETE" and attrs.get("epochs") is not None:
        return int(attrs["epochs"])
    return len(attrs.get("accuracies") or ())


# -- study files ----------------------------------------------------------------------------------------
def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


def dump_toml(data: dict[str, Any]) -> str:
    """A study file's dict (top-level keys and one level of tables) as TOML text."""
    lines = [f"{k} = {_toml_value(v)}" for k, v in data.items() if not isinstance(v, dict)]
    for name, table in data.items():
        if isinstance(table, dict):
            lines += ["", f"[{name}]", *(f"{k} = {_toml_value(v)}" for k, v in table.items())]
    return "\n".join(lines) + "\n"


def study_file(workdir: Path, name: str, *, sampler: str | None, pruning: dict[str, Any], proxy: dict[str, Any],
               trials: int, seed: int) -> Path:
    """The built-in joint study with the benchmark's sampler, pruning, proxy and budget."""
    text = importlib.resources.files("gcsearch.studies").joinpath("joint.toml").read_text(encoding="utf-8")
    data = tomllib.loads(text)
    data["name"] = f"joint-{name}"
    data["seed"] = seed
    if sampler is not None:
        data["sampler"] = sampler
    data["budget"] = {**data.get("budget", {}), "trials": trials}
    data["proxy"] = {**data.get("proxy", {}), **proxy}
    data["pruning"] = pruning
    path = workdir / f"joint-{name}.toml"
    path.write_text(dump_toml(data), encoding="utf-8")
    return path


# -- running --------------------------------------------------------------------------------------------
class Progress(Reporter):
    def __init__(self, name: str) -> None:
        self.name = name

    def trial_finished(self, outcome: TrialOutcome, counts: Any, best: Any) -> None:
        acc = f"{outcome.accuracy:.2f}%" if outcome.accuracy is not None else ""
        why = f" ({outcome.reason})" if outcome.reason and outcome.state != "COMPLETE" else ""
        print(f"  [{self.name}] #{outcome.number:<3d} {outcome.state:<8s} {acc:>7s} {outcome.seconds:6.1f}s "
              f"{outcome.label}{why}", file=sys.stderr, flush=True)


def run_search(name: str, path: Path, workdir: Path, device: str = "cpu") -> tuple[str, str, float]:
    storage = f"sqlite:///{workdir / f'{name}.db'}"
    started = time.perf_counter()
    run, _ = prepare(RunOptions(study=str(path), storage=storage, device=device))
    work(run, Progress(name))
    return storage, run.spec.name, time.perf_counter() - started


# -- analysis -------------------------------------------------------------------------------------------
def common_reference(results: list[Result]) -> dict[str, float]:
    """The worst of the runs' own reference points, per objective: every run's front fits under it."""
    reports = [build_report(r.data) for r in results]
    ref: dict[str, float] = {}
    for metric in reports[0].objectives:
        values = [rep.reference[metric.name] for rep in reports if metric.name in rep.reference]
        ref[metric.name] = min(values) if metric.direction == "maximize" else max(values)
    return ref


def fill_curve(result: Result, reference: dict[str, float]) -> None:
    """Hypervolume after each trial (in trial order), against epochs spent so far."""
    trials = sorted(result.data.trials, key=lambda t: t.number)
    result.epochs = [epochs_spent(t) for t in trials]
    spent = 0
    result.curve = []
    for k, trial in enumerate(trials, start=1):
        spent += result.epochs[k - 1]
        if trial.state != "COMPLETE" and result.curve:
            result.curve.append((spent, result.curve[-1][1]))
            continue
        prefix = replace(result.data, trials=trials[:k])
        hv = build_report(prefix, reference=reference).hypervolume
        result.curve.append((spent, hv or 0.0))


def front_keys(result: Result) -> set[str]:
    return {row.key for row in build_report(result.data).front}


def fresh_trials(result: Result) -> list[TrialRecord]:
    """The run's trained COMPLETE trials in run order (reused ones cost nothing and are left out)."""
    return sorted((t for t in result.data.trials
                   if t.state == "COMPLETE" and t.user_attrs.get("reused_from") is None), key=lambda t: t.number)


def replay_rule(trials: list[TrialRecord], pruner: Any) -> tuple[int, list[TrialRecord], list[TrialRecord]]:
    """The front rule over full curves in the given order: (epochs spent, trials kept, trials pruned).

    Each trial is checked after every epoch against the trials kept before it, with the rule's own pieces
    (gcsearch.study.pruning.front_verdict); a pruned trial counts its epochs up to the prune and is no finished
    trial for the later ones. No retraining, so a sampler's reaction to pruned trials is not modelled.
    """
    spent, kept, pruned = 0, [], []
    for t in trials:
        curve = t.user_attrs["accuracies"]
        stop = None
        if len(kept) >= pruner.min_trials:
            for epoch in range(pruner.warmup_epochs + 1, len(curve)):
                finished = [Finished(o.number, max(o.user_attrs["accuracies"][:epoch]), o.values[0],
                                     tuple(o.values[1:]), o.user_attrs.get("key")) for o in kept if o.feasible]
                if front_verdict(max(curve[:epoch]), t.values[1:], finished, pruner.margin,
                                 key=t.user_attrs.get("key")):
                    stop = epoch
                    break
        spent += stop or len(curve)
        (pruned if stop else kept).append(t)
    return spent, kept, pruned


def _pruners(result: Result, variants: list[dict[str, Any]]) -> list[Any]:
    directions = [o["direction"] for o in result.data.summary.meta["objectives"]]
    return [make_pruner({"rule": "front", **variant}, directions) for variant in variants]


def replay(result: Result, variants: list[dict[str, Any]], front: set[str]) -> list[dict[str, Any]]:
    """The front rule replayed over an unpruned run's full curves in run order (see `replay_rule`)."""
    trials = fresh_trials(result)
    out = []
    for variant, pruner in zip(variants, _pruners(result, variants), strict=True):
        spent, _, pruned = replay_rule(trials, pruner)
        wrong = [t.number for t in pruned if t.user_attrs.get("key") in front]
        out.append({**variant, "pruned": len(pruned), "epochs": spent, "front_pruned": wrong})
    return out


def replay_orders(result: Result, variants: list[dict[str, Any]], size: int, orders: int = 100,
                  reference: dict[str, float] | None = None) -> list[dict[str, Any]]:
    """The rule over `orders` random draws of `size` of the run's curves (a random search's trials, in a
    random order): its mean share of the epochs, the share of draws in which it pruned a member of the
    draw's own unpruned front, and its mean and worst final hypervolume against the unpruned draw's."""
    import random

    trials = fresh_trials(result)
    draws = [random.Random(seed).sample(trials, min(size, len(trials))) for seed in range(orders)]
    fronts = [{row.key for row in build_report(replace(result.data, trials=d)).front} for d in draws]
    full_hv = [build_report(replace(result.data, trials=d), reference=reference).hypervolume or 0.0 for d in draws]
    out = []
    for variant, pruner in zip(variants, _pruners(result, variants), strict=True):
        shares, lost, hv = [], 0, []
        for draw, front, base in zip(draws, fronts, full_hv, strict=True):
            spent, kept, pruned = replay_rule(draw, pruner)
            shares.append(spent / sum(len(t.user_attrs["accuracies"]) for t in draw))
            lost += any(t.user_attrs.get("key") in front for t in pruned)
            kept_hv = build_report(replace(result.data, trials=kept), reference=reference).hypervolume or 0.0
            hv.append(kept_hv / base if base else 1.0)
        out.append({**variant, "epochs": sum(shares) / len(shares), "lost": lost / len(draws),
                    "hv": sum(hv) / len(hv), "hv_min": min(hv)})
    return out


def print_table(results: list[Result], base: Result, steps: int = 10) -> None:
    """Hypervolume as a share of `base`'s final one, at budgets of 10%, 20%, ... of `base`'s epochs."""
    horizon = max(r.total_epochs for r in results)
    budgets = sorted({round(base.total_epochs * i / steps) for i in range(1, steps + 1)}
                     | {r.total_epochs for r in results} | ({horizon} if horizon > base.total_epochs else set()))
    header = f"{'epochs':>7s} {'% of (b)':>8s} " + " ".join(f"{r.name:>14s}" for r in results)
    print(header)
    print("-" * len(header))
    for budget in budgets:
        cells = " ".join(f"{r.hv_at(budget) / base.final_hv:14.3f}" if budget <= r.total_epochs else
                         f"{r.final_hv / base.final_hv:13.3f}*" for r in results)
        print(f"{budget:7d} {100 * budget / base.total_epochs:7.0f}% {cells}")
    print("(* the run had ended: its final value)")


def plot(results: list[Result], base: Result, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for r in results:
        xs = [0] + [s for s, _ in r.curve]
        ys = [0.0] + [v / base.final_hv for _, v in r.curve]
        ax.step(xs, ys, where="post", label=f"{r.name} ({r.total_epochs} epochs)")
    ax.axhline(GOAL_HV_SHARE, color="grey", ls=":", lw=1, label="95% of (b)'s final")
    ax.axvline(GOAL_EPOCH_SHARE * base.total_epochs, color="grey", ls="--", lw=1, label="60% of (b)'s epochs")
    ax.set_xlabel("training epochs spent")
    ax.set_ylabel("hypervolume / (b)'s final")
    ax.set_title("joint study: hypervolume against training epochs")
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: 600 training images, 5 epochs, 12 and 24 trials")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--trials", type=int, default=None, help="finished trials for (b) and (c)")
    parser.add_argument("--reference-trials", type=int, default=None, help="random trials for (a)")
    parser.add_argument("--epochs", type=int, default=None, help="proxy training epochs")
    parser.add_argument("--train-size", type=int, default=None, help="proxy training images")
    parser.add_argument("--image-size", type=int, default=16, help="proxy image size (default 16)")
    parser.add_argument("--dataset", default="synthetic", help="proxy dataset: synthetic, cifar10, cifar100, folder")
    parser.add_argument("--data-dir", default=None, help="where the dataset lies (cifar10, cifar100, folder)")
    parser.add_argument("--device", default="cpu", help="training device: cpu, cuda, cuda:N (default cpu)")
    parser.add_argument("--plot", type=Path, default=None, help="save the curves here (PNG)")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the databases and study files here")
    parser.add_argument("--reuse", action="store_true", help="analyse the databases already in --workdir")
    parser.add_argument("--pruning", type=json.loads, default={"rule": "front"}, metavar="JSON",
                        help='(c)\'s [pruning] table, e.g. \'{"rule": "front", "warmup_epochs": 2}\' '
                             '(default: rule front at its default settings)')
    args = parser.parse_args(argv)

    # The settings of BENCHMARKS.md, and a smaller proxy for a smoke run.
    trials = args.trials or (12 if args.quick else 20)
    ref_trials = args.reference_trials or 2 * trials
    proxy = {"dataset": args.dataset, "image_size": args.image_size,
             "train_size": args.train_size or (600 if args.quick else 2000),
             "val_size": 300 if args.quick else 1000, "epochs": args.epochs or (5 if args.quick else 6)}
    if args.data_dir:
        proxy["data_dir"] = str(args.data_dir)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="gcsearch-search-efficiency-"))
    workdir.mkdir(parents=True, exist_ok=True)
    runs = {
        "(a) random": dict(sampler="random", pruning={"rule": "none"}, trials=ref_trials),
        "(b) tpe": dict(sampler=None, pruning={"rule": "none"}, trials=trials),
        "(c) tpe+front": dict(sampler=None, pruning=args.pruning, trials=trials),
    }
    print(f"joint study, seed {args.seed}, proxy {proxy}, {trials} trials for (b) and (c), {ref_trials} for (a); "
          f"databases in {workdir}", flush=True)

    # (b) and (c) first: they are the comparison; (a) is the reference. A run whose database already
    # holds its trials returns at once (the runner resumes studies), so an interrupted benchmark resumes.
    done: dict[str, Result] = {}
    for name in ("(b) tpe", "(c) tpe+front", "(a) random"):
        how = runs[name]
        tag = name.split()[0].strip("()")
        path = study_file(workdir, tag, sampler=how["sampler"], pruning=how["pruning"], proxy=proxy,
                          trials=how["trials"], seed=args.seed)
        storage = f"sqlite:///{workdir / f'{tag}.db'}"
        seconds = float("nan")
        if not (args.reuse and (workdir / f"{tag}.db").exists()):
            storage, _, seconds = run_search(tag, path, workdir, args.device)
        data = read_study(storage, f"joint-{tag}")
        done[name] = Result(name, storage, data.name, data, seconds)
    results = [done[name] for name in runs]

    reference = common_reference(results)
    for r in results:
        fill_curve(r, reference)
    a, b, c = results

    print(f"\nhypervolume against training epochs, as a share of (b)'s final {b.final_hv:.4g} (accuracy % x GFLOPs;"
          f" reference point {', '.join(f'{k} {v:.6g}' for k, v in reference.items())})")
    print_table(results, b)
    print("\nrun            trials complete pruned  epochs  final HV  wall s")
    for r in results:
        n = len(r.data.trials)
        complete = sum(t.state == "COMPLETE" for t in r.data.trials)
        pruned = sum(t.state == "PRUNED" for t in r.data.trials)
        print(f"{r.name:<14s} {n:6d} {complete:8d} {pruned:6d} {r.total_epochs:7d} {r.final_hv:9.4g} {r.seconds:7.0f}")

    front_b = front_keys(b)
    sampled_both = front_b & c.keys()
    pruned_c = c.keys("PRUNED") - c.keys("COMPLETE")
    lost = sorted(sampled_both & pruned_c)
    target = GOAL_HV_SHARE * b.final_hv
    hv_share = c.final_hv / b.final_hv if b.final_hv else math.nan
    epoch_share = c.total_epochs / b.total_epochs
    to_c, to_b = c.epochs_to(target), b.epochs_to(target)
    print("\ngoal: (c) reaches >= 95% of (b)'s final hypervolume with <= 60% of (b)'s epochs")
    print(f"  (c) final HV / (b) final HV: {hv_share:.3f}    (c) epochs / (b) epochs: {epoch_share:.3f}")
    print(f"  epochs to reach 95% of (b)'s final HV: (c) {to_c} ({_share(to_c, b.total_epochs)}), "
          f"(b) {to_b} ({_share(to_b, b.total_epochs)}), (a) {a.epochs_to(target)}")
    print(f"  (c)'s HV at 60% of (b)'s epochs: {c.hv_at(GOAL_EPOCH_SHARE * b.total_epochs) / b.final_hv:.3f} of "
          f"(b)'s final; (b)'s own: {b.hv_at(GOAL_EPOCH_SHARE * b.total_epochs) / b.final_hv:.3f}")
    print(f"  (b)'s front: {len(front_b)} candidates, {len(sampled_both)} also sampled by (c), "
          f"{len(lost)} of them pruned in (c){': ' + ', '.join(lost) if lost else ''}")
    # The whole pruned search must cost <= 60% of the unpruned one: reaching 95% early is not enough, since an
    # unpruned search that finds the best candidates early does that too, with no pruning at all.
    met = hv_share >= GOAL_HV_SHARE and epoch_share <= GOAL_EPOCH_SHARE and not lost
    print(f"  goal (final HV >= 95%, all epochs <= 60%, no front member pruned): {'met' if met else 'NOT met'}")

    variants = [{"warmup_epochs": w, "margin": m} for w in (0, 1, 2, 3) for m in (2.0, 5.0, 8.0)]
    rows = replay(b, variants, front=front_b)
    print("\nthe front rule replayed over (b)'s full curves (no retraining, sampler feedback not modelled; "
          "min_trials 5)")
    print("warmup margin  pruned  epochs  % of (b)  (b)-front members pruned")
    for row in rows:
        print(f"{row['warmup_epochs']:6d} {row['margin']:6g} {row['pruned']:7d} {row['epochs']:7d} "
              f"{100 * row['epochs'] / b.total_epochs:8.0f}%  {row['front_pruned'] or '-'}")

    rows = replay_orders(a, variants, size=trials, reference=reference)
    print(f"\nthe front rule over 100 random draws of {trials} of (a)'s curves, each in a random order")
    print("warmup margin  epochs  draws with a front member pruned  HV / unpruned (mean, worst)")
    for row in rows:
        print(f"{row['warmup_epochs']:6d} {row['margin']:6g} {100 * row['epochs']:6.0f}%  {100 * row['lost']:31.0f}%  "
              f"{row['hv']:.3f}, {row['hv_min']:.3f}")

    print("\ndo early accuracies predict the final one? distinct candidates of (a) and (b)")
    print("epoch  mean acc  Spearman(best up to the epoch, final)")
    for epoch, mean, rho in curve_signal([a, b]):
        print(f"{epoch:5d} {mean:8.1f}% {rho:8.2f}")
    if args.plot:
        plot(results, b, args.plot)
        print(f"\nplot: {args.plot}")
    return 0


def _ranks(values: list[float]) -> list[float]:
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2
        i = j + 1
    return ranks


def spearman(xs: list[float], ys: list[float]) -> float:
    rx, ry = _ranks(xs), _ranks(ys)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    cov = sum((x - mx) * (y - my) for x, y in zip(rx, ry, strict=True))
    var = math.sqrt(sum((x - mx) ** 2 for x in rx) * sum((y - my) ** 2 for y in ry))
    return cov / var if var else math.nan


def curve_signal(results: list[Result]) -> list[tuple[int, float, float]]:
    """Per epoch before the last: the mean accuracy and the rank correlation between each candidate's best
    accuracy up to that epoch and its final accuracy, over the distinct candidates the runs trained."""
    curves = {t.user_attrs["key"]: t.user_attrs["accuracies"] for r in results for t in fresh_trials(r)}
    finals = [c[-1] for c in curves.values()]
    epochs = min(len(c) for c in curves.values())
    out = []
    for epoch in range(1, epochs):
        best = [max(c[:epoch]) for c in curves.values()]
        at = [c[epoch - 1] for c in curves.values()]
        out.append((epoch, sum(at) / len(at), spearman(best, finals)))
    return out


def _share(value: int | None, total: int) -> str:
    return "never" if value is None else f"{100 * value / total:.0f}%"


if __name__ == "__main__":
    sys.exit(main())
