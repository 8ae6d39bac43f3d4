"""Calibration batches for each runtime's own int8 toolchain: the same images, cut to the artifact's batch size."""

from __future__ import annotations

import numpy as np


def calibration_batches(calibration: np.ndarray | None, example: np.ndarray, limit: int = 32) -> list[np.ndarray]:
    """Up to `limit` batches shaped like `example` (the exported batch size), from the calibration inputs.

    Without calibration inputs the example itself is the only batch, which is a poor calibration: the
    runner always supplies some (the task's training images, or seeded inputs for models without data).
    """
    batch = example.shape[0]
    if calibration is None or len(calibration) < batch:
        return [np.ascontiguousarray(example, dtype=np.float32)]
    count = min(limit, len(calibration) // batch)
    return [np.ascontiguousarray(calibration[i * batch:(i + 1) * batch], dtype=np.float32) for i in range(count)]
