"""AOTInductor: `torch.export`, then Inductor compiles ahead of time into a package a process loads and calls.

What a PyTorch deployment that cannot compile at start-up ships: `torch._inductor.aoti_compile_and_package`
turns the exported program into a `.pt2` package holding a shared library (the generated C++ kernels, oneDNN
calls and the weights, frozen and prepacked). The measuring process loads it with the C++ loader behind
`torch._inductor.aoti_load_package`, which neither traces nor compiles, and does not import Dynamo or Inductor.
So the compilation is the export (`export_s`) and `load_s` is importing torch and opening a library: for
resnet18 on this 2-core host, 13 s to compile at export, 0.05 s to open, against compiled PyTorch's 7-9 s
compilation in every process that serves it; the same kernels run (18-19 ms p50, as torch.compile's).

Freezing (weights folded and prepacked for oneDNN) applies only when the compilation runs without autograd:
compiled with gradients on, the package called plain `aten::convolution` and ran 1.9x slower (measured here).
int8 is torchao's PT2E X86 quantizer, as compiled PyTorch's, lowered to oneDNN's integer convolutions.

The package is machine code: compiled for this CPU's vector extensions (its metadata names them, e.g.
`AVX512 AVX512_VNNI`) and tuned for the row's thread count, so the artifact cache keys it by both
(`host_facts`) and a package built for extensions this CPU lacks is refused at load rather than crashing.
"""

from __future__ import annotations

import functools
import importlib.util
import re
import shutil
import zipfile
from dataclasses import replace
from pathlib import Path
from typing import Any

from edgebench.runtimes import _torch
from edgebench.runtimes.base import NOTES_MARK, ProfileUnavailable

PROGRAM_NOTE = f"program{NOTES_MARK}pt2"  # the exported program, kept beside the package for a profiled build

# The CPU flag each extension Inductor names in AOTI_CPU_ISA needs (/proc/cpuinfo spelling).
ISA_FLAGS = {"AVX2": "avx2", "AVX512": "avx512f", "AVX512_VNNI": "avx512_vnni", "AMX": "amx_tile",
             "AVX512_BF16": "avx512_bf16", "AVX512_FP16": "avx512_fp16", "NEON": "asimd", "SVE": "sve"}


def missing_extensions(isa: str, flags: list[str]) -> list[str]:
    """The extensions a package's `AOTI_CPU_ISA` names (e.g. "AVX512 AVX512_VNNI") that these CPU flags lack."""
    have = set(flags)
    return [name for name in isa.split() if ISA_FLAGS.get(name, name.lower()) not in have]


def package_calls(artifact: Path) -> list[str]:
    """The operators the package's generated C++ calls through PyTorch's C shim (`aoti_torch_cpu_mkldnn__...`,
    `aoti_torch_cpu__qconv_pointwise_tensor`), read from the wrapper source the package keeps beside its library."""
    with zipfile.ZipFile(artifact) as package:
        code = "\n".join(package.read(name).decode(errors="replace") for name in package.namelist()
                         if name.endswith(".wrapper.cpp"))
    return sorted(set(re.findall(r"aoti_torch_(?:cpu|cuda)_(\w+?)\(", code)))


def integer_calls(calls: list[str]) -> list[str]:
    """The shim calls (`package_calls`) into oneDNN's integer kernels: `_qconv_pointwise_tensor`, `_qlinear...`."""
    return [call for call in calls if re.match(r"_?q(conv|linear)", call)]


def compile_package(program: Any, path: Path, configs: dict[str, Any] | None = None) -> None:
    """Inductor's ahead-of-time compilation of `program` into a package at `path`, frozen: freezing applies only
    without autograd (see the module docstring)."""
    import torch

    with torch.no_grad():
        torch._inductor.aoti_compile_and_package(program, package_path=str(path),
                                                 inductor_configs={"freezing": True, **(configs or {})})


def shim_precision(name: str, precision: str, floating: str, kernel_inputs: dict[str, str] | None = None) -> str:
    """A profiled package's record as PyTorch's operator names would read: a C shim call
    (`aoti_torch_cpu_mkldnn__convolution_pointwise`) is a library operator, integer where it is oneDNN's
    quantized kernel, else at the row's float precision; a generated kernel (`graph_0_cpp_fused_relu_0`) is in
    the type of its first input, as its source declares it (`kernel_inputs`; unknown where it has none)."""
    if name.startswith("aoti_torch_") and not precision:
        return _torch.op_precision(name.replace("aoti_torch_cpu_", "aoti::"), floating)
    return precision or _torch.generated_precision(name, kernel_inputs or {}, precision)


def kernel_inputs(artifact: Path) -> dict[str, str]:
    """Each generated C++ kernel's first input's element type, from the kernel source the package keeps beside
    its library (`cpp_fused_quantize_per_tensor_0(const float* in_ptr0, uint8_t* out_ptr0)`: `float`), as ONNX
    Runtime's nodes are given the type of their first input."""
    with zipfile.ZipFile(artifact) as package:
        code = "\n".join(package.read(name).decode(errors="replace") for name in package.namelist()
                         if name.endswith((".kernel.cpp", ".wrapper.cpp")))
    found = {}
    for name, parameters in re.findall(r"void\s+(cpp_fused_\w+)\s*\(([^)]*)\)", code):
        first = re.search(r"const\s+([\w:]+)\s*\*\s*in_ptr0\b", parameters)
        if first:
            found[name] = first.group(1)
    return found


def shim_kind(name: str) -> str:
    """What a profiled package's oneDNN call computes, by its shim's name: "convolution", "linear" or ""."""
    lower = name.lower()
    if not lower.startswith("aoti_torch_"):
        return ""
    if "conv" in lower:
        return "convolution"
    return "linear" if any(word in lower for word in ("linear", "addmm", "_mm")) else ""


def shim_order(step: Any) -> list[str]:
    """The profiled package's convolution and linear calls of one inference, in the order it made them."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    return [event.name for event in sorted(prof.events(), key=lambda e: e.time_range.start) if shim_kind(event.name)]


def shim_macs(calls: list[str], program: list[dict[str, Any]] | None) -> dict[str, float] | None:
    """Multiply-adds per shim call name: the program's convolutions and linear layers (`_torch.program_macs`)
    matched one for one, in order and kind, to the package's calls; None where they do not match."""
    if program is None or len(calls) != len(program):
        return None
    macs: dict[str, float] = {}
    for call, op in zip(calls, program, strict=True):
        if shim_kind(call) != op["kind"]:
            return None
        macs[call] = macs.get(call, 0.0) + op["macs"]
    return macs


class AOTInductor(_torch.TorchModuleRuntime):
    name = "aoti"
    label = "AOTInductor"
    order = 2
    artifact = "model.pt2"  # a PT2 package: the compiled library, its weights inside, and its metadata
    precisions = {"cpu": ("fp32", "bf16", "int8"), "gpu": ("fp32", "fp16", "bf16")}
    _instrumented: tuple[Any, dict[str, float], dict[str, str]] | None = None  # the profiled build (instrumented_build)
    _instrumented_folder: Any = None  # its temporary folder

    @classmethod
    def export_imports(cls, precision: str) -> tuple[str, ...]:
        imports = ("torch.export", "torch._inductor.compile_fx")
        return (*imports, "torchao.quantization.pt2e") if precision == "int8" else imports

    @classmethod
    def export_unavailable(cls, target: str, precision: str) -> str | None:
        reason = super().export_unavailable(target, precision)
        if reason is None and not (shutil.which("g++") or shutil.which("c++")):
            return "AOTInductor compiles C++ and needs a compiler (g++); none on PATH"
        if reason is None and precision == "int8" and importlib.util.find_spec("torchao") is None:
            return "PyTorch int8 needs torchao (pip install torchao)"
        return reason

    @classmethod
    def host_facts(cls, options: Any) -> dict[str, Any]:
        """The package is machine code: the CPU's vector extensions its instructions use, and the threads its
        loops were sized for."""
        from edgebench.bench.environment import cpu_info

        flags = set(cpu_info().get("flags", [])) if options.target == "cpu" else set()
        return {"extensions": sorted(flags & set(ISA_FLAGS.values())), "threads": options.threads}

    def export(self, model: Any, example: Any, folder: Path) -> Path:
        import torch

        _torch.set_threads(self.options.threads)  # Inductor sizes its parallel loops for the threads it sees
        program = self.exported_program(model, example)
        path = folder / self.artifact
        compile_package(program, path)
        torch.export.save(program, str(folder / PROGRAM_NOTE))  # for profile(): not part of the package's size
        return path

    def load(self, artifact: Path) -> None:
        import torch

        from edgebench.bench.environment import cpu_info

        self.close()  # another package's profiled build is not this one's
        _torch.set_threads(self.options.threads)
        _torch.fp32_math(self.options.precision)
        self.dtype = self.torch_dtype()
        self.artifact_path = artifact
        self.metadata = self.read_metadata(artifact)
        isa = self.metadata.get("AOTI_CPU_ISA", "")
        missing = missing_extensions(isa, cpu_info().get("flags", [])) if self.options.target == "cpu" else []
        if missing:  # its instructions would kill the process: say so instead
            raise RuntimeError(f"this AOTInductor package was compiled for {isa}; this CPU lacks "
                               f"{', '.join(missing)} (re-export it here)")
        # aoti_load_package's own C++ loader, called directly: the Python wrapper imports Dynamo and Inductor
        # (1.2 s of a 1.25 s load here) only to flatten inputs, and this model takes one tensor.
        self.loader = torch._C._aoti.AOTIModelPackageLoader(str(artifact), "model", False, 1, -1)

    def run(self, inputs: Any) -> Any:
        import torch

        with torch.inference_mode():
            return self.loader.run([inputs])

    @staticmethod
    def read_metadata(artifact: Path) -> dict[str, str]:
        """The package's own record of where it was compiled for (AOTI_CPU_ISA, AOTI_DEVICE_KEY), read from its
        metadata file without loading the library."""
        import json

        with zipfile.ZipFile(artifact) as package:
            names = [n for n in package.namelist() if n.endswith(".wrapper_metadata.json")]
            return json.loads(package.read(names[0])) if names else {}

    def label_mismatch(self) -> str | None:
        """An int8 package whose code calls no integer kernel is not timed under an int8 label."""
        if self.options.precision == "int8" and not self.integer_kernels():
            return "AOTInductor int8: the package's code calls no integer kernel (float convolutions)"
        return super().label_mismatch()

    @functools.cached_property
    def calls(self) -> list[str]:
        """The package's shim calls (`package_calls`), read once: the label check and the details both ask."""
        return package_calls(self.artifact_path)

    def integer_kernels(self) -> list[str]:
        return integer_calls(self.calls)

    def profile(self, prepared: Any, iterations: int) -> list[Any]:
        """torch.profiler on a second build of the same exported program, compiled with Inductor's kernel
        profiling (`cpp.enable_kernel_profile`): the package runs its kernels inside one C++ call the profiler
        does not see into, and the instrumented build records each one, its oneDNN calls by their C shim
        (`aoti_torch_cpu__qconv_pointwise_tensor`) and its generated C++ kernels by name
        (`graph_0_cpp_fused_relu_0`, the graph numbered by the process), grouped by name as PyTorch's profile
        is. The build takes as long as the export's; the timed package stays uninstrumented. The records carry
        no shapes: multiply-adds are the program's, matched to its convolution and linear calls in order
        (`shim_macs`)."""

        if self.options.target != "cpu":
            raise ProfileUnavailable("AOTInductor is profiled on the CPU only here (on a GPU the package launches its "
                                     "kernels from its own C++ call, under no operator to name them by)")
        program_path = self.artifact_path.parent / PROGRAM_NOTE
        if not program_path.exists():
            raise ProfileUnavailable(f"no exported program beside the package ({PROGRAM_NOTE}) to build a profiled "
                                     "package from: export it again")
        if self.options.precision == "int8":  # the quantized ops the program names, and the int8 lowering
            import torchao.quantization.pt2e  # noqa: F401
            import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer  # noqa: F401
        floating = "fp32" if self.options.precision == "int8" else self.options.precision
        step, macs, inputs = self.instrumented_build(program_path, prepared)
        profiled = _torch.profile_calls(step, iterations, floating)
        return [replace(it, ops=tuple(replace(op, precision=shim_precision(op.name, op.precision, floating, inputs),
                                              macs=macs.get(op.name, 0.0)) for op in it.ops)) for it in profiled]

    def instrumented_build(self, program_path: Path, prepared: Any) -> tuple[Any, dict[str, float], dict[str, str]]:
        """One inference of the instrumented package on `prepared`, its calls' multiply-adds and its generated
        kernels' input types (`kernel_inputs`), built once per loaded package (a profile taken again after a noisy
        one reuses it: the build takes as long as the export), in a temporary folder `close()` removes."""
        import tempfile

        import torch

        if self._instrumented is not None:
            return self._instrumented
        folder = tempfile.TemporaryDirectory(prefix="eb-aoti-profile-")
        try:
            package = Path(folder.name) / self.artifact
            program = torch.export.load(str(program_path))
            compile_package(program, package, {"cpp.enable_kernel_profile": True})
            if self.options.precision == "int8" and not integer_calls(package_calls(package)):
                raise ProfileUnavailable("the profiled build of this int8 program calls no integer kernel: it "
                                         "would not profile what the timed package runs")
            loader = torch._C._aoti.AOTIModelPackageLoader(str(package), "model", False, 1, -1)

            def step() -> None:
                with torch.inference_mode():
                    loader.run([prepared])

            macs = shim_macs(shim_order(step), _torch.program_macs(program)) or {}
            inputs = kernel_inputs(package)
        except BaseException:
            folder.cleanup()
            raise
        self._instrumented_folder, self._instrumented = folder, (step, macs, inputs)
        return self._instrumented

    def close(self) -> None:
        self._instrumented = None
        if self._instrumented_folder is not None:
            self._instrumented_folder.cleanup()
            self._instrumented_folder = None
        super().close()

    def details(self) -> str:
        isa = self.metadata.get("AOTI_CPU_ISA") or self.metadata.get("AOTI_DEVICE_KEY", "")
        what = f"torch.export + AOTInductor package (freezing), compiled at export for {isa or 'this device'}"
        if self.options.precision == "int8":
            return f"torchao PT2E X86 int8, {what}; integer kernels {', '.join(self.integer_kernels())}"
        return what
