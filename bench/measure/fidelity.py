"""Compare a runtime's outputs with PyTorch eager's on the same input."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# (max |diff| relative to max |reference|, minimum cosine) a row must meet at each precision.
TOLERANCES: dict[str, tuple[float, float]] = {
    "fp32": (1e-3, 0.9999),
    "tf32": (2e-2, 0.999),  # fp32 range, fp16's 10-bit mantissa in the products
    "fp16": (2e-2, 0.999),
    "bf16": (5e-2, 0.995),
    "int8": (2e-1, 0.98),
}


@dataclass(frozen=True)
class Fidelity:
    max_abs_diff: float
    cosine: float
    within_tolerance: bool


def read_outputs(path: str | Path) -> list[np.ndarray]:
    """A module's outputs in order, from the .npz `bench.variants.save_outputs` writes (out_0, out_1, ...):
    the reference a measuring process compares with, and the boxes a detector's rows are matched to."""
    with np.load(path) as saved:
        return [saved[k] for k in sorted(saved.files, key=lambda k: int(k.split("_")[1]))]


def _flat(outputs: Sequence[np.ndarray]) -> np.ndarray:
    return np.concatenate([np.asarray(o, dtype=np.float64).ravel() for o in outputs])


def compare(outputs: Sequence[np.ndarray], reference: Sequence[np.ndarray], precision: str) -> Fidelity:
    """Max abs diff and cosine similarity over all outputs flattened together.

    Within tolerance means: every value finite, max |diff| <= the precision's tolerance x max |reference|
    (relative, so a model whose outputs are in the thousands is judged like one in the units), and
    cosine >= the precision's minimum.
    """
    if precision not in TOLERANCES:
        raise ValueError(f"no fidelity tolerance for precision {precision!r}: known {', '.join(TOLERANCES)}")
    if len(outputs) != len(reference):
        raise ValueError(f"runtime gave {len(outputs)} outputs, PyTorch gave {len(reference)}")
    for got, want in zip(outputs, reference, strict=True):
        if np.size(got) != np.size(want):
            raise ValueError(f"output shape {np.shape(got)} differs from PyTorch's {np.shape(want)}")
    got, want = _flat(outputs), _flat(reference)
    max_abs_diff = float(np.max(np.abs(got - want))) if got.size else 0.0
    with np.errstate(invalid="ignore", over="ignore"):  # inf/NaN outputs give a NaN cosine; they fail below
        norm = float(np.linalg.norm(got) * np.linalg.norm(want))
        if norm > 0:
            cosine = float(np.dot(got, want) / norm)
        else:  # both zero is a perfect match; one zero is not
            cosine = 1.0 if not got.any() and not want.any() else 0.0
    rel_tol, min_cos = TOLERANCES[precision]
    scale = max(float(np.max(np.abs(want))) if want.size else 0.0, 1e-12)
    ok = bool(np.isfinite(got).all()) and max_abs_diff <= rel_tol * scale and cosine >= min_cos
    return Fidelity(max_abs_diff=max_abs_diff, cosine=cosine, within_tolerance=ok)
