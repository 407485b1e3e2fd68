"""The paired proxy measured: how repeatable are candidates' deltas when each fine-tunes from the trained
block-less start of its seed, and what does each fine-tune budget cost?

For every seed, the block-less baseline is trained from scratch with the built-in proxy (the start, kept in
`--cache` so a rerun reuses it). Then the five candidates of `proxy_repeatability.py` (the block-less control
among them) load the start and fine-tune on the data order of their seed, for each budget of `--budgets`
(EPOCHS@LR, cosine) and for each budget's `--longer` times longer version. Two processes of one thread each.
Prints one JSON line per budget and a Markdown table: per seed set, the std of each candidate's paired deltas,
the detectable difference at 80% power with the set's seeds (moderated, as the report computes it), the paired
ICC (seeds as blocks) and the one-way ICC, the verdicts; over all seeds, the Spearman correlation of the
candidates' mean deltas with the longer fine-tune's, and the CPU seconds per fine-tune.

    python benchmarks/paired_proxy.py --seed-sets 0-2,3-5 --budgets 0.5@0.02,1@0.02 --longer 4
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from proxy_repeatability import CANDIDATES  # noqa: E402

_DATA: dict[str, object] = {}


def _data(cfg):  # noqa: ANN001, ANN202
    from gcsearch.training.data import load_data

    key = cfg.fingerprint()
    if key not in _DATA:
        _DATA[key] = load_data(cfg, "cpu")
    return _DATA[key]


def train_start(proxy: dict, seed: int, cache: str) -> tuple[int, float, float]:
    import torch

    from gcsearch import ArchSpec, build_model
    from gcsearch.training.config import ProxyConfig
    from gcsearch.training.loop import seed_everything, train_candidate

    torch.set_num_threads(1)
    cfg = ProxyConfig(**proxy)
    path = Path(cache) / f"start-{cfg.fingerprint()}-{seed}.pt"
    if path.exists():
        saved = torch.load(path, weights_only=True)
        return seed, float(saved["accuracy"]), 0.0
    data = _data(cfg)
    seed_everything(seed)
    model = build_model(ArchSpec(backbone="proxy", width=16, block="none"), num_classes=data.num_classes)
    started = time.process_time()
    result = train_candidate(model, data, cfg, seed=seed, device="cpu")
    seconds = time.process_time() - started
    torch.save({"accuracy": result.accuracy, "state_dict": model.state_dict()}, path)
    return seed, result.accuracy, seconds


def finetune(proxy: dict, seed: int, cache: str, name: str, epochs: float, lr: float
             ) -> tuple[str, int, float, float, float, float]:
    import torch

    from gcsearch import ArchSpec, build_model
    from gcsearch.model.weights import load_shared
    from gcsearch.training.config import ProxyConfig, finetune_seed
    from gcsearch.training.loop import seed_everything, train_candidate

    torch.set_num_threads(1)
    base = ProxyConfig(**proxy)
    cfg = ProxyConfig(**{**proxy, "start": "baseline", "finetune_epochs": epochs, "finetune_lr": lr})
    done = Path(cache) / f"finetune-{cfg.fingerprint()}-{name.replace(' ', '_')}-{seed}.json"
    if done.exists():
        return tuple(json.loads(done.read_text()))
    start = torch.load(Path(cache) / f"start-{base.fingerprint()}-{seed}.pt", weights_only=True)["state_dict"]
    data = _data(base)
    seed_everything(seed)
    model = build_model(ArchSpec(backbone="proxy", width=16, **CANDIDATES[name]), num_classes=data.num_classes)
    load_shared(model, start)
    started = time.process_time()
    result = train_candidate(model, data, cfg.finetune_proxy(), seed=finetune_seed(seed), device="cpu",
                             epochs=cfg.finetune_epochs)
    out = (name, seed, epochs, lr, result.accuracy, time.process_time() - started)
    done.write_text(json.dumps(out))
    return out


def seed_range(text: str) -> list[int]:
    first, _, last = text.partition("-")
    return list(range(int(first), int(last or first) + 1))


def summarize(results: dict, seed_sets: list[list[int]], budget: tuple[float, float], longer: tuple[float, float],
              starts: dict[int, float]) -> dict:
    from gcsearch.report.noise import (
        compare_paired,
        holm_verdicts,
        icc,
        paired_detectable,
        paired_differences,
        paired_icc,
        paired_noise,
        paired_std,
        rank_agreement,
    )

    names = [n for n in CANDIDATES if n != "none"]
    out: dict = {"budget": {"epochs": budget[0], "lr": budget[1]}, "sets": []}
    for seeds in seed_sets:
        acc = {n: {s: results[(n, s, *budget)][0] for s in seeds} for n in CANDIDATES}
        diffs = {n: paired_differences(acc[n], acc["none"]) for n in names}
        noise = paired_noise([acc[n] for n in names], acc["none"])
        comparisons = holm_verdicts([compare_paired(diffs[n], noise) for n in names])
        rows = {}
        for n, c in zip(names, comparisons, strict=True):
            own = statistics.stdev(diffs[n])
            std, df = paired_std(diffs[n], noise)
            rows[n] = {"delta": c.delta, "std": own, "judged_std": std, "df": df, "low": c.low, "high": c.high,
                       "verdict": c.verdict, "detectable": paired_detectable(std, df, len(seeds)) if std else None}
        table = [[acc[n][s] for s in seeds] for n in CANDIDATES]
        out["sets"].append({"seeds": seeds, "starts": [starts[s] for s in seeds], "paired_icc": paired_icc(table),
                            "icc": icc(table), "pooled_std": noise.std, "pooled_df": noise.df,
                            "left_out": noise.left_out, "detectable": paired_detectable(noise.std, noise.df,
                                                                                        len(seeds)),
                            "candidates": rows, "accuracies": acc})
    every = sorted({s for seeds in seed_sets for s in seeds})
    means = [sum(results[(n, s, *budget)][0] - results[("none", s, *budget)][0] for s in every) / len(every)
             for n in names]
    if longer is not None and all((n, s, *longer) in results for n in CANDIDATES for s in every):
        long_means = [sum(results[(n, s, *longer)][0] - results[("none", s, *longer)][0] for s in every) / len(every)
                      for n in names]
        out["longer"] = {"epochs": longer[0], "lr": longer[1], "mean_deltas": dict(zip(names, long_means, strict=True)),
                         "spearman": rank_agreement(means, long_means)[0] if len(names) >= 3 else None}
    out["mean_deltas"] = dict(zip(names, means, strict=True))
    seconds = [results[(n, s, *budget)][1] for n in CANDIDATES for s in every]
    out["cpu_seconds_per_finetune"] = sum(seconds) / len(seconds)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed-sets", default="0-2,3-5", help="disjoint seed sets, e.g. 0-2,3-5")
    parser.add_argument("--budgets", default="0.5@0.02", help="fine-tune budgets EPOCHS@LR, comma-separated")
    parser.add_argument("--longer", type=float, default=4.0, help="the longer fine-tune's epochs, as a multiple")
    parser.add_argument("--no-longer", action="store_true", help="skip the longer fine-tunes")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--cache", default=".paired-starts", help="folder that keeps the trained starts")
    args = parser.parse_args()
    seed_sets = [seed_range(t) for t in args.seed_sets.split(",")]
    seeds = sorted({s for group in seed_sets for s in group})
    budgets = [(float(e), float(lr)) for e, lr in (b.split("@") for b in args.budgets.split(","))]
    longers = {b: (b[0] * args.longer, b[1]) for b in budgets} if not args.no_longer else {b: None for b in budgets}
    proxy: dict = {}  # the built-in proxy
    Path(args.cache).mkdir(parents=True, exist_ok=True)
    wall = time.perf_counter()
    with ProcessPoolExecutor(args.processes, mp_context=get_context("fork")) as pool:
        starts = {s: (a, t) for s, a, t in pool.map(train_start, [proxy] * len(seeds), seeds,
                                                    [args.cache] * len(seeds))}
        wanted = sorted({b for b in budgets} | {b for b in longers.values() if b is not None})
        jobs = [(n, s, e, lr) for e, lr in wanted for n in CANDIDATES for s in seeds]
        done = pool.map(finetune, [proxy] * len(jobs), [j[1] for j in jobs], [args.cache] * len(jobs),
                        [j[0] for j in jobs], [j[2] for j in jobs], [j[3] for j in jobs])
        results = {(n, s, e, lr): (a, t) for n, s, e, lr, a, t in done}
    start_acc = {s: a for s, (a, _) in starts.items()}
    for b in budgets:
        summary = summarize(results, seed_sets, b, longers[b], start_acc)
        summary["start_cpu_seconds"] = [t for _, t in starts.values() if t]
        print(json.dumps(summary))
    print(f"# wall {time.perf_counter() - wall:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
