"""PyTorch eager: the baseline every other runtime is compared with.

No int8 here: PyTorch's quantized CNNs are fast only compiled (eager runs their quantize/dequantize reference
ops around float kernels, slower than fp32), so int8 is a precision of `pytorch-compiled`, whose speed-up is
then divided by compiled fp32 rather than by this eager baseline.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgebench.runtimes import _torch


class PyTorchEager(_torch.TorchModuleRuntime):
    name = "pytorch"
    label = "PyTorch"
    order = 0
    artifact = "model.pt"  # the module pickled whole: compression may have changed its architecture
    precisions = {"cpu": ("fp32", "bf16"), "gpu": ("fp32", "tf32", "fp16", "bf16")}
    profiles_layers = True  # its profile puts each operator on the module that ran it

    @classmethod
    def export_unavailable(cls, target: str, precision: str) -> str | None:
        if precision == "int8" and target == "cpu":
            return ("PyTorch eager has no fast int8 (reference kernels around float ones); int8 runs in "
                    "pytorch-compiled (torch.compile with torchao's X86 int8)")
        return super().export_unavailable(target, precision)

    def export(self, model: Any, example: Any, folder: Path) -> Path:
        import torch

        path = folder / self.artifact
        torch.save(model, path)
        return path

    def stored_weights(self, artifact: Path) -> list[np.ndarray]:
        """The pickled module's parameters (stored fp32; a reduced precision is applied at load)."""
        import torch

        from edgebench.bench.variants import load_module

        tensors = list(load_module(artifact, self.options.model).parameters())
        return [t.detach().cpu().numpy() for t in tensors if isinstance(t, torch.Tensor) and t.dim() >= 2]

    def load(self, artifact: Path) -> None:
        from edgebench.bench.variants import load_module

        _torch.set_threads(self.options.threads)
        _torch.fp32_math(self.options.precision)
        module = load_module(artifact, self.options.model)
        self.dtype = self.torch_dtype()
        self.module = module.to(device=self.device, dtype=self.dtype).eval()
