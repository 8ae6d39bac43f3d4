"""LiteRT's own operator profiler, through its C API: ai-edge-litert's Python API has none.

ai-edge-litert installs LiteRT's C library (`libLiteRt.so`) beside its Python bindings. A CompiledModel made with
the runtime option `enable_profiling` carries the interpreter's profiler, which records each operator XNNPACK ran
(named with its data types: `Convolution (NHWC, QC8) IGEMM`) and each operator left to LiteRT's own kernels,
and hands the records back (`LiteRtGetProfilerEvents`). `ProfiledModel` opens a `.tflite` that way on the CPU,
with XNNPACK at the row's thread count: the same file and the same XNNPACK kernels the timed interpreter runs,
in a second session, so the timed one never carries a profiler. It reads the operators of one inference at a time.

ctypes, because a C API is what LiteRT offers for this; the options are LiteRT's TOML payloads and the event
layout is LiteRT's `ProfiledEventData` (`litert/c/litert_profiler_event.h`), as ai-edge-litert 2.3 builds them.
A record that does not read as that layout raises `LiteRtError` rather than being misread.
"""

from __future__ import annotations

import ctypes
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgebench.runtimes.base import ProfileUnavailable

# tflite::Profiler::EventType: the operator records. A delegate's operators are reported as
# DELEGATE_PROFILED_OPERATOR_INVOKE_EVENT (8) or DELEGATE_OPERATOR_INVOKE_EVENT (4); LiteRT's own kernels as
# OPERATOR_INVOKE_EVENT (2). The others (1: the whole invocation and buffer handling, 16 and up: runtime
# instrumentation and telemetry) are not operators.
OPERATOR_EVENT = 2
DELEGATE_EVENTS = (4, 8)
_EVENT_TYPES = (1, 2, 4, 8, 16, 32, 64, 128, 256)
# ProfiledEventData: tag pointer, event type (int32, padded), start and elapsed microseconds, two memory-usage
# records of three 64-bit fields, two metadata words (the node index first), the event source (int32, padded).
_EVENT = struct.Struct("<Qi4xQQ24x24xQQi4x")
_CPU = 1  # kLiteRtHwAcceleratorCpu
_LOCK_WRITE = 1  # kLiteRtTensorBufferLockModeWrite
_RANKED_TYPE_BYTES = 256  # LiteRtRankedTensorType is 72 bytes: read into, and passed back from, a larger buffer
_Handle = ctypes.c_void_p
_NO_DELETE = ctypes.CFUNCTYPE(None, ctypes.c_void_p)(lambda payload: None)  # the payloads are this module's


class LiteRtError(RuntimeError):
    """A LiteRT C API call that failed, named with its status."""


@dataclass(frozen=True)
class ProfilerEvent:
    """One record of LiteRT's profiler."""

    tag: str  # the operator as the runtime names it: XNNPACK's `Convolution (NHWC, F32) IGEMM`, or LiteRT's kernel
    kind: int  # tflite::Profiler::EventType
    us: int  # its elapsed microseconds
    node: int  # the node's index: XNNPACK's own for its operators, the model's for LiteRT's kernels


def library() -> ctypes.CDLL:
    """ai-edge-litert's LiteRT C library; a wheel without one (another platform's build) has no profile here."""
    import ai_edge_litert

    folder = Path(ai_edge_litert.__file__).parent
    path = next((folder / name for name in ("libLiteRt.so", "libLiteRt.dylib") if (folder / name).exists()), None)
    if path is None:
        raise ProfileUnavailable(f"this ai-edge-litert has no LiteRT C library in {folder}, through which its "
                                 "profiler is reached")
    lib = ctypes.CDLL(str(path))
    lib.LiteRtCreateOpaqueOptions.argtypes = [ctypes.c_char_p, _Handle, _Handle, ctypes.POINTER(_Handle)]
    lib.LiteRtCreateModelFromFile.argtypes = [_Handle, ctypes.c_char_p, ctypes.POINTER(_Handle)]
    lib.LiteRtGetProfilerEvents.argtypes = [_Handle, ctypes.c_int, ctypes.c_void_p]
    return lib


def read_events(raw: bytes, count: int) -> list[ProfilerEvent]:
    """The profiler's records, from the bytes LiteRtGetProfilerEvents wrote."""
    events = []
    for i in range(count):
        tag_address, kind, _start, elapsed, node, _metadata2, _source = _EVENT.unpack_from(raw, i * _EVENT.size)
        if kind not in _EVENT_TYPES or not tag_address:
            raise LiteRtError(f"LiteRT's profiler record {i} does not read as ProfiledEventData (event type {kind}): "
                              "this ai-edge-litert lays its records out otherwise")
        events.append(ProfilerEvent(ctypes.string_at(tag_address).decode(errors="replace"), kind, elapsed, node))
    return events


class ProfiledModel:
    """A `.tflite` as a LiteRT CompiledModel on the CPU with its profiler on: feed it, run it, read each run's
    operator records. Close it (or use it as a context manager): it holds LiteRT's C objects."""

    def __init__(self, path: Path, threads: int) -> None:
        self.lib = library()
        self._payloads: list[ctypes.Array] = []
        self._owned: list[tuple[str, _Handle]] = []  # destroyed in reverse order
        try:
            self._open(path, threads)
        except BaseException:
            self.close()  # what was made before the failure
            raise

    def _open(self, path: Path, threads: int) -> None:
        self.environment = self._make("LiteRtCreateEnvironment", "LiteRtDestroyEnvironment", 0, None)
        self.model = self._make("LiteRtCreateModelFromFile", "LiteRtDestroyModel", self.environment,
                                str(path).encode())
        options = self._make("LiteRtCreateOptions", "LiteRtDestroyOptions")
        self._call("LiteRtSetOptionsHardwareAccelerators", options, _CPU)
        # The identifiers and keys LiteRT's own options code writes (its Python API sends the same for threads).
        self._call("LiteRtAddOpaqueOptions", options, self._options("xnnpack", f"num_threads = {threads}\n"))
        self._call("LiteRtAddOpaqueOptions", options, self._options("runtime_options_string",
                                                                    "enable_profiling = true\n"))
        self.compiled = self._make("LiteRtCreateCompiledModel", "LiteRtDestroyCompiledModel", self.environment,
                                   self.model, options)
        self.profiler = _Handle()
        self._call("LiteRtCompiledModelGetProfiler", self.compiled, ctypes.byref(self.profiler))
        if not self.profiler.value:
            raise LiteRtError("LiteRT made the model without its profiler: this ai-edge-litert does not take "
                              "`enable_profiling` as its runtime option")
        signature = _Handle()
        self._call("LiteRtGetModelSignature", self.model, ctypes.c_size_t(0), ctypes.byref(signature))
        self.inputs = self._buffers(signature, "Input")
        self.outputs = self._buffers(signature, "Output")
        self._input_array = (_Handle * len(self.inputs))(*self.inputs)
        self._output_array = (_Handle * len(self.outputs))(*self.outputs)

    def _call(self, function: str, *args: object) -> None:
        status = getattr(self.lib, function)(*args)
        if status != 0:
            raise LiteRtError(f"LiteRT's {function} failed (status {status})")

    def _make(self, create: str, destroy: str, *args: object) -> _Handle:
        handle = _Handle()
        self._call(create, *args, ctypes.byref(handle))
        self._owned.append((destroy, handle))
        return handle

    def _options(self, identifier: str, toml: str) -> _Handle:
        payload = ctypes.create_string_buffer(toml.encode())
        self._payloads.append(payload)  # the options point at it until the model is closed
        handle = _Handle()
        self._call("LiteRtCreateOpaqueOptions", identifier.encode(), ctypes.cast(payload, _Handle), _NO_DELETE,
                   ctypes.byref(handle))
        return handle  # owned by the options it is added to

    def _buffers(self, signature: _Handle, side: str) -> list[_Handle]:
        """Host buffers for the signature's inputs or outputs, as the compiled model requires them."""
        count = ctypes.c_size_t()
        self._call(f"LiteRtGetNumSignature{side}s", signature, ctypes.byref(count))
        buffers = []
        for i in range(count.value):
            tensor, requirements = _Handle(), _Handle()
            self._call(f"LiteRtGetSignature{side}TensorByIndex", signature, ctypes.c_size_t(i), ctypes.byref(tensor))
            ranked_type = ctypes.create_string_buffer(_RANKED_TYPE_BYTES)
            self._call("LiteRtGetRankedTensorType", tensor, ranked_type)
            self._call(f"LiteRtGetCompiledModel{side}BufferRequirements", self.compiled, ctypes.c_size_t(0),
                       ctypes.c_size_t(i), ctypes.byref(requirements))
            buffers.append(self._make("LiteRtCreateManagedTensorBufferFromRequirements", "LiteRtDestroyTensorBuffer",
                                      self.environment, ranked_type, requirements))
        return buffers

    def feed(self, array: np.ndarray) -> None:
        """The model's (single) input, as the interpreter is given it: the same dtype and bytes."""
        data = np.ascontiguousarray(array)
        size = ctypes.c_size_t()
        self._call("LiteRtGetTensorBufferSize", self.inputs[0], ctypes.byref(size))
        if size.value < data.nbytes:
            raise LiteRtError(f"LiteRT's input buffer holds {size.value} bytes, the input has {data.nbytes}")
        address = _Handle()
        self._call("LiteRtLockTensorBuffer", self.inputs[0], ctypes.byref(address), _LOCK_WRITE)
        try:
            ctypes.memmove(address, data.ctypes.data, data.nbytes)
        finally:
            self._call("LiteRtUnlockTensorBuffer", self.inputs[0])

    def run(self) -> None:
        self._call("LiteRtRunCompiledModel", self.compiled, ctypes.c_size_t(0), ctypes.c_size_t(len(self.inputs)),
                   self._input_array, ctypes.c_size_t(len(self.outputs)), self._output_array)

    def restart(self) -> None:
        """Forget the records so far and record from here: one inference's records at a time."""
        self._call("LiteRtResetProfiler", self.profiler)
        self._call("LiteRtStartProfiler", self.profiler)

    def events(self) -> list[ProfilerEvent]:
        count = ctypes.c_int()
        self._call("LiteRtGetNumProfilerEvents", self.profiler, ctypes.byref(count))
        if count.value <= 0:
            return []
        raw = ctypes.create_string_buffer(_EVENT.size * count.value)
        self._call("LiteRtGetProfilerEvents", self.profiler, count, raw)
        return read_events(raw.raw, count.value)

    def close(self) -> None:
        while self._owned:
            destroy, handle = self._owned.pop()
            getattr(self.lib, destroy)(handle)

    def __enter__(self) -> ProfiledModel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# Multiply-adds: from the `.tflite`'s shapes, given to XNNPACK's operators where they match the model's
# (`runtimes._xnnpack.match_macs`).
MAC_TYPES = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV")  # counted by `op_macs`
# Types whose multiply-adds `op_macs` does not count: a model with one gets none, rather than a partial count.
UNCOUNTED_MAC_TYPES = ("BATCH_MATMUL", "CONV_3D", "CONV_3D_TRANSPOSE", "EMBEDDING_LOOKUP")


@dataclass(frozen=True)
class GraphOp:
    """One operator of the `.tflite` graph, as the interpreter lists it."""

    node: int
    kind: str  # the model's operator type: CONV_2D
    precision: str  # of its first input, the activation it computes on
    macs: float  # its multiply-adds per inference (0: none, or not counted)
    runs_as: tuple[str, ...] = ()  # the XNNPACK operators it may run as, for one that computes multiply-adds


def op_macs(kind: str, input_shapes: list[tuple[int, ...]], output_shape: tuple[int, ...]) -> float:
    """An operator's multiply-adds from its tensors' shapes (NHWC, filters as TFLite stores them)."""
    out = float(np.prod(output_shape)) if output_shape else 0.0
    if kind == "CONV_2D":  # filter [O, kh, kw, I/groups]
        _, kh, kw, per_group = input_shapes[1]
        return out * kh * kw * per_group
    if kind == "DEPTHWISE_CONV_2D":  # filter [1, kh, kw, C x multiplier]
        return out * input_shapes[1][1] * input_shapes[1][2]
    if kind == "FULLY_CONNECTED":  # weights [O, I]
        return out * input_shapes[1][-1]
    if kind == "TRANSPOSE_CONV":  # inputs: output shape, filter [O, kh, kw, I], input [N, H, W, I]
        _, kh, kw, _ = input_shapes[1]
        return float(np.prod(input_shapes[2])) * kh * kw * input_shapes[1][0]
    return 0.0


def runs_as(kind: str, input_shapes: list[tuple[int, ...]]) -> tuple[str, ...]:
    """The XNNPACK operators a model operator may run as (`_xnnpack.runs_as`), by its TFLite type; a CONV_2D with
    a 1x1 filter ([O, 1, 1, I]) may run as a matrix product."""
    from edgebench.runtimes import _xnnpack

    computes = {"CONV_2D": "convolution", "DEPTHWISE_CONV_2D": "convolution", "FULLY_CONNECTED": "linear",
                "TRANSPOSE_CONV": "deconvolution"}.get(kind, "")
    return _xnnpack.runs_as(computes, kind == "CONV_2D" and tuple(input_shapes[1][1:3]) == (1, 1))


def graph_ops(ops: list[dict], tensors: list[dict]) -> list[GraphOp]:
    """The graph's operators (the interpreter's `_get_ops_details()` and `get_tensor_details()`), with their
    first input's precision and their multiply-adds."""
    from edgebench.bench.measure.profile import precision_of_dtype

    by_index = {t["index"]: t for t in tensors}
    graph = []
    for op in ops:
        inputs = [by_index[i] for i in op["inputs"] if i in by_index]
        outputs = [by_index[i] for i in op["outputs"] if i in by_index]
        precision = precision_of_dtype(np.dtype(inputs[0]["dtype"]).name) if inputs else ""
        shapes = [tuple(t["shape"]) for t in inputs]
        counted = op["op_name"] in MAC_TYPES
        macs = op_macs(op["op_name"], shapes, tuple(outputs[0]["shape"]) if outputs else ()) if counted else 0.0
        graph.append(GraphOp(op["index"], op["op_name"], precision, macs,
                             runs_as(op["op_name"], shapes) if counted else ()))
    return graph


def delegated_macs(operators: dict[int, str], graph: list[GraphOp], by_kernels: set[int]) -> dict[int, float] | None:
    """XNNPACK operator number -> the multiply-adds of the model operator it ran (`match_macs`), for XNNPACK's
    operators (`operators`: number -> its name) and the model's that LiteRT's own kernels did not run
    (`by_kernels`); None where they do not match, or where the model has a multiply-add type not counted."""
    from edgebench.runtimes._xnnpack import MacOp, match_macs

    if any(op.kind in UNCOUNTED_MAC_TYPES for op in graph):
        return None
    numbers = sorted(operators)
    model = [MacOp(op.runs_as, op.macs) for op in graph if op.kind in MAC_TYPES and op.node not in by_kernels]
    macs = match_macs([operators[n] for n in numbers], model)
    return None if macs is None else dict(zip(numbers, macs, strict=True))
