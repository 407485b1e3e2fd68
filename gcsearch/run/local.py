"""Several worker processes on this machine: one study, each worker its own device and its share of the cores.

The parent sets the study up (and queues a resumed grid's missing points) once, starts the workers with the
`spawn` method, and reports what they store until they end. Ctrl-C or SIGTERM reaches every worker as SIGTERM,
so each records its running trial before it exits.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import time
from dataclasses import replace
from typing import Any

from optuna.trial import TrialState

from gcsearch.contract import count_trials
from gcsearch.errors import InputError, RuntimeFailure
from gcsearch.run.progress import LogLines, Reporter, best_candidates, outcome_of
from gcsearch.run.setup import Run, RunOptions, passive_openmp_threads, prepare, quiet_optuna
from gcsearch.run.signals import Interrupted, sigterm_interrupts
from gcsearch.run.worker import work


def run_local_workers(run: Run, reporter: Reporter, log: str | None) -> int:
    """Start `run.options.workers` worker processes on the study `run` has set up; poll it until they end.

    `log`: where each worker prints its log lines ("stdout" or "stderr"), or None for silent workers whose
    results this process reports as it sees them in the storage.
    Returns the trials they trained. Raises KeyboardInterrupt (after the workers recorded their trials) on
    Ctrl-C or SIGTERM, RuntimeFailure or InputError when a worker failed.
    """
    options = run.options
    ctx = multiprocessing.get_context("spawn")
    devices = worker_devices(options.device, options.workers)
    threads = worker_threads(options.workers, os.cpu_count())
    before = count_trials(run.study.get_trials(deepcopy=False))
    procs: list[Any] = []
    for i, device in enumerate(devices):
        child = replace(options, worker_index=i, workers=1, device=device, fill_grid=False)
        p = ctx.Process(target=_worker_main, args=(child, threads, log), name=f"gcsearch-worker-{i}")
        p.start()
        procs.append(p)
    seen = {t.number for t in run.study.get_trials(deepcopy=False) if t.state.is_finished()}
    with sigterm_interrupts():
        try:
            with quiet_optuna():
                while any(p.is_alive() for p in procs):
                    trials = run.study.get_trials(deepcopy=False)
                    counts, best = count_trials(trials), best_candidates(trials, run.spec)
                    if not log:  # the workers are silent: tell their results here
                        for t in trials:
                            if t.state.is_finished() and t.number not in seen:
                                seen.add(t.number)
                                reporter.trial_finished(outcome_of(t), counts, best)
                    reporter.waiting(counts, [t for t in trials if t.state == TrialState.RUNNING], best)
                    for p in procs:
                        p.join(timeout=options.poll_s / len(procs))
        except KeyboardInterrupt:
            _stop_workers(procs)
            raise
    codes = [p.exitcode for p in procs]
    after = count_trials(run.study.get_trials(deepcopy=False))
    trained = (after.finished - before.finished) + (after.failed - before.failed)
    if 130 in codes or any(c is not None and c < 0 for c in codes):
        raise Interrupted()
    if 2 in codes:
        raise InputError(f"a worker stopped on bad input (exit codes {codes}); see its message above")
    if any(c not in (0, None) for c in codes):
        raise RuntimeFailure(f"a worker failed (exit codes {codes}); see its message above")
    return trained


def _worker_main(options: RunOptions, threads: int, log: str | None) -> None:
    """Entry point of a worker process: the same study, its own device, its own share of the CPU."""
    passive_openmp_threads()
    import torch

    if threads:
        torch.set_num_threads(threads)
    stream = sys.stderr if log == "stderr" else sys.stdout
    reporter: Reporter = Reporter() if log is None else LogLines(
        prefix=f"[worker {options.worker_index}] ", write=lambda line: print(line, file=stream, flush=True))
    try:
        run, _ = prepare(options)
        work(run, reporter)
    except KeyboardInterrupt:
        sys.exit(130)
    except InputError as exc:
        print(f"error: [worker {options.worker_index}] {exc}", file=sys.stderr, flush=True)
        sys.exit(2)
    except RuntimeFailure as exc:
        print(f"error: [worker {options.worker_index}] {exc}", file=sys.stderr, flush=True)
        sys.exit(1)


def worker_devices(device: str | None, workers: int) -> list[str | None]:
    """Devices for `workers` local workers: cuda:i round robin over the GPUs when the device is cuda/auto."""
    import torch

    if device not in (None, "auto", "cuda") or not torch.cuda.is_available():
        return [device] * workers
    n = torch.cuda.device_count()
    return [f"cuda:{i % n}" for i in range(workers)]


def worker_threads(workers: int, cpus: int | None) -> int:
    """torch CPU threads for each of `workers` local workers: an equal share of the cores, on any device.

    A GPU worker's CPU work is launching kernels and small host-side ops; with torch's default (every core)
    in each of several workers, their OpenMP threads fight over the same cores.
    """
    return max(1, (cpus or 1) // workers)


def _stop_workers(procs: list[Any], grace_s: float = 30.0) -> None:
    """Ask every worker to stop (SIGTERM: each records its trial as interrupted), then wait for them."""
    for p in procs:
        if p.is_alive() and p.pid is not None:
            try:
                os.kill(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + grace_s
    for p in procs:
        p.join(timeout=max(0.1, deadline - time.monotonic()))
        if p.is_alive():
            p.kill()
            p.join()
