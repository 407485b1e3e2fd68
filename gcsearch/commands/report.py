"""`gcsearch report`: which candidates are worth it, straight from a study's database (read-only)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.text import Text

from gcsearch.commands import console, err_console, wide
from gcsearch.commands.options import ReadStorageOpt, StudyOpt
from gcsearch.errors import InputError
from gcsearch.report.build import SORT_KEYS, Report, read_report
from gcsearch.report.formats import FORMATS, header_lines, render
from gcsearch.report.race import race_line
from gcsearch.report.table import fit_table, text_table
from gcsearch.space.spec import SPEC_FIELDS
from gcsearch.storage.urls import DEFAULT_STORAGE


def report(
    study: StudyOpt = None,
    storage: ReadStorageOpt = DEFAULT_STORAGE,
    all_rows: Annotated[bool, typer.Option(
        "--all", help="Every finished candidate, front rows marked '*', infeasible ones named.")] = False,
    sort: Annotated[str | None, typer.Option(
        "--sort", metavar="KEY", help=f"Order rows best first by a column: {', '.join(SORT_KEYS)}.")] = None,
    top: Annotated[int | None, typer.Option("--top", metavar="N", help="Show the first N rows only.")] = None,
    objectives: Annotated[str | None, typer.Option(
        "--objectives", metavar="LIST",
        help="Objectives that define the front, comma-separated from accuracy, flops, params, latency "
             "(default: the study's own).")] = None,
    by: Annotated[str | None, typer.Option(
        "--by", metavar="DIM",
        help=f"Ablation table: one row per value of a spec dimension ({', '.join(SPEC_FIELDS)}), baseline first. "
             "Chosen automatically when exactly one dimension varies.")] = None,
    fmt: Annotated[str, typer.Option(
        "--format", "-f", metavar="FORMAT", help=f"Output format: {', '.join(FORMATS)}.")] = "table",
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", metavar="FILE", help="Write the output to FILE instead of the terminal.")] = None,
    plot: Annotated[Path | None, typer.Option(
        "--plot", metavar="FILE",
        help="Also draw accuracy vs GFLOPs to FILE (.png or .svg; needs matplotlib: pip install 'gcsearch\\[plots]').",
    )] = None,
) -> None:
    """Which candidates are worth it? The Pareto front of a study, straight from its database.

    Trials are grouped by candidate: repeats with other seeds become one row (mean ± std, n). The front is
    taken over finished trials that meet the study's constraints; the header states the dataset, proxy
    budget, device, trial counts by state, and the front's hypervolume with its reference point. Deltas
    are against the baseline (block none): accuracy in points, FLOPs and params in %.

    Safe while workers run: the database is opened read-only and no lock is held between queries.

    [bold]Examples[/]

      gcsearch report                       [dim]# the only study in ./gcsearch.db[/]
      gcsearch report -s ratio --by ratio   [dim]# a row per ratio, baseline first[/]
      gcsearch report --study placement --all --sort accuracy --top 10
      gcsearch report -s placement --objectives accuracy,flops,params
      gcsearch report -s placement -f csv -o placement.csv --plot placement.png
      gcsearch report --storage copy-from-gpu-box.db -f markdown
    """
    if fmt not in FORMATS:
        raise InputError(f"format: unknown format {fmt!r} (choose from {', '.join(FORMATS)})")
    if plot is not None:
        from gcsearch.report.plot import check_plot_path

        check_plot_path(plot)
    if output is not None and not output.parent.exists():
        raise InputError(f"output: {output.parent}: no such directory")
    rep = read_report(storage, study, objectives=objectives, by=by, show_all=all_rows, sort=sort, top=top)

    if fmt == "table":
        if output is None:
            print_table(rep, wide(console))
        else:
            with output.open("w", encoding="utf-8") as fh:
                print_table(rep, Console(file=fh, width=200, color_system=None, soft_wrap=False))
    else:
        text = render(rep, fmt)
        if output is None:
            console.file.write(text)
        else:
            output.write_text(text, encoding="utf-8")
    if output is not None:
        err_console.print(f"wrote {output} ({len(rep.rows)} rows, {fmt})", highlight=False, soft_wrap=True)
    if plot is not None:
        from gcsearch.report.plot import write_plot

        write_plot(rep, plot)
        err_console.print(f"wrote {plot}", highlight=False, soft_wrap=True)


def print_table(rep: Report, out: Console) -> None:
    """Header facts, then the rows as a rich table (or a line saying there are none yet)."""
    for line in header_lines(rep):
        out.print(line, style="dim", highlight=False, markup=False)
    if not rep.candidates:
        c = rep.counts
        out.print(f"study {rep.study!r} has no finished trials yet ({rep.summary.n_trials} trials: "
                  f"{c.get('RUNNING', 0)} running, {c.get('PRUNED', 0)} pruned, {c.get('FAIL', 0)} failed)",
                  highlight=False, markup=False)
        return
    if not rep.rows:
        out.print("no row to show: no finished candidate meets the constraints (see --all)", markup=False)
        return
    # On a narrow terminal, fewer columns and shorter forms instead of wrapping every line.
    fit = fit_table(rep, out.width)
    titles = {"front": "Pareto front", "all": "All finished candidates", "ablation": f"Ablation by {rep.by}"}
    header, rule, lines = text_table(rep, fit.columns, fit.gap)
    text = Text()
    text.append(titles[rep.view] + "\n", style="italic")
    text.append(header + "\n", style="bold")
    text.append(rule + "\n")
    for row, line in zip(rep.rows, lines, strict=True):
        style = "bold" if row.pareto and rep.view == "all" else ("dim" if not row.feasible else "")
        text.append(line + "\n", style=style)
    out.print(text, soft_wrap=True, end="")
    if (line := race_line(rep.candidates, rep.meta, rep.summary.user_attrs)) is not None:
        out.print(line, style="dim", highlight=False, markup=False)
    if fit.hidden or fit.compact:
        parts = [f"hidden {', '.join(fit.hidden)}"] if fit.hidden else []
        parts += ["Δacc ±95%: the delta ± half its 95% interval"] if fit.compact else []
        out.print(f"(narrowed for the terminal: {'; '.join(parts)}; -f csv has every column)",
                  style="dim", highlight=False, markup=False)
