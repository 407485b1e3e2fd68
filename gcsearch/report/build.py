"""A study's report: its rows ranked into Pareto fronts, the front's hypervolume, and the view asked for.

Reading goes through `gcsearch.storage.reader` (read-only, lock-free); the rows come from rows.py, the ablation
view from ablation.py; output formats live in formats.py, the plot in plot.py.

- Ranks. Finished (COMPLETE) rows that satisfy every constraint (Optuna stores each as a trial system
  attribute "constraints:<name>", feasible when <= 0) are sorted into non-dominated fronts over the chosen
  objectives (`gcsearch.pareto`); rank 1 is the Pareto front. Infeasible rows get no rank; FAIL, PRUNED and
  RUNNING trials never make a row.
- Hypervolume of the front, computed exactly (`gcsearch.pareto`), in the units the table shows
  (accuracy in %, FLOPs in G, params in M, latency in ms). The reference point is stated with it; unless
  given, each coordinate is the worst value of that objective among the ranked rows, moved away from the
  front by 10% of the objective's spread among them (by 10% of its magnitude when all rows share one value,
  and by 0.1 when that value is 0). So every front point adds volume, and two reports of the same study agree.
- Views: the front (default), every finished candidate (`show_all`), or the ablation by one spec dimension.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from gcsearch.contract import OBJECTIVES, Attr, Meta, Objective, objective_names, proxy_settings
from gcsearch.errors import InputError
from gcsearch.pareto import hypervolume, nondominated_ranks
from gcsearch.report.ablation import ablation_rows, varying_dimension
from gcsearch.report.chance import chance_header
from gcsearch.report.noise import (
    WITHIN,
    Comparison,
    Noise,
    PairedNoise,
    compare,
    holm_verdicts,
    pooled_noise,
)
from gcsearch.report.paired import compare_rows, mark_not_identity, paired_prior, start_files, starts
from gcsearch.report.race import apply_race
from gcsearch.report.rows import (
    REPORT_KEYS,
    Row,
    TrialPoint,
    candidate_rows,
    finite,
    group_key,
    objective_positions,
    pick_baseline,
    set_deltas,
    spec_of,
    trial_metric,
)
from gcsearch.space.spec import SPEC_FIELDS
from gcsearch.storage.reader import read_study
from gcsearch.storage.records import StudyData, StudySummary
from gcsearch.storage.urls import DEFAULT_STORAGE
from gcsearch.training.chance import Chance, chance_of

REFERENCE_MARGIN = 0.1

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
    noise: Noise  # the study's seed noise, pooled over every candidate with repeats
    paired: PairedNoise | None = None  # the paired design's pooled paired noise (None: independent seeds)
    starts: dict[int, float] | None = None  # the paired design: each seed's start accuracy
    start_files: list[str] | None = None  # start = "weights": "name (sha256 ...)" of the files trials started from

    @property
    def design(self) -> str:
        """"paired" (candidates fine-tuned from each seed's trained start) or "independent" (from scratch)."""
        return "paired" if self.paired is not None else "independent"
    chance: Chance | None = None  # the proxy's chance level (None: the study does not store its classes)

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
            # unit: what the rows' numbers are in (raw counts for FLOPs and params); reference_point_unit:
            # what the hypervolume and its reference point are in.
            "objectives": [{"name": m.name, "direction": m.direction, "unit": m.raw_unit,
                            "reference_point_unit": m.unit} for m in self.objectives],
            "hypervolume": self.hypervolume, "hypervolume_unit": self.hypervolume_unit,
            "reference_point": self.reference, "reference_rule": self.reference_rule,
            "view": self.view, "by": self.by, "candidates": len(self.candidates),
            "feasible": sum(r.feasible for r in self.candidates), "front_size": len(self.front),
            "noise": {"std": self.noise.std, "df": self.noise.df, "candidates": self.noise.groups,
                      "baseline_seeds": self.baseline.n if self.baseline else 0,
                      "interval": "95% Student t on the pooled seed std", "correction": "Holm"},
            "chance": chance_header(self),
        } | ({} if self.paired is None else {"noise": {
            "design": "paired", "std": self.paired.std, "df": self.paired.df, "rows": self.paired.rows,
            "seeds": self.paired.seeds, "left_out": self.paired.left_out,
            "baseline_seeds": self.baseline.n if self.baseline else 0,
            "interval": "95% Student t on the paired differences to the control of the same seed; std: the "
                        "larger of the pooled one (candidates x seeds, seeds as blocks) and the candidate's own",
            "correction": "Holm", "starts": {str(k): v for k, v in (self.starts or {}).items()},
            "start_files": list(self.start_files or [])}})


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
    if by is not None and by not in SPEC_FIELDS:
        raise InputError(f"by: unknown dimension {by!r} (choose from {', '.join(SPEC_FIELDS)})")
    if sort is not None and sort not in SORT_KEYS:
        raise InputError(f"sort: unknown column {sort!r} (choose from {', '.join(SORT_KEYS)})")
    if top is not None and top < 1:
        raise InputError(f"top: expected a positive number of rows, got {top}")

    objective_index = objective_positions(meta, len(data.summary.directions))
    complete = [t for t in data.trials if t.state == "COMPLETE"]
    rows = candidate_rows(complete, objective_index)
    for metric in metrics:
        if rows and all(r.metric(metric.name) is None for r in rows):
            raise InputError(f"objectives: no finished trial of study {data.name!r} has a {metric.name} value")
    baseline = pick_baseline(rows, meta.get(Meta.BACKBONE))
    apply_race(rows, baseline, data.summary.user_attrs)  # a race: its states, accuracy on the control's seeds
    for row in rows:
        set_deltas(row, baseline)
    noise = pooled_noise([r.accuracies for r in rows])
    paired = paired_prior(rows, baseline) if proxy_settings(meta).get("start") in ("baseline", "weights") \
        else None
    if paired is not None:
        mark_not_identity(rows)
    judge(rows, baseline, noise, paired)

    ranked = [r for r in rows if r.feasible and all(finite(r.metric(m.name)) for m in metrics)]
    loss = np.array([[m.sign * m.shown(r.metric(m.name)) for m in metrics] for r in ranked], dtype=float)
    for row, rank in zip(ranked, nondominated_ranks(loss), strict=True):
        row.rank = int(rank)
        row.pareto = bool(rank == 1)
    front = sorted((r for r in ranked if r.pareto), key=lambda r: _front_order(r, metrics))
    mark_ties(front, noise, paired)
    if any(m.name == "accuracy" for m in metrics):
        mark_near_front(ranked, loss, noise, paired)
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
        judge(shown, baseline, noise, paired)
    elif show_all:
        view, shown = "all", list(rows)
    else:
        shown = list(front)
    shown = sort_rows(shown, sort, metrics, pin_baseline=view == "ablation")
    if top is not None:
        shown = shown[:top]

    points = [TrialPoint(t.number, trial_metric(t, "accuracy", objective_index),
                         trial_metric(t, "flops", objective_index), t.feasible,
                         spec_of(t) is not None and spec_of(t).get("block") == "none", group_key(t))
              for t in complete]
    devices = Counter(str(t.user_attrs.get(Attr.DEVICE)) for t in complete if t.user_attrs.get(Attr.DEVICE))
    return Report(study=data.name, storage=data.storage, summary=data.summary, objectives=metrics, rows=shown,
                  candidates=rows, front=front, hypervolume=hv, reference=ref, reference_rule=rule,
                  baseline=baseline, view=view, by=dim, points=points, devices=dict(devices.most_common()),
                  noise=noise, chance=chance_of(meta.get(Meta.NUM_CLASSES), proxy_settings(meta).get("val_size")),
                  paired=paired, starts=starts(complete) if paired is not None else None,
                  start_files=start_files(complete) if paired is not None else None)


# -- noise -----------------------------------------------------------------------------------------------
def judge(rows: Sequence[Row], baseline: Row | None, noise: Noise, paired: PairedNoise | None = None) -> None:
    """Each row's accuracy delta gets its 95% interval and a verdict, Holm-corrected over the rows judged.

    Paired design: the delta is the mean over seeds of (row - baseline of the same seed), on the moderated
    paired variance; seeds the baseline lacks are left out."""
    judged = [r for r in rows if not r.baseline and r.accuracies]
    if baseline is None or not baseline.accuracies or not judged:
        return
    comparisons = [compare_with(r, baseline, noise, paired) for r in judged]
    for row, verdict in zip(judged, holm_verdicts(comparisons), strict=True):
        row.delta_accuracy_low, row.delta_accuracy_high, row.verdict = verdict.low, verdict.high, verdict.verdict
        if paired is not None and verdict.p is not None:
            row.delta_accuracy = verdict.delta


def compare_with(row: Row, reference: Row, noise: Noise, paired: PairedNoise | None) -> Comparison:
    """`row` against `reference`: on the pooled seed noise, or per seed on the paired noise (paired design)."""
    if paired is None:
        return compare(row.accuracies, reference.accuracies, noise)
    return compare_rows(row, reference, paired)


def mark_ties(front: Sequence[Row], noise: Noise, paired: PairedNoise | None = None) -> None:
    """Front members that no verdict separates from the front's most accurate one are tied with it (paired
    design: per seed, on the same moderated variance as the verdicts)."""
    scored = [r for r in front if r.accuracies]
    if len(scored) < 2 or (noise.std is None if paired is None else paired.std is None):
        return
    best = max(scored, key=lambda r: r.accuracy or 0.0)
    others = [r for r in scored if r is not best]
    comparisons = [compare_with(r, best, noise, paired) for r in others]
    for row, verdict in zip(others, holm_verdicts(comparisons), strict=True):
        row.tied = verdict.verdict == WITHIN
    best.tied = any(r.tied for r in others)


def mark_near_front(ranked: Sequence[Row], loss: np.ndarray, noise: Noise, paired: PairedNoise | None = None
                    ) -> None:
    """Rows off the front that no verdict separates from any front member dominating them are near the front:
    their accuracy is within seed noise of every member that keeps them off it, so another set of seeds could
    put them on it. Judged as the ties are (paired design: per seed), Holm-corrected over the row's dominators;
    a row whose comparisons have no interval is left unmarked."""
    members = [i for i, r in enumerate(ranked) if r.pareto]
    for i, row in enumerate(ranked):
        if row.pareto or not row.accuracies:
            continue
        dominators = [ranked[j] for j in members if ranked[j].accuracies and bool(np.all(loss[j] <= loss[i]))]
        if not dominators:
            continue
        comparisons = [compare_with(row, f, noise, paired) for f in dominators]
        if any(c.p is None for c in comparisons):
            continue
        row.near_front = all(v.verdict == WITHIN for v in holm_verdicts(comparisons))


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
