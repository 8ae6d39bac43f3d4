"""What a compressed model is, counted: parameters, true sparsity, zipped and bit-packed sizes."""

from __future__ import annotations

import io
import math
import zipfile
from pathlib import Path

import numpy as np
from torch import nn


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def sparsity(model: nn.Module) -> float:
    """Share of all parameters that are exactly zero."""
    total = parameter_count(model)
    zeros = sum(int((p == 0).sum()) for p in model.parameters())
    return zeros / total if total else 0.0


def packed_bytes(model: nn.Module) -> int:
    """Size as a clustered deployment stores it: each tensor with few distinct values as indices + codebook.

    A tensor with k <= 256 distinct values costs ceil(log2 k) bits per element plus k fp32 centroids;
    any other tensor costs 32 bits per element. For an unclustered model this is the fp32 size.
    """
    total_bits = 0
    for p in model.parameters():
        values = p.detach().cpu().numpy().ravel()
        distinct = len(np.unique(values)) if values.size > 256 else values.size + 1
        if distinct <= 256 and values.size > 256:
            total_bits += values.size * max(1, math.ceil(math.log2(distinct))) + distinct * 32
        else:
            total_bits += values.size * 32
    return math.ceil(total_bits / 8)


def zipped_bytes(folder: Path) -> int:
    """Every file of an artifact deflated at the highest level, as a download or an OTA update ships it."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
            archive.write(path, path.relative_to(folder).as_posix())
    return buffer.getbuffer().nbytes
