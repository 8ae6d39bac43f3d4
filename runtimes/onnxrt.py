"""ONNX Runtime: the ONNX file from the torch.export-based exporter, full graph optimization.

int8 is static post-training quantization with ONNX Runtime's own `quantize_static`: QDQ format, per-channel
int8 weights, uint8 activations (x86's fast path), calibrated on the task's images. Never `quantize_dynamic`:
it quantizes activations at every call and was 7-18x slower than fp32 on CNNs here. Quantization-aware int8
is NNCF's QAT, exported as a Q/DQ file that ONNX Runtime runs as it is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from runtimes._onnx import ONNX_PACKAGES, export_onnx, quantize_onnx
from runtimes._quant import calibration_batches, nncf_qat_onnx
from runtimes._torch import torch_device
from runtimes.base import Runtime

PROVIDERS = {"cpu": "CPUExecutionProvider", "gpu": "CUDAExecutionProvider"}


class OnnxRuntime(Runtime):
    name = "onnxruntime"
    label = "ONNX Runtime"
    order = 20
    artifact = "model.onnx"
    precisions = {"cpu": ("fp32", "int8"), "gpu": ("fp32", "fp16")}  # gpu fp16: a half-precision ONNX graph
    packages = {"onnxruntime": "onnxruntime", **ONNX_PACKAGES}
    provider: ClassVar[str | None] = None  # a fixed execution provider; None: the target's (PROVIDERS)

    @classmethod
    def provider_for(cls, target: str) -> str:
        return cls.provider or PROVIDERS[target]

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
        return [self.device]

    def export(self, model: Any, example: Any, folder: Path) -> Path:
        device = torch_device(self.options.target)
        if self.options.precision != "int8":
            return export_onnx(model, example, folder / self.artifact, self.options.precision, device)
        batches = calibration_batches(self.calibration, example.numpy())
        if self.qat is not None:
            self.trained = nncf_qat_onnx(model, example, batches, self.qat, folder / self.artifact)
            return folder / self.artifact
        float_path = export_onnx(model, example, folder / "float.onnx")
        path = quantize_onnx(float_path, folder / self.artifact, batches)
        float_path.unlink()  # the row's size is the int8 file's alone
        return path

    def load(self, artifact: Path) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        # Throughput mode on the CPU: one thread per concurrent run, the runs side by side.
        throughput = self.options.mode == "throughput" and self.options.target == "cpu"
        opts.intra_op_num_threads = 1 if throughput else self.options.threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        self.session = ort.InferenceSession(str(artifact), sess_options=opts, providers=self.provider_list(artifact))
        model_input = self.session.get_inputs()[0]
        self.input_name = model_input.name
        self.input_dtype = np.float16 if model_input.type == "tensor(float16)" else None
        self.on_gpu = self.options.target == "gpu"
        if self.on_gpu:  # keep inputs and outputs on the device: copies are timed apart from compute
            self.binding = self.session.io_binding()

    def throughput_streams(self, x: np.ndarray) -> list[Any]:
        """On the CPU, one concurrent `run` per thread on the one session (sessions are thread-safe)."""
        if self.on_gpu:
            return super().throughput_streams(x)
        feed = self.prepare(x)
        return [lambda: self.session.run(None, feed) for _ in range(self.options.threads)]

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
