"""`gcsearch check`: before a long study, does its proxy rank candidates above its seed noise?"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from gcsearch.commands import console, err_console, interrupted, wide
from gcsearch.commands.options import DataDirOpt, DeviceOpt, JsonOpt, QuietOpt, StorageOpt, StudyFileOpt
from gcsearch.commands.view import choose_view, showing
from gcsearch.report.check_figures import (
    ICC_THRESHOLD,
    MOST_REPEATS,
    POWER,
    CheckResult,
    check_difference,
    check_json,
    read_check,
    stored_keys,
)
from gcsearch.run.functions import TrialFunctions
from gcsearch.run.setup import RunOptions, prepare
from gcsearch.run.worker import work
from gcsearch.storage.urls import DEFAULT_STORAGE, mask_url
from gcsearch.study.check_plan import PAIRED, SCRATCH, CheckPlan, plan_check, refuse_other_candidates
from gcsearch.study.parse import read_study_file
from gcsearch.study.spec import StudySpec
from gcsearch.units import plural

HELP = """Is the proxy good enough? A few candidates, several seeds each: do they differ by more than the seeds do?

Run it before a study on a new proxy or dataset. It trains the baseline and --candidates candidates chosen to
span the study's space (each next one as unlike those already chosen as it can be), each with --seeds seeds
(the study's seed + the repeat index, as run trains them), on the study's own proxy and backbone, in two
protocols (--protocol, default both). scratch: every candidate from its own random start, as the grid study
NAME-check. paired: the study's proxy with start = "baseline": per seed one block-less start, from which every
candidate of that seed fine-tunes (the study's finetune settings when it is paired, else the defaults), as
NAME-check-paired; the starts are shared through the storage. They are stored like any study in --storage:
the same command finishes an interrupted check, and a finished one trains nothing. --longer F also trains the
same candidates for F times the epochs, one seed each (NAME-check-longer), and F times the fine-tune with the
same seeds and starts (NAME-check-paired-longer), and compares the rankings of each protocol.

Noise: how far another seed moves a result. scratch: the std of one candidate's accuracy over seeds, pooled
over the candidates; paired: the std of a difference to the control of the same seed, pooled over the
candidates x seeds table (each candidate's own in the table). Spread: the std of the candidates' mean
accuracies (paired: of their mean differences to the control). ICC: the share of the accuracy variance
between candidates; paired ICC: the same once each seed's shared effect is removed (seeds as blocks). 1 means
other seeds give the same ranking, 0 that the seeds decide it; below 0.7 the verdict says the seeds decide
(scratch reads the ICC, paired the paired ICC).

Detectable: the smallest difference to the baseline the study itself finds with 80% power, with its budget's
repeats (and its baseline's seeds), at the noise measured here. Repeats needed: the seeds per candidate that
find a difference of --difference points (default: the spread) with 80% power. Spearman and Kendall (with
--longer): how well each protocol's ranking matches its own longer training's. In the literature,
reduced-training proxies reach 0.61, FLOPs or params alone 0.71 to 0.73, the best zero-cost proxies 0.74 to
0.79.

[bold]Examples[/]

  gcsearch check --study placement        [dim]# 4 candidates x 3 seeds[/]
  gcsearch check -s mine.toml --seeds 5 --longer 4
  gcsearch check -s placement --protocol paired --json

Then, if the proxy holds: gcsearch run --study placement

Exit codes: 0 done, 1 runtime failure (e.g. an unreachable database), 2 bad input (an unknown study, --seeds
below 2, --candidates below 1, --longer not above 1, --protocol not both, scratch or paired), 130
interrupted (run it again to resume).
"""


def check(
    ctx: typer.Context,
    study: StudyFileOpt,
    candidates: Annotated[int, typer.Option(
        "--candidates", "-n", metavar="N", help="Candidates besides the baseline, chosen to span the space.",
    )] = 4,
    seeds: Annotated[int, typer.Option(
        "--seeds", metavar="K", help="Seeds per candidate (at least 2): the seed noise is measured between them.",
    )] = 3,
    longer: Annotated[float | None, typer.Option(
        "--longer", metavar="F",
        help="Also train the candidates for F x the epochs (scratch, one seed each) and F x the fine-tune (paired, "
             "every seed, the same starts), and compare each protocol's rankings.",
    )] = None,
    protocol: Annotated[str, typer.Option(
        "--protocol", metavar="both|scratch|paired",
        help="Which protocols to measure: candidates from scratch, fine-tuned from each seed's start, or both.",
    )] = "both",
    difference: Annotated[float | None, typer.Option(
        "--difference", metavar="POINTS",
        help="The accuracy difference to find: how many seeds it needs (default: the spread of the candidates).",
    )] = None,
    storage: StorageOpt = DEFAULT_STORAGE,
    device: DeviceOpt = "auto",
    data_dir: DataDirOpt = None,
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
) -> None:
    plan = plan_check(read_study_file(study), candidates=candidates, seeds=seeds, longer=longer, protocol=protocol)
    check_difference(difference)
    for spec in plan.to_train():
        refuse_other_candidates(spec, plan, stored_keys(storage, spec.name), mask_url(storage))
    out = err_console if as_json else console
    # Tests hand in a TrialFunctions with fakes as the context object (gcsearch.cli.main(argv, functions=...)).
    functions = ctx.obj if isinstance(ctx.obj, TrialFunctions) else None
    options = RunOptions(study=study, storage=storage, device=None if device == "auto" else device,
                         data_dir=data_dir)
    trained = 0
    try:
        for spec in plan.to_train():
            trained += train_study(options, spec, functions, out, quiet)
    except KeyboardInterrupt:
        interrupted()
    results = read_check(storage, plan, difference)
    document = check_json(results, plan.protocol, trained)
    if as_json:
        print(json.dumps(document, indent=2))
    else:
        print_check(wide(console), results, plan)


check.__doc__ = HELP


def train_study(options: RunOptions, spec: StudySpec, functions: TrialFunctions | None, out: Console,
                quiet: bool) -> int:
    """Create or resume one of the check's studies and run what it lacks; the trials trained."""
    run, queued = prepare(options, functions=functions, spec=spec)
    view = choose_view(out, run, quiet)
    view.opened(run, queued)
    with showing(view):
        return work(run, view)


# --- output --------------------------------------------------------------------------------------------


def print_check(out: Console, results: Sequence[CheckResult], plan: CheckPlan) -> None:
    """What each protocol trained, the candidates as a table, the figures side by side, then the verdicts."""
    first = results[0]
    out.print(f"[bold]check of {escape(first.study)}[/]: the baseline and {len(first.rows) - 1} candidates, "
              f"{first.seeds} seeds each ({first.trained} trials trained now, in {escape(first.storage)})",
              highlight=False)
    for result in results:
        out.print(f"  {result.protocol}: {escape(protocol_line(result, plan))}", highlight=False)
    if any(r.protocol == PAIRED for r in results):
        out.print("  (paired: Δ is the mean over seeds of the difference to the baseline of the same seed, std Δ "
                  "its std)", highlight=False)
    out.print(candidate_table(results))
    out.print()
    figures = Table(box=None, pad_edge=False, show_header=len(results) > 1)
    figures.add_column("", no_wrap=True)
    for result in results:
        figures.add_column(result.protocol, justify="right", no_wrap=True)
    figures.add_column("", style="dim")
    for name, values, meaning in figure_lines(results):
        figures.add_row(name, *values, meaning)
    out.print(figures)
    for result in results:
        if result.missing:
            out.print(f"[yellow]fewer than {result.seeds} finished seeds ({result.protocol}):[/] "
                      f"{escape(', '.join(result.missing))} (failed trials; see gcsearch studies and gcsearch "
                      "show)", highlight=False)
    for result in results:
        label = "verdict" if len(results) == 1 else f"verdict, {result.protocol}"
        out.print(f"[bold]{label}:[/] {escape(result.verdict())}", highlight=False)


def protocol_line(result: CheckResult, plan: CheckPlan) -> str:
    """How the protocol trains, and where its studies are."""
    check, longer = plan.studies(result.protocol)
    proxy = check.proxy
    if result.protocol == SCRATCH:
        how = f"{_epochs(proxy.epochs)} from scratch on {proxy.dataset}"
    else:
        how = (f"one start per seed ({_epochs(proxy.epochs)} from scratch, block-less), then every candidate "
               f"fine-tuned from it for {_epochs(proxy.finetune_epochs)} at lr {proxy.finetune_lr:g} on "
               f"{proxy.dataset}")
    where = check.name if longer is None else f"{check.name}, {longer.name}"
    return f"{how} ({where})"


def candidate_table(results: Sequence[CheckResult]) -> Table:
    """One row per candidate; per protocol its mean accuracy and std (scratch) or its mean paired delta and that
    delta's own std (paired), and the longer training's where there is one."""
    both = len(results) > 1
    table = Table(box=None, pad_edge=False)
    table.add_column("candidate", min_width=10)
    table.add_column("key", no_wrap=True, min_width=16)
    table.add_column("seeds", justify="right")
    for result in results:
        longer = None if result.longer_epochs is None else f"{result.longer_epochs:g} ep"
        if result.protocol == SCRATCH:
            table.add_column("mean %", justify="right", no_wrap=True)
            table.add_column("std", justify="right", no_wrap=True)
            if not both:
                table.add_column("accuracies %")
            if longer:
                table.add_column(f"{longer} %", justify="right", no_wrap=True)
        else:
            table.add_column("Δ pts", justify="right", no_wrap=True)
            table.add_column("std Δ", justify="right", no_wrap=True)
            if longer:
                table.add_column(f"{longer} Δ", justify="right", no_wrap=True)
    for i, row in enumerate(results[0].rows):
        seeds = sorted({len(r.rows[i].accuracies) for r in results}, reverse=True)
        cells = [row.candidate, row.key, ", ".join(map(str, seeds))]
        for result in results:
            own = result.rows[i]
            if result.protocol == SCRATCH:
                cells += [_points(own.mean), _points(own.std)]
                if not both:
                    cells.append(", ".join(f"{a:.2f}" for a in own.accuracies) or "-")
                if result.longer_epochs is not None:
                    cells.append(_points(own.longer))
            else:
                cells += [_signed(own.delta), _points(own.delta_std)]
                if result.longer_epochs is not None:
                    cells.append(_signed(own.longer_delta))
        table.add_row(*cells)
    return table


def figure_lines(results: Sequence[CheckResult]) -> list[tuple[str, list[str], str]]:
    """(figure, its value per protocol, what it means) for the lines under the candidates."""
    power = f"{POWER:.0%} power"
    by = {r.protocol: r for r in results}

    def each(value: Callable[[CheckResult], str]) -> list[str]:
        return [value(r) for r in results]

    def noise_name() -> str:
        return "seed noise" if list(by) == [SCRATCH] else "paired noise" if list(by) == [PAIRED] else "noise"

    means = "candidate means" if list(by) == [SCRATCH] else "mean deltas" if list(by) == [PAIRED] else \
        "candidate means (paired: mean deltas)"
    first = results[0]
    lines = [
        (noise_name(), each(lambda r: f"±{_points(r.noise_std)} pts"), _noise_meaning(results)),
        ("spread", each(lambda r: f"{_points(r.spread)} pts"),
         f"std of the {sum(1 for r in first.rows if r.accuracies)} {means}"),
        ("ICC", each(lambda r: _points(r.icc)), "share of the variance between candidates (one-way)"
         + (f"; scratch: seeds decide below {ICC_THRESHOLD}" if SCRATCH in by else "")),
        ("paired ICC", each(lambda r: _points(r.paired_icc)), "the same with seeds as blocks"
         + (f"; paired: seeds decide below {ICC_THRESHOLD}" if PAIRED in by else "")),
        ("detectable", each(lambda r: f"{_points(r.detectable)} pts"),
         f"at {power} with the study's seeds: {_seeds(first.repeats)} a candidate"
         + (f", {first.baseline_repeats} the baseline" if list(by) == [SCRATCH] else
            f" (scratch: {first.baseline_repeats} the baseline)" if SCRATCH in by else "")),
        ("repeats needed", each(_needed), f"seeds a candidate needs for --difference or the spread at {power}"),
    ]
    if first.longer_study is None:
        lines.append(("rank agreement", each(lambda r: "-"), "--longer F ranks the candidates again with F x the "
                                                             "epochs"))
    else:
        longer = ", ".join(f"{r.protocol}: {_epochs(r.longer_epochs)}" + (" of fine-tune" if r.protocol == PAIRED
                                                                           else "") for r in results)
        lines.append(("Spearman, Kendall", each(lambda r: f"{_points(r.spearman)}, {_points(r.kendall)}"),
                      f"against {first.factor:g}x the training ({longer}; short proxies in the literature: "
                      "0.61-0.79)"))
    return lines


def _noise_meaning(results: Sequence[CheckResult]) -> str:
    parts = []
    for r in results:
        if r.protocol == SCRATCH:
            parts.append(f"std between seeds, pooled ({r.noise.groups} candidates, {r.noise.df} df)")
        else:
            rows = r.paired.rows if r.paired else 0
            parts.append(f"std of a difference to the control, pooled ({rows} rows, {r.noise_df} df)")
    return "; ".join(f"{r.protocol}: {p}" if len(parts) > 1 else p for r, p in zip(results, parts, strict=True))


def _needed(result: CheckResult) -> str:
    if result.repeats_needed is not None:
        return str(result.repeats_needed)
    return f"> {MOST_REPEATS}" if result.difference and result.noise_std else "-"


def _epochs(n: float) -> str:
    return f"{n:g} epoch" + ("s" if n != 1 else "")


def _seeds(n: int) -> str:
    return plural(n, "seed")


def _points(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _signed(value: float | None) -> str:
    return "-" if value is None else f"{value:+.2f}"
