"""TorchScript: trace, freeze, save; optimize_for_inference at load, for the device it runs on.

torch 2.14 deprecates TorchScript and warns on every call; the warnings go to the run's log.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from edgebench.runtimes import _torch


class TorchScript(_torch.TorchModuleRuntime):
    name = "torchscript"
    label = "TorchScript"
    order = 10
    artifact = "model.torchscript"
    precisions = {"cpu": ("fp32",), "gpu": ("fp32", "tf32", "fp16")}

    def export(self, model: Any, example: Any, folder: Path) -> Path:
        import torch

        dtype = self.torch_dtype()
        # A copy: `.to` moves a module in place, and the caller's module must stay on the CPU in fp32 for the
        # next export made from it in the same process.
        model = copy.deepcopy(model).to(device=self.device, dtype=dtype).eval()
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
        _torch.fp32_math(self.options.precision)
        self.dtype = self.torch_dtype()
        loaded = torch.jit.load(str(artifact), map_location=self.device)
        # Fuses conv+bn/relu and picks device-specific kernels: a load-time step, like an engine build.
        self.module = torch.jit.optimize_for_inference(loaded)

    def profile(self, prepared: Any, iterations: int) -> list[Any]:
        """torch.profiler as for eager PyTorch, with one difference it cannot see past: the optimized graph runs
        fused oneDNN convolutions as JIT-only operators (prim::mkldnn_convolution) that torch.profiler does not
        record, so their time is the self time of the scripted `forward`. That line is named for what it holds
        rather than counted as a convolution: the profiler did not measure which operator it was."""
        from dataclasses import replace

        from edgebench.bench.measure.profile import ProfiledIteration

        hidden = sorted({node.kind() for node in self.module.graph.nodes()
                         if node.kind().startswith("prim::") and node.kind() not in SCRIPT_CONTROL})
        name = f"forward: JIT-only operators ({', '.join(hidden)})" if hidden else "forward"
        return [ProfiledIteration(it.wall_ms, tuple(replace(op, name=name) if op.name == "forward" else op
                                                    for op in it.ops))
                for it in super().profile(prepared, iterations)]

    def model_macs(self, prepared: Any) -> float | None:
        """None: the profile cannot hold the model's multiply-adds, its convolutions being JIT-only operators."""
        return None


# The interpreter's own bookkeeping, not operators that compute.
SCRIPT_CONTROL = {"prim::Constant", "prim::If", "prim::Loop", "prim::ListConstruct", "prim::TupleConstruct",
                  "prim::TupleUnpack", "prim::ListUnpack", "prim::GetAttr", "prim::RaiseException",
                  "prim::Uninitialized", "prim::ConstantMKLDNNTensor"}
