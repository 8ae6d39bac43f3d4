"""Per-operator profiles in one format for every runtime: what each operator cost, in which precision it ran.

Each adapter runs its own runtime's profiler (`Runtime.profile`) in a profiled round after the timed rounds,
and hands back, per profiled inference, its wall time and the operators the runtime reported (`OpTime`).
This module turns that into one tidy profile per row (`summarise`): per operator its median time per
inference over the profiled iterations, its category and executed precision, and its share of the profiled
total, with the time no operator accounts for (the runtime's launch and scheduling, the profiler's own
bookkeeping) on its own line, `OUTSIDE`. It knows nothing about runtimes; the adapters know nothing about
categories.
"""

from __future__ import annotations

import csv
import re
import statistics
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

PROFILE_FILE = "profile.csv"
PROFILE_PARQUET = "profile.parquet"  # the same lines for notebooks, where pandas and pyarrow are installed
PROFILE_ITERATIONS = 20  # profiled inferences per row, after the runtime's own warm-up
PROFILE_WARMUP = 3  # a fresh profiling session's first inferences (allocation, kernel choice) are not kept
OUTSIDE = "(outside operators)"

CATEGORIES = ("convolution", "matrix multiply", "pooling", "activation", "element-wise", "normalisation",
              "reshape/copy", "quantize/dequantize", "other")

# First match wins, on the lower-cased operator type. Order matters: `conv_transpose` is a
# convolution before it is a transpose, `addmm` a matrix product before an addition, and ONNX Runtime's
# QLinear* operators are named after what they compute once the prefix is dropped (`qlinear_prefix`).
_RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    # Conversions only: FullyConnectedQuantized (OpenVINO) is a matrix product, not a quantize operator.
    # TensorRT names a quantize or dequantize node it made a reformat of `Reformat (QDQ)`.
    ("quantize/dequantize", ("quantizelinear", "dequantize", "fakequant", "fake_quant", "quantize_per", "(qdq)")),
    ("reshape/copy", ("convert",)),  # OpenVINO's precision conversion, not a convolution
    ("convolution", ("conv",)),
    ("matrix multiply", ("matmul", "gemm", "linear", "addmm", "::mm", "bmm", "fullyconnected", "fully_connected",
                         "fully connected", "matrixmultiply",
                         "innerproduct", "inner_product", "einsum")),
    ("pooling", ("pool", "reducemean", "aten::mean", "globalaverage", "mean")),
    ("normalisation", ("batchnorm", "batch_norm", "layernorm", "layer_norm", "groupnorm", "group_norm",
                       "instancenorm", "instance_norm", "normaliz", "mvn")),
    ("activation", ("relu", "sigmoid", "silu", "swish", "gelu", "tanh", "softmax", "clip", "clamp", "mish",
                    "hardtanh", "logistic", "activation")),
    ("reshape/copy", ("reshape", "view", "flatten", "transpose", "permute", "copy", "contiguous", "concat",
                      "aten::cat", "reorder", "slice", "split", "squeeze", "gather", "pad", "expand", "clone",
                      "aten::to", "shape", "identity", "empty", "select", "stack", "strided", "resize", "upsample",
                      "reformat", "shuffle")),
    ("element-wise", ("add", "mul", "sub", "div", "eltwise", "pow", "sqrt", "exp", "neg", "subgraph", "sum",
                      "where", "maximum", "minimum", "erf", "pointwise", "elementwise")),
)


def qlinear_prefix(text: str) -> str:
    """ONNX Runtime's fused int8 operators (QLinearConv, QLinearAdd, QLinearMatMul) without the prefix that
    names their arithmetic, not their operation."""
    return text[len("qlinear"):] if text.startswith("qlinear") else text


# Inductor's generated kernels are named after the operators fused into them (`cpp_fused_addmm_mean_view_2`).
# Inductor calls convolutions and matrix products out to oneDNN, MKL, cuDNN or cuBLAS, on lines of their own, so
# such a word in a generated kernel's name is that call's epilogue (measured: mobilenet_v2's `addmm_mean_view`
# kernel adds the classifier's bias after MKL's product), not the product. Its category is read without those
# words. A template kernel (Triton's `triton_tem_`, max-autotune) is a product and keeps them.
_GENERATED_KERNEL = re.compile(r"^(graph_\d+_)?(cpp_fused_|triton_(poi|per|red)_)")
_PRODUCT_WORDS = {"convolution", "conv", "conv2d", "addmm", "mm", "bmm", "baddbmm", "matmul", "linear"}


# Types named by a word too common to look for inside others (`aten::_scaled_dot_product_attention` is no scale).
_EXACT = {"scale": "element-wise", "quantize": "quantize/dequantize"}  # TensorRT's per-channel scale; its Q layer


def categorise(kind: str) -> str:
    """The operator category (one of `CATEGORIES`) of an operator type as a runtime reports it."""
    text = qlinear_prefix(kind.lower())
    if text in _EXACT:
        return _EXACT[text]
    if _GENERATED_KERNEL.match(text):
        text = "_".join(word for word in text.split("_") if word not in _PRODUCT_WORDS)
    for category, needles in _RULES:
        if any(needle in text for needle in needles):
            return category
    return "other"


@dataclass(frozen=True)
class OpTime:
    """One operator's time in one profiled inference, as the runtime reported it."""

    name: str  # the operator (node, kernel or layer) as the runtime names it
    kind: str  # its type as the runtime names it: Conv, aten::mkldnn_convolution, Convolution
    precision: str  # the precision its kernel ran in: int8, fp16, bf16, fp32 ("" where nothing says)
    ms: float
    layer: str = ""  # the model's module path it comes from, where that name survives export
    calls: int = 1  # times it ran in the inference, where the runtime reports one entry for several
    kernel: str = ""  # the implementation the runtime chose, where it says (OpenVINO: brgconv_avx512_dw_f32)
    macs: float = 0.0  # its multiply-adds per inference, where the runtime's graph gives the shapes (0: unknown)


@dataclass(frozen=True)
class ProfiledIteration:
    """One profiled inference: its wall time (profiler on) and the operators the profiler saw in it."""

    wall_ms: float
    ops: tuple[OpTime, ...]


@dataclass
class ProfileLine:
    """One row of `profile.csv`: an operator of a result row, its median time per inference and share."""

    run: str
    key: str  # the result row's key (`bench.results.row_key`)
    runtime: str
    precision: str  # the row's precision
    operator: str
    kind: str
    layer: str
    category: str
    executed: str  # the precision the operator's kernel ran in ("" unknown)
    kernel: str  # the implementation the runtime chose, where it says
    macs: float  # its multiply-adds per inference, from the runtime's graph (0: unknown, or none)
    ms: float  # median over the profiled iterations, per inference (0 in those it did not run)
    share: float  # of the profiled total (the operators plus `OUTSIDE`)
    calls: float  # median times per inference the runtime reported it


PROFILE_COLUMNS = [f.name for f in fields(ProfileLine)]


@dataclass
class Profile:
    """A row's profile: its lines, largest first, and what the profiled inference cost as a whole."""

    iterations: int
    wall_ms: float  # median profiled inference, profiler on: compare with the row's unprofiled p50
    lines: list[ProfileLine]

    @property
    def operator_ms(self) -> float:
        return sum(line.ms for line in self.lines if line.operator != OUTSIDE)

    def top(self, n: int = 3) -> list[ProfileLine]:
        return [line for line in self.lines if line.operator != OUTSIDE][:n]

    def integer_share(self) -> float | None:
        """Share of the operators' time in integer kernels: the arithmetic, not the conversions into and out of
        integer (quantize/dequantize operators count as float time). None when no operator time was seen."""
        total = self.operator_ms
        if total <= 0:
            return None
        return sum(line.ms for line in self.lines if line.operator != OUTSIDE and integer_arithmetic(line)) / total

    def integer_mac_share(self) -> float | None:
        """Share of the model's multiply-adds (as the runtime's graph counts them) that ran in integer kernels:
        beside the time share, it tells a few slow float operators from many: mobilenet_v2's depthwise
        convolutions are a small share of its multiply-adds and a large share of its time. None where the
        runtime's profile carries no multiply-adds."""
        total = sum(line.macs for line in self.lines)
        if total <= 0:
            return None
        return sum(line.macs for line in self.lines if integer_arithmetic(line)) / total

    def float_lines(self, n: int = 3) -> list[ProfileLine]:
        """The slowest operators that did not compute in integer kernels (in an int8 row: what stayed float, and
        the conversions into and out of integer)."""
        return [line for line in self.lines if line.operator != OUTSIDE and not integer_arithmetic(line)][:n]


def integer_arithmetic(line: ProfileLine) -> bool:
    """An operator that computed in an integer kernel: not a conversion into or out of integer."""
    return line.executed == "int8" and line.category != "quantize/dequantize"


def summarise(iterations: Sequence[ProfiledIteration], run: str = "", key: str = "", runtime: str = "",
              precision: str = "") -> Profile:
    """Median time per inference of each operator (summed within an inference where the runtime names an
    operator type rather than a node, as PyTorch does), and what the median profiled inference spent outside
    them as `OUTSIDE`, so that the lines add up to it (or to the operators alone, where their medians exceed
    it: a runtime whose operators overlap in time)."""
    if not iterations:
        return Profile(0, 0.0, [])
    Identity = tuple[str, str, str, str, str]
    per_op: dict[Identity, list[float]] = defaultdict(lambda: [0.0] * len(iterations))
    calls: dict[Identity, list[float]] = defaultdict(lambda: [0.0] * len(iterations))
    macs: dict[Identity, float] = {}
    for i, iteration in enumerate(iterations):
        for op in iteration.ops:
            identity = (op.name, op.kind, op.precision, op.layer, op.kernel)
            per_op[identity][i] += op.ms
            calls[identity][i] += op.calls
            macs[identity] = op.macs
    medians = {identity: statistics.median(times) for identity, times in per_op.items()}
    wall = statistics.median(iteration.wall_ms for iteration in iterations)
    # The lines add up to the median profiled inference: what its operators' medians leave is outside them.
    outside_ms = max(wall - sum(medians.values()), 0.0)
    total = sum(medians.values()) + outside_ms

    def line(identity: Identity, ms: float, count: float) -> ProfileLine:
        name, kind, executed, layer, kernel = identity
        return ProfileLine(run=run, key=key, runtime=runtime, precision=precision, operator=name, kind=kind,
                           layer=layer, category=categorise(kind) if name != OUTSIDE else "other",
                           executed=executed, kernel=kernel, macs=macs.get(identity, 0.0), ms=ms,
                           share=ms / total if total > 0 else 0.0, calls=count)

    lines = [line(identity, ms, statistics.median(calls[identity])) for identity, ms in medians.items()]
    lines.sort(key=lambda item: item.ms, reverse=True)
    lines.append(line((OUTSIDE, "", "", "", ""), outside_ms, 1))
    return Profile(len(iterations), wall, lines)


def timed_calls(step: Callable[[], object], count: int) -> list[float]:
    """Wall milliseconds of `count` calls of `step`: a profiled session's inferences, warm-up included (the
    runtime's profile records those too, so both lists line up and drop the same warm-up)."""
    walls = []
    for _ in range(count):
        start = time.perf_counter()
        step()
        walls.append((time.perf_counter() - start) * 1e3)
    return walls


def line_label(line: ProfileLine) -> str:
    """How a table names a profile line: `node_Conv_292 (QLinearConv)`, its type only where the name differs; an
    operator type with the layer that ran it, where the runtime gives one (eager PyTorch):
    `aten::mkldnn_convolution in features.18.0`."""
    if line.kind and line.kind != line.operator:
        return f"{line.operator} ({line.kind})"
    return f"{line.operator} in {line.layer}" if line.layer and line.operator != OUTSIDE else line.operator


def operators_text(lines: Sequence[ProfileLine]) -> str:
    """Operators as a table cell: `node_Conv_292 (QLinearConv) 21%, ...` (`line_label`)."""
    return ", ".join(f"{line_label(line)} {line.share:.0%}" for line in lines)


def precision_of_dtype(dtype: str) -> str:
    """A tensor element type's name, as runtimes write it (float, float16, uint8, FLOAT32, i8), as a precision."""
    text = dtype.lower()
    if "int8" in text or text in ("i8", "u8"):
        return "int8"
    if "bfloat16" in text or text == "bf16":
        return "bf16"
    if "float16" in text or text in ("f16", "fp16", "half"):
        return "fp16"
    if "float" in text or text in ("f32", "fp32"):
        return "fp32"
    return ""


def kernel_precision(kernel: str) -> str:
    """The precision in a kernel's name, as OpenVINO's CPU plugin writes it (brgconv_avx512_amx_I8, jit_avx512_FP32,
    ref_any_bf16): its last word."""
    last = re.split(r"[_\s]", kernel.strip())[-1].lower() if kernel.strip() else ""
    return {"i8": "int8", "u8": "int8", "bf16": "bf16", "f16": "fp16", "fp16": "fp16", "f32": "fp32",
            "fp32": "fp32"}.get(last, "")


def write_profile(path: Path, lines: Sequence[ProfileLine]) -> None:
    """Append a row's lines to the run's profile.csv (written once per row; a header when the file is new)."""
    new = not path.exists()
    with open(path, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=PROFILE_COLUMNS)
        if new:
            writer.writeheader()
        writer.writerows(asdict(line) for line in lines)


def write_profile_parquet(path: Path, lines: Sequence[ProfileLine]) -> bool:
    """`lines` as Parquet (`PROFILE_COLUMNS`), rewritten whole. False where pandas or pyarrow is missing (a lean
    GPU setup): the CSV is the record, the Parquet a convenience."""
    try:
        import pandas as pd
        import pyarrow  # noqa: F401  (pandas' Parquet engine)
    except ImportError:
        return False
    pd.DataFrame([asdict(line) for line in lines], columns=PROFILE_COLUMNS).to_parquet(path, index=False)
    return True


def read_profile(path: Path) -> list[ProfileLine]:
    """A run's profile lines (none when it was not profiled)."""
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return [ProfileLine(**{**record, "ms": float(record["ms"]), "share": float(record["share"]),
                               "calls": float(record["calls"]), "macs": float(record.get("macs") or 0)})
                for record in csv.DictReader(f)]

