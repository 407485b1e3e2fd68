"""A study's rows: one per candidate (its repeats pooled, reused trials counted once) with its deltas to the
baseline.

Trials are grouped by the candidate's key (user attribute `key`): repeats with other seeds become one row with
the mean, the sample standard deviation (n - 1) and n. A trial that carries `reused_from` repeats another
trial's values and is counted once: it is skipped when the trial it copies is in the same row, and stands in
for it otherwise. Deltas to the baseline (block "none"): accuracy in points, FLOPs, params and latency in % of
the baseline.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from gcsearch.contract import OBJECTIVES, Attr, objective_names
from gcsearch.report.labels import short_label
from gcsearch.space.spec import SPEC_FIELDS
from gcsearch.storage.records import TrialRecord

# Only these user attributes are read for a report: the big per-epoch lists and version dicts are left out.
REPORT_KEYS = (Attr.SPEC, Attr.KEY, Attr.LABEL, Attr.FLOPS, Attr.PARAMS, Attr.BLOCK_FLOPS, Attr.BLOCK_PARAMS,
               Attr.LATENCY_MS, Attr.ACCURACY, Attr.TRAIN_SECONDS, Attr.EPOCHS, Attr.SEED, Attr.REPEAT, Attr.DEVICE,
               Attr.REUSED_FROM, Attr.START)


@dataclass
class Row:
    """One candidate (its repeats pooled), or one value of an ablation dimension."""

    key: str
    candidate: str  # short form, e.g. "gc r16 c3-c5 1x1 all"
    label: str
    spec: dict[str, Any] | None
    trials: list[int]
    reused: list[int] = field(default_factory=list)
    n: int = 0
    candidates: int = 1
    accuracy: float | None = None
    accuracy_std: float | None = None
    flops: float | None = None
    params: float | None = None
    latency_ms: float | None = None
    block_flops: float | None = None
    block_params: float | None = None
    train_seconds: float | None = None
    feasible: bool = True
    violated: list[str] = field(default_factory=list)
    baseline: bool = False
    rank: int | None = None
    pareto: bool = False
    delta_accuracy: float | None = None
    delta_flops_pct: float | None = None
    delta_params_pct: float | None = None
    delta_latency_pct: float | None = None
    delta_accuracy_low: float | None = None  # the 95% interval of delta_accuracy (gcsearch.report.noise)
    delta_accuracy_high: float | None = None
    verdict: str | None = None  # better / worse / within noise / unknown; None on the baseline row
    tied: bool | None = None  # front rows: within noise of the front's most accurate member
    near_front: bool | None = None  # rows off the front: within noise of every front member dominating them
    value: Any = None  # ablation view: the dimension's value
    value_order: int = 0
    accuracies: list[float] = field(default_factory=list, repr=False)  # the counted trials' accuracies
    by_seed: dict[int, float] = field(default_factory=dict, repr=False)  # mean accuracy per seed (paired design)
    race: str | None = None  # a race: why the candidate stopped (study/racing.py's states), or "open"

    @property
    def first_trial(self) -> int:
        return self.trials[0] if self.trials else -1

    def metric(self, name: str) -> float | None:
        return getattr(self, OBJECTIVES[name].attr)  # the row's column of that name

    def to_dict(self) -> dict[str, Any]:
        """Every column, unrounded and JSON-able."""
        spec = self.spec or {}
        out: dict[str, Any] = {
            "rank": self.rank, "pareto": self.pareto, "feasible": self.feasible, "violated": list(self.violated),
            "baseline": self.baseline, "trials": list(self.trials), "reused": list(self.reused), "n": self.n,
            "candidates": self.candidates, "key": self.key, "candidate": self.candidate, "label": self.label,
        }
        out.update({dim: spec.get(dim) for dim in SPEC_FIELDS})
        out.update({
            "accuracy": self.accuracy, "accuracy_std": self.accuracy_std, "flops": self.flops,
            "params": self.params, "latency_ms": self.latency_ms, "block_flops": self.block_flops,
            "block_params": self.block_params, "train_seconds": self.train_seconds,
            "delta_accuracy": self.delta_accuracy, "delta_flops_pct": self.delta_flops_pct,
            "delta_params_pct": self.delta_params_pct, "delta_latency_pct": self.delta_latency_pct,
            "delta_accuracy_low": self.delta_accuracy_low, "delta_accuracy_high": self.delta_accuracy_high,
            "verdict": self.verdict, "tied": self.tied, "near_front": self.near_front,
        })
        if self.race is not None:
            out["race"] = self.race
        return out


@dataclass
class TrialPoint:
    """One finished trial, for plots: every trial, not only the pooled rows."""

    number: int
    accuracy: float | None
    flops: float | None
    feasible: bool
    baseline: bool
    key: str


def objective_positions(meta: dict[str, Any], n_directions: int) -> dict[str, int]:
    """Which trial value holds which objective, from the study's metadata."""
    names = objective_names(meta)
    if len(names) != n_directions:
        return {}
    return {name: i for i, name in enumerate(names) if name in OBJECTIVES}


def trial_metric(trial: TrialRecord, name: str, objective_index: dict[str, int]) -> float | None:
    """A metric in raw units: the trial's objective value when it is one, else its user attribute."""
    i = objective_index.get(name)
    if i is not None and trial.values is not None and i < len(trial.values):
        return float(trial.values[i])
    value = trial.user_attrs.get(OBJECTIVES[name].attr)
    if isinstance(value, dict):  # a Measurement's latency: {"forward": ms, "forward_backward": ms}
        value = value.get("forward")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None


def spec_of(trial: TrialRecord) -> dict[str, Any] | None:
    spec = trial.user_attrs.get(Attr.SPEC)
    return spec if isinstance(spec, dict) else None


def group_key(trial: TrialRecord) -> str:
    key = trial.user_attrs.get(Attr.KEY)
    if isinstance(key, str) and key:
        return key
    spec = spec_of(trial)
    if spec is not None:
        return json.dumps(spec, sort_keys=True)
    return f"trial-{trial.number}"


def candidate_rows(trials: Iterable[TrialRecord], objective_index: dict[str, int] | None = None) -> list[Row]:
    """One row per candidate key over finished trials, repeats pooled, reused trials counted once."""
    objective_index = objective_index or {}
    groups: dict[str, list[TrialRecord]] = {}
    for trial in trials:
        groups.setdefault(group_key(trial), []).append(trial)
    rows = []
    for key, members in groups.items():
        numbers = {t.number for t in members}
        counted, reused = [], []
        for t in members:
            source = t.user_attrs.get(Attr.REUSED_FROM)
            if isinstance(source, int) and not isinstance(source, bool) and source in numbers:
                reused.append(t.number)
            else:
                counted.append(t)
        first = members[0]
        spec = spec_of(first)
        label = first.user_attrs.get(Attr.LABEL)
        row = Row(key=key, candidate=short_label(spec, fallback=label or key), spec=spec,
                  label=str(label) if label else (short_label(spec, fallback=key)),
                  trials=[t.number for t in counted], reused=sorted(reused), n=len(counted))
        accuracies = [v for v in (trial_metric(t, "accuracy", objective_index) for t in counted) if v is not None]
        row.accuracies = accuracies
        row.by_seed = seed_means((t.user_attrs.get(Attr.SEED), trial_metric(t, "accuracy", objective_index))
                                 for t in counted)
        row.accuracy, row.accuracy_std = mean_std(accuracies)
        row.flops = mean(trial_metric(t, "flops", objective_index) for t in counted)
        row.params = mean(trial_metric(t, "params", objective_index) for t in counted)
        row.latency_ms = mean(trial_metric(t, "latency", objective_index) for t in counted)
        row.block_flops = mean(number(t.user_attrs.get(Attr.BLOCK_FLOPS)) for t in counted)
        row.block_params = mean(number(t.user_attrs.get(Attr.BLOCK_PARAMS)) for t in counted)
        row.train_seconds = mean(number(t.user_attrs.get(Attr.TRAIN_SECONDS)) for t in counted)
        row.violated = sorted({name for t in members for name, v in t.constraints.items() if v > 0})
        row.feasible = not row.violated
        row.baseline = spec is not None and spec.get("block") == "none"
        rows.append(row)
    rows.sort(key=lambda r: r.first_trial)
    return rows


def seed_means(pairs: Iterable[tuple[Any, float | None]]) -> dict[int, float]:
    """Mean accuracy per seed over (seed, accuracy) pairs; pairs without an integer seed or a value are skipped."""
    values: dict[int, list[float]] = {}
    for seed, value in pairs:
        if isinstance(seed, int) and not isinstance(seed, bool) and value is not None:
            values.setdefault(seed, []).append(value)
    return {seed: sum(v) / len(v) for seed, v in sorted(values.items())}


def pick_baseline(rows: Sequence[Row], backbone: str | None = None) -> Row | None:
    """The block-"none" row (the study's backbone first, then the most repeated)."""
    candidates = [r for r in rows if r.baseline]
    if not candidates:
        return None
    return max(candidates, key=lambda r: ((r.spec or {}).get("backbone") == backbone, r.n, -r.first_trial))


def set_deltas(row: Row, baseline: Row | None) -> None:
    """Accuracy in points, costs in % of the baseline's."""
    if baseline is None:
        return
    if row.accuracy is not None and baseline.accuracy is not None:
        row.delta_accuracy = row.accuracy - baseline.accuracy
    row.delta_flops_pct = pct(row.flops, baseline.flops)
    row.delta_params_pct = pct(row.params, baseline.params)
    row.delta_latency_pct = pct(row.latency_ms, baseline.latency_ms)


def number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def mean(values: Iterable[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return sum(vals) / len(vals) if vals else None


def mean_std(values: Sequence[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, None
    var = sum((v - mean) ** 2 for v in values) / (len(values) - 1)
    return mean, math.sqrt(var)


def pct(value: float | None, base: float | None) -> float | None:
    if value is None or base is None or base == 0:
        return None
    return (value - base) / base * 100.0
