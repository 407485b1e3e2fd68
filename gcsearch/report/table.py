"""The report as a plain fixed-width text table, fitted to a terminal's width.

A plain table rather than rich's Table: rich measures every cell several times, which takes seconds for the
thousands of rows of `--all` on a large study. On a narrow terminal columns are dropped and the rest written
in short forms, in a fixed order, so that rank, candidate, accuracy with its interval and verdict, and the
cost are always there and no line wraps.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rich.cells import cell_len

from gcsearch.report.build import Report
from gcsearch.report.formats import Column, display_columns

__all__ = ["FittedTable", "fit_table", "text_table", "text_table_width"]

COLUMN_GAP = "   "
NARROW_GAPS = ("  ", " ")
# What a narrow terminal gives up first. Never: rank, candidate, accuracy, the accuracy delta with its
# interval, the verdict, the FLOPs.
DROP_ORDER = ("race", "Δparams", "Δlatency", "latency ms", "params M", "trials")
DROP_LAST = ("ΔFLOPs", "tied", "front")


@dataclass
class FittedTable:
    """The columns shown at a width, the ones left out for it, and the gap between columns."""

    columns: list[Column]
    hidden: list[str] = field(default_factory=list)
    gap: str = COLUMN_GAP
    compact: bool = False


def _text_cells(report: Report, columns: list[Column]) -> tuple[list[list[str]], list[int]]:
    cells = [[cell(row) for _, cell, _ in columns] for row in report.rows]
    widths = [max([cell_len(title)] + [cell_len(r[i]) for r in cells]) for i, (title, _, _) in enumerate(columns)]
    return cells, widths


def text_table_width(report: Report, columns: list[Column], gap: str = COLUMN_GAP) -> int:
    """Characters per line of `text_table` with these columns."""
    _, widths = _text_cells(report, columns)
    return sum(widths) + len(gap) * (len(widths) - 1)


def fit_table(report: Report, width: int | None) -> FittedTable:
    """The most the report can show in `width` columns (None: no limit): columns dropped in DROP_ORDER, then a
    narrower gap, then short forms (rank, accuracy, its delta, the verdict), then the columns of DROP_LAST, then
    a one-space gap. When even that is too wide (very long candidate labels) lines run past `width`."""
    fit = FittedTable(display_columns(report))
    if width is None:
        return fit

    def fits() -> bool:
        return text_table_width(report, fit.columns, fit.gap) <= width

    def drop(name: str) -> None:
        if any(title == name for title, _, _ in fit.columns):
            fit.columns = [c for c in fit.columns if c[0] != name]
            fit.hidden.append(name)

    for name in DROP_ORDER:
        if fits():
            return fit
        drop(name)
    if fits():
        return fit
    fit.gap = NARROW_GAPS[0]
    if fits():
        return fit
    fit.compact = True
    fit.columns = [c for c in display_columns(report, compact=True) if c[0] not in fit.hidden]
    for name in DROP_LAST:
        if fits():
            return fit
        drop(name)
    if not fits():
        fit.gap = NARROW_GAPS[1]
    return fit


def text_table(report: Report, columns: list[Column], gap: str = COLUMN_GAP) -> tuple[str, str, list[str]]:
    """Header, rule and one line per row, columns padded to a common width (numbers right-aligned)."""
    cells, widths = _text_cells(report, columns)

    def line(values: list[str]) -> str:
        parts = []
        for value, width, (_, _, align) in zip(values, widths, columns, strict=True):
            pad = " " * (width - cell_len(value))
            parts.append(value + pad if align == "l" else pad + value)
        return gap.join(parts).rstrip()

    header = line([title for title, _, _ in columns])
    return header, "─" * (sum(widths) + len(gap) * (len(widths) - 1)), [line(r) for r in cells]
