"""ExecuTorch with its XNNPACK backend: PyTorch's own on-device runtime, running the `.pte` a phone or board runs.

`torch.export`, then `to_edge_transform_and_lower` with the XNNPACK partitioner, then the `.pte`; run by
ExecuTorch's Python runtime (`executorch.runtime`) with XNNPACK's thread pool set to the row's threads. int8 is
XNNPACK's own PT2E quantizer (symmetric int8, per-channel weights), calibrated on the task's training images as
every runtime's int8 is. What the partitioner does not take runs in ExecuTorch's portable kernels (reference
C++, the usual reason an ExecuTorch model is slow): the row's details count the program's calls into the
XNNPACK delegate and into portable kernels, naming the latter.

Versions: executorch 1.5.1 runs beside this project's torch 2.14.1 and torchao 0.18 (its wheel pins torchao
<0.19 and coremltools 9.0, which the project has; it names no torch version). Measured on resnet18 here:
fidelity 3e-6, one delegate call for the whole network.
"""

from __future__ import annotations

import copy
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from edgebench.runtimes._quant import calibration_batches
from edgebench.runtimes.base import Runtime


class ExecuTorchXnnpack(Runtime):
    name = "executorch"
    label = "ExecuTorch (XNNPACK)"
    order = 15
    artifact = "model.pte"
    precisions = {"cpu": ("fp32", "int8")}
    packages = {"executorch": "executorch"}

    @classmethod
    def export_imports(cls, precision: str) -> tuple[str, ...]:
        return ("torch.export", "executorch.exir", "executorch.backends.xnnpack.partition.xnnpack_partitioner")

    @classmethod
    def qat_unavailable(cls) -> str | None:
        return "ExecuTorch's quantization-aware training (XNNPACK's QAT configuration) is not wired into edgebench"

    def export(self, model: Any, example: Any, folder: Path) -> Path:
        import torch
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
        from executorch.exir import to_edge_transform_and_lower

        module = copy.deepcopy(model).eval()  # the caller's module stays as it was, for the next export
        if self.options.precision == "int8":
            module = self._quantized(module, example)
        program = torch.export.export(module, (example,))
        lowered = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()])
        path = folder / self.artifact
        path.write_bytes(lowered.to_executorch().buffer)
        return path

    def _quantized(self, module: Any, example: Any) -> Any:
        """XNNPACK's PT2E quantizer: symmetric int8 activations, per-channel int8 weights, calibrated."""
        import torch
        from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
            XNNPACKQuantizer,
            get_symmetric_quantization_config,
        )
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

        quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
        prepared = prepare_pt2e(torch.export.export(module, (example,)).module(), quantizer)
        with torch.no_grad():
            for batch in calibration_batches(self.calibration, example.shape[0]):
                prepared(torch.from_numpy(batch))
        return convert_pt2e(prepared)

    def load(self, artifact: Path) -> None:
        from executorch.extension.pybindings import portable_lib
        from executorch.runtime import Runtime as ExecuTorchRuntime

        portable_lib._unsafe_reset_threadpool(self.options.threads)  # XNNPACK's pool: the row's threads
        self.threads = portable_lib._threadpool_get_thread_count()
        self.method = ExecuTorchRuntime.get().load_program(str(artifact)).load_method("forward")
        self.calls = program_calls(artifact.read_bytes())

    def prepare(self, x: np.ndarray) -> Any:
        import torch

        return torch.from_numpy(x)

    def run(self, inputs: Any) -> Any:
        return self.method.execute([inputs])

    def fetch(self, outputs: Any) -> list[np.ndarray]:
        return [o.detach().numpy() for o in outputs]

    def details(self) -> str:
        delegated = self.calls.get("XnnpackBackend", 0)
        portable = {name: n for name, n in self.calls.items() if name != "XnnpackBackend"}
        text = f"XNNPACK delegate calls {delegated}; portable kernel calls {sum(portable.values())}"
        if portable:
            text += " (" + ", ".join(f"{name} x{n}" for name, n in sorted(portable.items())) + ")"
        return f"{text}; XNNPACK threads {self.threads}"


def program_calls(pte: bytes) -> Counter:
    """What a `.pte`'s forward method calls, by name: each delegate's backend id (`XnnpackBackend`) and each
    operator run by ExecuTorch's own kernels (`aten::max_pool2d_with_indices.out`)."""
    from executorch.exir._serialize._program import deserialize_pte_binary

    found = deserialize_pte_binary(pte)
    plan = getattr(found, "program", found).execution_plan[0]
    calls: Counter = Counter()
    for chain in plan.chains:
        for instruction in chain.instructions:
            args = instruction.instr_args
            kind = type(args).__name__
            if kind == "DelegateCall":
                calls[plan.delegates[args.delegate_index].id] += 1
            elif kind == "KernelCall":
                operator = plan.operators[args.op_index]
                calls[f"{operator.name}.{operator.overload}" if operator.overload else operator.name] += 1
    return calls
