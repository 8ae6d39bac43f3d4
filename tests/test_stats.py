"""Statistics over kept samples, on sets where the usual definitions give different answers."""

import numpy as np
import pytest

from bench.measure.stats import LatencyStats

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
