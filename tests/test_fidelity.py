import numpy as np
import pytest

from bench.fidelity import compare


def test_identical_outputs_are_exact():
    ref = [np.linspace(-3, 3, 100, dtype=np.float32)]
    fid = compare([ref[0].copy()], ref, "fp32")
    assert fid.max_abs_diff == 0.0 and fid.cosine == pytest.approx(1.0) and fid.within_tolerance


def test_small_fp32_noise_passes_and_large_error_is_flagged():
    rng = np.random.default_rng(0)
    ref = [rng.normal(size=(4, 10)).astype(np.float32)]
    assert compare([ref[0] + 1e-6], ref, "fp32").within_tolerance
    bad = compare([ref[0] + 0.1], ref, "fp32")
    assert not bad.within_tolerance and bad.max_abs_diff == pytest.approx(0.1, rel=1e-3)
    assert compare([ref[0] + 0.01], ref, "fp16").within_tolerance  # looser at lower precision


def test_multiple_outputs_are_compared_together():
    ref = [np.ones(3), np.zeros(2)]
    fid = compare([np.ones(3), np.array([0.0, 0.5])], ref, "fp32")
    assert fid.max_abs_diff == pytest.approx(0.5)


def test_nan_and_shape_mismatch():
    ref = [np.ones(4)]
    assert not compare([np.array([1, 1, np.nan, 1.0])], ref, "fp32").within_tolerance
    with pytest.raises(ValueError, match="shape"):
        compare([np.ones(5)], ref, "fp32")
    with pytest.raises(ValueError, match="outputs"):
        compare([np.ones(4), np.ones(4)], ref, "fp32")
