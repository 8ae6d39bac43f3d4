"""TorchScript: trace, freeze, save; optimize_for_inference at load, for the device it runs on.

torch 2.14 deprecates TorchScript and warns on every call; the warnings go to the run's log.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from runtimes import _torch
from runtimes.base import Runtime


class TorchScript(Runtime):
    name = "torchscript"
    label = "TorchScript"
    order = 10
    artifact = "model.torchscript"
    precisions = {"cpu": ("fp32",), "gpu": ("fp32", "fp16")}
    packages = {"torch": "torch"}

    @classmethod
    def run_unavailable(cls, target: str) -> str | None:
        return _torch.cuda_unavailable(target)

    @property
    def device(self) -> str:
        return _torch.torch_device(self.options.target)

    def export(self, model: Any, example: Any, folder: Path) -> Path:
        import torch

        dtype = getattr(torch, _torch.DTYPES[self.options.precision])
        model = model.to(device=self.device, dtype=dtype).eval()
        example = example.to(device=self.device, dtype=dtype)
        with torch.no_grad():
            traced = torch.jit.trace(model, example, check_trace=False)
            frozen = torch.jit.freeze(traced)
        path = folder / self.artifact
        torch.jit.save(frozen, str(path))
        return path

    def load(self, artifact: Path) -> None:
        import torch

        _torch.set_threads(self.options.threads)
        self.dtype = getattr(torch, _torch.DTYPES[self.options.precision])
        loaded = torch.jit.load(str(artifact), map_location=self.device)
        # Fuses conv+bn/relu and picks device-specific kernels: a load-time step, like an engine build.
        self.module = torch.jit.optimize_for_inference(loaded)

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
