"""Statistics over kept samples, on sets where the usual definitions give different answers."""

import numpy as np
import pytest

from edgebench.bench.measure.stats import (
    LatencyStats,
    _bootstrap_medians,
    accuracies_differ,
    interval_coverage,
    median_interval,
    order_statistic_interval,
    ratio_interval,
    widen,
)

# Percentile definitions disagree on these samples. Linear interpolation (numpy's default, pytest-benchmark's)
# gives p50 4.5 on SAMPLES ('lower'/'nearest' 4, 'higher' 5) and p75/p90/p99 15/28/38.8 on SKEWED
# ('lower' 10/20/20, 'higher' 20/40/40, 'midpoint' 15/30/30, 'nearest' 10/20/40, 'hazen' 17.5/36/40).
SAMPLES = (1.0, 2.0, 4.0, 5.0, 10.0, 20.0)
SKEWED = (1.0, 2.0, 4.0, 7.0, 10.0, 20.0, 40.0)


def test_percentiles_are_linear_interpolation():
    assert LatencyStats(SAMPLES).p50 == pytest.approx(4.5)
    stats = LatencyStats(SKEWED)
    assert (stats.p50, stats.p90, stats.p99) == pytest.approx((7.0, 28.0, 38.8))
    assert stats.percentile(75) == pytest.approx(15.0)
    assert stats.iqr == pytest.approx(15.0 - 3.0)


def test_percentiles_match_numpy_on_a_long_tail():
    samples = tuple(float(x) for x in np.random.default_rng(0).lognormal(1.0, 0.5, 501))
    stats = LatencyStats(samples)
    for q, value in ((50, stats.p50), (90, stats.p90), (99, stats.p99)):
        assert value == pytest.approx(np.percentile(samples, q))
    assert stats.count == 501


def test_moments_and_extremes():
    stats = LatencyStats(SAMPLES)
    assert stats.mean == pytest.approx(7.0)
    assert stats.std == pytest.approx(np.sqrt(252 / 5))  # sample std (ddof=1); ddof=0 would give sqrt(252/6)
    assert (stats.min, stats.max) == (1.0, 20.0)
    assert stats.count == 6


def test_throughput_is_items_per_second_over_mean_latency():
    stats = LatencyStats((10.0, 30.0))  # mean 20 ms, median 20 ms
    assert stats.throughput(batch=1) == pytest.approx(50.0)
    assert stats.throughput(batch=8) == pytest.approx(400.0)
    skewed = LatencyStats((10.0, 10.0, 40.0))  # mean 20 ms, median 10 ms: throughput follows the mean
    assert skewed.throughput(batch=2) == pytest.approx(100.0)


def test_single_sample_has_zero_std_and_empty_is_rejected():
    assert LatencyStats((5.0,)).std == 0.0
    assert LatencyStats((5.0, 7.0)).std == pytest.approx(np.sqrt(2.0))
    with pytest.raises(ValueError, match="^LatencyStats needs at least one sample$"):
        LatencyStats(())


# Intervals: each is the stated share of its bootstrap distribution, seeded, and sees what it claims to see.

def _rounds(seed: int, centres=(10.0, 10.0, 10.0), n: int = 150, sd: float = 0.5) -> list[list[float]]:
    rng = np.random.default_rng(seed)
    return [list(rng.normal(c, sd, n)) for c in centres]


def test_the_median_interval_is_the_central_share_of_its_bootstrap_medians():
    rounds = _rounds(1)
    medians = _bootstrap_medians(rounds, np.random.default_rng(0))
    assert median_interval(rounds) == pytest.approx(tuple(np.quantile(medians, [0.025, 0.975])))
    assert median_interval(rounds, confidence=0.5) == pytest.approx(tuple(np.quantile(medians, [0.25, 0.75])))
    assert median_interval(rounds) == median_interval(rounds, seed=0) != median_interval(rounds, seed=1)


def test_the_unpaired_ratio_interval_is_the_central_share_of_bootstrapped_median_ratios():
    base, row = _rounds(2, (20.0,) * 3), _rounds(3)
    rng = np.random.default_rng(0)
    ratios = _bootstrap_medians(base, rng) / _bootstrap_medians(row, rng)
    ratio, low, high = ratio_interval(base, row)
    assert ratio == pytest.approx(np.median(np.concatenate(base)) / np.median(np.concatenate(row)))
    assert (low, high) == pytest.approx(tuple(np.quantile(ratios, [0.025, 0.975])))
    assert ratio_interval(base, row) == ratio_interval(base, row, seed=0) != ratio_interval(base, row, seed=1)


def test_the_paired_ratio_is_the_median_of_cycle_ratios_with_its_sign_test_interval():
    """Nine cycles whose ratios are 1.2 ... 2.8 (within-round noise tiny): the speed-up is the middle cycle's,
    and the 95% interval runs from the 2nd to the 8th (96.1%), which a cycle's own samples cannot move."""
    ks = (1.2, 1.4, 1.6, 1.8, 2.0, 2.2, 2.4, 2.6, 2.8)
    base = _rounds(4, (20.0,) * len(ks), sd=0.01)
    row = [list(np.asarray(r) / k) for r, k in zip(base, ks, strict=True)]
    shuffled = [list(np.random.default_rng(9).permutation(r)) for r in row]  # not sample-for-sample copies
    ratio, low, high = ratio_interval(base, shuffled, paired=True)
    assert ratio == pytest.approx(2.0, rel=1e-3)
    assert low == pytest.approx(1.4, rel=0.01) and high == pytest.approx(2.6, rel=0.01)
    assert order_statistic_interval(ks)[3] == pytest.approx(1 - 2 * 10 / 512)


@pytest.mark.parametrize("cycles,coverage", [(3, 0.75), (6, 0.96875), (8, 0.9921875), (9, 0.9609375)])
def test_the_sign_test_interval_holds_the_median_as_often_as_it_says(cycles, coverage):
    """Coverage measured, not assumed: 4,000 sets of skewed cycle ratios whose true median is 1."""
    rng = np.random.default_rng(cycles)
    values = np.exp(rng.standard_t(3, size=(4000, cycles)) * 0.05)
    held = [low <= 1 <= high for _, low, high, _ in map(order_statistic_interval, values)]
    assert interval_coverage(cycles) == pytest.approx(coverage)
    assert np.mean(held) == pytest.approx(coverage, abs=0.015)


def test_the_floor_widens_an_interval_so_a_ratio_within_it_holds_x1():
    assert widen(1.01, 1.005, 1.015, 0.0) == (1.005, 1.015)
    low, high = widen(1.015, 1.012, 1.018, 0.02)  # a tight interval, a ratio inside the ±2% floor
    assert low < 1 < high
    low, high = widen(1.10, 1.09, 1.11, 0.02)  # a real 10% effect stays beyond it
    assert 1.06 < low < 1.09 and 1.11 < high < 1.14
    assert ratio_interval([[10.0]] * 8, [[9.85]] * 8, paired=True, floor=0.02)[1] < 1
    assert ratio_interval([[10.0]] * 8, [[9.85]] * 8, paired=True)[1] > 1


def test_the_capped_bootstrap_keeps_the_spread_of_a_median_of_the_whole_round():
    """Rounds of 6,000 samples, no round-to-round change: the interval's width is within sqrt(2) of the true
    spread of the median over 8 x 6,000 samples (the m-out-of-n cap once made it 3.5x too wide; the sqrt(2)
    is the two-level bootstrap's own: each round's median already varies by its samples' noise, and
    resampling within rounds counts that once more), and it holds the true median at least 95 times in 100."""
    rng = np.random.default_rng(3)
    truth = np.log(2.0)  # the median of a lognormal(0, 1) is 1: samples are 1 + lognormal, median 2
    widths, held = [], []
    for _ in range(60):
        rounds = [list(1 + rng.lognormal(0, 1, 6000)) for _ in range(8)]
        low, high = median_interval(rounds, seed=int(rng.integers(1 << 30)))
        widths.append(high - low)
        held.append(low <= np.exp(truth) <= high)
    medians = [np.median(1 + rng.lognormal(0, 1, 48000)) for _ in range(300)]
    true_width = np.subtract(*np.quantile(medians, [0.975, 0.025]))
    assert 0.9 < np.median(widths) / true_width < 1.5
    assert np.mean(held) >= 0.95


def test_a_paired_ratio_needs_samples_in_every_round():
    with pytest.raises(ValueError, match="samples in every round"):
        ratio_interval([[1.0], [1.0]], [[1.0], []], paired=True)
    with pytest.raises(ValueError, match="at least one sample"):
        median_interval([[], []])


@pytest.mark.parametrize("a,b,differ", [
    ((100, 200), (62, 100), True),  # z = 1.97: just beyond 1.96, on unequal test sets
    ((100, 200), (61, 100), False),  # z = 1.80
    ((84, 200), (54, 100), True),  # z = 1.966: the threshold is 1.96 itself, not a rounder number near it
    ((109, 200), (159, 250), False),  # z = 1.955
    ((62, 100), (100, 200), True),  # symmetric
    ((90, 200), (60, 100), True),  # z = 2.45
    ((200, 200), (100, 100), False),  # both perfect: no spread, no difference
])
def test_accuracies_differ_is_a_two_proportion_z_test_at_95_percent(a, b, differ):
    assert accuracies_differ(a, b) is differ


@pytest.mark.parametrize("n", [1, 2, 3, 10, 41, 200])
def test_the_sign_tests_binomial_is_scipys(n):
    """The harness computes the sign test's binomial itself (scipy.stats cost 1.3 s of every run's start):
    exactly what scipy says, for every k including the ends."""
    from scipy.stats import binom

    from edgebench.bench.measure.stats import fair_binomial_cdf

    for k in range(-1, n + 1):
        assert fair_binomial_cdf(k, n) == pytest.approx(binom.cdf(k, n, 0.5), rel=1e-12, abs=1e-300)
