"""The paired design's statistics on data with known distributions: each seed is one trained start shared by
every candidate of that seed (a large effect common to all of them), candidates differ from the control by a
true delta plus their own noise. Checked: the rate of false verdicts (A/A), the power against a 2-sigma
paired difference, that the shared seed effect does not widen any interval, and that one candidate five times
noisier than the rest neither widens the others' intervals nor gets a false verdict more often than 5%."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from gcsearch.report.noise import (
    BETTER,
    WITHIN,
    PairedNoise,
    compare_paired,
    paired_detectable,
    paired_differences,
    paired_icc,
    paired_noise,
    paired_std,
    paired_verdicts,
)

SIMULATIONS = 2000
SEED_EFFECT = 10.0  # the starts differ by this much (std), as the built-in proxy's starts do (80-95%)


def _study(rng: np.random.Generator, deltas: list[float], noise: list[float], seeds: int,
           seed_effect: float = SEED_EFFECT) -> tuple[list[dict[int, float]], dict[int, float]]:
    """Accuracy by seed for each candidate and the control: seed effect + true delta + own noise."""
    shared = rng.normal(0.0, seed_effect, seeds)
    control = {s: 80.0 + shared[s] + rng.normal(0.0, 1.0) for s in range(seeds)}
    candidates = [{s: 80.0 + shared[s] + d + rng.normal(0.0, sd) for s in range(seeds)}
                  for d, sd in zip(deltas, noise, strict=True)]
    return candidates, control


def _upper(rate: float, n: int) -> float:
    return rate + 3 * math.sqrt(rate * (1 - rate) / n)


@pytest.mark.parametrize(("candidates", "seeds", "noisy"), [(1, 3, False), (5, 3, False), (12, 2, False),
                                                           (5, 5, False), (5, 3, True), (12, 3, True)])
def test_equal_candidates_get_a_false_verdict_in_at_most_5_percent_of_studies(candidates: int, seeds: int,
                                                                              noisy: bool) -> None:
    rng = np.random.default_rng(candidates * 100 + seeds + noisy)
    noise = [5.0 if noisy and i == 0 else 1.0 for i in range(candidates)]
    false_studies = false_noisy = 0
    for _ in range(SIMULATIONS):
        cands, control = _study(rng, [0.0] * candidates, noise, seeds)
        verdicts = [c.verdict for c in paired_verdicts(cands, control)]
        false_studies += any(v != WITHIN for v in verdicts)
        false_noisy += verdicts[0] != WITHIN
    rate = false_studies / SIMULATIONS
    print(f"A/A paired, {candidates} candidates x {seeds} seeds{', one 5x noisier' if noisy else ''}: "
          f"{rate:.1%} of studies, noisy one {false_noisy / SIMULATIONS:.1%}")
    assert rate <= _upper(0.05, SIMULATIONS)
    assert false_noisy / SIMULATIONS <= _upper(0.05, SIMULATIONS)


def _power(rng: np.random.Generator, seeds: int, others: int, noisy: bool) -> tuple[float, float]:
    """How often a candidate truly 2 paired sigmas above the control is called better, and its mean interval
    half-width; `others` equal candidates beside it, the first of them 5x noisier when `noisy`."""
    sigma = math.sqrt(2.0)  # the std of a paired difference: candidate noise 1 and control noise 1
    hits, widths = 0, []
    for _ in range(SIMULATIONS):
        noise = [1.0] + [5.0 if noisy and i == 0 else 1.0 for i in range(others)]
        cands, control = _study(rng, [2.0 * sigma] + [0.0] * others, noise, seeds)
        first = paired_verdicts(cands, control)[0]
        hits += first.verdict == BETTER
        widths.append((first.high - first.low) / 2)
    return hits / SIMULATIONS, float(np.median(widths))


def test_power_against_a_two_sigma_paired_difference() -> None:
    """A candidate 2 paired sigmas better than the control, beside 4 equal ones: 3 seeds find it in about 40% of
    studies, 5 seeds in about 65% (the price of judging a candidate with its own variance whenever that is the
    larger one; a t test on the pooled table alone would reach about 65% and 94%)."""
    power3, _ = _power(np.random.default_rng(7), 3, 4, noisy=False)
    power5, _ = _power(np.random.default_rng(8), 5, 4, noisy=False)
    print(f"power, paired 2 sigma beside 4 equal candidates: 3 seeds {power3:.1%}, 5 seeds {power5:.1%}")
    assert power3 >= 0.33 and power5 >= 0.58


def test_one_noisy_candidate_does_not_widen_the_others_intervals() -> None:
    """The candidate 5x noisier is left out of the pool (or keeps its own variance): the others' intervals stay
    about as they were (a pool that kept it would carry its 25x variance into every interval)."""
    calm_power, calm_width = _power(np.random.default_rng(9), 3, 4, noisy=False)
    noisy_power, noisy_width = _power(np.random.default_rng(9), 3, 4, noisy=True)
    print(f"median half-width {calm_width:.2f} -> {noisy_width:.2f} beside a 5x noisier candidate; "
          f"power {calm_power:.1%} -> {noisy_power:.1%}")
    assert noisy_width <= 1.25 * calm_width
    assert noisy_power >= calm_power - 0.12


def test_a_seed_effect_shared_by_every_candidate_cancels_exactly() -> None:
    rng = np.random.default_rng(11)
    cands, control = _study(rng, [0.5, 0.0, -0.5], [1.0, 1.0, 1.0], 3, seed_effect=0.0)
    shift = {0: 15.0, 1: -12.0, 2: 3.0}  # the same candidates on starts of very different quality
    moved = [{s: v + shift[s] for s, v in c.items()} for c in cands]
    moved_control = {s: v + shift[s] for s, v in control.items()}
    before, after = paired_verdicts(cands, control), paired_verdicts(moved, moved_control)
    for a, b in zip(before, after, strict=True):
        assert (a.delta, a.low, a.high) == pytest.approx((b.delta, b.low, b.high), abs=1e-9)


def test_the_pool_is_the_two_way_tables_residual_and_a_noisier_candidate_keeps_its_own() -> None:
    control = {0: 90.0, 1: 80.0, 2: 85.0}
    a = {0: 91.0, 1: 81.5, 2: 85.5}  # differences 1.0, 1.5, 0.5
    b = {0: 89.0, 1: 80.0, 2: 86.0}  # differences -1.0, 0.0, 1.0
    noise = paired_noise([a, b], control)
    table = np.array([[90, 80, 85], [91, 81.5, 85.5], [89, 80, 86]])
    residual = table - table.mean(1, keepdims=True) - table.mean(0, keepdims=True) + table.mean()
    assert noise.df == 4 and noise.rows == 3 and noise.left_out == 0
    assert noise.std == pytest.approx(math.sqrt(2 * (residual ** 2).sum() / 4))
    c = compare_paired([1.0, 1.5, 0.5], noise)
    half = stats.t.ppf(0.975, 4) * noise.std / math.sqrt(3)
    assert (c.delta, c.low, c.high) == pytest.approx((1.0, 1.0 - half, 1.0 + half))
    wild = [5.0, -4.0, 2.0]  # own variance far above the pool's: its own std, on its own 2 df
    assert paired_std(wild, noise) == (pytest.approx(math.sqrt(np.var(wild, ddof=1))), 2)
    one_seed = compare_paired([2.5], noise)  # no variance of its own: the pool's, on its df
    assert one_seed.high - one_seed.low == pytest.approx(2 * stats.t.ppf(0.975, 4) * noise.std)
    assert paired_noise([{0: 1.0}], {0: 1.0}).std is None


def test_a_candidate_whose_residuals_stand_out_is_left_out_of_the_pool() -> None:
    rng = np.random.default_rng(12)
    control = {s: 80.0 + rng.normal(0, 0.2) for s in range(4)}
    calm = [{s: control[s] + rng.normal(0, 0.2) for s in range(4)} for _ in range(6)]
    wild = {0: control[0] + 6.0, 1: control[1] - 5.0, 2: control[2] + 4.0, 3: control[3] - 6.0}
    with_wild, without = paired_noise([*calm, wild], control), paired_noise(calm, control)
    assert with_wild.left_out == 1 and with_wild.std == pytest.approx(without.std)
    assert PairedNoise(std=None, df=0, rows=0, seeds=0, left_out=0).std is None
def test_paired_differences_icc_and_detectable_difference() -> None:
    assert paired_differences({0: 90.0, 1: 80.0, 2: 70.0}, {0: 89.0, 2: 71.0}) == [1.0, -1.0]
    # rows: candidates, columns: seeds; the seed columns move everyone alike, candidates keep their order
    assert paired_icc([[90, 80, 95], [91, 81, 96], [92, 82, 97]]) == pytest.approx(1.0)
    assert paired_icc([[90, 80], [91, 81, 96]]) is None
    d = paired_detectable(0.2, 10, 3)
    shift = d / (0.2 / math.sqrt(3))
    critical = stats.t.ppf(0.975, 10)
    assert stats.nct.sf(critical, 10, shift) + stats.nct.cdf(-critical, 10, shift) == pytest.approx(0.8, abs=1e-6)
