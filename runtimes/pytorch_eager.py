"""PyTorch eager: the baseline every other runtime is compared with."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from runtimes import _torch
from runtimes.base import Runtime


class PyTorchEager(Runtime):
    name = "pytorch"
    label = "PyTorch"
    order = 0
    artifact = "model.pt"  # the state_dict: what a PyTorch deployment ships besides its code
    precisions = {"cpu": ("fp32", "bf16"), "gpu": ("fp32", "fp16", "bf16")}
    packages = {"torch": "torch"}

    @classmethod
    def run_unavailable(cls, target: str) -> str | None:
        return _torch.cuda_unavailable(target)

    @property
    def device(self) -> str:
        return _torch.torch_device(self.options.target)

    def export(self, model: Any, example: Any, folder: Path) -> Path:
        import torch

        path = folder / self.artifact
        torch.save(model.state_dict(), path)
        return path

    def load(self, artifact: Path) -> None:
        import torch

        from models import rebuild_model

        _torch.set_threads(self.options.threads)
        module, _ = rebuild_model(self.options.model, artifact, self.options.seed)
        self.dtype = getattr(torch, _torch.DTYPES[self.options.precision])
        self.module = module.to(device=self.device, dtype=self.dtype).eval()

    def prepare(self, x: np.ndarray) -> Any:
        import torch

        tensor = torch.from_numpy(x).to(self.device)
        return tensor.to(self.dtype) if tensor.is_floating_point() else tensor

    def run(self, inputs: Any) -> Any:
        import torch

        with torch.inference_mode():
            return self.module(inputs)

    def sync(self) -> None:
        _torch.cuda_sync(self.options.target)

    def fetch(self, outputs: Any) -> list[np.ndarray]:
        return _torch.to_host(outputs)
