"""Fidelity is judged at each row's own precision, just inside and just outside each limit."""

import numpy as np
import pytest

from edgebench.bench.measure.fidelity import TOLERANCES, compare

PEAK = 1000.0  # the largest |reference| value: tolerances are relative to it


def reference(scale: float = 1.0) -> np.ndarray:
    rng = np.random.default_rng(0)
    ref = rng.choice([-1.0, 1.0], size=10_000) * rng.uniform(0.5, 1.0, size=10_000)
    ref[0] = PEAK
    return ref * scale


def with_max_diff(ref: np.ndarray, diff: float) -> np.ndarray:
    """`ref` with its peak moved by `diff`: max abs diff is exactly `diff`, cosine barely moves."""
    out = ref.copy()
    out[0] += diff
    return out


def with_cosine(ref: np.ndarray, cosine: float) -> np.ndarray:
    """`ref` plus a perturbation orthogonal to it, spread over all elements, giving exactly `cosine`."""
    rng = np.random.default_rng(1)
    e = rng.choice([-1.0, 1.0], size=ref.size)
    e -= ref * (e @ ref) / (ref @ ref)
    e *= np.linalg.norm(ref) * np.sqrt(1.0 / cosine**2 - 1.0) / np.linalg.norm(e)
    return ref + e


def test_identical_outputs_are_exact():
    ref = [np.linspace(-3, 3, 100, dtype=np.float32)]
    fid = compare([ref[0].copy()], ref, "fp32")
    assert fid.max_abs_diff == 0.0 and fid.cosine == pytest.approx(1.0) and fid.within_tolerance


@pytest.mark.parametrize("precision", list(TOLERANCES))
@pytest.mark.parametrize("scale", [1e-9, 1e-3, 1.0, 1e3])
def test_max_abs_diff_limit_is_relative_to_the_largest_reference_value(precision, scale):
    rel_tol, min_cos = TOLERANCES[precision]
    ref = reference(scale)
    limit = rel_tol * PEAK * scale
    inside = compare([with_max_diff(ref, 0.95 * limit)], [ref], precision)
    outside = compare([with_max_diff(ref, 1.05 * limit)], [ref], precision)
    assert inside.cosine > min_cos and outside.cosine > min_cos  # only the max diff decides here
    assert inside.max_abs_diff == pytest.approx(0.95 * limit)
    assert inside.within_tolerance and not outside.within_tolerance


@pytest.mark.parametrize("precision", list(TOLERANCES))
def test_cosine_limit(precision):
    rel_tol, min_cos = TOLERANCES[precision]
    ref = reference()
    inside = compare([with_cosine(ref, 1 - 0.95 * (1 - min_cos))], [ref], precision)
    outside = compare([with_cosine(ref, 1 - 1.05 * (1 - min_cos))], [ref], precision)
    assert outside.max_abs_diff < rel_tol * PEAK  # only the cosine decides here
    assert inside.cosine == pytest.approx(1 - 0.95 * (1 - min_cos), abs=1e-9)
    assert inside.within_tolerance and not outside.within_tolerance


def test_tolerances_tighten_with_precision():
    """The promised limits themselves (README: fp32 1e-3 of the largest output and cosine >= 0.9999)."""
    assert TOLERANCES == {"fp32": (1e-3, 0.9999), "tf32": (2e-2, 0.999), "fp16": (2e-2, 0.999), "bf16": (5e-2, 0.995),
                          "int8": (2e-1, 0.98)}


def test_exactly_at_the_max_diff_limit_is_within():
    ref = reference()
    assert compare([with_max_diff(ref, 1e-3 * PEAK)], [ref], "fp32").within_tolerance


def test_half_precision_outputs_are_compared_in_double():
    """fp16 outputs near fp16's maximum (65504) would overflow if the comparison itself ran in fp16."""
    out = np.array([60000.0, -60000.0, 100.0], dtype=np.float16)
    fid = compare([out], [out.astype(np.float32)], "fp16")
    assert fid.max_abs_diff == 0.0 and fid.cosine == pytest.approx(1.0) and fid.within_tolerance


def test_inf_and_overflow_are_judged_without_warnings(recwarn):
    huge = np.array([1e200, 1e200])
    assert compare([huge], [huge], "fp32").max_abs_diff == 0.0  # the dot product overflows to inf
    assert not compare([np.array([1.0, np.inf])], [np.ones(2)], "fp32").within_tolerance
    assert [str(w.message) for w in recwarn] == []


def test_unknown_precision_has_no_silent_default():
    known = "fp32, tf32, fp16, bf16, int8"
    with pytest.raises(ValueError, match=f"no fidelity tolerance for precision 'fp8': known {known}"):
        compare([np.ones(3)], [np.ones(3)], "fp8")


def test_multiple_outputs_are_compared_together():
    ref = [np.ones(3), np.zeros(2)]
    fid = compare([np.ones(3), np.array([0.0, 0.5])], ref, "fp32")
    assert fid.max_abs_diff == pytest.approx(0.5)
    assert fid.cosine == pytest.approx(3 / np.sqrt(3 * 3.25))
    assert not fid.within_tolerance


def test_zero_outputs():
    zeros = [np.zeros(4)]
    both = compare(zeros, zeros, "fp32")
    assert both.cosine == 1.0 and both.within_tolerance
    one = compare([np.array([0.0, 0.0, 0.0, 1e-3])], zeros, "fp32")
    assert one.cosine == 0.0 and not one.within_tolerance
    assert compare([np.zeros(4)], [np.array([0.0, 0.0, 0.0, 1e-3])], "fp32").cosine == 0.0


def test_nan_and_inf_and_shape_mismatch():
    ref = [np.ones(4)]
    assert not compare([np.array([1, 1, np.nan, 1.0])], ref, "fp32").within_tolerance
    assert not compare([np.array([1, 1, np.inf, 1.0])], ref, "int8").within_tolerance
    with pytest.raises(ValueError, match=r"output shape \(5,\) differs from PyTorch's \(4,\)"):
        compare([np.ones(5)], ref, "fp32")
    with pytest.raises(ValueError, match="runtime gave 2 outputs, PyTorch gave 1"):
        compare([np.ones(4), np.ones(4)], ref, "fp32")


def test_empty_outputs_match():
    fid = compare([np.zeros(0)], [np.zeros(0)], "fp32")
    assert fid.max_abs_diff == 0.0 and fid.within_tolerance
