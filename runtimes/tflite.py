"""TFLite (LiteRT): converted with litert-torch (no TensorFlow needed), run by ai-edge-litert's interpreter.

The model keeps PyTorch's NCHW layout. Fully integer-quantized models take int8/uint8 inputs and give
int8/uint8 outputs: prepare() and fetch() quantize and dequantize with the scale and zero point the
model declares, so fidelity is always compared in float. On `npu`, the delegate libraries named by
EDGEBENCH_TFLITE_DELEGATE are loaded with the options in EDGEBENCH_TFLITE_DELEGATE_OPTIONS; on `cpu`,
XNNPACK runs with the run's thread count.
fp16 (on `npu` only) is TFLite's float16 quantization: fp16 weights, fp32 inputs and outputs, computed in
fp16 by delegates that can (NPU and GPU delegates) and in fp32 elsewhere, hence not offered on `cpu`, where
XNNPACK would compute it in fp32 under an fp16 label.
int8 is full-integer static quantization with litert-torch's PT2E quantizer (per-channel symmetric weights),
calibrated on the task's images: the model then takes int8 input and gives int8 output. Quantization-aware
int8 trains with the same quantizer's QAT configuration (PT2E QAT) before converting.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from edgebench.bench.targets import tflite_delegate_options, tflite_delegates
from edgebench.models.heads import detection_head
from edgebench.runtimes._quant import calibration_batches, export_for_training
from edgebench.runtimes._xnnpack import xnnpack_kind, xnnpack_precision
from edgebench.runtimes.base import ProfileUnavailable, Runtime


def quantize(x: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    """Float array -> the tensor's integer type with its (scale, zero point); unchanged for float tensors."""
    dtype = np.dtype(detail["dtype"])
    scale, zero_point = detail["quantization"]
    if dtype.kind == "f" or not scale:
        return x.astype(dtype, copy=False)
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale + zero_point), info.min, info.max).astype(dtype)


def dequantize(q: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    scale, zero_point = detail["quantization"]
    if np.dtype(detail["dtype"]).kind == "f" or not scale:
        return np.asarray(q, dtype=np.float32)
    return ((q.astype(np.float32) - zero_point) * scale).astype(np.float32)


def _output_position(detail: dict[str, Any]) -> int:
    """litert-torch names outputs `..._output_<n>...`; order them as the PyTorch model returned them."""
    match = re.search(r"output_(\d+)", detail["name"])
    return int(match.group(1)) if match else detail["index"]


@contextlib.contextmanager
def _litert_qat_patterns() -> Iterator[None]:
    """litert-torch 0.10 hands torchao a plain function as a conv-BN pattern, which torch 2.14's export refuses
    ("Expected 'mod' to be an instance of 'torch.nn.Module', got function"); while preparing QAT, wrap it in
    the module torchao itself uses for this. Nothing changes when litert-torch already passes a module.
    """
    from litert_torch.quantize import pt2e_quantizer_utils as utils
    from torch import nn
    from torchao.quantization.pt2e.export_utils import WrapperModule

    original = utils._get_aten_graph_module_for_pattern

    def wrapped(pattern: Any, *args: Any, **kwargs: Any) -> Any:
        return original(pattern if isinstance(pattern, nn.Module) else WrapperModule(pattern), *args, **kwargs)

    utils._get_aten_graph_module_for_pattern = wrapped
    try:
        yield
    finally:
        utils._get_aten_graph_module_for_pattern = original


class TFLite(Runtime):
    name = "tflite"
    label = "TFLite"
    order = 50
    artifact = "model.tflite"
    # NPU delegates run fp16 or int8 graphs: the same NPU precisions as OpenVINO and CoreML.
    precisions = {"cpu": ("fp32", "int8"), "npu": ("fp16", "int8")}
    packages = {"litert_torch": "litert-torch", "ai_edge_litert": "ai-edge-litert"}

    @classmethod
    def export_imports(cls, precision: str) -> tuple[str, ...]:
        return ("litert_torch", "torchao.quantization.pt2e") if precision == "int8" else ("litert_torch",)

    @classmethod
    def run_unavailable(cls, target: str) -> str | None:
        if target == "npu" and not tflite_delegates():
            return "no TFLite NPU delegate: set EDGEBENCH_TFLITE_DELEGATE to the delegate's .so"
        return None

    @property
    def device(self) -> str:
        return "npu delegate" if self.options.target == "npu" else "cpu (XNNPACK)"

    def export(self, model: Any, example: Any, folder: Path) -> Path:
        import litert_torch

        path = folder / self.artifact
        if self.options.precision == "int8":
            self._export_int8(model, example, path)
        elif self.options.precision == "fp16":
            from litert_torch.generative.quantize import quant_recipes

            litert_torch.convert(model.eval(), (example,), quant_config=quant_recipes.full_fp16_recipe()
                                 ).export(str(path))
        else:
            litert_torch.convert(model.eval(), (example,)).export(str(path))
        return path

    def _export_int8(self, model: Any, example: Any, path: Path) -> None:
        import litert_torch
        import torch
        from litert_torch.quantize import pt2e_quantizer, quant_config
        from torchao.quantization import pt2e
        from torchao.quantization.pt2e import quantize_pt2e

        quantizer = pt2e_quantizer.PT2EQuantizer().set_global(pt2e_quantizer.get_symmetric_quantization_config(
            is_per_channel=True, is_dynamic=False, is_qat=self.qat is not None))
        head = detection_head(model)
        if head is not None:  # a detector's head stays float, as in PyTorch compiled (models.heads): quantized,
            # its DFL softmax gets a calibrated output scale that LiteRT refuses (it requires 1/256). By type: the
            # quantizer's name filter misreads torch.export's module paths, and its type filter compares with
            # what the graph records, the class or (torch 2.14) its qualified name, so both are named.
            kind = type(model.get_submodule(head))
            for name in (kind, f"{kind.__module__}.{kind.__qualname__}"):
                quantizer.set_module_type(name, None)
        if self.qat is None:
            prepared = quantize_pt2e.prepare_pt2e(torch.export.export(model.eval(), (example,)).module(), quantizer)
            with torch.no_grad():
                for batch in calibration_batches(self.calibration, example.shape[0]):
                    prepared(torch.from_numpy(batch))
        else:
            with _litert_qat_patterns():
                prepared = quantize_pt2e.prepare_qat_pt2e(export_for_training(model, example), quantizer)
            pt2e.allow_exported_model_train_eval(prepared)
            self.qat.train(prepared)
            pt2e.move_exported_model_to_eval(prepared)  # BatchNorm and dropout ops back to inference
        quantized = quantize_pt2e.convert_pt2e(prepared, fold_quantize=False)
        # LiteRT converts in eval mode, as it asks ("converted in training mode" otherwise): an exported module's
        # flag stays True whatever its ops are, and its own .eval() is refused, so nn.Module's sets it.
        torch.nn.Module.train(quantized, False)
        if self.qat is not None:
            self.trained = quantized
        litert_torch.convert(quantized, (example,), quant_config=quant_config.QuantConfig(pt2e_quantizer=quantizer)
                             ).export(str(path))

    def stored_weights(self, artifact: Path) -> list[np.ndarray]:
        """The filter tensors of the convolution and fully connected operators, as the flatbuffer stores them."""
        from ai_edge_litert.interpreter import Interpreter

        interpreter = Interpreter(model_path=str(artifact))
        interpreter.allocate_tensors()
        ops = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV")
        filters = {op["inputs"][1] for op in interpreter._get_ops_details() if op["op_name"] in ops}
        return [np.array(interpreter.get_tensor(i)) for i in sorted(filters)]

    def load(self, artifact: Path) -> None:
        from ai_edge_litert.interpreter import Interpreter, load_delegate

        delegates = None
        if self.options.target == "npu":
            delegates = [load_delegate(p, tflite_delegate_options()) for p in tflite_delegates()]
        self.interpreter = Interpreter(model_path=str(artifact), num_threads=self.options.threads,
                                       experimental_delegates=delegates)
        self.interpreter.allocate_tensors()
        self.artifact_path = artifact  # a profiled run opens it again (profile)
        self.input = self.interpreter.get_input_details()[0]
        self.outputs = sorted(self.interpreter.get_output_details(), key=_output_position)

    def details(self) -> str:
        dtypes = {np.dtype(self.input["dtype"]).name} | {np.dtype(o["dtype"]).name for o in self.outputs}
        text = f"tensor types {'/'.join(sorted(dtypes))}, threads {self.options.threads}"
        if any(np.dtype(t["dtype"]) == np.float16 for t in self.interpreter.get_tensor_details()):
            text += ", fp16 weights"
        if self.options.target == "npu":
            options = ",".join(f"{k}={v}" for k, v in tflite_delegate_options().items())
            text += f", delegates {','.join(tflite_delegates()) or 'none'}" + (f" ({options})" if options else "")
        return text

    def profile(self, prepared: Any, iterations: int) -> list[Any]:
        """LiteRT's own profiler, on a second session of the same `.tflite` (`runtimes._litert`: a CompiledModel
        with the profiler on, XNNPACK at the row's threads). XNNPACK reports each operator it ran with its data
        types in its name (`Convolution (NHWC, QC8) IGEMM #3`: QC8 and QS8 are int8), numbered as it numbers
        them; an operator left to LiteRT's own kernels is named as the model names its type (`GATHER_ND node 41`)
        with the precision of its first input. Multiply-adds come from the `.tflite`'s shapes, where XNNPACK's
        operators match the model's (`runtimes._litert.delegated_macs`)."""
        if self.options.target != "cpu":
            raise ProfileUnavailable("LiteRT is profiled on the CPU (XNNPACK) only here: the NPU delegates are "
                                     "loaded into the interpreter, which has no profiler")
        from edgebench.bench.measure.profile import PROFILE_WARMUP
        from edgebench.runtimes._litert import ProfiledModel

        recorded = []
        with ProfiledModel(self.artifact_path, self.options.threads) as model:
            model.feed(prepared)
            for _ in range(PROFILE_WARMUP):
                model.run()
            for _ in range(iterations):
                model.restart()
                start = time.perf_counter()
                model.run()
                wall_ms = (time.perf_counter() - start) * 1e3
                recorded.append((wall_ms, model.events()))
        return self._operators(recorded)

    def _operators(self, recorded: list[tuple[float, list[Any]]]) -> list[Any]:
        """Each profiled inference's operator records as operators, with their precision and multiply-adds."""
        from edgebench.bench.measure.profile import OpTime, ProfiledIteration
        from edgebench.runtimes._litert import DELEGATE_EVENTS, OPERATOR_EVENT, delegated_macs, graph_ops

        graph = {op.node: op for op in graph_ops(self.interpreter._get_ops_details(),
                                                  self.interpreter.get_tensor_details())}
        first = recorded[0][1] if recorded else []
        delegated = {e.node: e.tag for e in first if e.kind in DELEGATE_EVENTS}
        by_kernels = {e.node for e in first if e.kind == OPERATOR_EVENT and e.node in graph}
        macs = delegated_macs(delegated, list(graph.values()), by_kernels)
        counted = macs is not None  # else no line has multiply-adds: a part of them would be a false share
        profiled = []
        for wall_ms, events in recorded:
            ops = []
            for event in events:
                if event.kind in DELEGATE_EVENTS:
                    ops.append(OpTime(name=f"{event.tag} #{event.node}", kind=xnnpack_kind(event.tag),
                                      precision=xnnpack_precision(event.tag), ms=event.us / 1e3,
                                      macs=macs.get(event.node, 0.0) if counted else 0.0))
                elif event.kind == OPERATOR_EVENT and event.node in graph and graph[event.node].kind != "DELEGATE":
                    op = graph[event.node]  # an operator LiteRT's own kernels ran (a delegate's node is not one)
                    ops.append(OpTime(name=f"{op.kind} node {op.node}", kind=op.kind, precision=op.precision,
                                      ms=event.us / 1e3, macs=op.macs if counted else 0.0))
            profiled.append(ProfiledIteration(wall_ms, tuple(ops)))
        return profiled

    def prepare(self, x: np.ndarray) -> Any:
        return quantize(x, self.input)

    def run(self, inputs: Any) -> Any:
        self.interpreter.set_tensor(self.input["index"], inputs)
        self.interpreter.invoke()
        return self.interpreter

    def fetch(self, outputs: Any) -> list[np.ndarray]:
        return [dequantize(outputs.get_tensor(o["index"]), o) for o in self.outputs]
