"""CoreML: an ML program (.mlpackage) converted with coremltools, fp32, fp16 or int8.

int8 is W8A8 from coremltools' own torch quantizer (`coremltools.optimize.torch.quantization.LinearQuantizer`,
symmetric, per-channel weights): calibrated on the task's images, or trained quantization-aware with the
shared recipe (`COMPRESS=qat`), then converted for iOS 17, where activations quantize too; the ops it leaves
in float compute in fp16, as the Neural Engine does.

Prediction exists only on macOS: elsewhere the package is still converted and its size measured, and
the row says why it was not run. On macOS the compute unit follows the target: CPU only, CPU+GPU,
or CPU+Neural Engine (TARGET=cpu, gpu, npu).
"""

from __future__ import annotations

import contextlib
import platform
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from edgebench.runtimes.base import Runtime

COMPUTE_UNITS = {"cpu": "CPU_ONLY", "gpu": "CPU_AND_GPU", "npu": "CPU_AND_NE"}


@contextlib.contextmanager
def _numpy_scalar_casts() -> Iterator[None]:
    """coremltools 9.0's torch frontend casts a folded constant with `int(x.val)`, and numpy >= 2.4 refuses
    int() of a one-element array that is not 0-d: any model taking `int()` of a shape product in `forward`
    fails to convert (YOLOv8n does). While converting, `_cast` takes the element with `.item()`, as the fix
    merged upstream does (apple/coremltools#2632). Drop this once a coremltools release after 9.0 has it.
    """
    from coremltools.converters.mil import Builder as mb
    from coremltools.converters.mil.frontend.torch import ops

    original = ops._cast

    def cast(context: Any, node: Any, dtype: Any, dtype_name: str) -> None:
        x = ops._get_inputs(context, node, expected=1)[0]
        if x.can_be_folded_to_const() and isinstance(x.val, np.ndarray) and x.val.size == 1:
            context.add(mb.const(val=dtype(x.val.item()), name=node.name), node.name)
        else:
            original(context, node, dtype, dtype_name)

    ops._cast = cast
    try:
        yield
    finally:
        ops._cast = original


class CoreML(Runtime):
    name = "coreml"
    label = "CoreML"
    order = 60
    artifact = "model.mlpackage"
    # The Neural Engine computes fp16 and W8A8 graphs: the same NPU precisions as OpenVINO and TFLite delegates.
    precisions = {"cpu": ("fp32", "fp16", "int8"), "gpu": ("fp32", "fp16", "int8"), "npu": ("fp16", "int8")}
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

        int8 = self.options.precision == "int8"
        if int8:
            model = self._quantized(model, example)
        with torch.no_grad():
            traced = torch.jit.trace(model.eval(), example, check_trace=False)
        precision = ct.precision.FLOAT32 if self.options.precision == "fp32" else ct.precision.FLOAT16
        with _numpy_scalar_casts():
            mlmodel = ct.convert(traced, inputs=[ct.TensorType(name="input", shape=tuple(example.shape))],
                                 convert_to="mlprogram", compute_precision=precision,
                                 minimum_deployment_target=ct.target.iOS17 if int8 else ct.target.iOS16)
        path = folder / self.artifact
        mlmodel.save(str(path))
        return path

    def _quantized(self, model: Any, example: Any) -> Any:
        """The model with coremltools' int8 quantizers calibrated (or trained), finalized for conversion."""
        import copy

        import torch
        from coremltools.optimize.torch.quantization import (
            LinearQuantizer,
            LinearQuantizerConfig,
            ModuleLinearQuantizerConfig,
        )

        from edgebench.runtimes._quant import calibration_batches

        config = LinearQuantizerConfig(global_config=ModuleLinearQuantizerConfig(quantization_scheme="symmetric"))
        quantizer = LinearQuantizer(copy.deepcopy(model).eval(), config)
        prepared = quantizer.prepare(example_inputs=(example,), inplace=True)
        if self.qat is not None:
            self.qat.train(prepared)
        else:
            prepared.eval()
            with torch.no_grad():  # observers record activation ranges while the fake quantizers run
                for batch in calibration_batches(self.calibration, example.shape[0]):
                    prepared(torch.from_numpy(batch))
        quantized = quantizer.finalize(inplace=True).eval()
        if self.qat is not None:
            self.trained = quantized
        return quantized

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
