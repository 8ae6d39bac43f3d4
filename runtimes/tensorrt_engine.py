"""TensorRT: an engine built from the ONNX file with the TensorRT Python API, run with device buffers.

Needs an NVIDIA GPU and the `tensorrt` wheel (from NVIDIA's package index: see the README); device
buffers are torch CUDA tensors, so no extra CUDA binding is needed. The engine is built for the
exact input shape (batch included) in the export step, which is when TensorRT does its tuning.
int8 is explicit quantization, the form TensorRT 10+ recommends (its implicit calibrators are deprecated):
ONNX Runtime's `quantize_static` writes Q/DQ nodes, symmetric int8 for activations and per-channel weights
as TensorRT requires, calibrated on the task's images, and the strongly typed network takes its int8
precision from them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgebench.runtimes import _torch
from edgebench.runtimes._onnx import ONNX_PACKAGES, TENSORRT_PIN, OrtInt8Settings, export_onnx, quantize_onnx
from edgebench.runtimes.base import Runtime

WORKSPACE_BYTES = 4 << 30
# TensorRT's explicit quantization: symmetric int8 activations and weights, float biases (it fuses them itself).
TENSORRT_INT8 = OrtInt8Settings(activation="int8", symmetric=True, why="TensorRT explicit quantization")


class TensorRT(Runtime):
    name = "tensorrt"
    label = "TensorRT"
    order = 40
    artifact = "model.engine"
    precisions = {"gpu": ("fp32", "tf32", "fp16", "int8")}
    packages = {"tensorrt": TENSORRT_PIN, "torch": "torch", **ONNX_PACKAGES}

    @classmethod
    def export_unavailable(cls, target: str, precision: str) -> str | None:
        """The engine is built on the GPU it will run on: no GPU, no engine (an `unavailable` row, not an error)."""
        return super().export_unavailable(target, precision) or _torch.cuda_unavailable(target)

    @classmethod
    def run_unavailable(cls, target: str) -> str | None:
        return _torch.cuda_unavailable(target)

    @classmethod
    def qat_unavailable(cls) -> str | None:
        return ("quantization-aware int8 is not built for TensorRT yet (NNCF's Q/DQ file quantizes activations "
                "asymmetrically; TensorRT needs symmetric int8): its post-training int8 row is measured")

    @property
    def device(self) -> str:
        return "cuda"

    def _logger(self) -> Any:
        import tensorrt as trt

        return trt.Logger(trt.Logger.WARNING)

    def export(self, model: Any, example: Any, folder: Path) -> Path:
        import tensorrt as trt

        reason = _torch.cuda_unavailable("gpu")
        if reason:
            raise RuntimeError(f"building a TensorRT engine needs a GPU: {reason}")
        if self.options.precision == "int8":
            onnx_path = self._int8_onnx(model, example, folder)
        else:
            onnx_path = export_onnx(model, example, folder / "intermediate.onnx", self.options.precision, "cuda")
        logger = self._logger()
        builder = trt.Builder(logger)
        # Strong typing: the precision comes from the graph's types (fp16 graph for fp16). Required in
        # TensorRT 11, which removed the FP16 builder flag; opt-in (and equivalent) in 10.x.
        flags = 0
        if hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"):
            flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
        network = builder.create_network(flags)
        parser = trt.OnnxParser(network, logger)
        if not parser.parse(onnx_path.read_bytes()):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise RuntimeError(f"TensorRT could not parse the ONNX file: {errors}")
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
        if self.options.precision == "fp32":  # TF32 is on by default: an fp32 engine must compute in fp32
            config.clear_flag(trt.BuilderFlag.TF32)
        elif self.options.precision == "tf32":  # the default, set explicitly: this row is TF32 by name
            config.set_flag(trt.BuilderFlag.TF32)
        engine = builder.build_serialized_network(network, config)
        if engine is None:
            raise RuntimeError("TensorRT engine build failed (see run.log)")
        path = folder / self.artifact
        path.write_bytes(bytes(engine))
        onnx_path.unlink()
        return path

    def _int8_onnx(self, model: Any, example: Any, folder: Path) -> Path:
        """A Q/DQ ONNX file TensorRT builds int8 kernels from: symmetric int8 activations and weights."""
        from edgebench.runtimes._quant import calibration_batches

        float_path = export_onnx(model, example, folder / "float.onnx")
        path = quantize_onnx(float_path, folder / "intermediate.onnx",
                             calibration_batches(self.calibration, example.shape[0]), TENSORRT_INT8)
        float_path.unlink()
        return path

    def load(self, artifact: Path) -> None:
        import tensorrt as trt
        import torch

        self.engine = trt.Runtime(self._logger()).deserialize_cuda_engine(artifact.read_bytes())
        self.context = self.engine.create_execution_context()
        self.stream = torch.cuda.Stream()
        self.inputs: list[torch.Tensor] = []
        self.outputs: list[torch.Tensor] = []
        for i in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(i)
            shape = tuple(self.engine.get_tensor_shape(name))
            dtype = torch.from_numpy(np.empty(0, dtype=trt.nptype(self.engine.get_tensor_dtype(name)))).dtype
            buffer = torch.empty(shape, dtype=dtype, device="cuda")
            if not self.context.set_tensor_address(name, buffer.data_ptr()):
                raise RuntimeError(f"TensorRT refused the address of tensor {name!r} ({shape}, {dtype})")
            is_input = self.engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            (self.inputs if is_input else self.outputs).append(buffer)

    def close(self) -> None:
        """Context before engine, then the device buffers: what TensorRT holds on the GPU goes with the row."""
        for name in ("context", "engine", "inputs", "outputs", "stream"):
            if hasattr(self, name):
                delattr(self, name)

    def label_mismatch(self) -> str | None:
        return _torch.tf32_unsupported("gpu", self.options.precision)

    def details(self) -> str:
        import tensorrt as trt

        return f"TensorRT {trt.__version__}, {self.options.precision} engine, workspace {WORKSPACE_BYTES >> 30} GiB"

    def copies_apart(self) -> bool:
        return True

    def prepare(self, x: np.ndarray) -> Any:
        import torch

        with torch.cuda.stream(self.stream):
            self.inputs[0].copy_(torch.from_numpy(x).to(self.inputs[0].dtype), non_blocking=False)
        return self.inputs[0]

    def run(self, inputs: Any) -> Any:
        if not self.context.execute_async_v3(self.stream.cuda_stream):
            raise RuntimeError("TensorRT execute_async_v3 failed")
        return self.outputs

    def sync(self) -> None:
        self.stream.synchronize()

    def fetch(self, outputs: Any) -> list[np.ndarray]:
        self.stream.synchronize()
        return [o.float().cpu().numpy() for o in outputs]
