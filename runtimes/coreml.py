"""CoreML: an ML program (.mlpackage) converted with coremltools, fp32 or fp16.

Prediction exists only on macOS: elsewhere the package is still converted and its size measured, and
the row says why it was not run. On macOS the compute unit follows the target: CPU only, CPU+GPU,
or CPU+Neural Engine (TARGET=cpu, gpu, npu).
"""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

import numpy as np

from runtimes.base import Runtime

COMPUTE_UNITS = {"cpu": "CPU_ONLY", "gpu": "CPU_AND_GPU", "npu": "CPU_AND_NE"}


class CoreML(Runtime):
    name = "coreml"
    label = "CoreML"
    order = 60
    artifact = "model.mlpackage"
    precisions = {"cpu": ("fp32", "fp16"), "gpu": ("fp32", "fp16"), "npu": ("fp16",)}
    packages = {"coremltools": "coremltools"}

    @classmethod
    def run_unavailable(cls, target: str) -> str | None:
        if platform.system() != "Darwin":
            return "CoreML inference runs only on macOS"
        if target == "npu" and platform.machine() != "arm64":
            return "the Neural Engine needs Apple silicon"
        return None

    @property
    def device(self) -> str:
        return COMPUTE_UNITS[self.options.target]

    def export(self, model: Any, example: Any, folder: Path) -> Path:
        import coremltools as ct
        import torch

        with torch.no_grad():
            traced = torch.jit.trace(model.eval(), example, check_trace=False)
        precision = ct.precision.FLOAT16 if self.options.precision == "fp16" else ct.precision.FLOAT32
        mlmodel = ct.convert(traced, inputs=[ct.TensorType(name="input", shape=tuple(example.shape))],
                             convert_to="mlprogram", compute_precision=precision,
                             minimum_deployment_target=ct.target.iOS16)
        path = folder / self.artifact
        mlmodel.save(str(path))
        return path

    def load(self, artifact: Path) -> None:
        import coremltools as ct

        units = getattr(ct.ComputeUnit, COMPUTE_UNITS[self.options.target])
        self.model = ct.models.MLModel(str(artifact), compute_units=units)
        self.output_names = [o.name for o in self.model.get_spec().description.output]

    def prepare(self, x: np.ndarray) -> Any:
        return {"input": x}

    def run(self, inputs: Any) -> Any:
        return self.model.predict(inputs)

    def fetch(self, outputs: Any) -> list[np.ndarray]:
        return [np.asarray(outputs[name], dtype=np.float32) for name in self.output_names]
