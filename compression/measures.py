"""What a compressed model is, counted: parameters, true sparsity, zipped size (bit-packed size: each artifact's
own, `bench.measure.contents`)."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

from torch import nn

from edgebench.runtimes.base import artifact_files


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def sparsity(model: nn.Module) -> float:
    """Share of all parameters that are exactly zero."""
    total = parameter_count(model)
    zeros = sum(int((p == 0).sum()) for p in model.parameters())
    return zeros / total if total else 0.0


def zipped_bytes(folder: Path) -> int:
    """Every file of an artifact deflated at the highest level, as a download or an OTA update ships it (not
    edgebench's notes beside it)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for path in artifact_files(folder):
            archive.write(path, path.relative_to(folder).as_posix())
    return buffer.getbuffer().nbytes
