"""PyTorch eager: the baseline every other runtime is compared with."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from runtimes import _torch


class PyTorchEager(_torch.TorchModuleRuntime):
    name = "pytorch"
    label = "PyTorch"
    order = 0
    artifact = "model.pt"  # the state_dict: what a PyTorch deployment ships besides its code
    precisions = {"cpu": ("fp32", "bf16"), "gpu": ("fp32", "fp16", "bf16")}

    def export(self, model: Any, example: Any, folder: Path) -> Path:
        import torch

        path = folder / self.artifact
        torch.save(model.state_dict(), path)
        return path

    def load(self, artifact: Path) -> None:
        from models import rebuild_model

        _torch.set_threads(self.options.threads)
        module, _ = rebuild_model(self.options.model, artifact, self.options.seed)
        self.dtype = self.torch_dtype()
        self.module = module.to(device=self.device, dtype=self.dtype).eval()
