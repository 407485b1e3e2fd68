"""`gcsearch check`: before a long study, does its proxy rank candidates above its seed noise?"""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from gcsearch.commands import console, err_console, interrupted, wide
from gcsearch.commands.options import DataDirOpt, DeviceOpt, JsonOpt, QuietOpt, StorageOpt, StudyFileOpt
from gcsearch.commands.view import choose_view, showing
from gcsearch.report.check import (
    ICC_THRESHOLD,
    MOST_REPEATS,
    POWER,
    CheckResult,
    check_difference,
    read_check,
    stored_keys,
)
from gcsearch.run.engine import Engine
from gcsearch.run.setup import RunOptions, prepare
from gcsearch.run.worker import work
from gcsearch.storage.urls import DEFAULT_STORAGE, mask_url
from gcsearch.study.check import CheckPlan, plan_check, refuse_other_candidates
from gcsearch.study.parse import read_study_file
from gcsearch.study.spec import StudySpec

HELP = """Is the proxy good enough? A few candidates, several seeds each: do they differ by more than the seeds do?

Run it before a study on a new proxy or dataset. It trains the baseline and --candidates candidates chosen to
span the study's space (each next one as unlike those already chosen as it can be), each with --seeds seeds
(the study's seed + the repeat index, as run trains them), on the study's own proxy and backbone. They are
stored like any study, as the grid study NAME-check in --storage: the same command finishes an interrupted
check, and a finished one trains nothing. --longer F also trains the same candidates for F times the epochs,
one seed each (NAME-check-longer), and compares the two rankings.

Seed noise: how far another seed moves one candidate's accuracy (the std over seeds, pooled over the
candidates; df says how many seeds the estimate rests on). Spread: the std of the candidates' mean accuracies.
ICC: the share of the accuracy variance that lies between candidates; 1 means other seeds give the same
ranking, 0 that the seeds decide it. Below 0.7 the verdict says the seeds decide.

Detectable: the smallest difference to the baseline the study itself finds with 80% power, with its budget's
repeats and its baseline's seeds, at the noise measured here. Repeats needed: the seeds per candidate that
find a difference of --difference points (default: the spread) with 80% power. Spearman and Kendall (with
--longer): how well the proxy's ranking matches the longer training's. In the literature, reduced-training
proxies reach 0.61, FLOPs or params alone 0.71 to 0.73, the best zero-cost proxies 0.74 to 0.79.

[bold]Examples[/]

  gcsearch check --study placement        [dim]# 4 candidates x 3 seeds[/]
  gcsearch check -s mine.toml --seeds 5 --longer 4
  gcsearch check -s placement --difference 0.5 --json

Then, if the proxy holds: gcsearch run --study placement

Exit codes: 0 done, 1 runtime failure (e.g. an unreachable database), 2 bad input (an unknown study, --seeds
below 2, --candidates below 1, --longer not above 1), 130 interrupted (run it again to resume).
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
        help="Also train the candidates for F x the epochs (one seed each) and compare the rankings.",
    )] = None,
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
    plan = plan_check(read_study_file(study), candidates=candidates, seeds=seeds, longer=longer)
    check_difference(difference)
    for spec in (plan.proxy, plan.longer):
        if spec is not None:
            refuse_other_candidates(spec, plan, stored_keys(storage, spec.name), mask_url(storage))
    out = err_console if as_json else console
    # Tests hand in an Engine with fakes as the context object (gcsearch.cli.main(argv, engine=...)).
    engine = ctx.obj if isinstance(ctx.obj, Engine) else None
    options = RunOptions(study=study, storage=storage, device=None if device == "auto" else device,
                         data_dir=data_dir)
    trained = 0
    try:
        for spec in (plan.proxy, plan.longer):
            if spec is not None:
                trained += train_study(options, spec, engine, out, quiet)
    except KeyboardInterrupt:
        interrupted()
    result = read_check(storage, plan, difference)
    result.trained = trained
    if as_json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        print_check(wide(console), result, plan)


check.__doc__ = HELP


def train_study(options: RunOptions, spec: StudySpec, engine: Engine | None, out: Console, quiet: bool) -> int:
    """Create or resume one of the check's studies and run what it lacks; the trials trained."""
    run, queued = prepare(options, engine=engine, spec=spec)
    view = choose_view(out, run, quiet)
    view.opened(run, queued)
    with showing(view):
        return work(run, view)


# --- output --------------------------------------------------------------------------------------------


def print_check(out: Console, result: CheckResult, plan: CheckPlan) -> None:
    """The candidates as a table, then each figure with what it means, then the verdict."""
    proxy = plan.proxy.proxy
    epochs = f"{proxy.epochs} epoch" + ("s" if proxy.epochs != 1 else "")
    out.print(f"[bold]check of {escape(result.study)}[/]: the baseline and {len(result.rows) - 1} candidates, "
              f"{result.seeds} seeds each, {epochs} on {proxy.dataset} ({escape(result.check_study)} in "
              f"{escape(result.storage)}; {result.trained} trials trained now)", highlight=False)
    table = Table(box=None, pad_edge=False, title_justify="left")
    table.add_column("candidate")
    table.add_column("key", no_wrap=True, min_width=16)
    table.add_column("seeds", justify="right")
    table.add_column("mean %", justify="right")
    table.add_column("std", justify="right")
    table.add_column("accuracies %")
    if result.longer_epochs is not None:
        table.add_column(f"{result.longer_epochs} epochs %", justify="right")
    for row in result.rows:
        cells = [row.candidate, row.key, str(len(row.accuracies)), _points(row.mean), _points(row.std),
                 ", ".join(f"{a:.2f}" for a in row.accuracies) or "-"]
        if result.longer_epochs is not None:
            cells.append(_points(row.longer))
        table.add_row(*cells)
    out.print(table)
    out.print()
    figures = Table.grid(padding=(0, 2))
    figures.add_column(no_wrap=True)
    figures.add_column(justify="right", no_wrap=True)
    figures.add_column(style="dim")
    for name, value, meaning in figure_lines(result):
        figures.add_row(name, value, meaning)
    out.print(figures)
    if result.missing:
        out.print(f"[yellow]fewer than {result.seeds} finished seeds:[/] {escape(', '.join(result.missing))} (failed "
                  "trials; see gcsearch studies and gcsearch show)", highlight=False)
    out.print(f"[bold]verdict:[/] {escape(result.verdict())}", highlight=False)


def figure_lines(result: CheckResult) -> list[tuple[str, str, str]]:
    """(figure, value, what it means) for the lines under the candidates."""
    noise, power = result.noise, f"{POWER:.0%} power"
    n = sum(1 for r in result.rows if r.accuracies)
    needed = "-" if result.repeats_needed is None else str(result.repeats_needed)
    if result.repeats_needed is None and result.difference and noise.std:
        needed = f"> {MOST_REPEATS}"
    source = "the spread" if result.difference_from == "spread" else "--difference"
    lines = [
        ("seed noise", f"±{_points(noise.std)} pts", f"std between seeds, pooled ({noise.groups} candidates, "
                                                    f"{noise.df} df)"),
        ("spread", f"{_points(result.spread)} pts", f"std of the {n} candidate means"),
        ("ICC", _points(result.icc), f"share of the variance between candidates; seeds decide below "
                                     f"{ICC_THRESHOLD}"),
        ("detectable", f"{_points(result.detectable)} pts",
         f"at {power} with the study's seeds: {_seeds(result.repeats)} a candidate, "
         f"{result.baseline_repeats} the baseline"),
        ("repeats needed", needed, f"seeds a candidate needs for {_points(result.difference)} pts ({source}) "
                                   f"at {power}"),
    ]
    if result.longer_study is None:
        lines.append(("rank agreement", "-", "--longer F ranks the candidates again with F x the epochs"))
    else:
        lines.append(("Spearman, Kendall", f"{_points(result.spearman)}, {_points(result.kendall)}",
                      f"against {result.longer_epochs} epochs (short proxies in the literature: 0.61-0.79)"))
    return lines


def _seeds(n: int) -> str:
    return "1 seed" if n == 1 else f"{n} seeds"


def _points(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"
