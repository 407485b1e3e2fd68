"""Pareto and ablation tables from a study's storage: rows, ranks, hypervolume, exports.

Reading goes through `gcsearch.storage.reader` (read-only, lock-free); output formats live in
`gcsearch.report.formats`, the plot in `gcsearch.report.plot`. The analysis:

- Candidate rows. Trials are grouped by the candidate's key (user attribute `key`): repeats with other
  seeds become one row with the mean, the sample standard deviation (n - 1) and n. A trial that carries
  `reused_from` repeats another trial's values and is counted once: it is skipped when the trial it copies
  is in the same row, and stands in for it otherwise.
- Ranks. Finished (COMPLETE) rows that satisfy every constraint (Optuna stores each as a trial system
  attribute "constraints:<name>", feasible when <= 0) are sorted into non-dominated fronts over the chosen
  objectives (`gcsearch.pareto`); rank 1 is the Pareto front. Infeasible rows get no
  rank; FAIL, PRUNED and RUNNING trials never make a row.
- Hypervolume of the front, computed exactly (`gcsearch.pareto`), in the units the table shows
  (accuracy in %, FLOPs in G, params in M, latency in ms). The reference point is stated with it; unless
  given, each coordinate is the worst value of that objective among the ranked rows, moved away from the
  front by 10% of the objective's spread among them (by 10% of its magnitude when all rows share one value,
  and by 0.1 when that value is 0). So every front point adds volume, and two reports of the same study agree.
- Deltas to the baseline (block "none"): accuracy in points, FLOPs, params and latency in % of the baseline.
- Ablation: one row per value of a spec dimension (baseline first), pooling the trials of every candidate
  that has that value; chosen automatically when exactly one dimension varies among the candidates.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gcsearch.contract import OBJECTIVES, Attr, Meta, Objective, objective_names, proxy_settings
from gcsearch.errors import InputError
from gcsearch.pareto import hypervolume, nondominated_ranks
from gcsearch.space.spec import SPEC_FIELDS
from gcsearch.space.vocabulary import (
    BACKBONES,
    BLOCK_SETS,
    BLOCKS,
    COMPONENTS,
    CONTEXTS,
    FUSIONS,
    NORMS,
    POSITIONS,
    STAGES,
)
from gcsearch.storage.reader import read_study
from gcsearch.storage.records import StudyData, StudySummary, TrialRecord
from gcsearch.storage.urls import DEFAULT_STORAGE

__all__ = [
    "DEFAULT_STORAGE", "OBJECTIVES", "SORT_KEYS", "SPEC_DIMS", "Objective", "Report", "Row",
    "build_report", "front_hypervolume",
    "read_report", "short_label",
]

REFERENCE_MARGIN = 0.1


SPEC_DIMS = SPEC_FIELDS
# Only these user attributes are read for a report: the big per-epoch lists and version dicts are left out.
REPORT_KEYS = (Attr.SPEC, Attr.KEY, Attr.LABEL, Attr.FLOPS, Attr.PARAMS, Attr.BLOCK_FLOPS, Attr.BLOCK_PARAMS,
               Attr.LATENCY_MS, Attr.ACCURACY, Attr.TRAIN_SECONDS, Attr.EPOCHS, Attr.SEED, Attr.REPEAT, Attr.DEVICE,
               Attr.REUSED_FROM)

# --sort KEY: row attribute and whether larger is better ("best first" ordering).
SORT_KEYS: dict[str, tuple[str, bool]] = {
    "rank": ("rank", False), "trial": ("first_trial", False), "n": ("n", True),
    "accuracy": ("accuracy", True), "accuracy_std": ("accuracy_std", False),
    "flops": ("flops", False), "gflops": ("flops", False), "params": ("params", False),
    "latency": ("latency_ms", False), "latency_ms": ("latency_ms", False),
    "block_flops": ("block_flops", False), "block_params": ("block_params", False),
    "delta_accuracy": ("delta_accuracy", True), "delta_flops_pct": ("delta_flops_pct", False),
    "delta_params_pct": ("delta_params_pct", False), "delta_latency_pct": ("delta_latency_pct", False),
    "train_seconds": ("train_seconds", False), "candidate": ("candidate", False), "value": ("value_order", False),
}


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
    value: Any = None  # ablation view: the dimension's value
    value_order: int = 0
    accuracies: list[float] = field(default_factory=list, repr=False)  # the counted trials' accuracies

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
        out.update({dim: spec.get(dim) for dim in SPEC_DIMS})
        out.update({
            "accuracy": self.accuracy, "accuracy_std": self.accuracy_std, "flops": self.flops,
            "params": self.params, "latency_ms": self.latency_ms, "block_flops": self.block_flops,
            "block_params": self.block_params, "train_seconds": self.train_seconds,
            "delta_accuracy": self.delta_accuracy, "delta_flops_pct": self.delta_flops_pct,
            "delta_params_pct": self.delta_params_pct, "delta_latency_pct": self.delta_latency_pct,
        })
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


@dataclass
class Report:
    """What `gcsearch report` shows: the header facts, the rows of the chosen view, the front."""

    study: str
    storage: str
    summary: StudySummary
    objectives: list[Objective]
    rows: list[Row]  # the view's rows, sorted and cut to --top
    candidates: list[Row]  # every finished candidate
    front: list[Row]  # rank 1, sorted by the first objective
    hypervolume: float | None
    reference: dict[str, float]  # shown units
    reference_rule: str
    baseline: Row | None
    view: str  # "front", "all" or "ablation"
    by: str | None
    points: list[TrialPoint]
    devices: dict[str, int]

    @property
    def meta(self) -> dict[str, Any]:
        return self.summary.meta

    @property
    def proxy(self) -> dict[str, Any]:
        return proxy_settings(self.meta)

    @property
    def counts(self) -> dict[str, int]:
        return self.summary.counts

    @property
    def has_latency(self) -> bool:
        return any(r.latency_ms is not None for r in self.candidates)

    @property
    def hypervolume_unit(self) -> str:
        return "·".join(m.unit for m in self.objectives)

    def header(self) -> dict[str, Any]:
        """The facts above the table, as data (JSON's "study" part)."""
        return {
            "study": self.study, "storage": self.storage, "dataset": self.proxy.get("dataset"),
            "proxy": self.proxy, "backbone": self.meta.get(Meta.BACKBONE), "devices": self.devices,
            "counts": {k.lower(): v for k, v in self.counts.items()},
            "constraints": self.meta.get(Meta.CONSTRAINTS),
            "objectives": [{"name": m.name, "direction": m.direction, "unit": m.unit} for m in self.objectives],
            "hypervolume": self.hypervolume, "hypervolume_unit": self.hypervolume_unit,
            "reference_point": self.reference, "reference_rule": self.reference_rule,
            "view": self.view, "by": self.by, "candidates": len(self.candidates),
            "feasible": sum(r.feasible for r in self.candidates), "front_size": len(self.front),
        }


# -- entry points -------------------------------------------------------------------------------------
def read_report(storage: str = DEFAULT_STORAGE, study: str | None = None, **options: Any) -> Report:
    """Load `study` from `storage` read-only and build its report (options as for `build_report`)."""
    return build_report(read_study(storage, study, user_keys=REPORT_KEYS), **options)


def build_report(data: StudyData, objectives: Sequence[str] | str | None = None, *, by: str | None = None,
                 show_all: bool = False, sort: str | None = None, top: int | None = None,
                 reference: dict[str, float] | None = None) -> Report:
    """Rows, ranks, hypervolume and the chosen view of a loaded study.

    objectives: names from OBJECTIVES ("accuracy,flops" or a list); default: the study's own objectives.
    by: a spec dimension for the ablation view; None chooses it when exactly one dimension varies
        (and the view is not `show_all`). reference: the hypervolume reference point in shown units.
    """
    meta = data.summary.meta
    metrics = parse_objectives(objectives, meta)
    if by is not None and by not in SPEC_DIMS:
        raise InputError(f"by: unknown dimension {by!r} (choose from {', '.join(SPEC_DIMS)})")
    if sort is not None and sort not in SORT_KEYS:
        raise InputError(f"sort: unknown column {sort!r} (choose from {', '.join(SORT_KEYS)})")
    if top is not None and top < 1:
        raise InputError(f"top: expected a positive number of rows, got {top}")

    objective_index = _objective_index(meta, len(data.summary.directions))
    complete = [t for t in data.trials if t.state == "COMPLETE"]
    rows = candidate_rows(complete, objective_index)
    for metric in metrics:
        if rows and all(r.metric(metric.name) is None for r in rows):
            raise InputError(f"objectives: no finished trial of study {data.name!r} has a {metric.name} value")
    baseline = pick_baseline(rows, meta.get(Meta.BACKBONE))
    for row in rows:
        set_deltas(row, baseline)

    ranked = [r for r in rows if r.feasible and all(_finite(r.metric(m.name)) for m in metrics)]
    loss = np.array([[m.sign * m.shown(r.metric(m.name)) for m in metrics] for r in ranked], dtype=float)
    for row, rank in zip(ranked, nondominated_ranks(loss), strict=True):
        row.rank = int(rank)
        row.pareto = bool(rank == 1)
    front = sorted((r for r in ranked if r.pareto), key=lambda r: _front_order(r, metrics))
    ref = reference_point(loss, metrics, reference)
    front_loss = np.array([[m.sign * m.shown(r.metric(m.name)) for m in metrics] for r in front], dtype=float)
    hv = front_hypervolume(front_loss, np.array([m.sign * ref[m.name] for m in metrics])) if front else None
    rule = ("given" if reference else
            f"worst value among the {len(ranked)} ranked rows, shifted by {REFERENCE_MARGIN:.0%} of the spread")

    view, dim = "front", by
    if dim is None and not show_all:
        dim = varying_dimension(rows)
    if dim is not None:
        view, shown = "ablation", ablation_rows(rows, dim, baseline)
    elif show_all:
        view, shown = "all", list(rows)
    else:
        shown = list(front)
    shown = sort_rows(shown, sort, metrics, pin_baseline=view == "ablation")
    if top is not None:
        shown = shown[:top]

    points = [TrialPoint(t.number, _trial_metric(t, "accuracy", objective_index),
                         _trial_metric(t, "flops", objective_index), t.feasible,
                         _spec_of(t) is not None and _spec_of(t).get("block") == "none", _group_key(t))
              for t in complete]
    devices = Counter(str(t.user_attrs.get(Attr.DEVICE)) for t in complete if t.user_attrs.get(Attr.DEVICE))
    return Report(study=data.name, storage=data.storage, summary=data.summary, objectives=metrics, rows=shown,
                  candidates=rows, front=front, hypervolume=hv, reference=ref, reference_rule=rule,
                  baseline=baseline, view=view, by=dim, points=points, devices=dict(devices.most_common()))


def parse_objectives(objectives: Sequence[str] | str | None, meta: dict[str, Any]) -> list[Objective]:
    """Objectives from "accuracy,flops", a list of names, or the study's own objectives."""
    if objectives is None:
        names = [n for n in objective_names(meta) if n in OBJECTIVES] or ["accuracy", "flops"]
    elif isinstance(objectives, str):
        names = [n.strip() for n in objectives.split(",") if n.strip()]
    else:
        names = list(objectives)
    if not names:
        raise InputError(f"objectives: give at least one of {', '.join(OBJECTIVES)}")
    for name in names:
        if name not in OBJECTIVES:
            raise InputError(f"objectives: unknown objective {name!r} (choose from {', '.join(OBJECTIVES)})")
    if len(set(names)) != len(names):
        raise InputError(f"objectives: {','.join(names)} names an objective twice")
    return [OBJECTIVES[n] for n in names]


# -- rows -----------------------------------------------------------------------------------------------
def _objective_index(meta: dict[str, Any], n_directions: int) -> dict[str, int]:
    """Which trial value holds which objective, from the study's metadata."""
    names = objective_names(meta)
    if len(names) != n_directions:
        return {}
    return {name: i for i, name in enumerate(names) if name in OBJECTIVES}


def _trial_metric(trial: TrialRecord, name: str, objective_index: dict[str, int]) -> float | None:
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


def _spec_of(trial: TrialRecord) -> dict[str, Any] | None:
    spec = trial.user_attrs.get(Attr.SPEC)
    return spec if isinstance(spec, dict) else None


def _group_key(trial: TrialRecord) -> str:
    key = trial.user_attrs.get(Attr.KEY)
    if isinstance(key, str) and key:
        return key
    spec = _spec_of(trial)
    if spec is not None:
        return json.dumps(spec, sort_keys=True)
    return f"trial-{trial.number}"


def candidate_rows(trials: Iterable[TrialRecord], objective_index: dict[str, int] | None = None) -> list[Row]:
    """One row per candidate key over finished trials, repeats pooled, reused trials counted once."""
    objective_index = objective_index or {}
    groups: dict[str, list[TrialRecord]] = {}
    for trial in trials:
        groups.setdefault(_group_key(trial), []).append(trial)
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
        spec = _spec_of(first)
        label = first.user_attrs.get(Attr.LABEL)
        row = Row(key=key, candidate=short_label(spec, fallback=label or key), spec=spec,
                  label=str(label) if label else (short_label(spec, fallback=key)),
                  trials=[t.number for t in counted], reused=sorted(reused), n=len(counted))
        accuracies = [v for v in (_trial_metric(t, "accuracy", objective_index) for t in counted) if v is not None]
        row.accuracies = accuracies
        row.accuracy, row.accuracy_std = _mean_std(accuracies)
        row.flops = _mean(_trial_metric(t, "flops", objective_index) for t in counted)
        row.params = _mean(_trial_metric(t, "params", objective_index) for t in counted)
        row.latency_ms = _mean(_trial_metric(t, "latency", objective_index) for t in counted)
        row.block_flops = _mean(_number(t.user_attrs.get("block_flops")) for t in counted)
        row.block_params = _mean(_number(t.user_attrs.get("block_params")) for t in counted)
        row.train_seconds = _mean(_number(t.user_attrs.get("train_seconds")) for t in counted)
        row.violated = sorted({name for t in members for name, v in t.constraints.items() if v > 0})
        row.feasible = not row.violated
        row.baseline = spec is not None and spec.get("block") == "none"
        rows.append(row)
    rows.sort(key=lambda r: r.first_trial)
    return rows


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
    row.delta_flops_pct = _pct(row.flops, baseline.flops)
    row.delta_params_pct = _pct(row.params, baseline.params)
    row.delta_latency_pct = _pct(row.latency_ms, baseline.latency_ms)


# -- Pareto ---------------------------------------------------------------------------------------------
def front_hypervolume(front_loss: np.ndarray, reference_loss: np.ndarray) -> float:
    """The front's hypervolume; InputError when a given reference point is not worse than every front point."""
    try:
        return hypervolume(front_loss, reference_loss)
    except ValueError:
        raise InputError("reference: the reference point must be worse than every front point in every objective"
                         ) from None


def reference_point(loss: np.ndarray, metrics: Sequence[Objective], given: dict[str, float] | None = None
                    ) -> dict[str, float]:
    """The hypervolume reference point in shown units (see the module docstring for the rule)."""
    if given:
        unknown = set(given) - {m.name for m in metrics}
        missing = {m.name for m in metrics} - set(given)
        if unknown or missing:
            raise InputError(f"reference: give one value for each objective ({', '.join(m.name for m in metrics)})")
        return {m.name: float(given[m.name]) for m in metrics}
    out: dict[str, float] = {}
    for j, metric in enumerate(metrics):
        if loss.size == 0:
            continue
        worst, best = float(loss[:, j].max()), float(loss[:, j].min())
        spread = worst - best
        shift = REFERENCE_MARGIN * (spread if spread > 0 else abs(worst) if worst != 0 else 1.0)
        out[metric.name] = metric.sign * (worst + shift)
    return out


def _front_order(row: Row, metrics: Sequence[Objective]) -> tuple:
    # Cheapest first along the first cost objective (or best first for the first objective).
    for m in metrics:
        if m.direction == "minimize":
            return (m.sign * (m.shown(row.metric(m.name)) or 0.0), row.first_trial)
    m = metrics[0]
    return (m.sign * (m.shown(row.metric(m.name)) or 0.0), row.first_trial)


# -- ablation -----------------------------------------------------------------------------------------
_ORDER: dict[str, Sequence[Any]] = {
    "backbone": tuple(BACKBONES), "block": BLOCKS, "context": CONTEXTS, "transform": ("bottleneck", "full"),
    "norm": NORMS, "act": ("relu", "none"), "fusion": FUSIONS, "position": POSITIONS, "blocks": BLOCK_SETS,
}


def _hashable(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _value_sort_key(dim: str, value: Any) -> tuple:
    if value is None:
        return (2, 0, "")
    order = _ORDER.get(dim)
    if order is not None and value in order:
        return (0, order.index(value), "")
    if dim == "stages" and isinstance(value, tuple):
        return (0, len(value), "".join(str(STAGES.index(s)) if s in STAGES else s for s in value))
    if isinstance(value, (int, float)):
        return (0, value, "")
    return (1, 0, str(value))


def varying_dimension(rows: Sequence[Row]) -> str | None:
    """The one spec dimension that tells the non-baseline candidates apart, if there is exactly one.

    A dimension varies when it takes more than one value (None, "not used by this block", does not count).
    Presets differ in several components at once, so when the block varies the components count only for
    custom blocks. The candidates and the values must match one to one.
    """
    specs = [r.spec for r in rows if not r.baseline]
    if len(specs) < 2 or any(s is None for s in specs):
        return None
    varying = [d for d in SPEC_DIMS if len({_hashable(s.get(d)) for s in specs} - {None}) > 1]
    if "block" in varying and len(varying) > 1 and set(varying) - {"block"} <= set(COMPONENTS):
        components = [d for d in varying if d != "block"]
        custom = any(s.get("block") == "custom" for s in specs)
        varying = components if custom and len(components) == 1 else ["block"]
    if len(varying) != 1:
        return None
    dim = varying[0]
    values = [_hashable(s.get(dim)) for s in specs]
    return dim if len(set(values)) == len(values) else None


def ablation_rows(rows: Sequence[Row], dim: str, baseline: Row | None) -> list[Row]:
    """One row per value of `dim` (trials of all candidates with that value pooled), baseline first."""
    groups: dict[Any, list[Row]] = {}
    for row in rows:
        if row.baseline:
            continue
        groups.setdefault(_hashable((row.spec or {}).get(dim)), []).append(row)
    out = []
    if baseline is not None:
        base = _pool([baseline], key=baseline.key)
        base.value, base.value_order = None, -1
        out.append(base)
    for order, value in enumerate(sorted(groups, key=lambda v: _value_sort_key(dim, v))):
        members = groups[value]
        pooled = _pool(members, key=f"{dim}={_format_value(value)}")
        pooled.value = list(value) if isinstance(value, tuple) else value
        pooled.value_order = order
        if len(members) > 1:
            pooled.candidate = f"{dim} {_format_value(value)} ({len(members)} candidates)"
        set_deltas(pooled, baseline)
        out.append(pooled)
    return out


def _pool(members: Sequence[Row], key: str) -> Row:
    if len(members) == 1:
        src = members[0]
        row = Row(**{k: getattr(src, k) for k in src.__dataclass_fields__})
        row.trials, row.reused, row.violated = list(src.trials), list(src.reused), list(src.violated)
        return row
    accuracies = [a for m in members for a in m.accuracies]
    acc, std = _mean_std(accuracies)
    ranks = [m.rank for m in members if m.rank is not None]
    spec = _common_spec([m.spec for m in members])
    row = Row(key=key, candidate=key, label=key, spec=spec,
              trials=sorted(t for m in members for t in m.trials), reused=sorted(t for m in members for t in m.reused),
              n=len(accuracies), candidates=len(members), accuracy=acc, accuracy_std=std,
              flops=_mean(m.flops for m in members), params=_mean(m.params for m in members),
              latency_ms=_mean(m.latency_ms for m in members), block_flops=_mean(m.block_flops for m in members),
              block_params=_mean(m.block_params for m in members),
              train_seconds=_mean(m.train_seconds for m in members),
              feasible=all(m.feasible for m in members), violated=sorted({v for m in members for v in m.violated}),
              rank=min(ranks) if ranks else None, pareto=any(m.pareto for m in members), accuracies=accuracies)
    return row


def _common_spec(specs: Sequence[dict[str, Any] | None]) -> dict[str, Any] | None:
    """The fields all specs share (others None): what an ablation row stands for."""
    if not specs or any(s is None for s in specs):
        return None
    first = specs[0]
    return {k: (v if all(s.get(k) == v for s in specs) else None) for k, v in first.items()}


# -- sorting --------------------------------------------------------------------------------------------
def sort_rows(rows: Sequence[Row], sort: str | None, metrics: Sequence[Objective], pin_baseline: bool = False
              ) -> list[Row]:
    """Best first by `sort` (missing values last); default: rank, then the front's order / ablation order."""
    pinned = [r for r in rows if pin_baseline and r.baseline]
    rest = [r for r in rows if not (pin_baseline and r.baseline)]
    if sort is None:
        if pin_baseline:
            rest.sort(key=lambda r: r.value_order)
        else:
            rest.sort(key=lambda r: (r.rank if r.rank is not None else math.inf, *_front_order(r, metrics)))
        return pinned + rest
    attr, larger_is_better = SORT_KEYS[sort]

    def key(row: Row) -> tuple:
        value = getattr(row, attr)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return (1, 0, row.first_trial)
        if isinstance(value, str):
            return (0, value, row.first_trial)
        return (0, -value if larger_is_better else value, row.first_trial)

    return pinned + sorted(rest, key=key)


# -- short forms ----------------------------------------------------------------------------------------
_POSITION_SHORT = {"after_1x1": "1x1", "after_3x3": "3x3", "after_add": "add"}


def short_label(spec: dict[str, Any] | None, fallback: str = "?") -> str:
    """A candidate in a few words: "gc r16 c3-c5 1x1 all", "att/scale r8 noLN c4 add last", "baseline"."""
    if not isinstance(spec, dict) or "block" not in spec:
        return str(fallback)
    block = spec.get("block")
    if block == "none":
        return "baseline"
    if block == "custom":
        parts = [f"{spec.get('context')}/{spec.get('fusion')}"]
        if spec.get("transform") == "full":
            parts.append("full")
    else:
        parts = [str(block)]
    if spec.get("ratio") is not None:
        parts.append(f"r{spec['ratio']}")
    if block == "custom" and spec.get("transform") == "bottleneck":
        if spec.get("norm") == "none":
            parts.append("noLN")
        if spec.get("act") == "none":
            parts.append("noReLU")
    parts.append(_stages_short(spec.get("stages")))
    parts.append(_POSITION_SHORT.get(spec.get("position"), str(spec.get("position"))))
    parts.append(str(spec.get("blocks")))
    return " ".join(p for p in parts if p)


def _stages_short(stages: Any) -> str:
    if not isinstance(stages, (list, tuple)) or not stages:
        return ""
    idx = [STAGES.index(s) for s in stages if s in STAGES]
    if len(idx) == len(stages) and len(idx) > 2 and idx == list(range(idx[0], idx[-1] + 1)):
        return f"{stages[0]}-{stages[-1]}"
    return "+".join(stages)


def _format_value(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, (list, tuple)):
        return "+".join(str(v) for v in value)
    return str(value)


# -- helpers --------------------------------------------------------------------------------------------
def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def _mean(values: Iterable[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return sum(vals) / len(vals) if vals else None


def _mean_std(values: Sequence[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, None
    var = sum((v - mean) ** 2 for v in values) / (len(values) - 1)
    return mean, math.sqrt(var)


def _pct(value: float | None, base: float | None) -> float | None:
    if value is None or base is None or base == 0:
        return None
    return (value - base) / base * 100.0
