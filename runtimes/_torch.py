"""Helpers shared by the adapters that run PyTorch itself (eager, compiled and TorchScript)."""

from __future__ import annotations

import contextlib
import functools
import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgebench.models.heads import detection_head
from edgebench.runtimes._quant import QatPlan, export_for_training
from edgebench.runtimes.base import Runtime

# tf32: fp32 tensors (TF32 is a math mode); int8: float in, Q/DQ inside.
DTYPES = {"fp32": "float32", "tf32": "float32", "fp16": "float16", "bf16": "bfloat16", "int8": "float32"}


def quantize_x86(model: Any, example: Any, batches: list[np.ndarray], qat: QatPlan | None = None) -> Any:
    """Static int8 with torchao's PT2E X86 Inductor quantizer: an ExportedProgram, and the module it came from.

    It runs fast only compiled (`torch.compile` with Inductor freezing, or AOTInductor), which
    `compile_program` does, and checks.
    """
    import torch
    from torchao.quantization.pt2e.quantizer import x86_inductor_quantizer as x86

    quantizer = x86.X86InductorQuantizer().set_global(
        x86.get_default_x86_inductor_quantization_config(is_qat=qat is not None))
    head = detection_head(model)
    if head is not None:  # a detector's head stays float: torchao's quantizer skips by module, its convs too
        quantizer.set_module_name_qconfig(head, None)
    quantized = drop_unused_tensors(pt2e_quantized(model, example, quantizer, batches, qat))
    return torch.export.export(quantized, (example,)), quantized


def pt2e_quantized(model: Any, example: Any, quantizer: Any, batches: list[np.ndarray],
                   qat: QatPlan | None = None) -> Any:
    """The PT2E flow every PyTorch-side int8 shares (torchao's X86 quantizer, XNNPACK's): the model exported and
    prepared with `quantizer`, calibrated on `batches`, or, with a QAT plan, trained with the quantizer's QAT
    configuration instead (its observers calibrate as it trains); then converted to quantize/dequantize ops."""
    import torch
    from torchao.quantization import pt2e
    from torchao.quantization.pt2e import quantize_pt2e

    if qat is None:
        graph = separate_call_sites(torch.export.export(model.eval(), (example,)).module())
        prepared = quantize_pt2e.prepare_pt2e(graph, quantizer)
        with torch.no_grad():
            for batch in batches:
                prepared(torch.from_numpy(batch))
    else:
        prepared = quantize_pt2e.prepare_qat_pt2e(separate_call_sites(export_for_training(model, example)), quantizer)
        pt2e.allow_exported_model_train_eval(prepared)  # exported programs refuse .train()/.eval() otherwise
        qat.train(prepared)
    return quantize_pt2e.convert_pt2e(prepared)


def separate_call_sites(graph_module: Any) -> Any:
    """Name each call of a module called twice apart in the graph's metadata, so a quantizer sees two partitions.

    torchvision's ResNet blocks call one ReLU module twice. `torch.export` (non-strict) keys the two calls apart
    in `nn_module_stack` (`layer1.0.relu`, `layer1.0.relu@1`) but gives both the same module path, and torch's
    `get_source_partitions` groups nodes by that path: one ReLU "partition" with two outputs, which torchao's X86
    quantizer refuses ("Input partition has more than one output node"), so PyTorch int8 of resnet18 was an
    error row. Metadata only: the graph computes the same."""
    for node in graph_module.graph.nodes:
        stack = node.meta.get("nn_module_stack")
        if not stack:
            continue
        key, (path, kind) = list(stack.items())[-1]
        _, at, call = key.rpartition("@")
        if at and call.isdigit() and not path.endswith(f"@{call}"):
            stack[key] = (f"{path}@{call}", kind)
    return graph_module


def drop_unused_tensors(module: Any) -> Any:
    """Remove the parameters and buffers no node of a graph module reads. convert_pt2e folds each weight into
    an int8 constant but leaves the float original attached, unused: exported, the int8 file carried both and
    was 1.66x the size of the fp32 file."""
    read = {str(node.target) for node in module.graph.nodes if node.op == "get_attr"}
    for name, _ in [*module.named_parameters(), *module.named_buffers()]:
        if name not in read and not any(name.startswith(f"{r}.") for r in read):
            owner, _, attr = name.rpartition(".")
            delattr(module.get_submodule(owner) if owner else module, attr)
    return module


@dataclass(frozen=True)
class CompiledProgram:
    """An exported program compiled by Inductor, and what its generated code says about itself."""

    module: Any  # the compiled module the timed rounds call
    integer_kernels: list[str]  # the oneDNN / quantized operators its code calls (none for a float program)
    generated: tuple[Any, ...]  # the Python modules Inductor generated, whose `call` runs its C++ kernels
    kernel_inputs: dict[str, str]  # each generated C++ kernel's first input type (`generated_kernel_inputs`)


def compile_program(path: Any) -> CompiledProgram:
    """An exported program compiled by Inductor with freezing (weights folded and prepacked for oneDNN), and the
    integer kernels its generated code calls (none for a float program). Compiled here, on the program's example
    input, under inference mode: freezing and the int8 lowering apply only without autograd, and the timed runs
    use inference mode too, so they reuse this compilation instead of recompiling."""

    import importlib.util

    import torch
    import torch._inductor.config as inductor
    from torch._inductor.codecache import PyCodeCache
    from torch._inductor.utils import run_and_get_code

    if importlib.util.find_spec("torchao") is not None:  # an int8 program cannot load without it; fp32 can
        import torchao.quantization.pt2e  # noqa: F401  (registers the quantized ops an int8 program uses)

        # Importing the X86 quantizer registers torchao's Inductor passes that turn dequantize -> conv -> quantize
        # into oneDNN int8 kernels (they moved out of torch into torchao). Without it, a fresh measuring process
        # compiled the q/dq ops around float convolutions (measured: aten.convolution only): "int8" rows timed
        # fp32 kernels.
        import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer  # noqa: F401

    inductor.freezing = True
    program = torch.export.load(str(path))
    compiled = torch.compile(program.module(), dynamic=False)
    args, kwargs = program.example_inputs or ((), {})
    loaded = len(PyCodeCache.modules)
    with torch.inference_mode():
        _, code = run_and_get_code(compiled, *args, **kwargs)
    source = "\n".join(code)
    return CompiledProgram(compiled, integer_kernels(source), tuple(PyCodeCache.modules[loaded:]),
                           generated_kernel_inputs(source))


# Inductor's name for a C++ kernel it generated: cpp_fused_hardtanh_0, or graph_0_cpp_fused_hardtanh_0 as an
# AOTInductor package's kernel profiling records it.
GENERATED_KERNEL = re.compile(r"(?:graph_\d+_)?(cpp_fused_\w+)$")


def generated_kernel_inputs(code: str) -> dict[str, str]:
    """Each generated C++ kernel's first input's element type, from the argument types the generated Python code
    binds it with (`cpp_fused_mean_1 = async_compile.cpp_pybinding(['float*', 'const float*'], ...)`: the first
    `const` pointer, `float`), as AOTInductor's kernels and ONNX Runtime's nodes are given the type of their
    first input."""
    found = {}
    for name, types in re.findall(r"(cpp_fused_\w+)\s*=\s*async_compile\.cpp_pybinding\(\s*\[([^\]]*)\]", code):
        inputs = re.findall(r"const\s+([\w:]+)\s*\*", types)
        if inputs:
            found[name] = inputs[0]
    return found


@contextlib.contextmanager
def kernel_records(generated: tuple[Any, ...]) -> Any:
    """While inside, each C++ kernel Inductor generated runs inside a torch.profiler record of its name: its code
    records nothing, so its time would be the self time of the compiled region around it (`## Call
    CompiledFxGraph ##`), beside the Python wrapper's own. The generated module's `call` looks its kernels up
    by name at each call, so the same compiled code is profiled, a record (a few microseconds) around each
    kernel; the kernels are put back on leaving."""
    import torch

    def recorded(name: str, kernel: Any) -> Any:
        def run(*args: Any) -> Any:
            with torch.autograd.profiler.record_function(name):
                return kernel(*args)
        return run

    originals = [(module, name, kernel) for module in generated for name, kernel in vars(module).items()
                 if GENERATED_KERNEL.match(name) and callable(kernel)]
    for module, name, kernel in originals:
        setattr(module, name, recorded(name, kernel))
    try:
        yield
    finally:
        for module, name, kernel in originals:
            setattr(module, name, kernel)


def integer_kernels(code: str) -> list[str]:
    """The oneDNN / quantized operators Inductor's generated code calls (e.g. onednn.qconv_pointwise)."""
    import re

    return sorted(set(re.findall(r"torch\.ops\.((?:onednn|quantized)\.q\w+)", code)))


def op_precision(name: str, float_precision: str) -> str:
    """The precision a PyTorch operator ran in, from its name: oneDNN's and PyTorch's quantized kernels
    (onednn::qconv2d_pointwise, quantized::linear) are integer; everything else runs at the row's float
    precision (torch.profiler records no dtypes without record_shapes, which slows every call). What is not an
    operator of a library (`## Call CompiledFxGraph ##`, the compiled region's Python wrapper once its generated
    kernels have records of their own (`kernel_records`), or a TorchScript forward, whose self time holds the
    JIT's fused kernels) may compute in either: its precision is left unknown (""). A generated kernel's is its
    first input's type (`generated_precision`)."""
    lower = name.lower()
    quantized = ("onednn::q", "quantized::", "qconv", "qlinear", "int8")
    if any(word in lower for word in quantized) and "quantize" not in lower:
        return "int8"
    if "::" not in name:  # the compiled region, Inductor's generated kernels, the JIT's forward: a mix, unknown
        return ""
    return float_precision


def generated_precision(name: str, kernel_inputs: dict[str, str], precision: str) -> str:
    """A generated C++ kernel's precision, the type of its first input (`cpp_fused_quantize_per_tensor_0` reads
    float: fp32, whatever it writes; unknown where `kernel_inputs` has none), in compiled PyTorch and in an
    AOTInductor package alike; any other operator keeps `precision`."""
    from edgebench.bench.measure.profile import precision_of_dtype

    generated = GENERATED_KERNEL.match(name)
    if generated:
        return precision_of_dtype(kernel_inputs.get(generated.group(1), ""))
    return precision


def profile_calls(step: Any, iterations: int, float_precision: str, model_macs: float | None = None,
                  module: Any = None) -> list[Any]:
    """torch.profiler around each of `iterations` inferences: per operator its self CPU time (a nested
    operator's time is its own, not also its caller's, so the operators add up to the inference), summed per
    operator type and, given the eager `module`, per layer: the innermost submodule that ran it
    (`module_records`). Inductor's generated C++ kernels record no events of their own: their time is the self
    time of the compiled region that calls them, which the profile names as PyTorch does. Multiply-adds come from
    one more inference with shapes recorded (`recorded_macs`; not among the timed ones, as recording shapes slows
    every call), and only where they add up to the model's own count, `model_macs`: else a convolution the
    profiler did not see would make the integer share a false one."""
    from collections import defaultdict

    from torch.profiler import ProfilerActivity

    from edgebench.bench.measure.profile import OpTime, ProfiledIteration

    with module_records(module):
        profiled = []
        for wall_ms, events in profiled_inferences(step, iterations, [ProfilerActivity.CPU]):
            ops: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0.0, 0])
            for event in events:
                if not event.name.startswith(MODULE_RECORD):  # a module's own record is Python, not an operator
                    entry = ops[(operator_name(event.name), event_layer(event))]
                    entry[0] += event.self_cpu_time_total
                    entry[1] += 1
            profiled.append((wall_ms, {identity: entry for identity, entry in ops.items() if entry[0] > 0}))
        macs = recorded_macs(step) if model_macs else {}
    if macs and abs(sum(macs.values()) - model_macs) > MAC_TOLERANCE * model_macs:
        macs = {}
    return [ProfiledIteration(wall_ms, tuple(OpTime(name=name, kind=name, layer=layer, ms=us / 1e3, calls=int(calls),
                                                    precision=op_precision(name, float_precision),
                                                    macs=macs.get((name, layer), 0.0))
                                             for (name, layer), (us, calls) in ops.items()))
            for wall_ms, ops in profiled]


# Inductor names its compiled region's record after its FX graph cache key (`## Call CompiledFxGraph fxkey ##`, or
# `None` with the cache off): without it, the same code has the same name in every run (`make compare`).
COMPILED_REGION = re.compile(r"^## Call CompiledFxGraph \S+ ##$")


def operator_name(name: str) -> str:
    """A profiler event's name as the profile keeps it: Inductor's compiled region without its cache key."""
    return "## Call CompiledFxGraph ##" if COMPILED_REGION.match(name) else name


def profiled_inferences(step: Any, iterations: int, activities: list[Any], sync: Any = None) -> Any:
    """After `PROFILE_WARMUP` inferences not kept, torch.profiler around each of `iterations` more: per inference
    its wall time in ms (until `sync` returns, where the device runs on after the call) and the events recorded."""
    import time

    from torch.profiler import profile

    from edgebench.bench.measure.profile import PROFILE_WARMUP

    for _ in range(PROFILE_WARMUP):
        step()
    if sync is not None:
        sync()
    for _ in range(iterations):
        with profile(activities=activities) as prof:
            start = time.perf_counter()
            step()
            if sync is not None:
                sync()
            wall_ms = (time.perf_counter() - start) * 1e3
        yield wall_ms, prof.events()


MODULE_RECORD = "module: "  # the profiler record of a submodule's forward: `module: features.3.conv.0.0`


@contextlib.contextmanager
def module_records(module: Any) -> Any:
    """While inside, each submodule's forward runs inside a torch.profiler record named by its path
    (`MODULE_RECORD`), so each operator can be put on the innermost module that ran it (`event_layer`): eager
    PyTorch's layers, named as ONNX Runtime's and OpenVINO's profiles name their nodes' source. The records cost
    microseconds per module call, in the profiled inference only (mobilenet_v2's: x1.13, measured; see the README),
    outside any operator; the hooks come off on leaving. With no `module` (a compiled or scripted one, whose
    submodules do not run), nothing is recorded."""
    import torch

    # A scripted submodule takes no hooks: its operators go to the nearest eager module around it.
    paths = {sub: path for path, sub in (module.named_modules() if module is not None else ())
             if path and not isinstance(sub, torch.jit.ScriptModule)}
    open_records: list[Any] = []

    def enter(sub: Any, args: Any) -> None:
        record = torch.autograd.profiler.record_function(MODULE_RECORD + paths[sub])
        record.__enter__()
        open_records.append(record)

    def leave(sub: Any, args: Any, output: Any) -> None:
        open_records.pop().__exit__(None, None, None)

    handles = [hook(sub) for sub in paths for hook in (lambda m: m.register_forward_pre_hook(enter),
                                                       lambda m: m.register_forward_hook(leave))]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def event_layer(event: Any) -> str:
    """The path of the innermost module record around a profiler event ("" outside any: the model's own code, or
    a module profiled without records)."""
    parent = event.cpu_parent
    while parent is not None and not parent.name.startswith(MODULE_RECORD):
        parent = parent.cpu_parent
    return parent.name[len(MODULE_RECORD):] if parent is not None else ""


def profile_kernels(step: Any, iterations: int, precision: str, module: Any = None) -> list[Any]:
    """torch.profiler's CUDA activity around each of `iterations` inferences on the GPU: per kernel its time on the
    device, under the operator that launched it (aten::cudnn_convolution) and, given the eager `module`, its layer
    (`module_records`), so a line is one kernel of one operator and its precision is what the kernel's name says
    (`cuda_kernel_precision`). The inference's wall time includes waiting for the device; what no kernel ran
    (launch gaps: most of a small model's batch-1 inference on a large GPU) is the profile's line outside
    operators. A kernel no operator launched is kept on a line of its
    own rather than lost."""
    from collections import defaultdict

    import torch
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity

    from edgebench.bench.measure.profile import OpTime, ProfiledIteration, categorise

    with module_records(module):
        profiled = []
        for wall_ms, events in profiled_inferences(step, iterations, [ProfilerActivity.CPU, ProfilerActivity.CUDA],
                                                   torch.cuda.synchronize):
            launched: dict[tuple[str, str, str], list[float]] = defaultdict(lambda: [0.0, 0])
            for event in events:
                for kernel in event.kernels if event.device_type == DeviceType.CPU else ():
                    entry = launched[(operator_name(event.name), event_layer(event), kernel.name)]
                    entry[0] += kernel.duration
                    entry[1] += 1
            device_us = sum(event.time_range.elapsed_us() for event in events
                            if event.device_type == DeviceType.CUDA)
            ops = [OpTime(name=short_kernel(kernel), kind=op, layer=layer, kernel=kernel, ms=us / 1e3,
                          calls=int(calls), precision=cuda_kernel_precision(kernel, categorise(op), precision))
                   for (op, layer, kernel), (us, calls) in launched.items()]
            unlaunched_us = device_us - sum(us for us, _ in launched.values())
            if unlaunched_us > 0.5:  # half a microsecond: below it, rounding of the two sums
                ops.append(OpTime(name=UNLAUNCHED, kind=UNLAUNCHED, precision="", ms=unlaunched_us / 1e3))
            profiled.append(ProfiledIteration(wall_ms, tuple(ops)))
    return profiled


UNLAUNCHED = "(kernels no operator launched)"

# A CUDA kernel's math precision, from the type words cuDNN, cuBLAS, CUTLASS and PyTorch put in its name
# (sm90_xmma_fprop_implicit_gemm_tf32f32_tf32f32_f32_..., ampere_fp16_s16816gemm_..., vectorized_elementwise_kernel
# <..., c10::Half>). First match wins: tf32 before f32, bf16 before f16, and the math type before the type it
# accumulates in (an fp16 convolution's name says f16 and f32).
CUDA_KERNEL_TYPES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("tf32", ("tf32", "xf32")),
    ("bf16", ("bf16", "bfloat16")),
    ("fp16", ("f16", "half", "h884", "h1688", "h16816", "hmma")),
    ("int8", ("i8", "int8", "imma")),
    ("fp32", ("f32", "float", "sgemm", "scudnn")),
)


def cuda_kernel_precision(kernel: str, category: str, precision: str) -> str:
    """The precision a CUDA kernel ran in: what its name says; where it says nothing, the row's storage precision
    (fp32 for tf32) for kernels that only move or combine values, and unknown ("") for a convolution's or matrix
    product's, whose math mode (TF32 or IEEE fp32, fp16 accumulation) is exactly what the name would have to say."""
    lower = kernel.lower()
    for name, words in CUDA_KERNEL_TYPES:
        if any(word in lower for word in words):
            return name
    if category in ("convolution", "matrix multiply"):
        return ""
    return "fp32" if precision in ("tf32", "int8") else precision


def short_kernel(kernel: str) -> str:
    """A kernel's name without `void`, its template arguments and its parameters (the full name is the line's
    `kernel`): at::native::vectorized_elementwise_kernel, sm90_xmma_fprop_implicit_gemm_tf32f32_..."""
    import re

    name = re.sub(r"^void\s+", "", kernel.strip())
    depth, kept = 0, []
    for char in name:
        depth += char in "<("
        if depth == 0:
            kept.append(char)
        depth = max(0, depth - (char in ">)"))  # a stray `>` (operator>) does not swallow the rest
    return "".join(kept).strip()[:80] or kernel[:80]


MAC_TOLERANCE = 0.001  # recorded and counted multiply-adds agree to this share, or none are given


# The argument names of a call's input and weight, across the operators that compute multiply-adds: aten's,
# oneDNN's float (mkldnn::, mkl::) and integer (onednn::q*) kernels.
INPUT_NAMES = ("X", "qx", "mat1", "input", "self")  # mat1 before self: aten::addmm's `self` is its bias
WEIGHT_NAMES = ("W", "qw", "ORI_W", "mat2", "weight")  # ORI_W: mkl::_mkl_linear's weight before MKL packed it
MAC_WORDS = ("conv", "linear", "addmm", "::mm", "bmm")


def call_macs(name: str, shapes: list[list[int]], arguments: list[Any]) -> float:
    """A convolution's or matrix product's multiply-adds in one call, from what torch.profiler recorded of it
    (`record_shapes`: a shape and, for lists and numbers, a value per argument): its output positions times its
    weight's elements. The input, weight, stride, padding and dilation are read by name from the operator's schema
    (oneDNN's packed weights keep their logical shape). 0 for any other operator, and for one whose schema does
    not name them."""
    lower = name.lower()
    if not any(word in lower for word in MAC_WORDS) or "convert" in lower:
        return 0.0
    names = schema_arguments(name, len(shapes))
    if names is None:
        return 0.0
    shape = dict(zip(names, shapes, strict=True))
    given = dict(zip(names, arguments, strict=False))
    x = next((shape[n] for n in INPUT_NAMES if len(shape.get(n) or []) >= 2), None)
    w = next((shape[n] for n in WEIGHT_NAMES if len(shape.get(n) or []) >= 2), None)
    if x is None or w is None:
        return 0.0
    if "conv" in lower:
        if len(x) != len(w) or len(x) < 3 or "stride" not in given:
            return 0.0
        spatial = len(x) - 2

        def pair(key: str, default: int) -> list[int]:
            value = given.get(key)
            return list(value) * (spatial // len(value)) if isinstance(value, list) and value else [default] * spatial

        stride, padding, dilation = pair("stride", 1), pair("padding", 0), pair("dilation", 1)
        positions = x[0] * math.prod((size + 2 * pad - dil * (k - 1) - 1) // st + 1 for size, k, st, pad, dil
                                     in zip(x[2:], w[2:], stride, padding, dilation, strict=True))
        return float(positions * math.prod(w))
    if "bmm" in lower:  # (batch, rows, inner) by (batch, inner, columns)
        return float(math.prod(x) * w[-1])
    return float(math.prod(x[:-1]) * math.prod(w))  # rows of the input by the weight's (inner x outer) products


@functools.cache
def schema_arguments(name: str, count: int) -> tuple[str, ...] | None:
    """The argument names of the operator `ns::op` whose overloads taking `count` arguments (the profiler records
    one entry per argument) all name them alike; None where PyTorch has none, or they differ."""
    import torch

    namespace, _, op = name.partition("::")
    try:
        packet = getattr(getattr(torch.ops, namespace), op)
        found = {tuple(a.name for a in getattr(packet, overload)._schema.arguments) for overload in packet.overloads()}
    except (AttributeError, RuntimeError):
        return None
    matching = [names for names in found if len(names) == count]
    return matching[0] if len(matching) == 1 else None


def recorded_macs(step: Any) -> dict[tuple[str, str], float]:
    """Multiply-adds per operator type and layer (`event_layer`) in one inference with shapes recorded, each
    convolution or matrix product counted once, at its outermost call (aten::conv2d in eager PyTorch, whose
    aten::mkldnn_convolution inside it holds the time; onednn::qconv_pointwise in compiled PyTorch)."""
    from collections import defaultdict

    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        step()
    macs: dict[tuple[str, str], float] = defaultdict(float)
    for event in prof.events():
        count = call_macs(event.name, event.input_shapes or [], list(event.concrete_inputs or []))
        parent = event.cpu_parent
        while count and parent is not None:  # inside another counted call: already counted there
            if call_macs(parent.name, parent.input_shapes or [], list(parent.concrete_inputs or [])):
                count = 0.0
            parent = parent.cpu_parent
        if count:
            macs[(event.name, event_layer(event))] += count
    return dict(macs)


def program_macs(program: Any) -> list[dict[str, Any]] | None:
    """An exported program's multiply-add operators in the order it runs them: each convolution (and whether it
    is 1x1 with one group) and linear layer, with its multiply-adds from the shapes torch.export recorded. A
    compiled runtime's profile that names its operators but not their shapes (XNNPACK's, AOTInductor's) gets
    them from here, matched in order. None where the program has a multiply-add operator not counted here (a
    transposed convolution, a product of activations): a partial count would give a false share."""
    import torch

    aten = torch.ops.aten
    convolutions = {aten.conv1d.default: 6, aten.conv2d.default: 6, aten.conv3d.default: 6}  # -> its groups arg
    uncounted = {aten.convolution.default, aten.conv_transpose1d.default, aten.conv_transpose2d.input,
                 aten.mm.default, aten.bmm.default, aten.matmul.default, aten.addmm.default, aten.einsum.default,
                 aten.scaled_dot_product_attention.default}
    ops: list[dict[str, Any]] = []
    for node in program.graph.nodes:
        if node.op != "call_function":
            continue
        if node.target in uncounted:
            return None
        if node.target in convolutions:
            out, weight = node.meta["val"].shape, node.args[1].meta["val"].shape
            at = convolutions[node.target]
            groups = node.args[at] if len(node.args) > at else node.kwargs.get("groups", 1)
            ops.append({"kind": "convolution", "one_by_one": groups == 1 and all(k == 1 for k in weight[2:]),
                        "macs": math.prod(out) // out[1] * math.prod(weight)})
        elif node.target == aten.linear.default:
            out, weight = node.meta["val"].shape, node.args[1].meta["val"].shape
            ops.append({"kind": "linear", "one_by_one": False, "macs": math.prod(out) * weight[1]})
    return ops


def model_macs(module: Any, example: Any) -> float | None:
    """The model's multiply-adds per inference, as PyTorch's FlopCounterMode counts its convolutions and matrix
    products (two flops each); None where it cannot run the module."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    try:
        with torch.inference_mode(), FlopCounterMode(display=False) as counter:
            module(example)
    except Exception:  # noqa: BLE001  (a module the counter cannot trace: no count, no claim)
        return None
    return counter.get_total_flops() / 2 or None


def torch_device(target: str) -> str:
    return "cuda" if target == "gpu" else "cpu"


def set_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set once in this process
        pass


def fp32_math(precision: str) -> None:
    """fp32 means IEEE fp32: cuDNN convolutions and CUDA matrix products default to TF32 on Ampere and later
    (about 1e-3 relative error on resnet18, beyond fp32's tolerance). TF32 is on only for the `tf32` precision,
    a row labelled so. Harmless where there is no GPU. The legacy flags, not torch 2.9's `fp32_precision`:
    setting the new API makes any later read of the legacy flags raise (FIELD-NOTES)."""
    import torch

    allowed = precision == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = allowed
    torch.backends.cudnn.allow_tf32 = allowed


def cuda_capability() -> tuple[int, int] | None:
    """CUDA device 0's compute capability, from NVML where installed (no torch import in ONNX Runtime's
    process)."""
    try:
        import pynvml

        from edgebench.bench.measure.energy import cuda_device_handle

        pynvml.nvmlInit()
        return tuple(pynvml.nvmlDeviceGetCudaComputeCapability(cuda_device_handle(pynvml)))
    except Exception:  # no package or no driver: ask torch
        import torch

        return torch.cuda.get_device_capability(0) if torch.cuda.is_available() else None


def tf32_unsupported(target: str, precision: str, capability: tuple[int, int] | None = None) -> str | None:
    """Why a `tf32` row would not be TF32: GPUs before Ampere (compute capability 8.0) compute IEEE fp32."""
    if precision != "tf32" or target != "gpu":
        return None
    capability = capability or cuda_capability()
    if capability is not None and tuple(capability) < (8, 0):
        return (f"TF32 needs an NVIDIA GPU of compute capability 8.0 or later (Ampere); this one is "
                f"{capability[0]}.{capability[1]} and computes fp32")
    return None


def cuda_unavailable(target: str) -> str | None:
    if target != "gpu":
        return None
    import torch

    if not torch.cuda.is_available():
        return f"no CUDA device visible to torch {torch.__version__}"
    return None


def flatten_tensors(outputs: Any) -> list[Any]:
    """Tensors of a (nested) tuple/list/dict output, in the order exporters flatten them."""
    import torch

    if isinstance(outputs, torch.Tensor):
        return [outputs]
    if isinstance(outputs, dict):
        return [t for v in outputs.values() for t in flatten_tensors(v)]
    if isinstance(outputs, (list, tuple)):
        return [t for v in outputs for t in flatten_tensors(v)]
    return []


def to_host(outputs: Any) -> list[np.ndarray]:
    return [t.detach().float().cpu().numpy() for t in flatten_tensors(outputs)]


def cuda_sync(target: str) -> None:
    if target == "gpu":
        import torch

        torch.cuda.synchronize()


class TorchModuleRuntime(Runtime):
    """What PyTorch eager, compiled and TorchScript share: a callable module on a torch device at a torch dtype.

    Subclasses export, and load() sets `self.module` and `self.dtype`.
    """

    packages = {"torch": "torch"}
    profiles_layers = False  # True where `module` is the eager module whose submodules ran (`module_records`)

    @classmethod
    def export_unavailable(cls, target: str, precision: str) -> str | None:
        """A GPU artifact is traced on the GPU: without CUDA (a Mac asked for TARGET=gpu) it is unavailable."""
        return super().export_unavailable(target, precision) or cuda_unavailable(target)

    @classmethod
    def run_unavailable(cls, target: str) -> str | None:
        return cuda_unavailable(target)

    @property
    def device(self) -> str:
        return torch_device(self.options.target)

    def device_memory(self) -> tuple[float | None, str]:
        """PyTorch's caching allocator keeps a true peak of what this process allocated on the GPU."""
        if self.options.target != "gpu":
            return super().device_memory()
        import torch

        return torch.cuda.max_memory_allocated() / 1e6, "torch.cuda.max_memory_allocated (peak, PyTorch's allocator)"

    def label_mismatch(self) -> str | None:
        return tf32_unsupported(self.options.target, self.options.precision)

    def torch_dtype(self) -> Any:
        import torch

        return getattr(torch, DTYPES[self.options.precision])

    def exported_program(self, model: Any, example: Any) -> Any:
        """The ExportedProgram compiled PyTorch and AOTInductor compile: torchao's X86 int8 (calibrated, or
        trained quantization-aware, the trained module then being the row's reference), or the model at the
        row's float dtype on its device, exported from a copy (the caller's module stays fp32 on the CPU)."""
        import copy

        import torch

        from edgebench.runtimes._quant import calibration_batches

        if self.options.precision == "int8":
            batches = calibration_batches(self.calibration, example.shape[0])
            program, quantized = quantize_x86(model, example, batches, self.qat)
            if self.qat is not None:
                self.trained = quantized
            return program
        dtype = self.torch_dtype()
        module = copy.deepcopy(model).eval().to(device=self.device, dtype=dtype)
        return torch.export.export(module, (example.to(device=self.device, dtype=dtype),))

    def copies_apart(self) -> bool:
        return self.options.target == "gpu"

    def prepare(self, x: np.ndarray) -> Any:
        import torch

        tensor = torch.from_numpy(x).to(self.device)
        return tensor.to(self.dtype) if tensor.is_floating_point() else tensor

    def run(self, inputs: Any) -> Any:
        import torch

        with torch.inference_mode():
            return self.module(inputs)

    def profile(self, prepared: Any, iterations: int) -> list[Any]:
        layered = self.module if self.profiles_layers else None
        if self.options.target == "gpu":
            return profile_kernels(lambda: self.run(prepared), iterations, self.options.precision, layered)
        floating = "fp32" if self.options.precision in ("int8", "tf32") else self.options.precision
        return profile_calls(lambda: self.run(prepared), iterations, floating, self.model_macs(prepared), layered)

    def model_macs(self, prepared: Any) -> float | None:
        """The model's multiply-adds, to check the profile's against: counted on the module before compilation
        (torch.compile keeps it as `_orig_mod`)."""
        return model_macs(getattr(self.module, "_orig_mod", self.module), prepared)

    def sync(self) -> None:
        cuda_sync(self.options.target)

    def fetch(self, outputs: Any) -> list[np.ndarray]:
        return to_host(outputs)
