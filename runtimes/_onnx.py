"""The one ONNX export every ONNX-based adapter shares (ONNX Runtime, OpenVINO, TensorRT)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

ONNX_PACKAGES = {"onnx": "onnx", "onnxscript": "onnxscript"}


def export_onnx(model: Any, example: Any, path: Path, precision: str = "fp32", device: str = "cpu") -> Path:
    """torch.export-based exporter, weights inside the one file.

    The exporter's default writes weights to a separate `.onnx.data` file; one file keeps the artifact
    self-contained (models over 2 GB would need external data). For fp16 the graph itself is exported in
    half precision: TensorRT 11 takes precision only from the graph's types (strong typing; its FP16 builder
    flag is gone), and ONNX Runtime then runs fp16 end to end. Half kernels are traced on `device`.
    """
    import torch

    if precision == "fp16":
        model = model.to(device=device, dtype=torch.float16)
        example = example.to(device=device, dtype=torch.float16)
    elif precision != "fp32":
        raise ValueError(f"ONNX export supports fp32 and fp16, not {precision}")
    with torch.no_grad():
        torch.onnx.export(model.eval(), (example,), str(path), dynamo=True, external_data=False, verbose=False)
    return path
