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

The paired protocol (`[proxy] start = "baseline"`, see `study/check_plan.py`) is read the same way, with the
figures of the paired design in place of those of independent seeds: a candidate's delta is the mean over its
seeds of (candidate - control of the same seed); its noise is the pooled paired std of the candidates x seeds
table (`noise.paired_noise`, seeds as blocks) and each candidate's own std of its differences; the spread is
the std of the mean deltas (the control's 0 included); the detectable difference is `noise.paired_detectable`
with the study's repeats; the rank agreement compares the mean deltas with the longer run's (same seeds).
Both protocols give the one-way ICC of the accuracies and the paired ICC of the table (`noise.paired_icc`,
ICC(3,1)): the scratch verdict reads the first, the paired verdict the second.
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
from gcsearch.study.check_plan import PAIRED, SCRATCH, CheckPlan, study_candidate_count, study_repeats

ICC_THRESHOLD = 0.7  # below it, seeds reorder the candidates too often for a ranking to be read
POWER = 0.8
MOST_REPEATS = 256  # repeats_needed gives up beyond this many seeds per candidate
CHECK_KEYS = (Attr.SPEC, Attr.KEY, Attr.LABEL, Attr.ACCURACY, Attr.REPEAT, Attr.REUSED_FROM, Attr.SEED)


@dataclass
class CheckRow:
    """One candidate of the check: its seeds' accuracies and, with a longer training, that accuracy; in the
    paired protocol also its paired delta to the control and that delta's own std."""

    key: str
    label: str  # ArchSpec.label(): "gc r4 @ c4 after_1x1 all"
    candidate: str  # the report's short form: "gc r4 c4 1x1 all", "baseline"
    baseline: bool
    accuracies: list[float]
    longer: float | None = None
    by_seed: dict[int, float] = field(default_factory=dict)  # accuracy per seed
    longer_by_seed: dict[int, float] = field(default_factory=dict)  # the longer training's, per seed
    delta: float | None = None  # paired: mean over seeds of (this - the control of the same seed)
    delta_std: float | None = None  # paired: the std of those differences (None for the control itself)
    longer_delta: float | None = None  # paired: the same mean delta in the longer training

    @property
    def mean(self) -> float | None:
        return statistics.fmean(self.accuracies) if self.accuracies else None

    @property
    def std(self) -> float | None:
        return statistics.stdev(self.accuracies) if len(self.accuracies) >= 2 else None

    def to_dict(self, paired: bool = False) -> dict[str, Any]:
        d = {"label": self.label, "candidate": self.candidate, "key": self.key, "baseline": self.baseline,
             "seeds": len(self.accuracies), "mean": self.mean, "std": self.std,
             "accuracies": list(self.accuracies), "longer_accuracy": self.longer}
        if paired:
            d |= {"by_seed": {str(s): v for s, v in self.by_seed.items()}, "delta": self.delta,
                  "delta_std": self.delta_std, "longer_delta": self.longer_delta}
        return d


@dataclass
class CheckResult:
    """One protocol's figures and its verdict."""

    study: str
    check_study: str
    storage: str
    seeds: int
    rows: list[CheckRow]
    noise: noise.Noise  # the accuracies' std between seeds, pooled (in the paired protocol: the starts' too)
    spread: float | None  # std of the candidate means (paired: of the mean deltas)
    icc: float | None
    repeats: int  # the study's [budget] repeats
    baseline_repeats: int  # the seeds the study gives its baseline
    detectable: float | None
    difference: float | None
    difference_from: str  # "spread" or "--difference"
    repeats_needed: int | None
    longer_study: str | None = None
    longer_epochs: float | None = None  # scratch: the longer epochs; paired: the longer fine-tune's
    factor: float | None = None
    spearman: float | None = None
    kendall: float | None = None
    trained: int = 0  # trials the command trained (set by the command)
    missing: list[str] = field(default_factory=list)  # candidates with fewer seeds than asked
    protocol: str = SCRATCH
    paired_icc: float | None = None  # ICC(3,1) of the candidates x common seeds table
    paired: noise.PairedNoise | None = None  # the paired protocol's pooled paired noise

    @property
    def noise_std(self) -> float | None:
        """The protocol's noise: the pooled seed std from scratch, the pooled paired std when paired."""
        return self.noise.std if self.protocol == SCRATCH else self.paired.std if self.paired else None

    @property
    def noise_df(self) -> int:
        return self.noise.df if self.protocol == SCRATCH else self.paired.df if self.paired else 0

    @property
    def largest_delta(self) -> float | None:
        """The largest distance of a candidate's mean from the baseline's (paired: of its mean paired delta)."""
        control = next((r for r in self.rows if r.baseline), None)
        if control is None or control.mean is None:
            return None
        if self.protocol == SCRATCH:
            deltas = [r.mean - control.mean for r in self.rows if not r.baseline and r.mean is not None]
        else:
            deltas = [r.delta for r in self.rows if not r.baseline and r.delta is not None]
        return max((abs(d) for d in deltas), default=None)

    @property
    def ranking_icc(self) -> tuple[str, float | None]:
        """The ICC the verdict reads: one-way from scratch; with seeds as blocks when paired."""
        return ("ICC", self.icc) if self.protocol == SCRATCH else ("paired ICC", self.paired_icc)

    def verdict(self) -> str:
        """One line in words: do the candidates stand above the seeds, and what to do when they do not."""
        name, icc = self.ranking_icc
        if icc is None:
            return ("no verdict: the check needs two candidates with finished seeds (and some difference "
                    "between them); run it again to finish its trials")
        if icc >= ICC_THRESHOLD:
            found = f"; the study's seeds find differences of {self.detectable:.2f} pts" \
                if self.detectable is not None else ""
            return f"the proxy ranks above its noise ({name} {icc:.2f} >= {ICC_THRESHOLD}){found}"
        head, join = f"seeds decide this ranking ({name} {icc:.2f} < {ICC_THRESHOLD})", ": "
        if (largest := self.largest_delta) is not None and self.detectable is not None and largest < self.detectable:
            # What the study can say as it is: its candidates differ from the baseline by less than it can find.
            head += (f"; the candidates lie within {largest:.2f} pts of the baseline, under the "
                     f"{self.detectable:.2f} pts the study's seeds find at {POWER:.0%} power (expect within noise)")
            join = "; to rank them, "
        if self.repeats_needed is None:
            if self.difference is None or not self.noise_std:
                return f"{head}{join}make the proxy more stable (more epochs, more data)"
            return (f"{head}{join}even {MOST_REPEATS} repeats would not find {self.difference:.2f} pts; make the "
                    "proxy more stable (more epochs, more data)")
        if self.repeats_needed > self.repeats:
            return f"{head}{join}raise [budget] repeats to {self.repeats_needed}, or make the proxy more stable"
        return (f"{head}: [budget] repeats = {self.repeats} finds {self.difference:.2f} pts, smaller "
                "differences need more seeds or a more stable proxy")

    def to_dict(self) -> dict[str, Any]:
        d = {
            "study": self.study, "check_study": self.check_study, "longer_study": self.longer_study,
            "storage": self.storage, "seeds": self.seeds, "trained_this_run": self.trained,
            "candidates": [r.to_dict(paired=self.protocol == PAIRED) for r in self.rows],
            "pooled_std": self.noise.std, "pooled_df": self.noise.df, "spread": self.spread,
            "icc": self.icc, "icc_threshold": ICC_THRESHOLD,
            "study_repeats": self.repeats, "study_baseline_repeats": self.baseline_repeats, "power": POWER,
            "detectable_difference": self.detectable, "difference": self.difference,
            "difference_from": self.difference_from, "repeats_needed": self.repeats_needed,
            "largest_delta": self.largest_delta,
            "longer_factor": self.factor, "longer_epochs": self.longer_epochs,
            "spearman": self.spearman, "kendall": self.kendall,
            "missing": list(self.missing), "verdict": self.verdict(),
        }
        d |= {"protocol": self.protocol, "noise_std": self.noise_std, "noise_df": self.noise_df,
              "paired_icc": self.paired_icc}
        if self.paired is not None:
            d |= {"paired_rows": self.paired.rows, "paired_seeds": self.paired.seeds,
                  "paired_left_out": self.paired.left_out}
        return d


def check_json(results: Sequence[CheckResult], protocol: str, trained: int) -> dict[str, Any]:
    """The check's JSON: the scratch protocol's figures at the top level, as before the paired protocol (when
    it was measured), and every protocol measured under `protocols`."""
    scratch = next((r for r in results if r.protocol == SCRATCH), None)
    top = scratch.to_dict() if scratch is not None else {
        "study": results[0].study, "storage": results[0].storage, "seeds": results[0].seeds}
    top["trained_this_run"] = trained
    for r in results:
        r.trained = trained
    top["protocol"] = protocol
    top["protocols"] = {r.protocol: r.to_dict() for r in results}
    return top


def read_check(storage: str, plan: CheckPlan, difference: float | None = None) -> list[CheckResult]:
    """Each protocol's figures from the check's studies in `storage`, scratch first. `difference`: the one
    `repeats_needed` is asked about, in accuracy points (default: the protocol's spread)."""
    check_difference(difference)
    results = []
    with Reader(storage) as reader:
        where = reader.storage
        for protocol in plan.protocols:
            check, longer = plan.studies(protocol)
            rows = _rows(reader, check.name, plan, plan.seeds)
            if longer is not None:
                found = {r.key: r for r in _rows(reader, longer.name, plan, longer.repeats)}
                for row in rows:
                    if row.key in found:
                        row.longer, row.longer_by_seed = found[row.key].mean, found[row.key].by_seed
            result = figures(rows, plan, difference, protocol)
            result.storage = where
            results.append(result)
    return results


def check_difference(difference: float | None) -> None:
    """InputError (exit 2) for a difference that is not a positive number of points."""
    if difference is not None and not (math.isfinite(difference) and difference > 0):
        raise InputError(f"--difference: expected a positive number of accuracy points, got {difference}")


def figures(rows: list[CheckRow], plan: CheckPlan, difference: float | None = None, protocol: str = SCRATCH
            ) -> CheckResult:
    """Every figure of `protocol` from the rows (their accuracies by seed, and their longer training's)."""
    groups = [r.accuracies for r in rows if r.accuracies]
    pooled = noise.pooled_noise(groups)
    repeats, baseline_repeats = study_repeats(plan.study)
    count = study_candidate_count(plan.study)
    check, longer = plan.studies(protocol)
    paired = None
    if protocol == SCRATCH:
        means = [statistics.fmean(g) for g in groups]
        std = pooled.std
        detectable = noise.detectable_difference(pooled, repeats, baseline_repeats, target=POWER) \
            if std else None
        pairs = [(r.mean, r.longer) for r in rows]
    else:
        paired = _paired(rows)
        means = [r.delta for r in rows if r.delta is not None]
        std = paired.std
        detectable = noise.paired_detectable(paired.std, paired.df, repeats, target=POWER) \
            if paired.std and paired.df >= 1 else None
        pairs = [(r.delta, r.longer_delta) for r in rows]
    spread = statistics.stdev(means) if len(means) >= 2 else None
    wanted = difference if difference is not None else spread
    needed = None
    if wanted is not None and wanted > 0 and std:
        needed = noise.repeats_needed(wanted, std, candidates=count, target=POWER, most=MOST_REPEATS) \
            if protocol == SCRATCH else \
            noise.paired_repeats_needed(wanted, std, candidates=count, target=POWER, most=MOST_REPEATS)
    result = CheckResult(
        study=plan.study.name, check_study=check.name, storage="", seeds=plan.seeds, rows=rows,
        noise=pooled, spread=spread, icc=noise.icc(groups), repeats=repeats, baseline_repeats=baseline_repeats,
        detectable=detectable, difference=wanted, difference_from="spread" if difference is None else "--difference",
        repeats_needed=needed, missing=[r.candidate for r in rows if len(r.accuracies) < plan.seeds],
        protocol=protocol, paired_icc=noise.paired_icc(seed_table(rows)), paired=paired)
    if longer is not None:
        result.longer_study, result.factor = longer.name, plan.factor
        result.longer_epochs = longer.proxy.epochs if protocol == SCRATCH else longer.proxy.finetune_epochs
        result.spearman, result.kendall = agreement(pairs)
    return result


def _paired(rows: Sequence[CheckRow]) -> noise.PairedNoise:
    """Each row's mean paired delta and own paired std against the control (the baseline row), and the pooled
    paired noise of the table."""
    control = next((r for r in rows if r.baseline), None)
    if control is None:
        return noise.paired_noise([], {})
    for row in rows:
        differences = noise.paired_differences(row.by_seed, control.by_seed)
        row.delta = statistics.fmean(differences) if differences else None
        row.delta_std = statistics.stdev(differences) if len(differences) >= 2 and row is not control else None
        longer = noise.paired_differences(row.longer_by_seed, control.longer_by_seed)
        row.longer_delta = statistics.fmean(longer) if longer else None
    return noise.paired_noise([r.by_seed for r in rows if r is not control and r.by_seed], control.by_seed)


def seed_table(rows: Sequence[CheckRow]) -> list[list[float]]:
    """The candidates x seeds table of the rows with the most seeds, on the seeds they all have (a row with a
    failed seed is left out rather than the seed)."""
    seeded = [r.by_seed for r in rows if r.by_seed]
    if not seeded:
        return []
    most = max(len(s) for s in seeded)
    full = [s for s in seeded if len(s) == most]
    common = sorted(set.intersection(*(set(s) for s in full)))
    return [[s[k] for k in common] for s in full]


def agreement(pairs: Sequence[tuple[float | None, float | None]]) -> tuple[float | None, float | None]:
    """Spearman and Kendall between the proxy's scores and the longer training's, over the candidates that have
    both (None with fewer than three, or when one side ranks every candidate equal)."""
    both = [(p, q) for p, q in pairs if p is not None and q is not None]
    if len(both) < 3:
        return None, None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns on a constant input and returns nan: None here
        rho, tau = noise.rank_agreement([p for p, _ in both], [q for _, q in both])
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
                             baseline=not cand.spec.has_blocks, accuracies=list(row.accuracies) if row else [],
                             by_seed=dict(row.by_seed) if row else {}))
    return rows


def _repeat(trial: TrialRecord) -> int:
    repeat = trial.user_attrs.get(Attr.REPEAT)
    return repeat if isinstance(repeat, int) and not isinstance(repeat, bool) else 0

