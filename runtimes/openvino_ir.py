"""OpenVINO: IR converted from the ONNX file, compiled with the LATENCY hint and an explicit precision.

OpenVINO picks bf16 by default on CPUs with AVX512-BF16 (measured here: 1.7x slower, 1e-2 error);
the precision is always set, and read back from the compiled model into the row's details.
The Python converter (`ov.convert_model`) sends telemetry unless opted out, so the IR is made
with the runtime's own ONNX reader instead, which sends nothing.
int8 is NNCF's post-training quantization of the IR (`nncf.quantize`), calibrated on the task's images;
the parts NNCF leaves in float run at f32. Quantization-aware int8 is NNCF's QAT on the PyTorch model,
exported as Q/DQ ONNX, which OpenVINO reads into an int8 IR.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import numpy as np

from edgebench.models.heads import detection_head
from edgebench.runtimes._onnx import ONNX_PACKAGES, export_onnx, module_paths, nodes_in_decode
from edgebench.runtimes._quant import calibration_batches, nncf_qat_onnx
from edgebench.runtimes.base import NOTES_SUFFIX, Runtime

LAYERS_NOTE = f"layers{NOTES_SUFFIX}"  # ONNX node name -> PyTorch module, written beside the IR at export

DEVICES = {"cpu": "CPU", "gpu": "GPU", "npu": "NPU"}
HINTS = {"fp32": "f32", "fp16": "f16", "bf16": "bf16", "int8": "f32"}  # int8: quantized ops; the rest in f32
HINTED_DEVICES = ("CPU", "GPU")  # devices that take a precision hint; the NPU always computes in fp16


def precision_fallback(device: str, wanted: str, chosen: str | None) -> str | None:
    """Why a compiled model is not computing at `wanted`, or None when it is (or the device takes no hint).

    The CPU plugin quietly falls back to f32 where the CPU has no native bf16/fp16 arithmetic.
    """
    if chosen is not None and chosen != wanted:
        return f"OpenVINO on {device} computes in {chosen} when asked for {wanted} (no native support on this device)"
    return None


def decode_ops(ov_model: Any, onnx_model: Any, head: str | None) -> list[str]:
    """The OpenVINO ops of a detector's decode: its ONNX nodes (`nodes_in_decode`), whose names OpenVINO's ONNX
    reader keeps as the ops' friendly names."""
    decode = set(nodes_in_decode(onnx_model, head))
    return sorted(op.get_friendly_name() for op in ov_model.get_ops() if op.get_friendly_name() in decode)


class OpenVINO(Runtime):
    name = "openvino"
    label = "OpenVINO"
    order = 30
    artifact = "model.xml"  # with model.bin beside it
    # The NPU runs fp16 graphs and NNCF's int8 IR, the same NPU precisions as CoreML and TFLite delegates.
    precisions = {"cpu": ("fp32", "bf16", "fp16", "int8"), "gpu": ("fp32", "fp16"), "npu": ("fp16", "int8")}
    packages = {"openvino": "openvino", **ONNX_PACKAGES}

    @classmethod
    def export_imports(cls, precision: str) -> tuple[str, ...]:
        return ("onnx", "onnxscript", "openvino", "nncf") if precision == "int8" else ("onnx", "onnxscript", "openvino")

    @classmethod
    def export_unavailable(cls, target: str, precision: str) -> str | None:
        reason = super().export_unavailable(target, precision)
        if reason is None and precision == "int8" and importlib.util.find_spec("nncf") is None:
            return "OpenVINO int8 needs nncf (pip install nncf)"
        return reason

    @classmethod
    def run_unavailable(cls, target: str) -> str | None:
        import openvino as ov

        available = ov.Core().available_devices
        if not any(d.split(".")[0] == DEVICES[target] for d in available):
            return f"OpenVINO {ov.__version__} found no {DEVICES[target]} device (found {', '.join(available)})"
        return None

    @property
    def device(self) -> str:
        return DEVICES[self.options.target]

    def export(self, model: Any, example: Any, folder: Path) -> Path:
        import openvino as ov

        onnx_path = folder / "intermediate.onnx"
        int8 = self.options.precision == "int8"
        batches = calibration_batches(self.calibration, example.shape[0]) if int8 else []
        if int8 and self.qat is not None:
            self.trained = nncf_qat_onnx(model, example, batches, self.qat, onnx_path)
            ov_model = ov.Core().read_model(str(onnx_path))  # Q/DQ pairs become int8 FakeQuantize
        else:
            ov_model = ov.Core().read_model(str(export_onnx(model, example, onnx_path)))
        if int8 and self.qat is None:
            import nncf
            import onnx

            # A detector's decode stays in float (runtimes._quant.detection_head), by the ONNX node names
            # OpenVINO keeps as its ops' names; Ultralytics' own OpenVINO int8 export ignores the same ops.
            decode = decode_ops(ov_model, onnx.load(str(onnx_path), load_external_data=False), detection_head(model))
            ignored = nncf.IgnoredScope(names=decode, validate=False)
            ov_model = nncf.quantize(ov_model, nncf.Dataset(batches), subset_size=len(batches),
                                     ignored_scope=ignored)
        path = folder / self.artifact
        # fp16 rows ship fp16 weights (half the file); fp32 and bf16 rows keep fp32 weights.
        ov.save_model(ov_model, str(path), compress_to_fp16=self.options.precision == "fp16")
        # The plugin's nodes keep the ONNX nodes' names but not their metadata: which PyTorch module each came
        # from is noted beside the IR for its profile (not part of its size: NOTES_SUFFIX).
        (folder / LAYERS_NOTE).write_text(json.dumps(module_paths(onnx_path), sort_keys=True))
        onnx_path.unlink()  # the row's size is the IR's alone
        return path

    def stored_weights(self, artifact: Path) -> list[np.ndarray]:
        """Constants of rank >= 2 of the IR (int8 IRs keep i8 weights beside their float scales)."""
        import openvino as ov

        return [op.get_data() for op in ov.Core().read_model(str(artifact)).get_ops()
                if op.get_type_name() == "Constant" and len(op.get_output_shape(0)) >= 2]

    def compile_config(self) -> dict[str, Any]:
        """The compiled model's settings: the timed model's, and the profiled one's (`profile`) with PERF_COUNT."""
        hint = "THROUGHPUT" if self.options.mode == "throughput" else "LATENCY"
        config: dict[str, Any] = {"PERFORMANCE_HINT": hint}
        if self.device in HINTED_DEVICES:
            config["INFERENCE_PRECISION_HINT"] = HINTS[self.options.precision]
        if self.device == "CPU":
            config["INFERENCE_NUM_THREADS"] = self.options.threads
        return config

    def load(self, artifact: Path) -> None:
        import openvino as ov

        self.artifact_path = artifact
        self.compiled = ov.Core().compile_model(str(artifact), self.device, self.compile_config())
        self.request = self.compiled.create_infer_request()
        self.outputs = len(self.compiled.outputs)

    def _computed_precision(self) -> str | None:
        """The precision the compiled model reports it computes in (None where the device takes no hint)."""
        if self.device not in HINTED_DEVICES:
            return None
        return self.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()

    def label_mismatch(self) -> str | None:
        return precision_fallback(self.device, HINTS[self.options.precision], self._computed_precision())

    def _readable(self, name: str) -> Any:
        """A compiled model's property, or None where the device does not report it.

        The NPU plugin throws on reading a property it does not list, or one not set before compiling: a
        row already timed must not become an error for want of a detail.
        """
        try:
            if name not in self.compiled.get_property("SUPPORTED_PROPERTIES"):
                return None
            return self.compiled.get_property(name)
        except RuntimeError:
            return None

    def details(self) -> str:
        precision = self._computed_precision() or "device's"
        parts = [f"inference precision {precision}"]
        for label, name in (("hint", "PERFORMANCE_HINT"), ("streams", "NUM_STREAMS")):
            value = self._readable(name)
            parts.append(f"{label} {value if value is not None else 'not reported by ' + self.device}")
        return ", ".join(parts)

    def throughput_streams(self, x: np.ndarray) -> list[Any]:
        """As many infer requests as the compiled model says it serves at once (THROUGHPUT hint)."""
        count = int(self._readable("OPTIMAL_NUMBER_OF_INFER_REQUESTS") or 1)
        requests = [self.compiled.create_infer_request() for _ in range(count)]
        return [lambda request=request: request.infer({0: x}) for request in requests]

    def profile(self, prepared: Any, iterations: int) -> list[Any]:
        """OpenVINO's performance counters (PERF_COUNT), on a second compilation of the same IR with the same
        settings: per executed node its layer type, the kernel the plugin chose and that kernel's precision
        (brgconv_avx512_amx_I8: integer). Nodes the plugin fused into another report no time of their own."""
        import time

        import openvino as ov

        from edgebench.bench.measure.profile import PROFILE_WARMUP, OpTime, ProfiledIteration, kernel_precision

        core = ov.Core()
        model = core.read_model(str(self.artifact_path))  # read once: its shapes give the multiply-adds
        macs = ir_macs(model)
        adds = bias_adds(model, macs)
        note = self.artifact_path.parent / LAYERS_NOTE
        layers = json.loads(note.read_text()) if note.exists() else {}  # an IR from before the note: no layers
        compiled = core.compile_model(model, self.device, {**self.compile_config(), "PERF_COUNT": True})
        request = compiled.create_infer_request()
        profiled = []
        for i in range(PROFILE_WARMUP + iterations):
            start = time.perf_counter()
            request.infer({0: prepared})
            wall_ms = (time.perf_counter() - start) * 1e3
            if i < PROFILE_WARMUP:
                continue
            infos = [info for info in request.profiling_info if info.status == info.Status.EXECUTED]
            executed = {info.node_name for info in infos}
            ops = tuple(OpTime(name=info.node_name, kind=info.node_type, precision=kernel_precision(info.exec_type),
                               ms=info.real_time.total_seconds() * 1e3, kernel=info.exec_type,
                               macs=node_macs(info.node_name, macs, adds, executed),
                               layer=by_op(info.node_name, layers, "")) for info in infos)
            profiled.append(ProfiledIteration(wall_ms, ops))
        return profiled

    def run(self, inputs: Any) -> Any:
        self.request.infer({0: inputs})
        return self.request

    def fetch(self, outputs: Any) -> list[np.ndarray]:
        return [np.array(outputs.get_output_tensor(i).data) for i in range(self.outputs)]


def ir_macs(model: Any) -> dict[str, float]:
    """Multiply-adds per inference of each convolution and matrix product of an IR, by op name: output elements
    times the products each one sums (a Convolution's weights are [O, I, kH, kW], a GroupConvolution's
    [G, O/G, I/G, kH, kW], a MatMul sums over its first input's last axis)."""
    import math

    found = {}
    for op in model.get_ordered_ops():
        kind = op.get_type_name()
        if kind not in ("Convolution", "GroupConvolution", "MatMul") or not op.get_output_partial_shape(0).is_static:
            continue
        out = math.prod(op.get_output_partial_shape(0).to_shape())
        if kind == "MatMul":
            first = op.get_input_partial_shape(0)
            summed = first.to_shape()[-1] if first.is_static and len(first) else 0
        else:
            weights = op.get_input_partial_shape(1)
            skip = 2 if kind == "GroupConvolution" else 1
            summed = math.prod(weights.to_shape()[skip:]) if weights.is_static else 0
        found[op.get_friendly_name()] = float(out * summed)
    return found


def bias_adds(model: Any, macs: dict[str, float]) -> dict[str, tuple[str, float]]:
    """The bias Add after each counted MatMul (past a Gemm's scaling Multiply), by name: the CPU plugin fuses a
    linear layer's MatMul and Add into one FullyConnected node named after the Add (`linear`, not
    `node_linear/WithoutBiases`), which then carries the MatMul's multiply-adds (`node_macs`)."""
    adds = {}
    for op in model.get_ordered_ops():
        if op.get_type_name() != "MatMul" or op.get_friendly_name() not in macs:
            continue
        node = op
        for _ in range(3):  # through a Gemm's alpha (a Multiply by a constant) to its bias Add
            consumers = [target.get_node() for target in node.output(0).get_target_inputs()]
            if len(consumers) != 1 or consumers[0].get_type_name() not in ("Add", "Multiply"):
                break
            node = consumers[0]
            if node.get_type_name() == "Add":
                adds[node.get_friendly_name()] = (op.get_friendly_name(), macs[op.get_friendly_name()])
                break
    return adds


def node_macs(node: str, macs: dict[str, float], adds: dict[str, tuple[str, float]], executed: set[str]) -> float:
    """A profiled node's multiply-adds: its op's, or, for a linear layer's MatMul fused into its bias Add, the
    MatMul's on the node named after the Add (only where the MatMul did not run as a node of its own)."""
    own = by_op(node, macs, None)
    if own is not None:
        return own
    matmul, count = by_op(node, adds, ("", 0.0))
    return count if matmul and not any(by_op(name, {matmul: True}, False) for name in executed) else 0.0


def by_op(node: str, table: dict[str, Any], default: Any) -> Any:
    """What `table` says of a profiled node (its multiply-adds, its module): the plugin names a node after the op
    it executes, with what it fused or split off appended (`node_linear/WithoutBiases/DequantizationMultiply`),
    so the longest name of the table it starts with."""
    parts = node.split("/")
    return next((table[name] for name in ("/".join(parts[:k]) for k in range(len(parts), 0, -1)) if name in table),
                default)
