"""Accuracy against FLOPs for a report: every trial, the Pareto front as a step line, the baseline marked.

matplotlib is an optional extra (`pip install 'gcsearch[plots]'`); it is imported only here, with the
non-interactive Agg backend, so the report works without it and a plot never needs a display.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from gcsearch.contract import OBJECTIVES
from gcsearch.errors import InputError
from gcsearch.pareto import nondominated_ranks
from gcsearch.report.build import Report
from gcsearch.report.rows import Row

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

PLOT_SUFFIXES = (".png", ".svg")
MAX_LABELS = 12


def check_plot_path(path: str | Path) -> Path:
    """The plot's path, once its suffix is known and matplotlib is importable."""
    path = Path(path)
    if path.suffix.lower() not in PLOT_SUFFIXES:
        raise InputError(f"plot: {path.name}: the file name must end in .png or .svg")
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise InputError("plot: matplotlib is not installed; pip install 'gcsearch[plots]'") from None
    if not path.parent.exists():
        raise InputError(f"plot: {path.parent}: no such directory")
    return path


def accuracy_flops_front(rows: list[Row]) -> list[Row]:
    """Feasible rows on the accuracy-vs-FLOPs front, cheapest first (what the step line joins)."""
    ranked = [r for r in rows if r.feasible and r.accuracy is not None and r.flops is not None]
    if not ranked:
        return []
    acc, flops = OBJECTIVES["accuracy"], OBJECTIVES["flops"]
    loss = np.array([[acc.sign * r.accuracy, flops.sign * r.flops] for r in ranked])
    front = [r for r, rank in zip(ranked, nondominated_ranks(loss), strict=True) if rank == 1]
    return sorted(front, key=lambda r: (r.flops, -r.accuracy))


def write_plot(report: Report, path: str | Path) -> Path:
    """Draw the report's trials and front into `path` (.png or .svg) and return the path."""
    path = check_plot_path(path)
    import matplotlib.pyplot as plt

    fig = draw_plot(report)
    fig.savefig(path, format=path.suffix.lower().lstrip("."))
    plt.close(fig)
    return path


def draw_plot(report: Report) -> Figure:
    """The report's trials and front as a matplotlib figure (Agg backend), the x axis fitted to the trials."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = [p for p in report.points if p.accuracy is not None and p.flops is not None]
    top = max((p.flops for p in points), default=1e9)
    scale, unit = (1e-9, "GFLOPs") if top >= 1e9 else (1e-6, "MFLOPs")

    fig, ax = plt.subplots(figsize=(9.5, 6.0), dpi=150, layout="constrained")
    feasible = [p for p in points if p.feasible]
    infeasible = [p for p in points if not p.feasible]
    ax.scatter([p.flops * scale for p in feasible], [p.accuracy for p in feasible], s=14, color="0.55",
               alpha=0.6, linewidths=0, label=f"trial ({len(feasible)})", zorder=2)
    if infeasible:
        ax.scatter([p.flops * scale for p in infeasible], [p.accuracy for p in infeasible], s=18, marker="x",
                   color="0.65", linewidths=0.9, label=f"infeasible trial ({len(infeasible)})", zorder=2)

    front = accuracy_flops_front(report.candidates)
    if front:
        xs = np.array([r.flops * scale for r in front])
        ys = np.array([r.accuracy for r in front])
        right = max(xs.max(), max((p.flops * scale for p in points), default=xs.max()))
        ax.step(np.append(xs, right), np.append(ys, ys[-1]), where="post", color="tab:blue", linewidth=1.6,
                zorder=3, label=f"Pareto front, mean of repeats ({len(front)})")
        errors = [r.accuracy_std or 0.0 for r in front]
        ax.errorbar(xs, ys, yerr=errors, fmt="o", color="tab:blue", markersize=6, capsize=3, zorder=4)

    base = report.baseline
    if base is not None and base.accuracy is not None and base.flops is not None:
        ax.axhline(base.accuracy, color="tab:red", linestyle="--", linewidth=1.0, zorder=1)
        ax.scatter([base.flops * scale], [base.accuracy], marker="*", s=220, color="tab:red", edgecolors="white",
                   linewidths=0.8, zorder=5, label=f"baseline, no block ({base.accuracy:.2f} %)")

    xs_all = [p.flops * scale for p in points] + ([base.flops * scale] if base and base.flops is not None else [])
    if xs_all:
        ax.set_xlim(*fitted_range(min(xs_all), max(xs_all)))
    limits = report.meta.get("constraints") if isinstance(report.meta.get("constraints"), dict) else {}
    if isinstance(limits.get("max_flops"), (int, float)):
        _mark_limit(ax, limits["max_flops"] * scale, f"FLOPs limit {limits['max_flops'] * scale:.4g} {unit}")

    ax.set_xlabel(f"FLOPs per image ({unit}, 1 FLOP = 1 multiply-add)")
    ax.set_ylabel("validation accuracy (%)")
    dataset = report.proxy.get("dataset")
    counts = report.counts
    ax.set_title(f"{report.study}: accuracy vs FLOPs" + (f" on {dataset}" if dataset else "")
                 + f"\n{counts.get('COMPLETE', 0)} finished trials, {len(report.candidates)} candidates",
                 fontsize=11)
    ax.grid(True, color="0.9", linewidth=0.8, zorder=0)
    ax.margins(y=0.12)
    ax.legend(loc="best", fontsize=8, framealpha=0.9)
    _label_front(ax, fig, front, scale)
    return fig


def fitted_range(low: float, high: float, margin: float = 0.08) -> tuple[float, float]:
    """An axis range around the trials' values, `margin` of their spread on each side (of the value itself when
    they are all equal), so that a limit far away cannot squeeze them onto one line."""
    spread = high - low if high > low else (abs(high) or 1.0)
    return low - margin * spread, high + margin * spread


def _mark_limit(ax: Axes, limit: float, text: str) -> None:
    """A cost limit: a dotted line where it falls inside the axis, else an arrow at the edge it lies beyond."""
    left, right = ax.get_xlim()
    if left <= limit <= right:
        ax.axvline(limit, color="0.35", linestyle=":", linewidth=1.0, zorder=1, label=text)
        return
    beyond_right = limit > right
    ax.annotate(f"{text} →" if beyond_right else f"← {text}", xy=(1.0 if beyond_right else 0.0, 0.02),
                xycoords="axes fraction", ha="right" if beyond_right else "left", va="bottom", fontsize=8,
                color="0.35", bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "0.75", "alpha": 0.9})


def _label_front(ax, fig, front: list[Row], scale: float) -> None:
    """Short labels beside the front points, stacked so that no two overlap.

    Nothing dominates a front point, so the area above and to the left of the step line is empty: each label
    sits there (above-left of its point, or above-right near the left edge). Labels are placed cheapest
    first, each lifted above any earlier label it would touch; the y axis grows if the stack needs room.
    """
    from matplotlib.text import Text

    if not front:
        return
    chosen = front
    if len(front) > MAX_LABELS:  # label an evenly spread subset; the rest stay as points on the line
        idx = np.unique(np.linspace(0, len(front) - 1, MAX_LABELS).round().astype(int))
        chosen = [front[i] for i in idx]
    texts = [ax.annotate(row.candidate, (row.flops * scale, row.accuracy), xytext=(0, 0), textcoords="offset points",
                         fontsize=7.5, va="bottom", zorder=6,
                         bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "0.75", "alpha": 0.9},
                         arrowprops={"arrowstyle": "-", "color": "0.5", "linewidth": 0.6, "shrinkA": 0, "shrinkB": 3})
             for row in chosen]
    for text in texts:
        text.set_in_layout(False)  # the labels move after layout; the axes' frame must not shrink for them
    for _ in range(3):  # again after the y axis grew for the stack (its pixel scale changed)
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        frame = ax.get_window_extent(renderer)
        gap = 5.0
        pad = 0.2 * 7.5 * fig.dpi / 72  # the label's box pad, which its text extent leaves out
        front_px = [ax.transData.transform((r.flops * scale, r.accuracy)) for r in chosen]
        placed: list[tuple[float, float, float, float]] = []
        for text, (px, py) in zip(texts, front_px, strict=True):
            box = Text.get_window_extent(text, renderer)  # the text alone; an Annotation's own extent has the arrow
            w, h = box.width + 2 * pad, box.height + 2 * pad
            left_side = px - gap - w > frame.x0 + 2
            x0 = px - gap - w if left_side else px + gap
            # Stay above the step line over the label's width: the empty side of the front.
            floor = max((qy for qx, qy in front_px if qx <= x0 + w), default=py)
            bottom = max(py, floor) + gap
            moved = True
            while moved:
                moved = False
                for (a0, a1, b0, b1) in placed:
                    if x0 < a1 + 1 and a0 < x0 + w + 1 and bottom < b1 + 1 and b0 < bottom + h + 1:
                        bottom, moved = b1 + 1, True
            placed.append((x0, x0 + w, bottom, bottom + h))
            text.set_horizontalalignment("right" if left_side else "left")
            anchor_x = x0 + w - pad if left_side else x0 + pad
            text.xyann = ((anchor_x - px) * 72 / fig.dpi, (bottom + pad - py) * 72 / fig.dpi)
        top = max(b1 for _, _, _, b1 in placed)
        if top <= frame.y1 - 2:
            break
        lo, hi = ax.get_ylim()
        ax.set_ylim(lo, hi + (top - frame.y1 + 6) * (hi - lo) / frame.height * 1.1)
