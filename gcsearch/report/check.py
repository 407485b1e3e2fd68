"""Is the proxy good enough? The figures of `gcsearch check`, read back from its studies (read-only).

A study's ranking is worth reading only where its candidates differ by more than its seeds do. From the
check's trials (the baseline and a few candidates that span the space, each with several seeds) this gives:

- the seed noise: the within-candidate std pooled over the candidates (`noise.pooled_noise`), with its df;
- the spread: the std of the candidate means, baseline included (how far apart the candidates land);
- the ICC: the share of the accuracy variance that lies between candidates (`noise.icc`); below
  `ICC_THRESHOLD` the seeds, not the candidates, decide much of the ranking;
- the smallest difference the study's own design finds at 80% power: its `[budget] repeats` against its
  baseline's seeds, on the noise measured here (`noise.detectable_difference`);
- the seeds per candidate a difference needs (`noise.repeats_needed`; by default the spread);
- with a longer training of the same candidates: Spearman and Kendall between the proxy's mean accuracies
  and the longer training's (`noise.rank_agreement`).
Torch-free, like every report.
"""

from __future__ import annotations

import math
import statistics
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from gcsearch.contract import Attr
from gcsearch.errors import InputError
from gcsearch.report import noise
from gcsearch.report.labels import short_label
from gcsearch.report.rows import candidate_rows, objective_positions
from gcsearch.storage.reader import Reader, StorageError
from gcsearch.storage.records import TrialRecord
from gcsearch.study.check import CheckPlan, study_candidate_count, study_repeats

ICC_THRESHOLD = 0.7  # below it, seeds reorder the candidates too often for a ranking to be read
POWER = 0.8
MOST_REPEATS = 256  # repeats_needed gives up beyond this many seeds per candidate
CHECK_KEYS = (Attr.SPEC, Attr.KEY, Attr.LABEL, Attr.ACCURACY, Attr.REPEAT, Attr.REUSED_FROM)


@dataclass
class CheckRow:
    """One candidate of the check: its seeds' accuracies and, with a longer training, that accuracy."""

    key: str
    label: str  # ArchSpec.label(): "gc r4 @ c4 after_1x1 all"
    candidate: str  # the report's short form: "gc r4 c4 1x1 all", "baseline"
    baseline: bool
    accuracies: list[float]
    longer: float | None = None

    @property
    def mean(self) -> float | None:
        return statistics.fmean(self.accuracies) if self.accuracies else None

    @property
    def std(self) -> float | None:
        return statistics.stdev(self.accuracies) if len(self.accuracies) >= 2 else None

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "candidate": self.candidate, "key": self.key, "baseline": self.baseline,
                "seeds": len(self.accuracies), "mean": self.mean, "std": self.std,
                "accuracies": list(self.accuracies), "longer_accuracy": self.longer}


@dataclass
class CheckResult:
    """The check's figures and its verdict."""

    study: str
    check_study: str
    storage: str
    seeds: int
    rows: list[CheckRow]
    noise: noise.Noise
    spread: float | None
    icc: float | None
    repeats: int  # the study's [budget] repeats
    baseline_repeats: int  # the seeds the study gives its baseline
    detectable: float | None
    difference: float | None
    difference_from: str  # "spread" or "--difference"
    repeats_needed: int | None
    longer_study: str | None = None
    longer_epochs: int | None = None
    factor: float | None = None
    spearman: float | None = None
    kendall: float | None = None
    trained: int = 0  # trials the command trained (set by the command)
    missing: list[str] = field(default_factory=list)  # candidates with fewer seeds than asked

    def verdict(self) -> str:
        """One line in words: do the candidates stand above the seeds, and what to do when they do not."""
        if self.icc is None:
            return ("no verdict: the check needs two candidates with finished seeds (and some difference "
                    "between them); run it again to finish its trials")
        if self.icc >= ICC_THRESHOLD:
            found = f"; the study's seeds find differences of {self.detectable:.2f} pts" \
                if self.detectable is not None else ""
            return f"the proxy ranks above its noise (ICC {self.icc:.2f} >= {ICC_THRESHOLD}){found}"
        head = f"seeds decide this ranking (ICC {self.icc:.2f} < {ICC_THRESHOLD})"
        if self.repeats_needed is None:
            if self.difference is None or self.noise.std is None or self.noise.std == 0:
                return f"{head}: make the proxy more stable (more epochs, more data)"
            return (f"{head}: even {MOST_REPEATS} repeats would not find {self.difference:.2f} pts; make the "
                    "proxy more stable (more epochs, more data)")
        if self.repeats_needed > self.repeats:
            return f"{head}: raise [budget] repeats to {self.repeats_needed}, or make the proxy more stable"
        return (f"{head}: [budget] repeats = {self.repeats} finds {self.difference:.2f} pts, smaller "
                "differences need more seeds or a more stable proxy")

    def to_dict(self) -> dict[str, Any]:
        return {
            "study": self.study, "check_study": self.check_study, "longer_study": self.longer_study,
            "storage": self.storage, "seeds": self.seeds, "trained_this_run": self.trained,
            "candidates": [r.to_dict() for r in self.rows],
            "pooled_std": self.noise.std, "pooled_df": self.noise.df, "spread": self.spread,
            "icc": self.icc, "icc_threshold": ICC_THRESHOLD,
            "study_repeats": self.repeats, "study_baseline_repeats": self.baseline_repeats, "power": POWER,
            "detectable_difference": self.detectable, "difference": self.difference,
            "difference_from": self.difference_from, "repeats_needed": self.repeats_needed,
            "longer_factor": self.factor, "longer_epochs": self.longer_epochs,
            "spearman": self.spearman, "kendall": self.kendall,
            "missing": list(self.missing), "verdict": self.verdict(),
        }


def read_check(storage: str, plan: CheckPlan, difference: float | None = None) -> CheckResult:
    """The check's figures from its studies in `storage`. `difference`: the one `repeats_needed` is asked
    about, in accuracy points (default: the spread between the candidates)."""
    check_difference(difference)
    with Reader(storage) as reader:
        where = reader.storage
        rows = _rows(reader, plan.proxy.name, plan, plan.seeds)
        if plan.longer is not None:
            longer = {r.key: r.mean for r in _rows(reader, plan.longer.name, plan, 1)}
            for row in rows:
                row.longer = longer.get(row.key)
    result = figures(rows, plan, difference)
    result.storage = where
    return result


def check_difference(difference: float | None) -> None:
    """InputError (exit 2) for a difference that is not a positive number of points."""
    if difference is not None and not (math.isfinite(difference) and difference > 0):
        raise InputError(f"--difference: expected a positive number of accuracy points, got {difference}")


def figures(rows: list[CheckRow], plan: CheckPlan, difference: float | None = None) -> CheckResult:
    """Every figure from the rows (their accuracies, and their longer training's where there is one)."""
    groups = [r.accuracies for r in rows if r.accuracies]
    pooled = noise.pooled_noise(groups)
    means = [statistics.fmean(g) for g in groups]
    spread = statistics.stdev(means) if len(means) >= 2 else None
    repeats, baseline_repeats = study_repeats(plan.study)
    detectable = None
    if pooled.std is not None and pooled.std > 0:
        detectable = noise.detectable_difference(pooled, repeats, baseline_repeats, target=POWER)
    wanted = difference if difference is not None else spread
    needed = None
    if wanted is not None and wanted > 0 and pooled.std is not None and pooled.std > 0:
        needed = noise.repeats_needed(wanted, pooled.std, candidates=study_candidate_count(plan.study),
                                      target=POWER, most=MOST_REPEATS)
    result = CheckResult(
        study=plan.study.name, check_study=plan.proxy.name, storage="", seeds=plan.seeds, rows=rows,
        noise=pooled, spread=spread, icc=noise.icc(groups), repeats=repeats, baseline_repeats=baseline_repeats,
        detectable=detectable, difference=wanted, difference_from="spread" if difference is None else "--difference",
        repeats_needed=needed, missing=[r.candidate for r in rows if len(r.accuracies) < plan.seeds])
    if plan.longer is not None:
        result.longer_study, result.factor = plan.longer.name, plan.factor
        result.longer_epochs = plan.longer.proxy.epochs
        result.spearman, result.kendall = agreement(rows)
    return result


def agreement(rows: Sequence[CheckRow]) -> tuple[float | None, float | None]:
    """Spearman and Kendall between the proxy's means and the longer training, over the candidates that have
    both (None with fewer than three, or when one side ranks every candidate equal)."""
    pairs = [(r.mean, r.longer) for r in rows if r.mean is not None and r.longer is not None]
    if len(pairs) < 3:
        return None, None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns on a constant input and returns nan: None here
        rho, tau = noise.rank_agreement([p for p, _ in pairs], [q for _, q in pairs])
    return (rho if math.isfinite(rho) else None), (tau if math.isfinite(tau) else None)


def stored_keys(storage: str, name: str) -> set[str] | None:
    """The candidate keys a stored check study holds; None when the storage or the study does not exist yet."""
    try:
        with Reader(storage) as reader:
            summary = reader.study(name)
            return {str(t.user_attrs[Attr.KEY]) for t in reader.trials(summary, user_keys=[Attr.KEY])
                    if Attr.KEY in t.user_attrs}
    except StorageError:
        return None
    except InputError:  # no study of that name
        return None


def _rows(reader: Reader, name: str, plan: CheckPlan, seeds: int) -> list[CheckRow]:
    """The plan's candidates, in its order, with their COMPLETE trials of the first `seeds` repeats."""
    summary = reader.study(name)
    trials = [t for t in reader.trials(summary, user_keys=CHECK_KEYS) if t.state == "COMPLETE"
              and _repeat(t) < seeds]
    found = {r.key: r for r in candidate_rows(trials, objective_positions(summary.meta, len(summary.directions)))}
    rows = []
    for cand in plan.candidates:
        row = found.get(cand.key)
        rows.append(CheckRow(key=cand.key, label=cand.label, candidate=short_label(cand.spec.to_dict()),
                             baseline=not cand.spec.has_blocks, accuracies=list(row.accuracies) if row else []))
    return rows


def _repeat(trial: TrialRecord) -> int:
    repeat = trial.user_attrs.get(Attr.REPEAT)
    return repeat if isinstance(repeat, int) and not isinstance(repeat, bool) else 0

