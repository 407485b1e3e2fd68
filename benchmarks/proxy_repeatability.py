"""Proxy repeatability: does a proxy rank five built-in candidates the same way on another set of seeds?

Trains block none, GC r16 at c3-c5, GC r16 at c2, SE r16 at c3-c5 and GC r16 at c5 after the residual sum
(proxy backbone, width 16) with several seeds each on the generated dataset, two processes of one thread each,
and prints one JSON line: the ICC (share of the accuracy variance between candidates), the pooled seed std,
seconds per trial, and each candidate's accuracies. BENCHMARKS.md ("Proxy repeatability") has the settings tried.

    python benchmarks/proxy_repeatability.py --image-size 16 --train-size 4000 --val-size 2000 --epochs 4
    python benchmarks/proxy_repeatability.py --epochs 4 --image-size 16 --seeds 3 --first-seed 3  # other seeds
    python benchmarks/proxy_repeatability.py --task latin --cast 0.08,0.16 --epochs 4  # a harder task

`--task latin` and `--task xor` swap the generated set for harder variants made to need global context inside
the network, not only at its pooled head (see `harder_chunk`); they live here, not in the package, because
none of them ranked repeatably (BENCHMARKS.md).
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
# cast directions in RGB for the harder tasks, each summing to zero so that brightness says nothing
_CAST_DIRS = ((1.0, 0.0, -1.0), (-1.0, 0.0, 1.0), (-0.5, 1.0, -0.5), (0.5, -1.0, 0.5))
_SHAPES = (0, 1, 3, 4)  # ring, plus, X, small square of gcsearch.training.synthetic._shape_masks


def harder_chunk(seed: int, size: int, task: str, cast_range: tuple[float, float]) -> tuple:
    """256 images of a harder generated task: the built-in set's noise and clutter, a weak image-wide cast,
    one bright shape out of four. `latin`: four casts, label (shape + cast) mod 4, so neither the shape nor
    the cast alone says anything and a linear read of pooled features cannot tell the class: the network
    must bring the cast to the shape before pooling. `xor`: two casts, label shape XOR cast (pairs 0-1 and
    2-3 swap under a warm cast), so the shape alone narrows the class to two.
    """
    import torch

    from gcsearch.training import synthetic as syn

    n, g = syn.SYNTHETIC_CHUNK, torch.Generator().manual_seed(seed)
    img = syn.background(n, size, g)
    cast = torch.randint(0, 4 if task == "latin" else 2, (n,), generator=g)
    lo, hi = cast_range
    amp = lo + (hi - lo) * torch.rand(n, generator=g)
    img += (amp[:, None] * torch.tensor(_CAST_DIRS)[cast])[:, :, None, None]
    side = max(round(size * 10 / 32), 3)
    shape = torch.randint(0, 4, (n,), generator=g)
    color = 0.6 + 0.4 * torch.rand(n, 3, generator=g)
    ys = torch.randint(0, size - side + 1, (n,), generator=g)
    xs = torch.randint(0, size - side + 1, (n,), generator=g)
    syn._paste(img, color, syn._shape_masks(side)[torch.tensor(_SHAPES)][shape], ys, xs)
    label = (shape + cast) % 4 if task == "latin" else shape ^ cast
    return (img.clamp_(0, 1) * 255).round_().to(torch.uint8), label


def use_harder_task(task: str, cast_range: tuple[float, float]) -> None:
    """Make gcsearch's synthetic loader produce `task` in this process (and the workers forked from it)."""
    import torch

    import gcsearch.training.data as data
    from gcsearch.training.synthetic import SYNTHETIC_CHUNK

    def make(n: int, seed: int, image_size: int = 32, **_: object) -> tuple:
        count = -(-n // SYNTHETIC_CHUNK)
        chunks = [harder_chunk(seed * 1_000_003 + k, image_size, task, cast_range) for k in range(count)]
        return tuple(torch.cat([c[i] for c in chunks])[:n] for i in range(2))

    data.make_synthetic, data.SYNTHETIC_CLASSES = make, 4


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
    parser.add_argument("--task", choices=("builtin", "latin", "xor"), default="builtin",
                        help="the built-in generated set, or a harder variant (see harder_chunk)")
    parser.add_argument("--cast", default="0.02,0.06", help="LO,HI: the harder tasks' cast strength per pixel")
    args = parser.parse_args()
    if args.task != "builtin":
        use_harder_task(args.task, tuple(float(v) for v in args.cast.split(",")))
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
        "proxy": proxy, "task": args.task, "cast": args.cast if args.task != "builtin" else None,
        "seeds": list(range(args.first_seed, args.first_seed + args.seeds)),
        "icc": icc(list(groups.values())), "seed_std": noise.std,
        "seconds_per_trial": sum(r[3] for r in results) / len(results), "wall_seconds": time.perf_counter() - start,
        "accuracies": groups,
    }))


if __name__ == "__main__":
    main()
