"""Seed noise and verdicts: is a candidate's accuracy delta against the baseline larger than the seeds' noise?

A proxy trained with another seed lands on another accuracy; a ranking is worth reading only where the
differences stand above that spread. For every candidate this module gives the delta against the baseline,
its 95% interval and a verdict (`better`, `worse`, `within noise`, or `unknown` when nothing measures the
noise), with the verdicts corrected for the number of candidates compared (Holm's step-down method, which
keeps the chance of any false `better`/`worse` in a study at 5% without assuming the comparisons independent).

The interval is Student's t interval on the study's noise estimate: the standard deviation pooled over
every candidate with two or more seeds, with that estimate's degrees of freedom. Pooling, rather than
Welch's interval on each pair's own spread, because a study has few seeds per candidate: three seeds give a
standard deviation that is off by a factor of two either way as often as not, and a Welch interval on 3 + 3
seeds is about twice as wide as the pooled one of a study with ten such candidates. Seed noise is mostly a
property of the proxy (data, schedule, budget) shared by its candidates; a candidate with one seed can only
be judged this way. The cost: a candidate much noisier than the rest gets too narrow an interval, so the
report also shows each candidate's own std.

The paired design (`[proxy] start = "baseline"`) compares per seed: every candidate of seed s fine-tunes from
the same trained start as the block-less control of seed s, so a candidate's delta is the mean over its seeds
of (candidate - control of that seed). The noise is that of a randomized complete block design (two-way
table of candidates x seeds, each seed a block): the residual variance of the additive fit, pooled over the
candidates and the control, so whatever a seed's start does to every candidate alike cancels exactly. Pooling
the residuals of the table, rather than the variances of each candidate's differences, matters: every
difference shares the control's value, so those variances move together and pooling them claims degrees of
freedom the study does not have (in simulation, 7-9% false verdicts instead of 5%). Paired noise is not the
same for every candidate, though (a block that is the identity at insertion stays close to the control; one
that is not, such as SE's sigmoid gate, first recovers from it). So a candidate whose residual variance stands
out (F test at 1%) is left out of the pool, and each candidate is judged with the larger of the pooled std and
its own, keeping its own (few) degrees of freedom when its own is larger: one noisy candidate neither widens
the others' intervals nor gets too narrow an interval of its own. limma's moderated t (Smyth 2004) was
measured too and rejected: with 5-12 candidates its prior is estimated too roughly, and it shrank the noisy
candidate's variance so far that it got 11-13% false verdicts (tests/test_paired_noise.py has the figures).
Torch-free: the report reads a database without loading torch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from scipy import optimize, stats

LEVEL = 0.95
BETTER, WORSE, WITHIN, UNKNOWN = "better", "worse", "within noise", "unknown"


@dataclass(frozen=True)
class Noise:
    """The study's seed noise: the within-candidate standard deviation pooled over candidates with repeats."""

    std: float | None  # None when no candidate has two seeds
    df: int  # degrees of freedom: the sum over those candidates of (seeds - 1)
    groups: int  # candidates that contributed


@dataclass(frozen=True)
class Comparison:
    """One candidate against the baseline."""

    delta: float  # candidate mean - baseline mean
    low: float | None  # the 95% interval of the delta (None when the noise is unknown)
    high: float | None
    p: float | None  # two-sided p-value of "no difference", before correction
    verdict: str = UNKNOWN


def pooled_noise(groups: Sequence[Sequence[float]]) -> Noise:
    """Pool the sample variances of every group with two or more values, weighted by their degrees of freedom."""
    repeated = [g for g in groups if len(g) >= 2]
    df = sum(len(g) - 1 for g in repeated)
    if df == 0:
        return Noise(std=None, df=0, groups=0)
    squares = sum(sum((x - _mean(g)) ** 2 for x in g) for g in repeated)
    return Noise(std=math.sqrt(squares / df), df=df, groups=len(repeated))


def compare(candidate: Sequence[float], baseline: Sequence[float], noise: Noise, level: float = LEVEL
            ) -> Comparison:
    """The delta of means, its `level` interval and the uncorrected p-value, on the study's noise estimate."""
    if not candidate or not baseline:
        raise ValueError("compare needs at least one value on each side")
    delta = _mean(candidate) - _mean(baseline)
    if noise.std is None:
        return Comparison(delta=delta, low=None, high=None, p=None)
    se = noise.std * math.sqrt(1 / len(candidate) + 1 / len(baseline))
    df = noise.df
    if se == 0:  # identical seeds on both sides: any difference is exact, none is no difference
        return Comparison(delta=delta, low=delta, high=delta, p=0.0 if delta else 1.0)
    half = float(stats.t.ppf(0.5 + level / 2, df)) * se
    p = float(2 * stats.t.sf(abs(delta) / se, df))
    return Comparison(delta=delta, low=delta - half, high=delta + half, p=p)


def holm_verdicts(comparisons: Sequence[Comparison], alpha: float = 1 - LEVEL) -> list[Comparison]:
    """The same comparisons with verdicts, Holm-corrected over those that have a p-value.

    Holm: sort the p-values, reject the i-th smallest (0-based) while p <= alpha / (m - i); stop at the first
    that fails. A rejected comparison is `better` or `worse` by the sign of its delta.
    """
    order = sorted((i for i, c in enumerate(comparisons) if c.p is not None), key=lambda i: comparisons[i].p)
    m = len(order)
    rejected: set[int] = set()
    for rank, i in enumerate(order):
        if comparisons[i].p > alpha / (m - rank):
            break
        rejected.add(i)
    out = []
    for i, c in enumerate(comparisons):
        verdict = UNKNOWN if c.p is None else (BETTER if c.delta > 0 else WORSE) if i in rejected else WITHIN
        out.append(Comparison(delta=c.delta, low=c.low, high=c.high, p=c.p, verdict=verdict))
    return out


def verdicts(candidates: Sequence[Sequence[float]], baseline: Sequence[float], noise: Noise | None = None
             ) -> list[Comparison]:
    """Every candidate against the baseline, Holm-corrected. `noise` defaults to the pool of all groups given."""
    if noise is None:
        noise = pooled_noise([*candidates, baseline])
    return holm_verdicts([compare(c, baseline, noise) for c in candidates])


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


# --------------------------------------------------------------------------------------------------------------
# The paired design: differences per seed; the study's paired noise from a two-way table with seeds as blocks.


@dataclass(frozen=True)
class PairedNoise:
    """The study's paired noise: the std of a (candidate - control) difference on one seed, pooled."""

    std: float | None  # None when no two seeds are shared by the control and a candidate
    df: int  # degrees of freedom of the pool: (rows - 1) x (seeds - 1)
    rows: int  # rows of the table pooled, the control included
    seeds: int  # seeds (blocks) of the table
    left_out: int  # candidates whose own variance stood out (F test), left out of the pool


LEAVE_OUT_LEVEL = 0.01  # a row whose residual variance exceeds the rest's at this level is left out of the pool


def paired_differences(values: dict[int, float], control: dict[int, float]) -> list[float]:
    """(candidate - control) for each seed both have, in seed order."""
    return [values[s] - control[s] for s in sorted(values) if s in control]


def _variance(values: Sequence[float]) -> float:
    m = _mean(values)
    return sum((x - m) ** 2 for x in values) / (len(values) - 1)


def _residual_squares(table: Sequence[Sequence[float]]) -> list[float]:
    """Each row's sum of squared residuals of the additive fit row effect + seed effect."""
    k, n = len(table), len(table[0])
    grand = sum(map(sum, table)) / (k * n)
    row_means = [sum(row) / n for row in table]
    col_means = [sum(row[j] for row in table) / k for j in range(n)]
    return [sum((table[i][j] - row_means[i] - col_means[j] + grand) ** 2 for j in range(n)) for i in range(k)]


def paired_noise(candidates: Sequence[dict[int, float]], control: dict[int, float]) -> PairedNoise:
    """The pooled paired noise of a study: the residual variance of the candidates x seeds table (the control
    one of its rows; seeds are blocks, so whatever a seed's start does to every candidate alike cancels),
    doubled for a difference of two rows. Rows are those with every seed of the most common seed set; a row
    whose own residual variance stands out from the rest's (F test at `LEAVE_OUT_LEVEL`, one at a time, the
    control never) is left out, so one noisy candidate does not widen every interval."""
    seed_sets = [tuple(s for s in sorted(c) if s in control) for c in candidates]
    common = max((ss for ss in set(seed_sets) if len(ss) >= 2), key=lambda ss: (seed_sets.count(ss), len(ss)),
                 default=())
    if not common:
        return PairedNoise(std=None, df=0, rows=0, seeds=0, left_out=0)
    table = [[control[s] for s in common]] + [[c[s] for s in common] for c in candidates
                                              if all(s in c for s in common)]
    left_out = 0
    n = len(common)
    while len(table) > 2:
        squares = _residual_squares(table)
        worst = max(range(1, len(table)), key=lambda i: squares[i])
        rest = (sum(squares) - squares[worst]) / ((len(table) - 2) * (n - 1))
        if rest <= 0 or stats.f.sf(squares[worst] / (n - 1) / rest, n - 1, (len(table) - 2) * (n - 1)) >= \
                LEAVE_OUT_LEVEL:
            break
        table.pop(worst)
        left_out += 1
    if len(table) < 2:
        return PairedNoise(std=None, df=0, rows=len(table), seeds=n, left_out=left_out)
    df = (len(table) - 1) * (n - 1)
    return PairedNoise(std=math.sqrt(2 * sum(_residual_squares(table)) / df), df=df, rows=len(table), seeds=n,
                       left_out=left_out)


def paired_std(differences: Sequence[float], noise: PairedNoise) -> tuple[float | None, int]:
    """The std a candidate's differences are judged with, and its degrees of freedom: the study's pooled one,
    unless the candidate's own is larger, which it then keeps, with its own degrees of freedom."""
    own = _variance(differences) if len(differences) >= 2 else None
    if noise.std is None or (own is not None and own > noise.std ** 2):
        return (math.sqrt(own), len(differences) - 1) if own is not None else (None, 0)
    return noise.std, noise.df


def compare_paired(differences: Sequence[float], noise: PairedNoise, level: float = LEVEL) -> Comparison:
    """The mean paired difference, its `level` interval and the uncorrected p-value (Student's t)."""
    if not differences:
        raise ValueError("compare_paired needs at least one paired difference")
    delta = _mean(differences)
    std, df = paired_std(differences, noise)
    if std is None or df < 1:
        return Comparison(delta=delta, low=None, high=None, p=None)
    se = std / math.sqrt(len(differences))
    if se == 0:
        return Comparison(delta=delta, low=delta, high=delta, p=0.0 if delta else 1.0)
    half = float(stats.t.ppf(0.5 + level / 2, df)) * se
    p = float(2 * stats.t.sf(abs(delta) / se, df))
    return Comparison(delta=delta, low=delta - half, high=delta + half, p=p)


def paired_verdicts(candidates: Sequence[dict[int, float]], control: dict[int, float],
                    noise: PairedNoise | None = None) -> list[Comparison]:
    """Every candidate (accuracy by seed) against the control of the same seeds, Holm-corrected."""
    if noise is None:
        noise = paired_noise(candidates, control)
    out = []
    for c in candidates:
        differences = paired_differences(c, control)
        out.append(compare_paired(differences, noise) if differences else Comparison(0.0, None, None, None))
    return holm_verdicts(out)


def paired_icc(table: Sequence[Sequence[float]]) -> float | None:
    """ICC(3,1) of a candidates x seeds table (every candidate on every seed): the share of the variance
    between candidates once each seed's shared effect (its start) is removed; 1 = every seed ranks alike."""
    k, n = len(table), len(table[0]) if table else 0
    if k < 2 or n < 2 or any(len(row) != n for row in table):
        return None
    grand = sum(map(sum, table)) / (k * n)
    row_means = [sum(row) / n for row in table]
    col_means = [sum(row[j] for row in table) / k for j in range(n)]
    ms_rows = n * sum((m - grand) ** 2 for m in row_means) / (k - 1)
    ms_error = sum((table[i][j] - row_means[i] - col_means[j] + grand) ** 2
                   for i in range(k) for j in range(n)) / ((k - 1) * (n - 1))
    denominator = ms_rows + (n - 1) * ms_error
    return (ms_rows - ms_error) / denominator if denominator > 0 else None


def paired_detectable(std: float, df: float, seeds: int, target: float = 0.8, alpha: float = 1 - LEVEL) -> float:
    """The smallest true paired difference found with probability `target` with `seeds` paired seeds, for a
    paired std `std` known to `df` degrees of freedom."""
    if std <= 0 or df < 1:
        raise ValueError("a detectable difference needs a positive std and at least one degree of freedom")
    high = std
    while paired_power(high, std, df, seeds, alpha) < target:
        high *= 2
    return float(optimize.brentq(lambda d: paired_power(d, std, df, seeds, alpha) - target, 0.0, high))


# --------------------------------------------------------------------------------------------------------------
# Is the proxy good enough? Figures for `gcsearch check`: how much of the spread is the candidates', what a
# study's seeds can detect, and whether the proxy ranks as a longer training does.


def icc(groups: Sequence[Sequence[float]]) -> float | None:
    """ICC(1): the share of the accuracy variance that lies between candidates (one-way random effects).

    1 means another set of seeds repeats the ranking exactly; 0 (or below) means the seeds decide it. Groups
    may differ in size (the usual n0 correction). None with fewer than two groups or no repeats.
    """
    groups = [list(g) for g in groups if g]
    total = sum(len(g) for g in groups)
    if len(groups) < 2 or total == len(groups):
        return None
    grand = sum(sum(g) for g in groups) / total
    between = sum(len(g) * (_mean(g) - grand) ** 2 for g in groups) / (len(groups) - 1)
    within = sum(sum((x - _mean(g)) ** 2 for x in g) for g in groups) / (total - len(groups))
    n0 = (total - sum(len(g) ** 2 for g in groups) / total) / (len(groups) - 1)
    denominator = between + (n0 - 1) * within
    return (between - within) / denominator if denominator > 0 else None


def power(difference: float, noise: Noise, n_candidate: int, n_baseline: int, alpha: float = 1 - LEVEL) -> float:
    """The chance that a true `difference` gets a `better` verdict from the two-sided test at level alpha."""
    if noise.std is None or noise.df < 1:
        raise ValueError("power needs a noise estimate")
    se = noise.std * math.sqrt(1 / n_candidate + 1 / n_baseline)
    critical = float(stats.t.ppf(1 - alpha / 2, noise.df))
    shift = difference / se
    return float(stats.nct.sf(critical, noise.df, shift) + stats.nct.cdf(-critical, noise.df, shift))


def detectable_difference(noise: Noise, n_candidate: int, n_baseline: int, target: float = 0.8,
                          alpha: float = 1 - LEVEL) -> float:
    """The smallest true difference found with probability `target` (80% power) by these seed counts."""
    if noise.std is None or noise.std == 0:
        raise ValueError("a detectable difference needs a positive noise estimate")
    high = noise.std
    while power(high, noise, n_candidate, n_baseline, alpha) < target:
        high *= 2
    return float(optimize.brentq(lambda d: power(d, noise, n_candidate, n_baseline, alpha) - target, 0.0, high))


def repeats_needed(difference: float, std: float, candidates: int = 1, target: float = 0.8,
                   alpha: float = 1 - LEVEL, most: int = 256) -> int | None:
    """Seeds per candidate (baseline included) at which a true `difference` reaches `target` power, when the
    noise is estimated from `candidates` + 1 groups of that many seeds. None when `most` seeds do not do."""
    if difference <= 0 or std <= 0:
        raise ValueError("repeats_needed needs a positive difference and a positive std")
    for n in range(2, most + 1):
        noise = Noise(std=std, df=(candidates + 1) * (n - 1), groups=candidates + 1)
        if power(difference, noise, n, n, alpha) >= target:
            return n
    return None


def rank_agreement(proxy: Sequence[float], longer: Sequence[float]) -> tuple[float, float]:
    """Spearman's rho and Kendall's tau between two scorings of the same candidates."""
    if len(proxy) != len(longer) or len(proxy) < 3:
        raise ValueError("rank agreement needs the same three or more candidates on both sides")
    return float(stats.spearmanr(proxy, longer).statistic), float(stats.kendalltau(proxy, longer).statistic)


def paired_power(difference: float, std: float, df: float, seeds: int, alpha: float = 1 - LEVEL) -> float:
    """The chance that a true paired `difference` is found by the two-sided paired t test with `seeds` seeds, for
    a paired std `std` known to `df` degrees of freedom."""
    if std <= 0 or df < 1:
        raise ValueError("paired power needs a positive std and at least one degree of freedom")
    critical = float(stats.t.ppf(1 - alpha / 2, df))
    shift = difference / (std / math.sqrt(seeds))
    value = float(stats.nct.sf(critical, df, shift) + stats.nct.cdf(-critical, df, shift))
    return value if math.isfinite(value) else float(shift > critical)  # scipy's nct fails far out


def paired_repeats_needed(difference: float, std: float, candidates: int = 1, target: float = 0.8,
                          alpha: float = 1 - LEVEL, most: int = 256) -> int | None:
    """Paired seeds per candidate at which a true `difference` reaches `target` power, when the paired std is
    pooled from a table of `candidates` + 1 rows (the control one of them) on that many seeds, as
    `paired_noise` pools it. None when `most` seeds do not do."""
    if difference <= 0 or std <= 0:
        raise ValueError("paired_repeats_needed needs a positive difference and a positive std")
    for n in range(2, most + 1):
        if paired_power(difference, std, candidates * (n - 1), n, alpha) >= target:
            return n
    return None
