"""TensorRT: an engine built from the ONNX file with the TensorRT Python API, run with device buffers.

Needs an NVIDIA GPU and the `tensorrt` wheel (from NVIDIA's package index: see the README); device
buffers are torch CUDA tensors, so no extra CUDA binding is needed. The engine is built for the
exact input shape (batch included) in the export step, which is when TensorRT does its tuning.
int8 is explicit quantization, the form TensorRT 10+ recommends (its implicit calibrators are deprecated):
ONNX Runtime's `quantize_static` writes Q/DQ nodes, symmetric int8 for activations and per-channel weights
as TensorRT requires, calibrated on the task's images, and the strongly typed network takes its int8
precision from them.

Its profile is TensorRT's own layer profiler (`IProfiler`): each engine layer's GPU time, named as the engine
names it. The engine is built with detailed profiling verbosity, so its inspector says, per layer, the ONNX
nodes fused into it, the tactic (kernel) TensorRT chose and its tensors' formats: the layer's precision,
and through the ONNX graph's names noted at export, its PyTorch module.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from edgebench.runtimes import _torch
from edgebench.runtimes._onnx import (
    ONNX_PACKAGES,
    TENSORRT_PIN,
    GraphNames,
    OrtInt8Settings,
    export_onnx,
    quantize_onnx,
)
from edgebench.runtimes.base import NOTES_SUFFIX, ProfileUnavailable, Runtime

WORKSPACE_BYTES = 4 << 30
# TensorRT's explicit quantization: symmetric int8 activations and weights, float biases (it fuses them itself).
TENSORRT_INT8 = OrtInt8Settings(activation="int8", symmetric=True, why="TensorRT explicit quantization")
GRAPH_NOTE = f"graph{NOTES_SUFFIX}"  # the ONNX graph's node names, modules and multiply-adds, kept for the profile


class TensorRT(Runtime):
    name = "tensorrt"
    label = "TensorRT"
    order = 40
    artifact = "model.engine"
    precisions = {"gpu": ("fp32", "tf32", "fp16", "int8")}
    packages = {"tensorrt": TENSORRT_PIN, "torch": "torch", **ONNX_PACKAGES}

    @classmethod
    def export_unavailable(cls, target: str, precision: str) -> str | None:
        """The engine is built on the GPU it will run on: no GPU, no engine (an `unavailable` row, not an error)."""
        return super().export_unavailable(target, precision) or _torch.cuda_unavailable(target)

    @classmethod
    def run_unavailable(cls, target: str) -> str | None:
        return _torch.cuda_unavailable(target)

    @classmethod
    def qat_unavailable(cls) -> str | None:
        return ("quantization-aware int8 is not built for TensorRT yet (NNCF's Q/DQ file quantizes activations "
                "asymmetrically; TensorRT needs symmetric int8): its post-training int8 row is measured")

    @property
    def device(self) -> str:
        return "cuda"

    def _logger(self) -> Any:
        import tensorrt as trt

        return trt.Logger(trt.Logger.WARNING)

    def export(self, model: Any, example: Any, folder: Path) -> Path:
        import tensorrt as trt

        reason = _torch.cuda_unavailable("gpu")
        if reason:
            raise RuntimeError(f"building a TensorRT engine needs a GPU: {reason}")
        if self.options.precision == "int8":
            onnx_path = self._int8_onnx(model, example, folder)
        else:
            onnx_path = export_onnx(model, example, folder / "intermediate.onnx", self.options.precision, "cuda")
        logger = self._logger()
        builder = trt.Builder(logger)
        # Strong typing: the precision comes from the graph's types (fp16 graph for fp16). Required in
        # TensorRT 11, which removed the FP16 builder flag; opt-in (and equivalent) in 10.x.
        flags = 0
        if hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"):
            flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
        network = builder.create_network(flags)
        parser = trt.OnnxParser(network, logger)
        if not parser.parse(onnx_path.read_bytes()):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise RuntimeError(f"TensorRT could not parse the ONNX file: {errors}")
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
        if self.options.precision == "fp32":  # TF32 is on by default: an fp32 engine must compute in fp32
            config.clear_flag(trt.BuilderFlag.TF32)
        elif self.options.precision == "tf32":  # the default, set explicitly: this row is TF32 by name
            config.set_flag(trt.BuilderFlag.TF32)
        # Layer names, fused ONNX nodes, tactics and formats kept in the engine for its inspector (what trtexec's
        # --dumpLayerInfo needs): the profile's precision and module of each layer.
        config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
        engine = builder.build_serialized_network(network, config)
        if engine is None:
            raise RuntimeError("TensorRT engine build failed (see run.log)")
        path = folder / self.artifact
        path.write_bytes(bytes(engine))
        GraphNames.read(onnx_path).write(folder / GRAPH_NOTE)  # not part of the engine's size (NOTES_SUFFIX)
        onnx_path.unlink()
        return path

    def _int8_onnx(self, model: Any, example: Any, folder: Path) -> Path:
        """A Q/DQ ONNX file TensorRT builds int8 kernels from: symmetric int8 activations and weights."""
        from edgebench.runtimes._quant import calibration_batches

        float_path = export_onnx(model, example, folder / "float.onnx")
        path = quantize_onnx(float_path, folder / "intermediate.onnx",
                             calibration_batches(self.calibration, example.shape[0]), TENSORRT_INT8)
        float_path.unlink()
        return path

    def load(self, artifact: Path) -> None:
        import tensorrt as trt
        import torch

        self.artifact_path = artifact
        self.engine = trt.Runtime(self._logger()).deserialize_cuda_engine(artifact.read_bytes())
        self.stream = torch.cuda.Stream()
        self.inputs: list[torch.Tensor] = []
        self.outputs: list[torch.Tensor] = []
        self.buffers: dict[str, torch.Tensor] = {}
        for i in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(i)
            shape = tuple(self.engine.get_tensor_shape(name))
            dtype = torch.from_numpy(np.empty(0, dtype=trt.nptype(self.engine.get_tensor_dtype(name)))).dtype
            self.buffers[name] = torch.empty(shape, dtype=dtype, device="cuda")
            is_input = self.engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            (self.inputs if is_input else self.outputs).append(self.buffers[name])
        self.context = self._context()

    def _context(self) -> Any:
        """An execution context reading and writing this row's device buffers."""
        context = self.engine.create_execution_context()
        for name, buffer in self.buffers.items():
            if not context.set_tensor_address(name, buffer.data_ptr()):
                raise RuntimeError(f"TensorRT refused the address of tensor {name!r} ({tuple(buffer.shape)}, "
                                   f"{buffer.dtype})")
        return context

    def close(self) -> None:
        """Context before engine, then the device buffers: what TensorRT holds on the GPU goes with the row."""
        for name in ("context", "engine", "inputs", "outputs", "buffers", "stream"):
            if hasattr(self, name):
                delattr(self, name)

    def label_mismatch(self) -> str | None:
        return _torch.tf32_unsupported("gpu", self.options.precision)

    def details(self) -> str:
        import tensorrt as trt

        return f"TensorRT {trt.__version__}, {self.options.precision} engine, workspace {WORKSPACE_BYTES >> 30} GiB"

    def copies_apart(self) -> bool:
        return True

    def prepare(self, x: np.ndarray) -> Any:
        import torch

        with torch.cuda.stream(self.stream):
            self.inputs[0].copy_(torch.from_numpy(x).to(self.inputs[0].dtype), non_blocking=False)
        return self.inputs[0]

    def run(self, inputs: Any) -> Any:
        if not self.context.execute_async_v3(self.stream.cuda_stream):
            raise RuntimeError("TensorRT execute_async_v3 failed")
        return self.outputs

    def sync(self) -> None:
        self.stream.synchronize()

    def fetch(self, outputs: Any) -> list[np.ndarray]:
        self.stream.synchronize()
        return [o.float().cpu().numpy() for o in outputs]

    def profile(self, prepared: Any, iterations: int) -> list[Any]:
        """TensorRT's layer profiler on a second execution context of the same engine and buffers, so the timed
        context never carries a profiler: per inference, each layer's GPU time as TensorRT reports it after the
        inference, and the wall time of the call and its synchronisation (the input is already on the device). What
        no layer accounts for (launching the layers, the profiler's own timing) is the line outside operators."""
        import time

        import tensorrt as trt

        from edgebench.bench.measure.profile import PROFILE_WARMUP

        layers = engine_layers(self.engine.create_engine_inspector().get_engine_information(
            trt.LayerInformationFormat.JSON))
        if not layers:
            raise ProfileUnavailable("the engine keeps its layers' names only (built without detailed profiling "
                                     "verbosity): no types or precisions to read")
        note = self.artifact_path.parent / GRAPH_NOTE
        names = GraphNames.load(note) if note.exists() else GraphNames({}, {}, {}, {})
        reported: list[tuple[str, float]] = []

        class LayerTimes(trt.IProfiler):
            def __init__(self) -> None:
                trt.IProfiler.__init__(self)

            def report_layer_time(self, layer_name: str, ms: float) -> None:
                reported.append((layer_name, ms))

        profiler = LayerTimes()
        context = self._context()
        context.profiler = profiler
        profiled = []
        for i in range(PROFILE_WARMUP + iterations):
            reported.clear()
            start = time.perf_counter()
            if not context.execute_async_v3(self.stream.cuda_stream):
                raise RuntimeError("TensorRT execute_async_v3 failed in the profiled context")
            self.stream.synchronize()
            wall_ms = (time.perf_counter() - start) * 1e3
            if i >= PROFILE_WARMUP:
                profiled.append(engine_iteration(wall_ms, reported, layers, names, self.options.precision))
        del context
        return profiled


# The engine inspector's tensor formats ("Row major linear FP16 format", "Thirty-two wide channel vectorized row
# major Int8 format", "Half(64,1:8,...)", "Float"), as precisions; first match wins (BFloat16 before Float).
FORMAT_PRECISIONS = (("int8", ("int8",)), ("bf16", ("bfloat16", "bf16")), ("fp16", ("fp16", "half")),
                     ("fp32", ("fp32", "float")))
ONNX_LAYER = re.compile(r"\[ONNX Layer: (.*?)\]")
PRODUCTS = ("Conv", "ConvTranspose", "Gemm", "MatMul")


def engine_layers(info: str) -> dict[str, dict[str, Any]]:
    """The engine inspector's JSON as layer name -> its description; empty where the engine kept names only
    (built without detailed profiling verbosity: its layers are plain strings)."""
    found = json.loads(info).get("Layers", [])
    return {layer["Name"]: layer for layer in found if isinstance(layer, dict) and "Name" in layer}


def format_precision(text: str) -> str:
    lower = text.lower()
    return next((name for name, words in FORMAT_PRECISIONS if any(word in lower for word in words)), "")


def layer_precision(layer: dict[str, Any], category: str, precision: str) -> str:
    """A layer's precision: its first input's format (TensorRT's engine explorer reads it the same way: Int8 into a
    convolution is an int8 kernel, FP32 into a quantize layer is fp32), TF32 where an fp32 input went to a tactic
    whose name says TF32; where no format says, what the tactic's name says (`cuda_kernel_precision`)."""
    from edgebench.runtimes._torch import cuda_kernel_precision

    named = cuda_kernel_precision(str(layer.get("TacticName", "")), category, precision)
    found = next((p for t in layer.get("Inputs", []) if (p := format_precision(str(t.get("Format/Datatype", ""))))),
                 "")
    return "tf32" if found == "fp32" and named == "tf32" else found or named


def layer_nodes(name: str, layer: dict[str, Any], names: GraphNames) -> list[str]:
    """The ONNX nodes a layer computes: those its metadata names (`[ONNX Layer: node_conv2d]`, one per fused node),
    else its name's, where every part of it is a graph node (TensorRT joins fused layers' names with ` + `; a
    reformat's name, `Reformatting CopyNode for Input Tensor 0 to node_conv2d + node_relu`, names its consumer)."""
    found = ONNX_LAYER.findall(str(layer.get("Metadata", "")))
    parts = name.split(" + ")
    return found or (parts if all(part in names.layers for part in parts) else [])


def layer_kind(layer: dict[str, Any], node_types: list[str]) -> str:
    """The layer's type as the inspector names it (Convolution, PointWise, Reformat); a reformat TensorRT made of a
    quantize or dequantize node (`Origin: QDQ`) says so, and a type that names no operation (`Reduce`, `Myelin`)
    is followed by the ONNX type it computes, a product's first (`Reduce (GlobalAveragePool)`)."""
    from edgebench.bench.measure.profile import categorise

    kind = str(layer.get("ParameterType") or layer.get("LayerType") or "")
    if kind == "Reformat" and layer.get("Origin") == "QDQ":
        return f"{kind} (QDQ)"
    return f"{kind} ({node_types[0]})" if node_types and categorise(kind) == "other" else kind


def engine_iteration(wall_ms: float, reported: list[tuple[str, float]], layers: dict[str, dict[str, Any]],
                     names: GraphNames, precision: str) -> Any:
    """One profiled inference from TensorRT's layer reports: each layer with its type, tactic, precision, the
    PyTorch module of the convolution or product it computes (else of its first node that has one), and the
    multiply-adds of the products fused into it, each counted once."""
    from edgebench.bench.measure.profile import OpTime, ProfiledIteration, categorise

    counted: set[str] = set()
    ops = []
    for name, ms in reported:
        layer = layers.get(name, {})
        nodes = layer_nodes(name, layer, names)
        products = [n for n in nodes if names.op_types.get(n) in PRODUCTS]
        kind = layer_kind(layer, [names.op_types[n] for n in [*products, *nodes] if n in names.op_types])
        module = next((names.layers[n] for n in [*products, *nodes] if names.layers.get(n)), "")
        macs = sum(names.macs.get(n, 0.0) for n in products if n not in counted)
        counted.update(products)
        ops.append(OpTime(name=name, kind=kind, precision=layer_precision(layer, categorise(kind), precision), ms=ms,
                          layer=module, kernel=str(layer.get("TacticName", "")), macs=macs))
    return ProfiledIteration(wall_ms, tuple(ops))
