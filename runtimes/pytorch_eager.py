"""PyTorch eager: the baseline every other runtime is compared with.

int8 is the PyTorch deployment path for quantized CNNs: torchao's PT2E X86 quantizer (static, calibrated on
the task's images), saved as an exported program and compiled by Inductor with freezing. The
compilation happens at the first inference (about 25 s here), so it shows in the row's first-inference time;
int8 without compiling runs reference kernels, slower than fp32. Quantization-aware int8 trains with the
same quantizer's QAT configuration instead of calibrating.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from runtimes import _torch
from runtimes._quant import calibration_batches


class PyTorchEager(_torch.TorchModuleRuntime):
    name = "pytorch"
    label = "PyTorch"
    order = 0
    artifact = "model.pt"  # the module pickled whole: compression may have changed its architecture
    precisions = {"cpu": ("fp32", "bf16", "int8"), "gpu": ("fp32", "tf32", "fp16", "bf16")}

    @classmethod
    def export_unavailable(cls, target: str, precision: str) -> str | None:
        reason = super().export_unavailable(target, precision)
        if reason is None and precision == "int8":
            if importlib.util.find_spec("torchao") is None:
                return "PyTorch int8 needs torchao (pip install torchao)"
            if not (shutil.which("g++") or shutil.which("c++")):
                return "PyTorch int8 is compiled by Inductor, which needs a C++ compiler (g++)"
        return reason

    def export(self, model: Any, example: Any, folder: Path) -> Path:
        import torch

        if self.options.precision == "int8":
            path = folder / "model_int8.pt2"
            batches = calibration_batches(self.calibration, example.shape[0])
            program, quantized = _torch.quantize_x86(model, example, batches, self.qat)
            torch.export.save(program, str(path))
            if self.qat is not None:
                self.trained = quantized
            return path
        path = folder / self.artifact
        torch.save(model, path)
        return path

    def stored_weights(self, artifact: Path) -> list[np.ndarray]:
        """int8: the exported program's tensors (torchao folds the quantized weights into int8 constants);
        otherwise the pickled module's parameters."""
        import torch

        if self.options.precision == "int8":
            import torchao.quantization.pt2e  # noqa: F401  (registers the quantized ops the program names)

            program = torch.export.load(str(artifact))
            tensors = [*program.state_dict.values(), *program.constants.values()]
        else:
            from bench.variants import load_module

            tensors = list(load_module(artifact, self.options.model).parameters())
        return [t.detach().cpu().numpy() for t in tensors if isinstance(t, torch.Tensor) and t.dim() >= 2]

    def load(self, artifact: Path) -> None:
        from bench.variants import load_module

        _torch.set_threads(self.options.threads)
        _torch.fp32_math(self.options.precision)
        if self.options.precision == "int8":
            self.dtype = self.torch_dtype()
            self.module, self.kernels = _torch.load_quantized(artifact)
            return
        module = load_module(artifact, self.options.model)
        self.dtype = self.torch_dtype()
        self.module = module.to(device=self.device, dtype=self.dtype).eval()

    def label_mismatch(self) -> str | None:
        """An int8 program that Inductor compiled to float kernels is not timed under an int8 label."""
        if self.options.precision == "int8" and not self.kernels:
            return "PyTorch int8: Inductor's code for this program calls no integer kernel (float convolutions)"
        return None

    def details(self) -> str:
        if self.options.precision == "int8":
            return (f"torchao PT2E X86 int8, torch.compile (Inductor, freezing) at load; integer kernels "
                    f"{', '.join(self.kernels)}")
        return ""
