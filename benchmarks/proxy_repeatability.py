"""Proxy repeatability: does a proxy rank five built-in candidates the same way on another set of seeds?

Trains block none, GC r16 at c3-c5, GC r16 at c2, SE r16 at c3-c5 and GC r16 at c5 after the residual sum
(proxy backbone, width 16) with several seeds each on the generated dataset, two processes of one thread each,
and prints one JSON line: the ICC (share of the accuracy variance between candidates), the pooled seed std,
seconds per trial, and each candidate's accuracies. BENCHMARKS.md ("Proxy repeatability") has the settings tried.

    python benchmarks/proxy_repeatability.py --image-size 16 --train-size 4000 --val-size 2000 --epochs 4
    python benchmarks/proxy_repeatability.py --epochs 4 --image-size 16 --seeds 3 --first-seed 3  # other seeds
"""

from __future__ import annotations

import argparse
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

os.environ.setdefault("OMP_NUM_THREADS", "1")

CANDIDATES = {
    "none": {"block": "none"},
    "gc c3-c5": {"block": "gc", "stages": "c3,c4,c5", "ratio": 16},
    "gc c2": {"block": "gc", "stages": "c2", "ratio": 16},
    "se c3-c5": {"block": "se", "stages": "c3,c4,c5", "ratio": 16},
    "gc c5 add": {"block": "gc", "stages": "c5", "ratio": 16, "position": "after_add"},
}
_DATA: dict[str, object] = {}


def train_one(proxy: dict, name: str, seed: int) -> tuple[str, int, float, float]:
    import torch

    from gcsearch import ArchSpec, build_model
    from gcsearch.training.config import ProxyConfig
    from gcsearch.training.data import load_data
    from gcsearch.training.loop import seed_everything, train_candidate

    torch.set_num_threads(1)
    cfg = ProxyConfig(**proxy)
    key = json.dumps(proxy, sort_keys=True)
    if key not in _DATA:
        _DATA[key] = load_data(cfg, "cpu")
    data = _DATA[key]
    seed_everything(seed)
    model = build_model(ArchSpec(backbone="proxy", width=16, **CANDIDATES[name]), num_classes=data.num_classes)
    start = time.perf_counter()
    result = train_candidate(model, data, cfg, seed=seed, device="cpu")
    return name, seed, result.accuracy, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--train-size", type=int, default=3000)
    parser.add_argument("--val-size", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--processes", type=int, default=2)
    args = parser.parse_args()
    proxy = {"image_size": args.image_size, "train_size": args.train_size, "val_size": args.val_size,
             "epochs": args.epochs, "lr": args.lr}
    jobs = [(name, seed) for name in CANDIDATES for seed in range(args.first_seed, args.first_seed + args.seeds)]
    start = time.perf_counter()
    with ProcessPoolExecutor(args.processes, mp_context=get_context("fork")) as pool:
        results = list(pool.map(train_one, [proxy] * len(jobs), *zip(*jobs, strict=True)))
    from gcsearch.report.noise import icc, pooled_noise

    groups = {name: [r[2] for r in results if r[0] == name] for name in CANDIDATES}
    noise = pooled_noise(list(groups.values()))
    print(json.dumps({
        "proxy": proxy, "seeds": list(range(args.first_seed, args.first_seed + args.seeds)),
        "icc": icc(list(groups.values())), "seed_std": noise.std,
        "seconds_per_trial": sum(r[3] for r in results) / len(results), "wall_seconds": time.perf_counter() - start,
        "accuracies": groups,
    }))


if __name__ == "__main__":
    main()
