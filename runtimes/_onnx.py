"""The one ONNX export every ONNX-based adapter shares (ONNX Runtime, OpenVINO, TensorRT), and its static int8."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgebench.models.heads import in_decode

ONNX_PACKAGES = {"onnx": "onnx", "onnxscript": "onnxscript"}
# TensorRT for both adapters that use it (the engine, and ONNX Runtime's TensorRT EP): onnxruntime-gpu 1.31's EP
# links libnvinfer.so.10, and a bare `pip install tensorrt` gives TensorRT 11 today, which leaves that EP unable
# to load (every row falls back). pyproject's `tensorrt` extra pins it, from NVIDIA's index (make install-tensorrt).
TENSORRT_PIN = "'tensorrt-cu13>=10.13,<11'"


def export_onnx(model: Any, example: Any, path: Path, precision: str = "fp32", device: str = "cpu") -> Path:
    """torch.export-based exporter, weights inside the one file.

    The exporter's default writes weights to a separate `.onnx.data` file; one file keeps the artifact
    self-contained (models over 2 GB would need external data). For fp16 the graph itself is exported in
    half precision: TensorRT 11 takes precision only from the graph's types (strong typing; its FP16 builder
    flag is gone), and ONNX Runtime then runs fp16 end to end. Half kernels are traced on `device`.
    """
    import copy

    import torch

    if precision == "fp16":  # a copy: the caller's module stays where and what it was, for its next export
        model = copy.deepcopy(model).to(device=device, dtype=torch.float16)
        example = example.to(device=device, dtype=torch.float16)
    elif precision not in ("fp32", "tf32"):  # tf32: an fp32 graph, computed with TF32 by the runtime
        raise ValueError(f"ONNX export supports fp32, tf32 and fp16, not {precision}")
    with torch.no_grad():
        torch.onnx.export(model.eval(), (example,), str(path), dynamo=True, external_data=False, verbose=False)
    return path


# x86 instructions that accumulate u8 x s8 products in int32 directly (no 16-bit intermediate to saturate).
VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")


@dataclass(frozen=True)
class OrtInt8Settings:
    """How `quantize_static` is set up for one CPU, recorded in the artifact and in the row."""

    activation: str = "uint8"  # uint8 | int8
    weight: str = "int8"
    per_channel: bool = True
    reduce_range: bool = False  # 7-bit weights: what ONNX Runtime advises where u8s8 products can saturate
    symmetric: bool = False  # zero points of 0 and float biases (TensorRT's explicit quantization)
    why: str = "u8s8, ONNX Runtime's default fast path on x86"

    def describe(self) -> str:
        weights = f"{'7-bit ' if self.reduce_range else ''}{self.weight} {'per-channel' if self.per_channel else ''}"
        return f"int8 QDQ: {self.activation} activations, {weights.strip()} weights ({self.why})"


def ort_int8_settings(cpu_flags: Iterable[str], machine: str) -> OrtInt8Settings:
    """The settings ONNX Runtime's quantization guide advises for this CPU.

    On x86 without VNNI (AVX2, or AVX-512 without VNNI) its u8s8 convolution and matmul kernels multiply with
    VPMADDUBSW, whose 16-bit pair sums saturate; the guide advises `reduce_range` or u8u8 there. Measured on an
    AMD EPYC AVX2 guest (mnist_resnet_m, 1,000 test images, fp32 97.7%): u8s8 93.8% (cosine to fp32 0.951),
    u8s8 + reduce_range 97.6% (0.99957), u8u8 97.8% (0.99978), at the same speed within noise. u8u8 keeps
    8-bit weights and cannot saturate, so it is the choice. With VNNI (or off x86) u8s8 accumulates in 32 bits.
    """
    flags = set(cpu_flags)
    x86 = machine.lower() in ("x86_64", "amd64", "i686", "x86")
    if x86 and not flags & set(VNNI_FLAGS):
        return OrtInt8Settings(weight="uint8", why="no VNNI on this CPU: u8s8 products can saturate "
                               "(VPMADDUBSW), so u8u8 as ONNX Runtime's quantization guide advises")
    return OrtInt8Settings(why="VNNI: u8s8 accumulates in int32" if x86 else f"{machine}: u8s8 default")


def this_cpu_int8_settings() -> OrtInt8Settings:
    import platform

    from edgebench.bench.environment import cpu_info

    return ort_int8_settings(cpu_info().get("flags", []), platform.machine())


def onnx_weights(path: Path) -> list[np.ndarray]:
    """Every initializer of rank >= 2 of an ONNX file (weights; biases, scales and zero points are rank <= 1)."""
    import onnx
    from onnx import numpy_helper

    return [numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer if len(t.dims) >= 2]


SETTINGS_KEY = "edgebench.int8"  # the ONNX file's metadata entry that says how it was quantized


def nodes_in_decode(model: Any, head: str | None) -> list[str]:
    """The ONNX nodes of a detector's decode (`runtimes._quant.in_decode`), found by the PyTorch module scopes
    the torch.export exporter records on each node; [] for a model without a detection head."""
    import ast

    if head is None:
        return []
    found = []
    for node in model.graph.node:
        scopes = {p.key: p.value for p in node.metadata_props}.get("pkg.torch.onnx.name_scopes")
        if scopes and in_decode(ast.literal_eval(scopes), head):
            found.append(node.name)
    return found


def quantize_onnx(float_path: Path, path: Path, batches: list[np.ndarray],
                  settings: OrtInt8Settings | None = None, float_nodes: tuple[str, ...] = ()) -> Path:
    """Static QDQ int8 of an ONNX file with onnxruntime.quantization, calibrated on `batches`.

    `settings` default to what this CPU needs (`this_cpu_int8_settings`); they are written into the file's
    metadata (`SETTINGS_KEY`), so a cached artifact still says how it was made. `float_nodes` stay in float
    (a detector's decode: `nodes_in_decode`).
    """
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    settings = settings or this_cpu_int8_settings()
    input_name = onnx.load(str(float_path), load_external_data=False).graph.input[0].name

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter([{input_name: b} for b in batches])

        def get_next(self):
            return next(self.items, None)

    types = {"uint8": QuantType.QUInt8, "int8": QuantType.QInt8}
    extra = {"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False} if settings.symmetric \
        else {}
    quantize_static(str(float_path), str(path), Reader(), quant_format=QuantFormat.QDQ,
                    per_channel=settings.per_channel, reduce_range=settings.reduce_range,
                    activation_type=types[settings.activation], weight_type=types[settings.weight],
                    nodes_to_exclude=list(float_nodes), extra_options=extra)
    model = onnx.load(str(path))
    onnx.helper.set_model_props(model, {**{p.key: p.value for p in model.metadata_props},
                                        SETTINGS_KEY: settings.describe()})
    onnx.save(model, str(path))
    return path


@dataclass
class GraphNames:
    """An exported ONNX graph's node names, what produced each value, and the PyTorch module of each node: what
    a runtime's profile names (a node, or a fused node named after the value it writes) traced back to a node of
    the graph and its module."""

    layers: dict[str, str]  # node -> module path ("" where unknown)
    op_types: dict[str, str]  # node -> op type
    producers: dict[str, str]  # value -> the node writing it
    first_inputs: dict[str, str]  # node -> its first input value
    macs: dict[str, float] = field(default_factory=dict)  # node -> multiply-adds per inference (convolutions, products)

    @classmethod
    def read(cls, path: Path) -> GraphNames:
        """torch.export's exporter records each node's module scopes in its metadata (`['', 'layer1', 'layer1.0',
        'layer1.0.conv1', 'convolution']`). A folded BatchNorm's convolution carries the BatchNorm's scope;
        nodes a quantizer added carry none."""

        import onnx

        names = cls({}, {}, {}, {})
        graph = onnx.load(str(path), load_external_data=False).graph
        names.macs = graph_macs(graph)
        for node in graph.node:
            names.layers[node.name] = module_path(node)
            names.op_types[node.name] = node.op_type
            names.first_inputs[node.name] = node.input[0] if node.input else ""
            names.producers.update({value: node.name for value in node.output})
        return names

    def write(self, path: Path) -> None:
        """Kept beside an artifact whose ONNX file the export removes (TensorRT's engine): its profile reads it."""
        import json
        from dataclasses import asdict

        path.write_text(json.dumps(asdict(self), sort_keys=True))

    @classmethod
    def load(cls, path: Path) -> GraphNames:
        import json

        return cls(**json.loads(path.read_text()))

    def node(self, profiled: str, kind: str = "") -> str:
        """The graph node a profiled name stands for: itself, the exporter's `node_` name, or the node writing
        the value it is named after; for a fused node of type `kind` (ONNX Runtime names a Conv fused with
        its Relu after the Relu's output), the nearest node of that type upstream. Unknown names stay as
        they are."""
        found = next((c for c in (profiled, f"node_{profiled}", self.producers.get(profiled, "")) if c in self.layers),
                     None)
        if found is None:
            return profiled
        kind = kind.removeprefix("QLinear")
        node = found
        for _ in range(3):  # through the activation and add a fusion swallowed
            if not kind or self.op_types.get(node) == kind:
                return node
            node = self.producers.get(self.first_inputs.get(node, ""), "")
        return found


def module_path(node: Any) -> str:
    """The PyTorch module an ONNX node came from, from the scopes torch.export's exporter records in its metadata
    (`['', 'layer1', 'layer1.0', 'layer1.0.conv1', 'convolution']` -> `layer1.0.conv1`); "" where none."""
    import ast

    scopes = next((p.value for p in node.metadata_props if p.key == "pkg.torch.onnx.name_scopes"), "")
    try:
        found = ast.literal_eval(scopes) if scopes else []
    except (ValueError, SyntaxError):
        found = []
    return found[-2] if len(found) >= 2 and isinstance(found[-2], str) else ""


def module_paths(path: Path) -> dict[str, str]:
    """Each node of an ONNX file that names its PyTorch module, with that module (`module_path`), and under the
    names of the values it writes too: OpenVINO names an op it made of a node after that node's output (a Gemm
    `node_linear` becomes a MatMul and its bias Add, run as one FullyConnected named `linear`). A node's own name
    wins where a value has the same."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    found = [(node, module) for node in graph.node if (module := module_path(node))]
    by_value = {value: module for node, module in found for value in node.output}
    return {**by_value, **{node.name: module for node, module in found}}


def graph_macs(graph: Any) -> dict[str, float]:
    """Multiply-adds per inference of each Conv, Gemm and MatMul node, from the shapes ONNX's shape inference
    gives (output elements times the products each one sums); nodes whose shapes it cannot give are left out."""
    import math

    import onnx

    inferred = onnx.shape_inference.infer_shapes(onnx.helper.make_model(graph)).graph
    shapes = {t.name: list(t.dims) for t in graph.initializer}
    for value in [*inferred.input, *inferred.value_info, *inferred.output]:
        dims = value.type.tensor_type.shape.dim
        if dims and all(d.HasField("dim_value") for d in dims):
            shapes[value.name] = [d.dim_value for d in dims]
    found = {}
    for node in graph.node:
        if node.op_type not in ("Conv", "Gemm", "MatMul") or len(node.input) < 2:
            continue
        out, first, second = (shapes.get(name) for name in (node.output[0], node.input[0], node.input[1]))
        if not out:
            continue
        if node.op_type == "Conv" and second:
            summed = math.prod(second[1:])  # weights [O, I/groups, kH, kW]
        elif first:
            trans = any(a.name == "transA" and a.i for a in node.attribute)
            summed = first[0] if trans else first[-1]
        else:
            continue
        found[node.name] = float(math.prod(out) * summed)
    return found


def ort_node_name(event_name: str) -> str:
    """A profiled kernel's name as the graph names it: ONNX Runtime appends `_kernel_time`, and names a node it
    rewrote after the original (`relu_1_nchwc` for a convolution fused with relu_1 in its blocked layout,
    `node_Conv_292_token_1` for a Q/DQ group fused into QLinearConv)."""
    import re

    name = event_name.removesuffix("_kernel_time")
    return re.sub(r"(_nchwc|_token_\d+)$", "", name)


def ort_profile_iterations(events: list[dict[str, Any]], walls_ms: list[float], skip: int,
                           names: GraphNames) -> list[Any]:
    """ONNX Runtime's profile (Chrome trace events) as profiled inferences: each `Node` kernel event assigned to
    the `model_run` it fell in, the first `skip` runs (warm-up) left out. Executed precision: the node's first
    input type as the profile records it (uint8 into a QLinearConv: integer)."""
    import bisect

    from edgebench.bench.measure.profile import OpTime, ProfiledIteration, precision_of_dtype

    runs = sorted((e["ts"], e["ts"] + e["dur"]) for e in events if e.get("name") == "model_run")
    starts = [start for start, _ in runs]
    ops: list[list[OpTime]] = [[] for _ in runs]
    for event in events:
        if event.get("cat") != "Node" or not event.get("name", "").endswith("_kernel_time"):
            continue
        index = bisect.bisect_right(starts, event["ts"]) - 1
        if index < 0 or event["ts"] > runs[index][1]:
            continue
        args = event.get("args", {})
        inputs = args.get("input_type_shape") or [{}]
        dtype = next(iter(inputs[0]), "") if isinstance(inputs[0], dict) else ""
        kind = args.get("op_name", "")
        node = names.node(ort_node_name(event["name"]), kind)
        ops[index].append(OpTime(name=node, kind=kind, precision=precision_of_dtype(dtype), ms=event["dur"] / 1e3,
                                 layer=names.layers.get(node, ""), macs=names.macs.get(node, 0.0)))
    kept = list(zip(walls_ms, ops, strict=False))[skip:]
    return [ProfiledIteration(wall, tuple(found)) for wall, found in kept]
