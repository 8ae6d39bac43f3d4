"""The one ONNX export every ONNX-based adapter shares (ONNX Runtime, OpenVINO, TensorRT)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

ONNX_PACKAGES = {"onnx": "onnx", "onnxscript": "onnxscript"}


def export_onnx(model: Any, example: Any, path: Path) -> Path:
    """torch.export-based exporter, weights inside the one file.

    The exporter's default writes weights to a separate `.onnx.data` file; one file keeps the
    artifact self-contained (models over 2 GB would need external data, and get it from the exporter).
    """
    import torch

    with torch.no_grad():
        torch.onnx.export(model, (example,), str(path), dynamo=True, external_data=False, verbose=False)
    return path
