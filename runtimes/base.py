"""The one interface every runtime adapter implements; the harness times it from outside.

Lifecycle (in two child processes): export(model) -> artifact on disk; then load(artifact),
prepare(host input) -> device input, run(), sync() where the device is asynchronous, fetch() -> host arrays.
Adapters know nothing about timing; `bench.measure.timing` knows nothing about runtimes.
"""

from __future__ import annotations

import importlib.util
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

if TYPE_CHECKING:
    from edgebench.bench.measure.profile import ProfiledIteration
    from edgebench.runtimes._quant import QatPlan


class ProfileUnavailable(Exception):
    """This runtime has no per-operator profiler here; the message says why (the row is measured as usual)."""


class ExportUnavailable(Exception):
    """This runtime cannot express the model (an operator it cannot lower, named in the message): raised by
    export(), it makes the row `unavailable` with that reason rather than an `error`, which means a fault."""


def ieee_fp32_environment(target: str, precision: str) -> dict[str, str]:
    """Environment for an fp32 GPU row: NVIDIA_TF32_OVERRIDE=0 turns TF32 off in every NVIDIA library that reads
    it (cuBLAS, cuDNN, and TensorRT's builder, which ignores its TF32 flag then). It is the only way to reach the
    TensorRT builder inside ONNX Runtime's TensorRT EP, whose options have no TF32 switch. The libraries read it
    once, when they load, so the harness sets it in the child's environment at spawn (`bench.isolation`)."""
    return {"NVIDIA_TF32_OVERRIDE": "0"} if target == "gpu" and precision == "fp32" else {}


@dataclass(frozen=True)
class RuntimeOptions:
    """What the harness tells an adapter: where to run, at what precision, on how many threads."""

    target: str = "cpu"  # cpu | gpu | npu
    precision: str = "fp32"
    threads: int = 1
    model: str = ""  # the model source, for adapters that rebuild the architecture (PyTorch eager)
    seed: int = 0
    mode: str = "latency"  # latency: one request in flight; throughput: as many as the runtime serves at once


class Runtime(ABC):
    """A deployment runtime. Subclass it in one new file under runtimes/ and it is registered."""

    name: ClassVar[str]  # CLI name, e.g. "onnxruntime"
    label: ClassVar[str]  # the table's Format column, e.g. "ONNX Runtime"
    order: ClassVar[int] = 100  # position in tables (PyTorch first)
    artifact: ClassVar[str]  # file or folder name export() writes inside its folder
    # target -> precisions this runtime can run there; a target missing here is not supported.
    precisions: ClassVar[dict[str, tuple[str, ...]]] = {"cpu": ("fp32",)}
    # import name -> pip requirement, checked before anything is imported.
    packages: ClassVar[dict[str, str]] = {}

    # Set by the worker before export(): int8 calibration inputs (N x input shape), the task's training
    # images, or seeded inputs for a model without data.
    calibration: np.ndarray | None = None
    # Set by the worker before export() of a quantization-aware variant (`COMPRESS=qat`): the int8 export
    # first trains with this runtime's own QAT toolchain. None: post-training int8.
    qat: QatPlan | None = None
    # Set by export() after quantization-aware training: the trained module as PyTorch runs it (fake
    # quantizers in place). Its outputs are the row's fidelity reference, since the float model's are not.
    trained: Any = None

    def __init__(self, options: RuntimeOptions) -> None:
        self.options = options

    # -- availability: a reason string when not possible, None when fine ----------------------------
    @classmethod
    def missing_packages(cls) -> list[str]:
        return [pip for module, pip in cls.packages.items() if importlib.util.find_spec(module) is None]

    @classmethod
    def export_unavailable(cls, target: str, precision: str) -> str | None:
        """Why this runtime cannot produce its artifact here (missing package, unsupported target or precision)."""
        if target not in cls.precisions:
            return f"{cls.label} does not run on {target} (it runs on {', '.join(cls.precisions) or 'nothing here'})"
        if precision not in cls.precisions[target]:
            return f"{cls.label} on {target} runs {', '.join(cls.precisions[target])}, not {precision}"
        missing = cls.missing_packages()
        if missing:
            return f"needs {', '.join(missing)} (pip install {' '.join(missing)})"
        return None

    @classmethod
    def run_unavailable(cls, target: str) -> str | None:
        """Why an exported artifact cannot be run here (wrong OS, no device). Checked after export."""
        return None

    @classmethod
    def qat_unavailable(cls) -> str | None:
        """Why this runtime's int8 export cannot train quantization-aware (`COMPRESS=qat`), or None."""
        return None

    @classmethod
    def host_facts(cls, options: RuntimeOptions) -> dict[str, Any]:
        """What else on this machine shapes the artifact, for the artifact cache's key: nothing for a portable
        file (the default); an artifact of machine code names the CPU extensions and threads it was built for."""
        return {}

    @classmethod
    def export_imports(cls, precision: str) -> tuple[str, ...]:
        """Modules every export at `precision` imports besides torch: imported once per run by the warm process
        that forks the export children (`bench.forkserver`). Only what the export surely imports: a module
        preloaded but unused would count in the export's peak memory."""
        return ()

    # -- lifecycle -----------------------------------------------------------------------------------
    @property
    def device(self) -> str:
        """What the result row calls the device this adapter runs on."""
        return self.options.target

    @abstractmethod
    def export(self, model: Any, example: Any, folder: Path) -> Path:
        """Serialize the torch module (eval mode) for `example` (a torch tensor); return the artifact path."""

    @abstractmethod
    def load(self, artifact: Path) -> None:
        """Load or compile the artifact for this adapter's device, with options.threads threads."""

    def prepare(self, x: np.ndarray) -> Any:
        """Host array -> whatever run() takes (device buffers on a GPU). Not timed with run()."""
        return x

    def device_memory(self) -> tuple[float | None, str]:
        """(MB this process used on its accelerator, where the figure comes from), asked after the timed rounds;
        (None, "") on the CPU, whose memory is the row's peak RSS. By default NVML's figure for this process;
        runtimes with their own peak counter say so (PyTorch's allocator)."""
        if self.options.target == "cpu":
            return None, ""
        from edgebench.bench.measure.devicemem import nvml_device_memory

        return nvml_device_memory()

    def copies_apart(self) -> bool:
        """Whether prepare() and fetch() do the host-device copies, apart from run(): only then are `h2d_ms` and
        `d2h_ms` reported. False where run() copies itself (OpenVINO, CoreML, TFLite delegates on an NPU): a
        near-zero figure there would be a false one."""
        return False

    @abstractmethod
    def run(self, inputs: Any) -> Any:
        """One inference. Must not copy outputs back to the host if the device can keep them."""

    def sync(self) -> None:
        """Block until the device has finished; a no-op for synchronous runtimes."""
        return None

    def fetch(self, outputs: Any) -> list[np.ndarray]:
        """Outputs -> host arrays in the model's output order."""
        if isinstance(outputs, np.ndarray):
            return [outputs]
        return [np.asarray(o) for o in outputs]

    def throughput_streams(self, x: np.ndarray) -> list[Any]:
        """Throughput mode: one blocking inference per stream, all to be kept busy at once from threads.

        The default is a single stream (back-to-back inferences): right for runtimes with no concurrent
        request API here. Adapters with one (OpenVINO's infer requests, ONNX Runtime's thread-safe
        sessions) return several, each releasing the GIL while it computes.
        """
        prepared = self.prepare(x)

        def step() -> None:
            self.run(prepared)
            self.sync()

        return [step]

    def predict(self, x: np.ndarray) -> list[np.ndarray]:
        outputs = self.run(self.prepare(x))
        self.sync()
        return self.fetch(outputs)

    def profile(self, prepared: Any, iterations: int) -> list[ProfiledIteration]:
        """Profiled inferences of `prepared` with this runtime's own profiler, after the timed rounds: per
        inference its wall time and the operators the runtime reported (`bench.measure.profile`). A runtime
        whose profiler must be switched on when a session is made profiles a second session, so the timed one
        never carries a profiler. Raises ProfileUnavailable with the reason where there is none."""
        raise ProfileUnavailable(f"{self.label} has no per-operator profiler wired into edgebench")

    def label_mismatch(self) -> str | None:
        """After load(): why the runtime is not running what the row's label says, if it silently chose
        otherwise: another precision (OpenVINO), another execution provider or device (ONNX Runtime falls back
        to the next provider with only a warning).

        Such a row is reported `unavailable` with this reason instead of being timed under a false label.
        """
        return None

    def details(self) -> str:
        """Settings read back from the loaded runtime, recorded with the row (e.g. the precision it chose)."""
        return ""

    def stored_weights(self, artifact: Path) -> list[np.ndarray] | None:
        """Weight tensors (rank >= 2: convolution and linear weights) as the artifact stores them, in their stored
        dtype: what `bench.measure.contents` checks against the row's label (integer for int8, N values per
        clustered layer). None: this format is not read here (the row says so)."""
        return None

    def close(self) -> None:
        """Release sessions and device memory."""
        return None


# edgebench's own notes about an artifact, written beside it by export() (OpenVINO's layer names, AOTInductor's
# program for a profiled build): cached with it, read by the measuring process, but not part of what a deployment
# ships, so not of its size. A note's name carries NOTES_MARK: `layers.edgebench.json`, `program.edgebench.pt2`.
NOTES_MARK = ".edgebench."
NOTES_SUFFIX = f"{NOTES_MARK}json"


def artifact_files(folder: Path) -> list[Path]:
    """The files an export wrote, sorted, without edgebench's notes (`NOTES_MARK`)."""
    return sorted(p for p in Path(folder).rglob("*") if p.is_file() and NOTES_MARK not in p.name)


def artifact_size_bytes(folder: Path) -> int:
    """Everything an export wrote counts: external weight files, .bin beside .xml, package folders."""
    return sum(p.stat().st_size for p in artifact_files(folder))
