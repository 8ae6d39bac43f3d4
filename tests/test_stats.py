import numpy as np
import pytest

from bench.stats import LatencyStats


def test_percentiles_match_numpy_linear_interpolation():
    samples = tuple(float(x) for x in np.random.default_rng(0).lognormal(1.0, 0.5, 501))
    stats = LatencyStats(samples)
    for q, value in ((50, stats.p50), (90, stats.p90), (99, stats.p99)):
        assert value == pytest.approx(np.percentile(samples, q))
    assert stats.min == min(samples) and stats.max == max(samples)
    assert stats.mean == pytest.approx(np.mean(samples))
    assert stats.std == pytest.approx(np.std(samples, ddof=1))
    assert stats.count == 501


def test_known_values():
    stats = LatencyStats((1.0, 2.0, 3.0, 4.0, 10.0))
    assert stats.p50 == 3.0
    assert stats.p90 == pytest.approx(7.6)
    assert stats.iqr == pytest.approx(2.0)


def test_throughput_is_items_per_second_over_mean_latency():
    stats = LatencyStats((10.0, 30.0))  # mean 20 ms
    assert stats.throughput(batch=1) == pytest.approx(50.0)
    assert stats.throughput(batch=8) == pytest.approx(400.0)


def test_single_sample_has_zero_std_and_empty_is_rejected():
    assert LatencyStats((5.0,)).std == 0.0
    with pytest.raises(ValueError):
        LatencyStats(())
