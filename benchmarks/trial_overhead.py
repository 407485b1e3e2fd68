"""What the framework costs per trial, next to the training it wraps.

A trial of `gcsearch run` is: claim a queued trial (storage), look up a finished trial of the same
candidate (storage), write its user attributes (storage), count its FLOPs and params (fvcore), build the
model, train it, write the per-epoch accuracies and tell the result (storage), plus the loop's own
bookkeeping (stale-trial check, counts, the best-so-far table). Everything but building and training the
model is overhead.

The script runs the first N points of a built-in grid (default: placement, with its own proxy settings)
through the real worker loop on a fresh SQLite file, and, alternating with each of them, a bare trial of
the same candidate: `seed_everything` + `build_model` + `train_candidate`, nothing else. Inside the loop it
times the run's functions' `build` and `train` (the "training" of a trial) and `measure` (the FLOPs count), so

    overhead = loop iteration - training,    FLOPs counting = time in measure(),    storage + rest = the remainder

and prints medians in ms, the overhead as a share of the trial's time, and the ratio of a trial through the
framework to the bare trial (medians of the alternating runs). Goal: overhead under 2% of the trial.

    python benchmarks/trial_overhead.py [--study placement] [--points 8]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as `gcsearch run` sets it, before torch loads

from gcsearch.model.cost import clear_cache  # noqa: E402
from gcsearch.run.functions import default_functions  # noqa: E402
from gcsearch.run.progress import Reporter  # noqa: E402
from gcsearch.run.setup import RunOptions, prepare  # noqa: E402
from gcsearch.run.worker import work  # noqa: E402
from gcsearch.study.parse import read_study_file  # noqa: E402


class Timer:
    """Wraps a function and adds up the time spent in it."""

    def __init__(self, fn):
        self.fn = fn
        self.seconds = 0.0

    def __call__(self, *args, **kwargs):
        start = time.perf_counter()
        try:
            return self.fn(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--study", default="placement")
    parser.add_argument("--points", type=int, default=8)
    args = parser.parse_args()

    spec = read_study_file(args.study)
    points = spec.grid()[: args.points]
    real = default_functions()
    real_build = real.build
    build, train, flops = Timer(real.build), Timer(real.train), Timer(real.measure)
    functions = replace(real, build=build, train=train, measure=flops)

    with tempfile.TemporaryDirectory() as tmp:
        options = RunOptions(study=args.study, storage=f"sqlite:///{Path(tmp) / 'overhead.db'}", trials=1)
        run, _ = prepare(options, functions=functions)
        data, device = run.data, run.device
        # Warm-up outside the timings: the first conv, the first optimizer and fvcore's first trace each pay
        # one-off costs (imports, kernels) that a study pays once, not per trial.
        warm = points[0][0].spec
        real.seed(0)
        train.fn(real_build(warm, num_classes=data.num_classes, in_chans=data.in_chans), data, spec.proxy, seed=0,
                 device=device)
        clear_cache()

        rows = []
        for i, (cand, repeat) in enumerate(points):
            # (a) the bare trial: build and train, nothing else
            start = time.perf_counter()
            real.seed(run.spec.seed + repeat)
            model = real_build(cand.spec, num_classes=data.num_classes, in_chans=data.in_chans)
            train.fn(model, data, spec.proxy, seed=run.spec.seed + repeat, device=device)
            bare = time.perf_counter() - start
            # (b) the same point through the worker loop: one more finished trial
            run.target = i + 1
            before = (build.seconds, train.seconds, flops.seconds)
            start = time.perf_counter()
            work(run, Reporter())
            loop = time.perf_counter() - start
            b, t, f = (now - was for now, was in zip((build.seconds, train.seconds, flops.seconds), before,
                                                      strict=True))
            rows.append({"bare": bare, "loop": loop, "training": b + t, "flops": f})
            print(f"  {cand.label:<36} bare {bare:6.2f} s   in the loop {loop:6.2f} s   overhead "
                  f"{(loop - b - t) * 1000:7.1f} ms (FLOPs {f * 1000:6.1f} ms)", flush=True)

    med = statistics.median
    overhead = [r["loop"] - r["training"] for r in rows]
    flops_ms = [r["flops"] for r in rows]
    rest = [o - f for o, f in zip(overhead, flops_ms, strict=True)]
    share = [o / r["loop"] for o, r in zip(overhead, rows, strict=True)]
    print()
    print(f"{args.study}: {len(rows)} trials, proxy {spec.proxy.to_dict()}")
    print(f"trial through the framework (median)  {med(r['loop'] for r in rows):8.2f} s")
    print(f"bare trial: build + train (median)    {med(r['bare'] for r in rows):8.2f} s")
    print(f"ratio framework / bare (medians)      {med(r['loop'] for r in rows) / med(r['bare'] for r in rows):8.3f}")
    print(f"overhead per trial (median)           {med(overhead) * 1000:8.1f} ms  = {med(share) * 100:.2f}% "
          "of the trial")
    print(f"  FLOPs counting (median)             {med(flops_ms) * 1000:8.1f} ms")
    print(f"  storage + bookkeeping (median)      {med(rest) * 1000:8.1f} ms")
    print(f"overhead, worst trial                 {max(overhead) * 1000:8.1f} ms  = {max(share) * 100:.2f}%")
    print(f"goal: under 2% of the trial: {'met' if med(share) < 0.02 else 'NOT met'}")


if __name__ == "__main__":
    main()
