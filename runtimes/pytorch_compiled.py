"""PyTorch compiled: `torch.export` then `torch.compile` (Inductor, freezing), PyTorch's own fast path.

Eager PyTorch is the framework baseline; this is what a PyTorch deployment that compiles runs, and the only
PyTorch path with fast int8: torchao's PT2E X86 quantizer (static, calibrated on the task's training images, or
trained quantization-aware with the same quantizer), lowered by Inductor to oneDNN integer kernels, whose names
the row's details list. Its int8 speed-up is divided by this runtime's own compiled fp32, so compilation is on
both sides of the ratio.

Where compilation cost shows: `torch.compile` is a just-in-time compiler whose code is not part of the exported
file, so every process that serves the model compiles it when it starts. The row says so as it happens: `export_s`
is `torch.export` alone and `load_s` is the compilation in the measuring process (and the details repeat it);
the first timed inference is already compiled. (Compiling ahead of time into a loadable package is AOTInductor.)
Measured on mnist_resnet_m, 2 threads, AVX2 host: export 0.5 s, compile 9.5-15 s, fp32 p50 equal to eager's,
because at batch 1 on maps this small PyTorch picks its im2col convolution (`aten::_slow_conv2d_forward`) either way.
"""

from __future__ import annotations

import importlib.util
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from edgebench.runtimes import _torch


class PyTorchCompiled(_torch.TorchModuleRuntime):
    name = "pytorch-compiled"
    label = "PyTorch compiled"
    order = 1
    artifact = "model.pt2"  # an ExportedProgram: the graph and its weights, at the row's precision
    precisions = {"cpu": ("fp32", "bf16", "int8"), "gpu": ("fp32", "tf32", "fp16", "bf16")}

    @classmethod
    def export_imports(cls, precision: str) -> tuple[str, ...]:
        return ("torch.export", "torchao.quantization.pt2e") if precision == "int8" else ("torch.export",)

    @classmethod
    def export_unavailable(cls, target: str, precision: str) -> str | None:
        reason = super().export_unavailable(target, precision)
        if reason is None and target == "cpu" and not (shutil.which("g++") or shutil.which("c++")):
            return "torch.compile (Inductor) on CPU compiles C++ and needs a compiler (g++); none on PATH"
        if reason is None and precision == "int8" and importlib.util.find_spec("torchao") is None:
            return "PyTorch int8 needs torchao (pip install torchao)"
        return reason

    def export(self, model: Any, example: Any, folder: Path) -> Path:
        import torch

        path = folder / self.artifact
        torch.export.save(self.exported_program(model, example), str(path))
        return path

    def stored_weights(self, artifact: Path) -> list[np.ndarray]:
        """The exported program's tensors: int8 constants where torchao folded the quantized weights, else the
        weights at the row's precision (bf16 widened to fp32 for numpy, which keeps every value)."""
        import torch

        if self.options.precision == "int8":
            import torchao.quantization.pt2e  # noqa: F401  (registers the quantized ops the program names)
        program = torch.export.load(str(artifact))
        tensors = [*program.state_dict.values(), *program.constants.values()]
        return [(t.float() if t.dtype == torch.bfloat16 else t).detach().cpu().numpy()
                for t in tensors if isinstance(t, torch.Tensor) and t.dim() >= 2]

    def load(self, artifact: Path) -> None:
        import time

        _torch.set_threads(self.options.threads)
        _torch.fp32_math(self.options.precision)
        self.dtype = self.torch_dtype()
        start = time.perf_counter()
        self.compiled = _torch.compile_program(artifact)
        self.module = self.compiled.module
        self.compile_s = time.perf_counter() - start

    def profile(self, prepared: Any, iterations: int) -> list[Any]:
        """torch.profiler on the timed module, each C++ kernel Inductor generated on a line of its own
        (`_torch.kernel_records`), in the type of its first input; what the compiled region's own line keeps is
        its Python wrapper. On a GPU Inductor's kernels are Triton's, which the CUDA activity names."""
        if self.options.target != "cpu":
            return super().profile(prepared, iterations)
        with _torch.kernel_records(self.compiled.generated):
            profiled = super().profile(prepared, iterations)
        inputs = self.compiled.kernel_inputs
        return [replace(it, ops=tuple(replace(op, precision=_torch.generated_precision(op.name, inputs, op.precision))
                                      for op in it.ops)) for it in profiled]

    def label_mismatch(self) -> str | None:
        """An int8 program that Inductor compiled to float kernels is not timed under an int8 label."""
        if self.options.precision == "int8" and not self.compiled.integer_kernels:
            return "PyTorch int8: Inductor's code for this program calls no integer kernel (float convolutions)"
        return super().label_mismatch()

    def details(self) -> str:
        what = f"torch.export + torch.compile (Inductor, freezing), compiled at load in {self.compile_s:.1f} s"
        if self.options.precision == "int8":
            return f"torchao PT2E X86 int8, {what}; integer kernels {', '.join(self.compiled.integer_kernels)}"
        return what
