"""TFLite (LiteRT): converted with litert-torch (no TensorFlow needed), run by ai-edge-litert's interpreter.

The model keeps PyTorch's NCHW layout. Fully integer-quantized models take int8/uint8 inputs and give
int8/uint8 outputs: prepare() and fetch() quantize and dequantize with the scale and zero point the
model declares, so fidelity is always compared in float. On `npu`, the delegate libraries named by
EDGEBENCH_TFLITE_DELEGATE are loaded; on `cpu`, XNNPACK runs with the run's thread count.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from bench.targets import tflite_delegates
from runtimes.base import Runtime


def quantize(x: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    """Float array -> the tensor's integer type with its (scale, zero point); unchanged for float tensors."""
    dtype = np.dtype(detail["dtype"])
    scale, zero_point = detail["quantization"]
    if dtype.kind == "f" or not scale:
        return x.astype(dtype, copy=False)
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale + zero_point), info.min, info.max).astype(dtype)


def dequantize(q: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    scale, zero_point = detail["quantization"]
    if np.dtype(detail["dtype"]).kind == "f" or not scale:
        return np.asarray(q, dtype=np.float32)
    return ((q.astype(np.float32) - zero_point) * scale).astype(np.float32)


def _output_position(detail: dict[str, Any]) -> int:
    """litert-torch names outputs `..._output_<n>...`; order them as the PyTorch model returned them."""
    match = re.search(r"output_(\d+)", detail["name"])
    return int(match.group(1)) if match else detail["index"]


class TFLite(Runtime):
    name = "tflite"
    label = "TFLite"
    order = 50
    artifact = "model.tflite"
    precisions = {"cpu": ("fp32",), "npu": ("fp32",)}
    packages = {"litert_torch": "litert-torch", "ai_edge_litert": "ai-edge-litert"}

    @classmethod
    def run_unavailable(cls, target: str) -> str | None:
        if target == "npu" and not tflite_delegates():
            return "no TFLite NPU delegate: set EDGEBENCH_TFLITE_DELEGATE to the delegate's .so"
        return None

    @property
    def device(self) -> str:
        return "npu delegate" if self.options.target == "npu" else "cpu (XNNPACK)"

    def export(self, model: Any, example: Any, folder: Path) -> Path:
        import litert_torch

        path = folder / self.artifact
        litert_torch.convert(model.eval(), (example,)).export(str(path))
        return path

    def load(self, artifact: Path) -> None:
        from ai_edge_litert.interpreter import Interpreter, load_delegate

        delegates = [load_delegate(p) for p in tflite_delegates()] if self.options.target == "npu" else None
        self.interpreter = Interpreter(model_path=str(artifact), num_threads=self.options.threads,
                                       experimental_delegates=delegates)
        self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]
        self.outputs = sorted(self.interpreter.get_output_details(), key=_output_position)

    def details(self) -> str:
        dtypes = {np.dtype(self.input["dtype"]).name} | {np.dtype(o["dtype"]).name for o in self.outputs}
        return f"tensor types {'/'.join(sorted(dtypes))}, threads {self.options.threads}"

    def prepare(self, x: np.ndarray) -> Any:
        return quantize(x, self.input)

    def run(self, inputs: Any) -> Any:
        self.interpreter.set_tensor(self.input["index"], inputs)
        self.interpreter.invoke()
        return self.interpreter

    def fetch(self, outputs: Any) -> list[np.ndarray]:
        return [dequantize(outputs.get_tensor(o["index"]), o) for o in self.outputs]
