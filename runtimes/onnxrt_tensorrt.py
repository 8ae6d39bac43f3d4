"""ONNX Runtime with its TensorRT execution provider (onnxruntime-gpu built with TensorRT).

The same ONNX file as the ONNX Runtime row; ONNX Runtime hands the graph to TensorRT and falls back
to CUDA for what TensorRT cannot take. fp16 rows get a half-precision ONNX graph (see `_onnx`), so the
precision does not depend on the EP's fp16 flag, which TensorRT 11 no longer honours. Engines are cached
beside the artifact, so the first inference (the engine build) is reported apart from the timed runs.
"""

from __future__ import annotations

from pathlib import Path

from edgebench.runtimes._onnx import TENSORRT_PIN
from edgebench.runtimes.onnxrt import OnnxRuntime, cuda_provider_options


class OnnxRuntimeTensorRT(OnnxRuntime):
    name = "onnxruntime-trt"
    label = "ONNX Runtime (TensorRT EP)"
    order = 25
    precisions = {"gpu": ("fp32", "tf32", "fp16")}  # tf32: TensorRT's default; fp32 turns it off (see onnxrt)
    provider = "TensorrtExecutionProvider"
    packages = {**OnnxRuntime.packages, "tensorrt": TENSORRT_PIN}

    def preload_libraries(self) -> None:
        """`preload_dlls()` loads CUDA and cuDNN only; the EP also needs TensorRT's libnvinfer, which importing
        the `tensorrt` package loads. Without it the EP fails to load and ONNX Runtime silently falls back."""
        import tensorrt  # noqa: F401

        super().preload_libraries()

    def provider_list(self, artifact: Path) -> list:
        options = {
            "device_id": 0,
            "trt_fp16_enable": self.options.precision == "fp16",
            "trt_engine_cache_enable": True,
            "trt_engine_cache_path": str(artifact.parent / "trt_cache"),
        }
        return [(self.provider, options), ("CUDAExecutionProvider", cuda_provider_options(self.options.precision))]
