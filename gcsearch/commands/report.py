"""`gcsearch report`, `gcsearch studies`, `gcsearch show`: read a study's storage, never write it."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from gcsearch.commands import console, err_console
from gcsearch.contract import Attr, Meta, objective_names, proxy_settings
from gcsearch.errors import InputError
from gcsearch.report.build import SORT_KEYS, Report, read_report
from gcsearch.report.formats import FORMATS, display_columns, header_lines, render, text_table, text_table_width
from gcsearch.report.labels import short_label
from gcsearch.space.spec import SPEC_FIELDS
from gcsearch.storage.reader import list_studies, read_trial
from gcsearch.storage.records import StudySummary, TrialRecord
from gcsearch.storage.urls import DEFAULT_STORAGE, mask_url

StorageOption = Annotated[str, typer.Option(
    "--storage", metavar="URL", envvar="GCSEARCH_STORAGE",
    help="Where the trials live: a SQLAlchemy URL (sqlite:///gcsearch.db, postgresql+psycopg://...) or the path "
         "of a SQLite file. Opened read-only; a missing file is an error, never a new database.")]
StudyOption = Annotated[str | None, typer.Option(
    "--study", "-s", metavar="NAME", help="Study name; may be left out when the storage holds one study.")]


def report(
    study: StudyOption = None,
    storage: StorageOption = DEFAULT_STORAGE,
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
        help="Also draw accuracy vs GFLOPs to FILE (.png or .svg; needs matplotlib: pip install 'gcsearch[plots]').",
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
    columns = display_columns(rep)
    hidden = []
    # On a narrow terminal, drop the least needed columns instead of wrapping every line.
    for name in ("Δparams", "Δlatency", "params M", "trials", "front", "rank"):
        if text_table_width(rep, columns) <= out.width:
            break
        if any(title == name for title, _, _ in columns):
            columns = [c for c in columns if c[0] != name]
            hidden.append(name)
    # A plain fixed-width table: rich's Table measures every cell several times, which takes seconds for
    # the thousands of rows of `--all` on a large study.
    titles = {"front": "Pareto front", "all": "All finished candidates", "ablation": f"Ablation by {rep.by}"}
    header, rule, lines = text_table(rep, columns)
    text = Text()
    text.append(titles[rep.view] + "\n", style="italic")
    text.append(header + "\n", style="bold")
    text.append(rule + "\n")
    for row, line in zip(rep.rows, lines, strict=True):
        style = "bold" if row.pareto and rep.view == "all" else ("dim" if not row.feasible else "")
        text.append(line + "\n", style=style)
    out.print(text, soft_wrap=True, end="")
    if hidden:
        out.print(f"(hidden for the terminal's width: {', '.join(hidden)}; see -f csv or a wider terminal)",
                  style="dim", highlight=False, markup=False)


def wide(out: Console) -> Console:
    """The console itself on a terminal; a 200-column one when output goes to a pipe or file."""
    if out.is_terminal:
        return out
    return Console(width=200, color_system=None, soft_wrap=False)


def studies(
    storage: StorageOption = DEFAULT_STORAGE,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """The studies in a storage: trial counts by state, dataset, last update.

    Read-only, like `report`: safe while workers run.

    [bold]Examples[/]

      gcsearch studies
      gcsearch studies --storage postgresql+psycopg://user@host/gcsearch --json
    """
    found = list_studies(storage)
    if as_json:
        console.file.write(json.dumps([_study_dict(s) for s in found], indent=2) + "\n")
        return
    if not found:
        console.print(f"no study in {mask_url(storage)}", highlight=False)
        return
    table = Table(title=f"Studies in {mask_url(storage)}", title_justify="left", header_style="bold",
                  box=box.SIMPLE_HEAD)
    for title, justify in (("study", "left"), ("complete", "right"), ("pruned", "right"), ("failed", "right"),
                           ("running", "right"), ("dataset", "left"), ("objectives", "left"),
                           ("last update", "left")):
        table.add_column(title, justify=justify)
    for s in found:
        d = _study_dict(s)
        table.add_row(s.name, str(s.counts["COMPLETE"]), str(s.counts["PRUNED"]), str(s.counts["FAIL"]),
                      str(s.counts["RUNNING"]), d["dataset"] or "-", ",".join(d["objectives"]) or "-",
                      _local(s.last_update))
    wide(console).print(table)


def _study_dict(s: StudySummary) -> dict[str, Any]:
    meta = s.meta
    names = objective_names(meta)
    return {
        "name": s.name, "trials": s.n_trials, "counts": {k.lower(): v for k, v in s.counts.items()},
        "dataset": proxy_settings(meta).get("dataset"), "backbone": meta.get(Meta.BACKBONE),
        "objectives": names or [d.lower() for d in s.directions], "directions": [d.lower() for d in s.directions],
        "last_update": s.last_update.isoformat() if s.last_update else None,
    }


def show(
    trial: Annotated[int, typer.Argument(metavar="TRIAL", help="Trial number, as in the report's trials column.")],
    study: StudyOption = None,
    storage: StorageOption = DEFAULT_STORAGE,
    as_json: Annotated[bool, typer.Option("--json", help="Print the trial as JSON.")] = False,
) -> None:
    """One trial in full: state, spec, metrics, per-epoch accuracy, seed, device, versions, why it stopped.

    Read-only, like `report`: safe while workers run.

    [bold]Examples[/]

      gcsearch show 12 --study placement
      gcsearch show 12 -s placement --json | jq .user_attrs.accuracies
    """
    summary, record = read_trial(storage, study, trial)
    data = _trial_dict(summary, record)
    if as_json:
        console.file.write(json.dumps(data, indent=2, default=str) + "\n")
        return
    _print_trial(summary, record)


def _trial_dict(summary: StudySummary, t: TrialRecord) -> dict[str, Any]:
    return {
        "study": summary.name, "number": t.number, "state": t.state.lower(), "values": t.values,
        "objectives": _study_dict(summary)["objectives"], "feasible": t.feasible, "constraints": t.constraints,
        "datetime_start": t.datetime_start.isoformat() if t.datetime_start else None,
        "datetime_complete": t.datetime_complete.isoformat() if t.datetime_complete else None,
        "duration_s": t.duration_s, "params": t.params, "user_attrs": t.user_attrs,
        "intermediate_values": {str(k): v for k, v in sorted(t.intermediate_values.items())},
    }


def _print_trial(summary: StudySummary, t: TrialRecord) -> None:
    ua = t.user_attrs
    spec = ua.get(Attr.SPEC) if isinstance(ua.get(Attr.SPEC), dict) else None
    console.print(f"[bold]trial {t.number}[/] of study {summary.name}: {t.state.lower()}"
                  + (f", {short_label(spec)}" if spec else ""), highlight=False)
    facts: list[tuple[str, str]] = []
    if ua.get(Attr.LABEL):
        facts.append(("candidate", str(ua[Attr.LABEL])))
    if ua.get(Attr.KEY):
        facts.append(("key", str(ua[Attr.KEY])))
    names = _study_dict(summary)["objectives"]
    if t.values is not None:
        facts.append(("values", ", ".join(f"{n}={v:g}" for n, v in zip(names, t.values, strict=False))))
    if t.constraints:
        verdict = "feasible" if t.feasible else "infeasible"
        facts.append(("constraints", f"{verdict}: " + ", ".join(f"{k}={v:g}" for k, v in t.constraints.items())))
    metrics = [(Attr.ACCURACY, "accuracy", "{:.3f} %"), (Attr.FLOPS, "FLOPs", "{:,.0f}"),
               (Attr.PARAMS, "params", "{:,.0f}"), (Attr.BLOCK_FLOPS, "block FLOPs", "{:,.0f}"),
               (Attr.BLOCK_PARAMS, "block params", "{:,.0f}"), (Attr.TRAIN_SECONDS, "train time", "{:.1f} s"),
               (Attr.EPOCHS, "epochs", "{}"), (Attr.SEED, "seed", "{}"), (Attr.REPEAT, "repeat", "{}"),
               (Attr.DEVICE, "device", "{}"), (Attr.REUSED_FROM, "reused from trial", "{}"),
               (Attr.FAIL_REASON, "fail reason", "{}"), (Attr.PRUNED_EPOCH, "pruned at epoch", "{}"),
               (Attr.PRUNE_REASON, "prune reason", "{}")]
    for key, title, form in metrics:
        if ua.get(key) is not None:
            try:
                facts.append((title, form.format(ua[key])))
            except (TypeError, ValueError):
                facts.append((title, str(ua[key])))
    if ua.get(Attr.LATENCY_MS) is not None:
        lat = ua[Attr.LATENCY_MS]
        text = ", ".join(f"{k} {v:.2f} ms" for k, v in lat.items()) if isinstance(lat, dict) else f"{lat} ms"
        facts.append(("latency", text))
    if t.datetime_start:
        facts.append(("started", _local(t.datetime_start)))
    if t.duration_s is not None:
        facts.append(("duration", f"{t.duration_s:.1f} s"))
    if isinstance(ua.get(Attr.VERSIONS), dict):
        facts.append(("versions", ", ".join(f"{k} {v}" for k, v in ua[Attr.VERSIONS].items())))
    if t.params:
        facts.append(("sampled params", ", ".join(f"{k}={v}" for k, v in t.params.items())))
    _print_pairs(facts)
    if spec:
        console.print("[bold]spec[/]", highlight=False)
        _print_pairs([(k, "-" if v is None else (",".join(map(str, v)) if isinstance(v, list) else str(v)))
                      for k, v in spec.items()])
    accuracies = ua.get(Attr.ACCURACIES)
    if isinstance(accuracies, list) and accuracies:
        console.print("[bold]accuracy per epoch (%)[/]", highlight=False)
        table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
        for i in range(len(accuracies)):
            table.add_column(str(i + 1), justify="right")
        table.add_row(*(f"{a:.2f}" if isinstance(a, (int, float)) else str(a) for a in accuracies))
        console.print(table)
    other = {k: v for k, v in ua.items() if k not in {m[0] for m in metrics} | {
        Attr.SPEC, Attr.LABEL, Attr.KEY, Attr.ACCURACIES, Attr.VERSIONS, Attr.LATENCY_MS}}
    if other:
        console.print("[bold]other attributes[/]", highlight=False)
        _print_pairs([(k, json.dumps(v)) for k, v in other.items()])


def _print_pairs(pairs: list[tuple[str, str]]) -> None:
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="dim")
    table.add_column(overflow="fold")
    for k, v in pairs:
        table.add_row(k, v)
    console.print(table)


def _local(stamp: dt.datetime | None) -> str:
    return stamp.astimezone().strftime("%Y-%m-%d %H:%M:%S") if stamp else "-"
