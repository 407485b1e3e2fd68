"""Seed noise and verdicts on data with known distributions: the rate of false verdicts, the power, and the
arithmetic of the interval and of Holm's correction."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from gcsearch.report.noise import (
    BETTER,
    UNKNOWN,
    WITHIN,
    WORSE,
    Comparison,
    Noise,
    compare,
    detectable_difference,
    holm_verdicts,
    icc,
    pooled_noise,
    power,
    rank_agreement,
    repeats_needed,
    verdicts,
)

SIMULATIONS = 2000


def _simulate(candidates: int, seeds: int, baseline_seeds: int, shift: float, rng: np.random.Generator
              ) -> list[list[str]]:
    """Verdicts of `SIMULATIONS` studies: the first candidate's true accuracy is `shift` sigmas above the
    baseline's, the others' equal to it."""
    out = []
    for _ in range(SIMULATIONS):
        baseline = rng.normal(0.0, 1.0, baseline_seeds).tolist()
        groups = [rng.normal(shift if i == 0 else 0.0, 1.0, seeds).tolist() for i in range(candidates)]
        out.append([c.verdict for c in verdicts(groups, baseline)])
    return out


def _upper(rate: float, n: int) -> float:
    """The largest observed rate that three binomial standard errors allow above a true `rate`."""
    return rate + 3 * math.sqrt(rate * (1 - rate) / n)


@pytest.mark.parametrize(("candidates", "seeds", "baseline_seeds"), [(1, 3, 3), (1, 5, 5), (4, 3, 3), (12, 1, 3)])
def test_equal_candidates_get_a_verdict_other_than_within_noise_at_most_5_percent_of_the_time(
        candidates: int, seeds: int, baseline_seeds: int) -> None:
    runs = _simulate(candidates, seeds, baseline_seeds, 0.0, np.random.default_rng(0))
    studies_with_a_false_verdict = sum(any(v != WITHIN for v in run) for run in runs) / SIMULATIONS
    # Holm keeps the family-wise rate at 5%: the chance of any false verdict in a whole study.
    assert studies_with_a_false_verdict <= _upper(0.05, SIMULATIONS)
    false = sum(v != WITHIN for run in runs for v in run) / (SIMULATIONS * candidates)
    print(f"A/A, {candidates} candidates x {seeds} seeds, baseline {baseline_seeds}: {false:.1%} of verdicts, "
          f"{studies_with_a_false_verdict:.1%} of studies")


def test_power_against_two_sigmas_with_five_seeds_each_is_the_t_tests_own() -> None:
    """A two-sided test at 5% cannot find a 2-sigma difference with 5 + 5 seeds more often than Student's t
    test does (it is the most powerful unbiased test when the noise must be estimated): 79.05%."""
    runs = _simulate(1, 5, 5, 2.0, np.random.default_rng(1))
    power = sum(run[0] == BETTER for run in runs) / SIMULATIONS
    df, shift = 8, 2.0 / math.sqrt(2 / 5)
    critical = stats.t.ppf(0.975, df)
    theory = float(stats.nct.sf(critical, df, shift) + stats.nct.cdf(-critical, df, shift))
    assert theory == pytest.approx(0.7905, abs=1e-3)
    assert abs(power - theory) <= 3 * math.sqrt(theory * (1 - theory) / SIMULATIONS)
    print(f"power, 2 sigma, 5 + 5 seeds: {power:.1%} (theory {theory:.1%})")


def test_power_against_two_sigmas_reaches_80_percent_with_six_seeds_each() -> None:
    runs = _simulate(1, 6, 6, 2.0, np.random.default_rng(2))
    power = sum(run[0] == BETTER for run in runs) / SIMULATIONS
    assert power >= 0.80
    print(f"power, 2 sigma, 6 + 6 seeds: {power:.1%}")


def test_pooled_noise_weights_each_candidate_by_its_degrees_of_freedom() -> None:
    noise = pooled_noise([[1.0, 3.0], [10.0, 10.0, 16.0], [5.0]])  # sums of squares 2 and 24; df 1 and 2
    assert noise.df == 3 and noise.groups == 2
    assert noise.std == pytest.approx(math.sqrt(26 / 3))
    assert pooled_noise([[1.0], [2.0]]).std is None


def test_the_interval_is_students_on_the_pooled_noise() -> None:
    noise = pooled_noise([[0.0, 2.0], [4.0, 6.0]])  # std sqrt(2), 2 df
    c = compare([4.0, 6.0], [0.0, 2.0], noise)
    se = math.sqrt(2) * math.sqrt(1 / 2 + 1 / 2)
    half = stats.t.ppf(0.975, 2) * se
    assert (c.delta, c.low, c.high) == pytest.approx((4.0, 4.0 - half, 4.0 + half))
    assert c.p == pytest.approx(2 * stats.t.sf(4.0 / se, 2))


def test_a_single_seed_candidate_borrows_the_studys_noise_and_no_noise_means_unknown() -> None:
    noise = pooled_noise([[0.0, 1.0, 2.0]])
    assert compare([5.0], [0.0, 1.0, 2.0], noise).low is not None
    [unknown] = verdicts([[5.0]], [1.0])
    assert unknown.verdict == UNKNOWN and unknown.low is None and unknown.delta == 4.0


def test_holm_rejects_step_down_and_stops_at_the_first_failure() -> None:
    ps = [0.01, 0.04, 0.03, 0.005]  # sorted: 0.005 <= .05/4, 0.01 <= .05/3, 0.03 > .05/2: stop
    deltas = [1.0, 1.0, -1.0, -1.0]
    out = holm_verdicts([Comparison(delta=d, low=None, high=None, p=p) for d, p in zip(deltas, ps, strict=True)])
    assert [c.verdict for c in out] == [BETTER, WITHIN, WITHIN, WORSE]
    assert holm_verdicts([Comparison(1.0, None, None, None)])[0].verdict == UNKNOWN


def test_icc_is_one_when_seeds_agree_and_about_zero_when_they_decide() -> None:
    assert icc([[1.0, 1.0, 1.0], [5.0, 5.0, 5.0], [9.0, 9.0, 9.0]]) == pytest.approx(1.0)
    assert icc([[0.0, 2.0], [0.0, 2.0], [0.0, 2.0]]) == pytest.approx(-1 / 1)  # means equal: (0 - 2) / (0 + 2)
    rng = np.random.default_rng(3)
    noise_only = [rng.normal(0, 1, 3).tolist() for _ in range(200)]
    assert abs(icc(noise_only)) < 0.1
    # between-candidate variance 4, within 1: ICC 0.8
    spread = [(rng.normal(0, 2) + rng.normal(0, 1, 30)).tolist() for _ in range(300)]
    assert icc(spread) == pytest.approx(0.8, abs=0.04)
    assert icc([[1.0], [2.0]]) is None and icc([[1.0, 2.0]]) is None


def test_icc_matches_the_anova_formula_with_unequal_groups() -> None:
    groups = [[1.0, 2.0, 3.0], [4.0, 6.0], [7.0, 7.5, 8.0, 9.0]]
    total = 9
    grand = sum(map(sum, groups)) / total
    msb = sum(len(g) * (np.mean(g) - grand) ** 2 for g in groups) / 2
    msw = sum(((np.array(g) - np.mean(g)) ** 2).sum() for g in groups) / (total - 3)
    n0 = (total - (9 + 4 + 16) / total) / 2
    assert icc(groups) == pytest.approx((msb - msw) / (msb + (n0 - 1) * msw))


def test_power_detectable_difference_and_repeats_agree() -> None:
    noise = Noise(std=1.0, df=8, groups=2)
    assert power(2.0, noise, 5, 5) == pytest.approx(0.7905, abs=1e-3)
    assert power(0.0, noise, 5, 5) == pytest.approx(0.05)
    smallest = detectable_difference(noise, 5, 5)
    assert smallest > 2.0 and power(smallest, noise, 5, 5) == pytest.approx(0.8, abs=1e-6)
    assert repeats_needed(2.0, 1.0) == 6  # 5 seeds give 79%
    assert repeats_needed(1.0, 1.0) > repeats_needed(2.0, 1.0)
    assert repeats_needed(0.01, 1.0, most=8) is None


def test_rank_agreement_is_spearman_and_kendall() -> None:
    assert rank_agreement([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx((1.0, 1.0))
    assert rank_agreement([1, 2, 3, 4], [40, 30, 20, 10]) == pytest.approx((-1.0, -1.0))
    rho, tau = rank_agreement([1, 2, 3, 4], [1, 3, 2, 4])
    assert rho == pytest.approx(0.8) and tau == pytest.approx(4 / 6)
