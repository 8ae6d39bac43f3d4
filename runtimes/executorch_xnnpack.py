"""ExecuTorch with its XNNPACK backend: PyTorch's own on-device runtime, running the `.pte` a phone or board runs.

`torch.export`, then `to_edge_transform_and_lower` with the XNNPACK partitioner, then the `.pte`; run by
ExecuTorch's Python runtime (`executorch.runtime`) with XNNPACK's thread pool set to the row's threads. int8 is
XNNPACK's own PT2E quantizer (symmetric int8, per-channel weights), calibrated on the task's training images as
every runtime's int8 is (or trained quantization-aware with the same quantizer, `COMPRESS=qat`). What the
partitioner does not take runs in ExecuTorch's portable kernels (reference
C++, the usual reason an ExecuTorch model is slow): the row's details count the program's calls into the
XNNPACK delegate and into portable kernels, naming the latter.

Versions: executorch 1.5.1 runs beside this project's torch 2.14.1 and torchao 0.18 (its wheel pins torchao
<0.19 and coremltools 9.0, which the project has; it names no torch version). Measured on resnet18 here:
fidelity 3e-6, one delegate call for the whole network.
"""

from __future__ import annotations

import contextlib
import copy
import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from edgebench.runtimes import _torch
from edgebench.runtimes._quant import calibration_batches
from edgebench.runtimes._xnnpack import MacOp, match_macs, runs_as, xnnpack_kind, xnnpack_precision
from edgebench.runtimes.base import NOTES_MARK, ExportUnavailable, Runtime

MACS_NOTE = f"macs{NOTES_MARK}json"  # the program's multiply-add operators, in order, noted beside the .pte


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

    def export(self, model: Any, example: Any, folder: Path) -> Path:
        import torch
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
        from executorch.exir import to_edge_transform_and_lower

        module = copy.deepcopy(model).eval()  # the caller's module stays as it was, for the next export
        if self.options.precision == "int8":
            module = self._quantized(module, example)
        program = torch.export.export(module, (example,))
        try:
            lowered = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()])
        except Exception as exc:  # noqa: BLE001  (the verifier's SpecViolationError, or a fault: re-raised)
            reason = unlowerable(str(exc))
            if reason:
                raise ExportUnavailable(reason) from exc
            raise
        path = folder / self.artifact
        path.write_bytes(lowered.to_executorch().buffer)
        (folder / MACS_NOTE).write_text(json.dumps(_torch.program_macs(program)))  # for profile(): not its size
        return path

    def _quantized(self, module: Any, example: Any) -> Any:
        """XNNPACK's PT2E quantizer: symmetric int8 activations, per-channel int8 weights, calibrated; or, for a
        quantization-aware variant (`COMPRESS=qat`), the same quantizer's QAT configuration, trained on the task
        (its observers calibrate as it trains), whose converted module is then the row's reference."""
        from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
            XNNPACKQuantizer,
            get_symmetric_quantization_config,
        )

        from edgebench.runtimes._torch import pt2e_quantized

        quantizer = XNNPACKQuantizer().set_global(
            get_symmetric_quantization_config(is_per_channel=True, is_qat=self.qat is not None))
        batches = calibration_batches(self.calibration, example.shape[0]) if self.qat is None else []
        quantized = pt2e_quantized(module, example, quantizer, batches, self.qat)
        if self.qat is not None:
            self.trained = quantized  # as compiled PyTorch's QAT reference: the trained, converted module
        return quantized

    def load(self, artifact: Path) -> None:
        with without_compiler_init():
            from executorch.extension.pybindings import portable_lib
            from executorch.runtime import Runtime as ExecuTorchRuntime

        portable_lib._unsafe_reset_threadpool(self.options.threads)  # XNNPACK's pool: the row's threads
        self.threads = portable_lib._threadpool_get_thread_count()
        self.method = ExecuTorchRuntime.get().load_program(str(artifact)).load_method("forward")
        self.artifact_path = artifact

    def profile(self, prepared: Any, iterations: int) -> list[Any]:
        """ExecuTorch's event tracer (ETDump), on a second load of the `.pte` with it on: XNNPACK reports each
        operator it ran with its data types in the name (`Convolution (NHWC, F32) IGEMM #1`; QS8 is int8), and
        each operator left to portable kernels is a `native_call_*` event. The wrapping events (the delegate
        call, the method) are not operators: what they hold beyond their operators is outside operators."""
        import tempfile

        from executorch.devtools import Inspector
        from executorch.extension.pybindings import portable_lib

        from edgebench.bench.measure.profile import PROFILE_WARMUP, OpTime, ProfiledIteration, timed_calls

        module = portable_lib._load_for_executorch(str(self.artifact_path), enable_etdump=True, debug_buffer_size=0)
        walls = timed_calls(lambda: module.forward((prepared,)), PROFILE_WARMUP + iterations)
        with tempfile.TemporaryDirectory(prefix="eb-etdump-") as tmp:
            path = f"{tmp}/profile.etdp"
            module.write_etdump_result_to_file(path)
            events = next(b for b in Inspector(etdump_path=path).event_blocks if b.name == "Execute").events
        ops = [(e.name, list(e.perf_data.raw)) for e in events if e.perf_data is not None
               and (e.is_delegated_op or e.name.startswith("native_call_"))]
        macs = self._macs([name for name, _ in ops]) or [0.0] * len(ops)
        return [ProfiledIteration(walls[i], tuple(OpTime(name=name, kind=xnnpack_kind(name),
                                                         precision=xnnpack_precision(name), ms=raw[i], macs=count)
                                                  for (name, raw), count in zip(ops, macs, strict=True)
                                                  if i < len(raw)))
                for i in range(PROFILE_WARMUP, len(walls))]

    def _macs(self, names: list[str]) -> list[float] | None:
        """Each profiled operator's multiply-adds, from the program's noted at export (`_torch.program_macs`), where
        XNNPACK's multiply-add operators match the program's (`match_macs`); None where they do not, or where no
        note was kept."""
        note = self.artifact_path.parent / MACS_NOTE
        noted = json.loads(note.read_text()) if note.exists() else None
        if noted is None:
            return None
        return match_macs(names, [MacOp(runs_as(op["kind"], op["one_by_one"]), op["macs"]) for op in noted])

    def prepare(self, x: np.ndarray) -> Any:
        import torch

        return torch.from_numpy(x)

    def run(self, inputs: Any) -> Any:
        return self.method.execute([inputs])

    def fetch(self, outputs: Any) -> list[np.ndarray]:
        return [o.detach().numpy() for o in outputs]

    def details(self) -> str:
        """Read from the `.pte` here, after the timed rounds, rather than in load(): reading 47 MB back (resnet18)
        is no part of loading the model, and load_s is a reported figure."""
        calls = program_calls(self.artifact_path.read_bytes())
        delegated = calls.get("XnnpackBackend", 0)
        portable = {name: n for name, n in calls.items() if name != "XnnpackBackend"}
        text = f"XNNPACK delegate calls {delegated}; portable kernel calls {sum(portable.values())}"
        if portable:
            text += " (" + ", ".join(f"{name} x{n}" for name, n in sorted(portable.items())) + ")"
        return f"{text}; XNNPACK threads {self.threads}"


@contextlib.contextmanager
def without_compiler_init() -> Iterator[None]:
    """Import parts of `executorch.exir` without running its package init, which imports the whole compiler
    (torch.export, Dynamo: 3.4 s here) in a process that only runs or reads a `.pte`.

    ExecuTorch's runtime (`portable_lib`) imports `executorch.exir._warnings` for one warning class, and the
    `.pte` reader is `executorch.exir._serialize`: an empty package stands in for `executorch.exir` while they
    load from their files, and is removed afterwards, so a later `import executorch.exir` (the profiler's
    Inspector) imports the real one, reusing them. Measured here: the runtime's import 1.3 s instead of 4.7 s
    (the rest is mostly torch, which the runtime imports itself), the reader's 0.4 s instead of 3.4 s."""
    import importlib.util
    import os
    import sys
    import types

    stand_in = None
    if "executorch.exir" not in sys.modules:
        package = importlib.util.find_spec("executorch").submodule_search_locations[0]
        stand_in = types.ModuleType("executorch.exir")
        stand_in.__path__ = [os.path.join(package, "exir")]
        sys.modules["executorch.exir"] = stand_in
    try:
        yield
    finally:
        if stand_in is not None and sys.modules.get("executorch.exir") is stand_in:
            del sys.modules["executorch.exir"]


def program_calls(pte: bytes) -> Counter:
    """What a `.pte`'s forward method calls, by name: each delegate's backend id (`XnnpackBackend`) and each
    operator run by ExecuTorch's own kernels (`aten::max_pool2d_with_indices.out`)."""
    with without_compiler_init():
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


def unlowerable(message: str) -> str:
    """Why the edge dialect's verifier refused the program, naming the operator ("" for any other failure): an
    operator outside the Core ATen set that ExecuTorch's kernels implement (aten.cumprod, linalg ops), or one
    whose dtypes no kernel takes (aten.abs of a complex FFT output)."""
    import re

    outside = re.search(r"Operator (?:torch\._ops\.)?(\S+) is not in Core ATen opset", message)
    if outside:
        return f"ExecuTorch cannot lower {outside.group(1)}: not in the Core ATen operator set its kernels implement"
    dtypes = re.search(r"Operator: <EdgeOpOverload: (\S+)>: schema = .*? with args: (\{[^}]*\})", message)
    if dtypes:
        return f"ExecuTorch cannot lower {dtypes.group(1)} for these dtypes: {dtypes.group(2)}"
    return ""
