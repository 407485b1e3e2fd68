"""`gcsearch analyze`: the GCNet paper's measurement on a trial's trained model (read-only on the database)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from gcsearch.commands import console, wide
from gcsearch.commands.options import ArtifactsOpt, DataDirOpt, JsonOpt, ReadStorageOpt, StudyOpt, TrialArg
from gcsearch.report.attention import PAPER, analyze_trial
from gcsearch.storage.artifacts import read_trial_weights
from gcsearch.storage.urls import DEFAULT_STORAGE

PLOT_IMAGES = 3


def analyze(
    trial: TrialArg,
    study: StudyOpt = None,
    storage: ReadStorageOpt = DEFAULT_STORAGE,
    artifacts: ArtifactsOpt = None,
    images: Annotated[int | None, typer.Option(
        "--images", min=1, metavar="N", help="Validation images to measure on (default: all of the study's).")] = None,
    data_dir: DataDirOpt = None,
    plot: Annotated[Path | None, typer.Option(
        "--plot", metavar="FILE.png",
        help="Draw the attention maps of a few validation images over the images.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Is the trained model's context query-independent? The GCNet paper's measurement on one trial.

    Loads the trial's kept weights, runs the model on the study's validation images and, for every non-local
    (NL) block, prints the mean cosine distance between query positions of the block's input, of its
    attention maps and of its output (what it adds). An attention distance near 0: every query attends alike,
    and one map per image (GC) would do. The paper measured input 0.401, attention 0.020, output 0.012 (COCO,
    Mask R-CNN) and 0.358, 0.004, 0.003 (ImageNet). For GC and SNL blocks (one map per image by
    construction): the map's entropy relative to a uniform map (1: flat, as average pooling; near 0: peaked)
    and the output distance (0 for add fusion).

    [bold]Examples[/]

      gcsearch run --study attention && gcsearch report --study attention
      gcsearch analyze 3 -s attention --plot attention.png  [dim]# an NL trial[/]
    """
    if plot is not None:
        from gcsearch.report.attention_plot import check_plot_path

        plot = check_plot_path(plot)
    summary, record, _content, weights = read_trial_weights(storage, study, trial, artifacts)
    result, x, stats = analyze_trial(summary, record, weights, images=images, data_dir=data_dir,
                                     keep_maps=PLOT_IMAGES if plot else 0)
    if plot is not None:
        from gcsearch.report.attention_plot import draw_attention

        draw_attention(plot, x[:PLOT_IMAGES], stats, title=f"trial {record.number}: {weights.spec.label()}")
    if as_json:
        console.file.write(json.dumps(result, indent=2) + "\n")
        return
    _print(result, plot)


def _print(result: dict[str, Any], plot: Path | None) -> None:
    out = wide(console)
    out.print(f"[bold]trial {result['trial']}[/] of study {result['study']}: {result['label']}, "
              f"{result['images']} validation images, {result['seconds']:.1f} s", highlight=False)
    table = Table(header_style="bold", box=None, pad_edge=False)
    for name, justify in (("block", "left"), ("kind", "left"), ("positions", "right"), ("input", "right"),
                          ("attention", "right"), ("output", "right"), ("entropy", "right")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for row in result["blocks"]:
        table.add_row(row["block"], row["kind"], str(row["positions"]),
                      *(f"{row[k]:.3f}" if row[k] is not None else "-" for k in ("input", "attention", "output",
                                                                                   "entropy")))
    out.print(table)
    out.print("mean cosine distance between query positions (0: the same at every position); entropy of a "
              "context block's one map relative to uniform (1: average pooling)", style="dim", highlight=False)
    paper = "; ".join(f"{k}: {a:.3f} / {b:.3f} / {c:.3f}" for k, (a, b, c) in PAPER.items())
    out.print(f"paper, NL input / attention / output: {paper}", style="dim", highlight=False)
    if plot is not None:
        out.print(f"attention maps drawn to {plot}", highlight=False)
