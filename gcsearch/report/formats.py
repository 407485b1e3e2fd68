"""Report output: the rich/plain table's columns, CSV and JSON (every column unrounded), Markdown, LaTeX.

The shown formats (table, Markdown, LaTeX) round for reading; CSV and JSON carry the raw numbers (FLOPs and
params as counts, accuracy in %, latency in ms) so that they parse back to exactly what the report computed.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable
from typing import Any

from gcsearch.errors import InputError
from gcsearch.report.build import Report
from gcsearch.report.chance import chance_lines
from gcsearch.report.labels import format_value, stages_short
from gcsearch.report.race import race_noise_line
from gcsearch.report.rows import Row
from gcsearch.units import plural, prefix_for

__all__ = ["FORMATS", "Column", "display_columns", "export_records", "header_lines", "render", "to_csv", "to_json",
           "to_latex", "to_markdown"]

FORMATS = ("table", "csv", "json", "markdown", "latex")


def value_text(row: Row, dim: str | None) -> str:
    """The ablation column's cell: the dimension's value ("baseline" for the baseline row)."""
    if row.baseline:
        return "baseline"
    if dim == "stages":
        return stages_short(row.value) or "-"
    return format_value(row.value)


# -- exports --------------------------------------------------------------------------------------------
def export_columns(report: Report) -> list[str]:
    cols = list(Row(key="", candidate="", label="", spec=None, trials=[]).to_dict())
    if report.view == "ablation":
        cols.insert(0, f"by_{report.by}")  # the spec's own column of that name stays as it is
    return cols


def export_records(report: Report) -> list[dict[str, Any]]:
    """The rows as dicts of every column, unrounded (CSV and JSON write these)."""
    records = []
    for row in report.rows:
        record = row.to_dict()
        if report.view == "ablation":
            record = {f"by_{report.by}": "baseline" if row.baseline else row.value, **record}
        records.append(record)
    return records


def to_json(report: Report) -> str:
    """The header facts and every row, unrounded."""
    payload = {"study": report.header(), "baseline": report.baseline.to_dict() if report.baseline else None,
               "rows": export_records(report)}
    return json.dumps(_json_safe(payload), indent=2, allow_nan=False) + "\n"


def _json_safe(value: Any) -> Any:
    """Non-finite numbers become null (JSON has none); tuples become lists."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def to_csv(report: Report) -> str:
    """One line per row, every column unrounded; lists joined with ';' (stages with '+'), None empty."""
    buf = io.StringIO()
    cols = export_columns(report)
    writer = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    writer.writeheader()
    for record in export_records(report):
        writer.writerow({k: _csv_cell(k, record.get(k)) for k in cols})
    return buf.getvalue()


def _csv_cell(column: str, value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ("+" if column in ("stages",) else ";").join(str(v) for v in value)
    if isinstance(value, float):
        return repr(value)
    return value


# Shown (rounded) columns for table, Markdown and LaTeX: title, cell function, alignment ("l" or "r").
Column = tuple[str, Callable[[Row], str], str]


def display_columns(report: Report, compact: bool = False) -> list[Column]:
    """The shown columns; `compact` writes rank, accuracy, its delta and the verdict in their short forms ("#",
    "74.50±0.71 (2)", "+4.50 ±1.10", "within"), for a narrow terminal."""
    cols: list[Column] = []
    scale, prefix = flops_unit(report)
    if report.view == "ablation":
        cols.append((report.by or "value", lambda r: value_text(r, report.by), "l"))
    cols.append(("#" if compact else "rank", lambda r: "-" if r.rank is None else str(r.rank), "r"))
    if report.view == "all":
        cols.append(("front", front_marker, "l"))
    elif report.view == "front" and any(r.tied for r in report.rows):
        cols.append(("tied", lambda r: "≈" if r.tied else "", "l"))
    cols += [
        ("trials", trials_text, "l"),
        ("candidate", lambda r: r.candidate, "l"),
        ("accuracy % (n)", (lambda r: accuracy_text(r, sep="±")) if compact else accuracy_text, "r"),
        (f"{prefix}FLOPs", lambda r: flops_text(r.flops, scale), "r"),
        ("params M", lambda r: "-" if r.params is None else f"{r.params / 1e6:.3f}", "r"),
    ]
    if report.has_latency:
        cols.append(("latency ms", lambda r: "-" if r.latency_ms is None else f"{r.latency_ms:.2f}", "r"))
    if report.baseline is not None:
        cols += [
            ("Δacc ±95%", delta_short, "r") if compact else ("Δacc pts [95%]", delta_text, "r"),
            ("verdict", lambda r: verdict_text(r, compact), "l"),
            ("ΔFLOPs", lambda r: _signed(r.delta_flops_pct, 1, "%"), "r"),
            ("Δparams", lambda r: _signed(r.delta_params_pct, 1, "%"), "r"),
        ]
        if report.has_latency:
            cols.append(("Δlatency", lambda r: _signed(r.delta_latency_pct, 1, "%"), "r"))
    if any(r.race for r in report.candidates):  # a race: why each candidate stopped (its seeds are the n)
        cols.append(("race", lambda r: "-" if r.baseline else r.race or "", "l"))
    return cols


def delta_text(row: Row) -> str:
    """The accuracy delta and its 95% interval: "+7.43 [-13.71, +28.57]"; the delta alone when unknown."""
    if row.baseline or row.delta_accuracy is None:
        return "-"
    if row.delta_accuracy_low is None or row.delta_accuracy_high is None:
        return _signed(row.delta_accuracy, 2, "")
    return (f"{_signed(row.delta_accuracy, 2, '')} "
            f"[{_signed(row.delta_accuracy_low, 2, '')}, {_signed(row.delta_accuracy_high, 2, '')}]")


def verdict_text(row: Row, compact: bool = False) -> str:
    """The verdict against the baseline; `compact`: "within" for "within noise"."""
    if row.baseline:
        return "baseline"
    if compact and row.verdict == "within noise":
        return "within"
    return row.verdict or "-"


def delta_short(row: Row) -> str:
    """The accuracy delta and the half-width of its (symmetric) 95% interval: "+7.43 ±21.14"."""
    if row.baseline or row.delta_accuracy is None:
        return "-"
    if row.delta_accuracy_low is None or row.delta_accuracy_high is None:
        return _signed(row.delta_accuracy, 2, "")
    return f"{_signed(row.delta_accuracy, 2, '')} ±{(row.delta_accuracy_high - row.delta_accuracy_low) / 2:.2f}"


def noise_line(report: Report) -> str:
    """What the verdicts rest on: the seed noise, its source, the interval and the correction."""
    if report.paired is not None:
        return paired_noise_line(report)
    noise = report.noise
    if noise.std is None:
        return ("seed noise unknown: no candidate has two finished seeds yet, so no verdict can be given (grids "
                "train the baseline with [budget] baseline_repeats seeds, 3 by default)")
    seeds = f"; baseline {plural(report.baseline.n, 'seed')}" if report.baseline is not None else ""
    judged = sum(1 for r in report.candidates if r.verdict is not None)
    return (f"seed noise ±{noise.std:.2f} pts (std pooled over {plural(noise.groups, 'candidate')} with repeats, "
            f"{noise.df} df{seeds}); Δacc: 95% interval; verdicts Holm-corrected over {plural(judged, 'candidate')}")


def paired_noise_line(report: Report) -> str:
    """The paired design's noise: differences to the control of the same seed, pooled over seeds as blocks."""
    noise = report.paired
    judged = sum(1 for r in report.candidates if r.verdict is not None)
    if noise.std is None:
        return ("paired noise unknown: no candidate shares two seeds with the baseline yet, so no verdict can be "
                "given (give [budget] repeats = 2 or more)")
    left = f", {plural(noise.left_out, 'noisier candidate')} left out" if noise.left_out else ""
    return (f"paired design: Δacc = mean over seeds of (candidate - baseline of the same start); paired noise "
            f"±{noise.std:.2f} pts (pooled over {noise.rows} rows x {plural(noise.seeds, 'seed')}, {noise.df} df"
            f"{left}; a candidate noisier than that keeps its own); 95% interval; verdicts Holm-corrected over "
            f"{plural(judged, 'candidate')}")


def starts_line(report: Report) -> str:
    """What the paired candidates fine-tuned from: each seed's trained start and the fine-tune's budget."""
    p = report.proxy
    starts = ", ".join(f"seed {seed} {accuracy:.2f}%" for seed, accuracy in (report.starts or {}).items())
    starts = starts or "none recorded"
    if p.get("start") == "weights":
        files = ", ".join(report.start_files or []) or str(p.get("weights"))
        line = (f"start: the pretrained weights {files} for every seed; every candidate, the baseline "
                f"included, fine-tuned from them for {p.get('finetune_epochs')} epochs at lr "
                f"{p.get('finetune_lr')} (the seed sets the data order and the new layers)")
    else:
        line = (f"starts: the block-less network trained {p.get('epochs')} epochs from scratch per seed ({starts}); "
                f"every candidate, the baseline included, fine-tuned from its seed's start for "
                f"{p.get('finetune_epochs')} epochs at lr {p.get('finetune_lr')}")
    if any(r.candidate.endswith(" †") for r in report.candidates):
        line += ("; † not the identity at insertion (a sigmoid gate halves its branch), so its delta includes "
                 "recovering from that")
    return line


def front_marker(row: Row) -> str:
    """'*' on the front ('*≈' when tied with its most accurate member), '≈' off it but within noise of every member
    dominating it, the violated constraints for an infeasible row ("over max_flops"), empty otherwise."""
    if row.pareto:
        return "*≈" if row.tied else "*"
    if not row.feasible:
        return "over " + ",".join(row.violated)
    return "≈" if row.near_front else ""


def trials_text(row: Row, limit: int = 4) -> str:
    numbers = [str(n) for n in row.trials]
    if len(numbers) > limit:
        numbers = numbers[:limit - 1] + [f"... (+{len(row.trials) - limit + 1})"]
    return ",".join(numbers) if numbers else "-"


def accuracy_text(row: Row, digits: int = 2, sep: str = " ± ") -> str:
    if row.accuracy is None:
        return "-"
    if row.accuracy_std is None:
        return f"{row.accuracy:.{digits}f} ({row.n})"
    return f"{row.accuracy:.{digits}f}{sep}{row.accuracy_std:.{digits}f} ({row.n})"


def flops_unit(report: Report) -> tuple[float, str]:
    """The unit the tables write this report's FLOPs in, chosen by the largest: (1e6, "M") for MFLOPs."""
    return prefix_for(max((r.flops for r in report.candidates if r.flops is not None), default=1e9))


def flops_text(flops: float | None, scale: float = 1e9) -> str:
    """FLOPs in units of `scale`: "8.842" (MFLOPs with scale 1e6), three significant digits below one unit."""
    if flops is None:
        return "-"
    g = flops / scale
    return f"{g:.3f}" if g >= 1 else f"{g:#.3g}"


def _signed(value: float | None, digits: int, suffix: str) -> str:
    if value is None:
        return "-"
    if abs(value) < 0.5 * 10 ** -digits:
        value = 0.0
    return f"{value:+.{digits}f}{suffix}"


def header_lines(report: Report) -> list[str]:
    """The facts above a table, as plain lines."""
    p = report.proxy
    lines = [f"study {report.study} ({report.storage})"]
    if p:
        budget = ", ".join(f"{k.replace('_', ' ')} {p[k]}" for k in
                           ("image_size", "train_size", "val_size", "epochs", "batch_size", "schedule") if k in p)
        lines.append(f"dataset {p.get('dataset', '?')}; proxy budget: {budget}")
    if report.devices:
        lines.append("device " + ", ".join(f"{d} ({n} trials)" if len(report.devices) > 1 else d
                                           for d, n in report.devices.items()))
    c = report.counts
    lines.append(f"trials: {c.get('COMPLETE', 0)} complete, {c.get('PRUNED', 0)} pruned, {c.get('FAIL', 0)} failed, "
                 f"{c.get('RUNNING', 0)} running" + (f", {c['WAITING']} waiting" if c.get("WAITING") else ""))
    feasible = sum(r.feasible for r in report.candidates)
    lines.append(f"candidates: {len(report.candidates)} finished, {feasible} feasible, {len(report.front)} on the "
                 f"front of {', '.join(f'{m.name} ({m.direction[:3]})' for m in report.objectives)}")
    scale, prefix = flops_unit(report)
    if report.hypervolume is not None:
        # FLOPs in the table's unit: the hypervolume and the reference point scaled with it.
        factor = {m.name: 1 / (m.scale * scale) if m.name == "flops" else 1.0 for m in report.objectives}
        unit = {m.name: f"{prefix}FLOPs" if m.name == "flops" else m.unit for m in report.objectives}
        ref = ", ".join(f"{m.name} {_num(report.reference[m.name] * factor[m.name])} {unit[m.name]}"
                        for m in report.objectives)
        lines.append(f"hypervolume {_num(report.hypervolume * math.prod(factor.values()))} "
                     f"{'·'.join(unit.values())}; reference point ({ref}) = {report.reference_rule}")
    if report.baseline is not None:
        b = report.baseline
        lines.append(f"baseline (block none): accuracy {accuracy_text(b)} %, {flops_text(b.flops, scale)} "
                     f"{prefix}FLOPs, {(b.params or 0) / 1e6:.3f} M params, trials {trials_text(b)}")
    else:
        lines.append("baseline: no finished trial with block none, so no deltas")
    if report.paired is not None:
        lines.append(starts_line(report))
    if report.baseline is not None:
        lines.append(noise_line(report))
    lines += chance_lines(report)
    if any(r.tied for r in report.front):
        lines.append("front: ≈ marks members within seed noise of its most accurate one (tied)")
    lines += near_front_lines(report)
    if report.paired is not None and (line := race_noise_line(report.meta, report.paired.std)) is not None:
        lines.append(line)
    if report.view == "ablation":
        lines.append(f"ablation by {report.by}: one row per value, trials of every candidate with it pooled")
    return lines


def near_front_lines(report: Report) -> list[str]:
    """The candidates off the front that seed noise does not separate from the members keeping them off it."""
    near = [r for r in report.candidates if r.near_front]
    if not near:
        return []
    if report.view == "all":
        return [f"off the front: ≈ marks {plural(len(near), 'candidate')} within seed noise of every front member "
                "that dominates it (another set of seeds could put it on the front)"]
    names = ", ".join(r.label for r in near[:3]) + (f" and {len(near) - 3} more" if len(near) > 3 else "")
    return [f"near the front: {names}: off it, but within seed noise of every front member that dominates "
            "it (--all marks them ≈)"]


def _num(x: float) -> str:
    return f"{x:.4g}" if abs(x) < 1e5 else f"{x:.4e}"


def to_markdown(report: Report) -> str:
    """Header facts as a list, then a pipe table of the shown (rounded) columns."""
    cols = display_columns(report)
    lines = [f"- {_md_escape(line)}" for line in header_lines(report)] + [""]
    lines.append("| " + " | ".join(_md_escape(t) for t, _, _ in cols) + " |")
    lines.append("|" + "|".join(":---" if align == "l" else "---:" for _, _, align in cols) + "|")
    for row in report.rows:
        lines.append("| " + " | ".join(_md_escape(f(row)) for _, f, _ in cols) + " |")
    return "\n".join(lines) + "\n"


def _md_escape(text: str) -> str:
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                  "±": r"$\pm$", "Δ": r"$\Delta$", "≈": r"$\approx$"}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in str(text))


def to_latex(report: Report) -> str:
    """A tabular (no packages needed) of the shown columns, the header facts as comments above it."""
    cols = display_columns(report)
    lines = [f"% {line}" for line in header_lines(report)]
    lines.append(r"\begin{tabular}{" + "".join(align for _, _, align in cols) + "}")
    lines.append(r"\hline")
    lines.append(" & ".join(latex_escape(t) for t, _, _ in cols) + r" \\")
    lines.append(r"\hline")
    for row in report.rows:
        lines.append(" & ".join(latex_escape(f(row)) for _, f, _ in cols) + r" \\")
    lines.append(r"\hline")
    lines.append(r"\end{tabular}")
    return "\n".join(lines) + "\n"


def render(report: Report, fmt: str) -> str:
    """The report as text in one of the file formats (csv, json, markdown, latex)."""
    writers = {"csv": to_csv, "json": to_json, "markdown": to_markdown, "latex": to_latex}
    if fmt not in writers:
        raise InputError(f"format: unknown format {fmt!r} (choose from {', '.join(FORMATS)})")
    return writers[fmt](report)
