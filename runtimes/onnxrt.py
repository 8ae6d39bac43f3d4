"""ONNX Runtime: the ONNX file from the torch.export-based exporter, full graph optimization.

int8 is static post-training quantization with ONNX Runtime's own `quantize_static`: QDQ format, per-channel
weights, uint8 activations, calibrated on the task's training images; int8 weights with VNNI and uint8 weights
on x86 without it, where u8s8 saturates (`runtimes._onnx.ort_int8_settings`; the row's details say which).
Never `quantize_dynamic`:
it quantizes activations at every call and was 7-18x slower than fp32 on CNNs here. Quantization-aware int8
is NNCF's QAT, exported as a Q/DQ file that ONNX Runtime runs as it is.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from edgebench.models.heads import detection_head
from edgebench.runtimes._onnx import (
    ONNX_PACKAGES,
    SETTINGS_KEY,
    export_onnx,
    nodes_in_decode,
    onnx_weights,
    quantize_onnx,
)
from edgebench.runtimes._quant import calibration_batches, nncf_qat_onnx
from edgebench.runtimes._torch import torch_device
from edgebench.runtimes.base import ProfileUnavailable, Runtime, ieee_fp32_environment

PROVIDERS = {"cpu": "CPUExecutionProvider", "gpu": "CUDAExecutionProvider"}


ORT_DISTRIBUTIONS = ("onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino", "onnxruntime-directml")


def installed_onnxruntimes() -> list[str]:
    """Every ONNX Runtime distribution pip has installed, with its version."""
    from importlib import metadata

    found = []
    for name in ORT_DISTRIBUTIONS:
        try:
            found.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    return found


def onnxruntime_conflict() -> str | None:
    """Two ONNX Runtime distributions share one `onnxruntime` package folder, and whichever pip wrote last wins
    file by file: a mix that may run the CPU build under a GPU label."""
    found = installed_onnxruntimes()
    if len(found) < 2:
        return None
    return (f"{' and '.join(found)} are both installed and overwrite each other's files: keep one "
            "(pip uninstall -y onnxruntime onnxruntime-gpu, then install the one you want; see the README)")


def cuda_provider_options(precision: str) -> dict[str, Any]:
    """The CUDA provider's options: fp32 computes in IEEE fp32, not TF32 (its `use_tf32` default is on, which
    gave 1e-3 relative error on resnet18, beyond fp32's tolerance, under an fp32 label); `tf32` rows keep it."""
    return {"device_id": 0, "use_tf32": 0 if precision == "fp32" else 1}


class OnnxRuntime(Runtime):
    name = "onnxruntime"
    label = "ONNX Runtime"
    order = 20
    artifact = "model.onnx"
    # gpu fp16: a half-precision ONNX graph; gpu tf32: the fp32 graph with the CUDA provider's TF32 on.
    precisions = {"cpu": ("fp32", "int8"), "gpu": ("fp32", "tf32", "fp16")}
    packages = {"onnxruntime": "onnxruntime", **ONNX_PACKAGES}
    provider: ClassVar[str | None] = None  # a fixed execution provider; None: the target's (PROVIDERS)

    @classmethod
    def export_imports(cls, precision: str) -> tuple[str, ...]:
        return ("onnx", "onnxscript", "onnxruntime") if precision == "int8" else ("onnx", "onnxscript")

    @classmethod
    def provider_for(cls, target: str) -> str:
        return cls.provider or PROVIDERS[target]

    @classmethod
    def export_unavailable(cls, target: str, precision: str) -> str | None:
        """A half-precision graph is traced on the GPU (see `_onnx`): without CUDA it cannot be made."""
        reason = super().export_unavailable(target, precision)
        if reason or not (target == "gpu" and precision == "fp16"):
            return reason
        from edgebench.runtimes._torch import cuda_unavailable

        return cuda_unavailable(target)

    @classmethod
    def run_unavailable(cls, target: str) -> str | None:
        import onnxruntime as ort

        provider = cls.provider_for(target)
        if provider not in ort.get_available_providers():
            return (f"onnxruntime {ort.__version__} has no {provider} "
                    f"(has {', '.join(ort.get_available_providers())}; pip install onnxruntime-gpu)")
        return None

    @property
    def device(self) -> str:
        return self.provider_for(self.options.target)

    def provider_list(self, artifact: Path) -> list:
        """Execution providers in priority order, with their options."""
        if self.device == "CUDAExecutionProvider":
            return [(self.device, cuda_provider_options(self.options.precision))]
        return [self.device]

    def label_mismatch(self) -> str | None:
        """ONNX Runtime falls back to the next provider (and last to the CPU) when one fails to load, with only
        a warning, which `log_severity_level=3` hides: a row labelled CUDA would then time the CPU."""
        used = self.session.get_providers()
        if not used or used[0] != self.device:
            return (f"ONNX Runtime did not use {self.device} (the session fell back to {', '.join(used) or 'none'}; "
                    "its libraries failed to load, see run.log)")
        from edgebench.runtimes._torch import tf32_unsupported

        return tf32_unsupported(self.options.target, self.options.precision)

    def details(self) -> str:
        text = "providers " + ", ".join(self.session.get_providers())
        int8 = self.session.get_modelmeta().custom_metadata_map.get(SETTINGS_KEY)
        if int8:
            text += f"; {int8}"
        tf32_off = ieee_fp32_environment(self.options.target, self.options.precision)
        return text + "".join(f", {k}={v}" for k, v in tf32_off.items())

    def export(self, model: Any, example: Any, folder: Path) -> Path:
        device = torch_device(self.options.target)
        if self.options.precision != "int8":
            return export_onnx(model, example, folder / self.artifact, self.options.precision, device)
        batches = calibration_batches(self.calibration, example.shape[0])
        if self.qat is not None:
            self.trained = nncf_qat_onnx(model, example, batches, self.qat, folder / self.artifact)
            return folder / self.artifact
        import onnx

        float_path = export_onnx(model, example, folder / "float.onnx")
        kept = nodes_in_decode(onnx.load(str(float_path), load_external_data=False), detection_head(model))
        path = quantize_onnx(float_path, folder / self.artifact, batches, float_nodes=tuple(kept))
        float_path.unlink()  # the row's size is the int8 file's alone
        return path

    def stored_weights(self, artifact: Path) -> list[np.ndarray]:
        return onnx_weights(artifact)

    def session_options(self) -> Any:
        """The session's settings: the timed session's, and the profiled one's (`profile`) with profiling on."""
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        # Throughput mode on the CPU: one thread per concurrent run, the runs side by side.
        throughput = self.options.mode == "throughput" and self.options.target == "cpu"
        opts.intra_op_num_threads = 1 if throughput else self.options.threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        return opts

    def load(self, artifact: Path) -> None:
        import onnxruntime as ort

        if self.options.target == "gpu":
            self.preload_libraries()
        os.environ.update(ieee_fp32_environment(self.options.target, self.options.precision))
        self.artifact_path = artifact
        self.session = ort.InferenceSession(str(artifact), sess_options=self.session_options(),
                                            providers=self.provider_list(artifact))
        model_input = self.session.get_inputs()[0]
        self.input_name = model_input.name
        self.input_dtype = np.float16 if model_input.type == "tensor(float16)" else None
        self.on_gpu = self.options.target == "gpu"
        if self.on_gpu:  # keep inputs and outputs on the device: copies are timed apart from compute
            self.binding = self.session.io_binding()

    def profile(self, prepared: Any, iterations: int) -> list[Any]:
        """ONNX Runtime's own session profiling, in a second session (profiling is a session option): its
        per-node kernel times, grouped by the runs they fell in. Node names are the exported graph's, so each
        is traced back to its PyTorch module through the ONNX file's metadata where the node kept its name."""
        import json
        import tempfile

        import onnxruntime as ort

        from edgebench.bench.measure.profile import PROFILE_WARMUP, timed_calls
        from edgebench.runtimes._onnx import GraphNames, ort_profile_iterations

        if self.on_gpu:
            # Measured by others, not here (no onnxruntime-gpu): microsoft/onnxruntime issues 7390 and 20398.
            raise ProfileUnavailable("ONNX Runtime's session profile times a GPU node's kernel launch on the host, "
                                     "not its kernels (their times need a build with --enable_cuda_profiling), and "
                                     "its TensorRT provider runs the graph as one node: profiled on the CPU only")
        with tempfile.TemporaryDirectory(prefix="eb-ort-profile-") as tmp:
            opts = self.session_options()
            opts.enable_profiling = True
            opts.profile_file_prefix = str(Path(tmp) / "ort")
            session = ort.InferenceSession(str(self.artifact_path), sess_options=opts,
                                           providers=self.provider_list(self.artifact_path))
            walls = timed_calls(lambda: session.run(None, prepared), PROFILE_WARMUP + iterations)
            events = json.loads(Path(session.end_profiling()).read_text())
        return ort_profile_iterations(events, walls, PROFILE_WARMUP, GraphNames.read(self.artifact_path))

    def preload_libraries(self) -> None:
        """The CUDA and cuDNN libraries pip installed are not on the loader's path in a process that has not
        imported torch (this one): ONNX Runtime's documented way to load them (1.21+)."""
        import onnxruntime as ort

        if hasattr(ort, "preload_dlls"):
            ort.preload_dlls()

    def throughput_streams(self, x: np.ndarray) -> list[Any]:
        """On the CPU, one concurrent `run` per thread on the one session (sessions are thread-safe)."""
        if self.on_gpu:
            return super().throughput_streams(x)
        feed = self.prepare(x)
        return [lambda: self.session.run(None, feed) for _ in range(self.options.threads)]

    def copies_apart(self) -> bool:
        return self.on_gpu  # I/O binding: the input is copied in prepare(), outputs in fetch()

    def prepare(self, x: np.ndarray) -> Any:
        if self.input_dtype is not None:  # fp16 graph: the cast is part of preparing the input
            x = x.astype(self.input_dtype)
        if not self.on_gpu:
            return {self.input_name: x}
        import onnxruntime as ort

        value = ort.OrtValue.ortvalue_from_numpy(x, "cuda", 0)
        self.binding.bind_ortvalue_input(self.input_name, value)
        for output in self.session.get_outputs():
            self.binding.bind_output(output.name, "cuda", 0)
        return value

    def run(self, inputs: Any) -> Any:
        if not self.on_gpu:
            return self.session.run(None, inputs)
        self.session.run_with_iobinding(self.binding)
        return self.binding

    def sync(self) -> None:
        if self.on_gpu:
            self.binding.synchronize_outputs()

    def fetch(self, outputs: Any) -> list[np.ndarray]:
        if self.on_gpu:
            return [np.asarray(o) for o in outputs.copy_outputs_to_cpu()]
        return [np.asarray(o) for o in outputs]


if __name__ == "__main__":  # `make install-gpu` / `make install-cpu`: the install left exactly one ONNX Runtime
    import sys

    if sys.argv[1:] != ["--check-one"]:
        sys.exit("usage: python -m edgebench.runtimes.onnxrt --check-one")
    installed = installed_onnxruntimes()
    print(f"ONNX Runtime: {', '.join(installed) or 'none installed'}")
    sys.exit(0 if len(installed) == 1 else 1)
