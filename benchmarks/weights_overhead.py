"""What keeping a trial's trained weights costs, next to the trial.

Runs the first N points of a built-in grid (default: block, with its own proxy settings) through the real
worker loop on a fresh SQLite file, with weights kept in the default artifact folder beside it. Inside the
loop it times the run's functions' `train` (the trial's training) and `weights` plus the artifact upload (the
keeping), and prints per trial and as medians: the keeping in ms, its share of the trial, and the size of
one weights file. Goal: under 2% of a proxy trial.

    python benchmarks/weights_overhead.py [--study block] [--points 4]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as `gcsearch run` sets it, before torch loads

import gcsearch.run.trial as trial_module  # noqa: E402
from gcsearch.run.functions import default_functions  # noqa: E402
from gcsearch.run.progress import Reporter  # noqa: E402
from gcsearch.run.setup import RunOptions, prepare  # noqa: E402
from gcsearch.run.worker import work  # noqa: E402


def timed(fn: Callable[..., Any], seconds: list[float]) -> Callable[..., Any]:
    """`fn`, appending the seconds each call took to `seconds`."""
    def wrapper(*a: Any, **k: Any) -> Any:
        start = time.perf_counter()
        try:
            return fn(*a, **k)
        finally:
            seconds.append(time.perf_counter() - start)

    return wrapper


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--study", default="block")
    parser.add_argument("--points", type=int, default=4)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    real = default_functions()
    # Everything the keeping costs: serializing (functions.weights) and the upload into the artifact store.
    train_s: list[float] = []
    weights_s: list[float] = []
    keep_s: list[float] = []
    train, weights = timed(real.train, train_s), timed(real.weights, weights_s)
    trial_module.keep_weights = timed(trial_module.keep_weights, keep_s)
    with tempfile.TemporaryDirectory() as folder:
        storage = f"sqlite:///{Path(folder) / 'bench.db'}"
        run, _ = prepare(RunOptions(study=args.study, storage=storage, trials=args.points, device="cpu"),
                         functions=replace(real, train=train, weights=weights))
        work(run, Reporter())
        sizes = [p.stat().st_size for p in (Path(folder) / "bench.artifacts").iterdir()]
    total = [w + k for w, k in zip(weights_s, keep_s, strict=True)]
    print(f"{args.study}: {len(total)} trials, torch threads 1")
    for t, c in zip(train_s, total, strict=True):
        print(f"  train {t:6.2f} s   keep weights {1000 * c:6.1f} ms = {100 * c / t:.2f}% of the training")
    median = statistics.median(total)
    print(f"median keep {1000 * median:.1f} ms (serialize {1000 * statistics.median(weights_s):.1f} ms, "
          f"upload {1000 * statistics.median(keep_s):.1f} ms) = {100 * median / statistics.median(train_s):.2f}% "
          f"of the median training ({statistics.median(train_s):.2f} s); "
          f"file {statistics.median(sizes) / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
