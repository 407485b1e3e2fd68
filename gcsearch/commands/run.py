"""`gcsearch run`: run or resume a study, with a live view (or plain log lines) and a summary at the end."""

from __future__ import annotations

import json
import time
from typing import Annotated

import typer
from rich.console import Console

from gcsearch.commands import console, err_console, interrupted
from gcsearch.commands.options import ArtifactsOpt, DataDirOpt, DeviceOpt, JsonOpt, QuietOpt, StorageOpt, StudyFileOpt
from gcsearch.commands.view import LiveView, best_table, choose_view, showing
from gcsearch.run.functions import TrialFunctions
from gcsearch.run.local import run_local_workers
from gcsearch.run.progress import Summary
from gcsearch.run.setup import Run, RunOptions, prepare
from gcsearch.run.worker import summarize, work
from gcsearch.storage.urls import DEFAULT_STORAGE
from gcsearch.storage.writer import DEFAULT_HEARTBEAT

HELP = """Run a study: build each candidate, count its FLOPs, train it briefly, store the result.

The study file says what to search and how to train (see the README, "Studies"). Every trial is written
to the storage as it ends, so an interrupted run resumes where it stopped: run the same command again.
A grid study runs each point once and then stops; other samplers run until the study holds --trials
finished trials (complete or pruned).

[bold]Examples[/]

  gcsearch run --study placement          [dim]# built-in grid, in gcsearch.db[/]
  gcsearch run --study joint --trials 60  [dim]# TPE over every dimension[/]
  gcsearch run --study mine.toml --quiet  [dim]# your own file, log lines only[/]
  gcsearch run --study ratio --workers 2  [dim]# two processes, one study[/]
  [dim]# the same command on every machine that shares the study:[/]
  gcsearch run --study joint --storage postgresql+psycopg://user:pw@db/gc

Then: gcsearch report --study placement

Exit codes: 0 done, 1 runtime failure (e.g. unreachable database), 2 bad input (e.g. a study file
error, named as file:key), 130 interrupted (the running trial is recorded and queued again).
"""


def run(
    ctx: typer.Context,
    study: StudyFileOpt,
    storage: StorageOpt = DEFAULT_STORAGE,
    trials: Annotated[int | None, typer.Option(
        "--trials", "-n", min=1, metavar="N",
        help="Finished trials the study should hold (a target, not a count for this run). "
             "Default: the study file's budget; a grid's size.",
    )] = None,
    workers: Annotated[int, typer.Option(
        "--workers", "-w", min=1, metavar="K",
        help="Worker processes on this machine (on several GPUs: cuda:0, cuda:1, ... in turn).",
    )] = 1,
    device: DeviceOpt = "auto",
    data_dir: DataDirOpt = None,
    download: Annotated[bool, typer.Option(
        "--download", help="Fetch CIFAR into --data-dir when it is missing (needs a network).",
    )] = False,
    seed: Annotated[int | None, typer.Option(
        "--seed", metavar="SEED",
        help="Seed of a new study (a trial trains with seed + its repeat index). Default: the study file's; a "
             "resumed study keeps its own.",
    )] = None,
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
    heartbeat: Annotated[int, typer.Option(
        "--heartbeat", min=1, metavar="SECONDS",
        help="Seconds between a running trial's heartbeats; a trial silent for 4x this long is taken as dead "
             "(its worker was killed) and run again.",
    )] = DEFAULT_HEARTBEAT,
    artifacts: ArtifactsOpt = None,
) -> None:
    options = RunOptions(study=study, storage=storage, trials=trials, workers=workers,
                         device=None if device == "auto" else device, data_dir=data_dir, download=download,
                         seed=seed, heartbeat=heartbeat, artifacts=artifacts)
    out = err_console if as_json else console
    started = time.monotonic()
    # Tests hand in a TrialFunctions with fakes as the context object (gcsearch.cli.main(argv, functions=...)).
    functions = ctx.obj if isinstance(ctx.obj, TrialFunctions) else None
    run_, queued = prepare(options, functions=functions, train=workers == 1)
    view = choose_view(out, run_, quiet)
    view.opened(run_, queued)
    trained = 0
    try:
        with showing(view):
            if workers > 1:
                log = None if isinstance(view, LiveView) else "stderr" if as_json else "stdout"
                trained = run_local_workers(run_, view, log=log)
            else:
                trained = work(run_, view)
    except KeyboardInterrupt:
        interrupted()
    summary = summarize(run_, time.monotonic() - started, trained)
    print_summary(out, summary, run_)
    if as_json:
        print(json.dumps(summary.to_dict(), indent=2))


run.__doc__ = HELP


# --- output --------------------------------------------------------------------------------------------


def print_summary(out: Console, summary: Summary, run: Run) -> None:
    c = summary.counts
    if summary.trained == 0 and c.finished >= summary.target:
        out.print(f"Nothing to do: study [bold]{summary.study}[/] already holds {c.finished} finished trials "
                  f"(target {summary.target}). Give a larger --trials to run more.", highlight=False)
    else:
        state = "done" if c.finished >= summary.target else (
            "the race is decided" if summary.exhausted and run.spec.race else
            "every point has been run" if summary.exhausted else "stopped")
        out.print(f"[bold]{summary.study}[/]: {state}, {c.finished}/{summary.target} finished "
                  f"({c.complete - c.reused} complete, {c.pruned} pruned, {c.failed} failed"
                  f"{f', {c.reused} reused' if c.reused else ''}); {summary.trained} trained in "
                  f"{_duration(summary.seconds)}.", highlight=False)
    if (chance := summary.chance_line()) is not None:
        out.print(chance, highlight=False)
    if summary.failures:
        out.print(f"failed trials: {', '.join(summary.failures)} (see gcsearch show)", highlight=False)
    if summary.best:
        out.print(best_table(summary.best, title="the front so far"))
    out.print(f"Next: gcsearch report --study {summary.study}"
              + (f" --storage '{summary.storage}'" if summary.storage != DEFAULT_STORAGE else ""), highlight=False)


def _duration(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    return f"{m}m{s:02d}s" if m else f"{seconds:.1f} s"
