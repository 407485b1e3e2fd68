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
