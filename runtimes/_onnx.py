"""The one ONNX export every ONNX-based adapter shares (ONNX Runtime, OpenVINO, TensorRT), and its static int8."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

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
    elif precision not in ("fp32", "tf32"):  # tf32: an fp32 graph, computed with TF32 by the runtime
        raise ValueError(f"ONNX export supports fp32, tf32 and fp16, not {precision}")
    with torch.no_grad():
        torch.onnx.export(model.eval(), (example,), str(path), dynamo=True, external_data=False, verbose=False)
    return path


def quantize_onnx(float_path: Path, path: Path, batches: list[np.ndarray], symmetric: bool = False) -> Path:
    """Static QDQ int8 of an ONNX file with onnxruntime.quantization, calibrated on `batches`; per-channel weights.

    Default: uint8 activations, x86's fast path for ONNX Runtime. `symmetric`: int8 activations with zero
    points of 0 and float biases, what TensorRT's explicit quantization requires (it fuses the biases itself).
    """
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    input_name = onnx.load(str(float_path), load_external_data=False).graph.input[0].name

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter([{input_name: b} for b in batches])

        def get_next(self):
            return next(self.items, None)

    extra = {"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False} if symmetric else {}
    quantize_static(str(float_path), str(path), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QInt8 if symmetric else QuantType.QUInt8, weight_type=QuantType.QInt8,
                    extra_options=extra)
    return path
