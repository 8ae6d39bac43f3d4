"""What the int8 toolchains share: calibration batches, and the plan for quantization-aware training.

Post-training int8 only needs calibration images. Quantization-aware training (`COMPRESS=qat`) is done by
each runtime's own toolchain at export, because each inserts its own fake quantizers where its runtime will
quantize: NNCF for ONNX Runtime and OpenVINO (`nncf_qat_onnx` below), LiteRT's PT2E quantizer for TFLite,
torchao's X86 PT2E quantizer for PyTorch. All train with the same recipe, data order and epochs
(`models.training.finetune_recipe`), like the fine-tuned control they are compared with.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger("edgebench")


@dataclass(frozen=True)
class QatPlan:
    """Set on an adapter before export() of a quantization-aware variant: train this long on this task."""

    task_file: str  # the task's .npz (bench.job.MeasureJob.task)
    epochs: int
    seed: int = 0

    def train(self, model: Any) -> Any:
        """Fine-tune `model` (with its fake quantizers) in place on the task's training split."""
        from edgebench.tasks.classify import Task

        return Task.load(self.task_file).fine_tune(model, self.epochs, self.seed)


def calibration_batches(calibration: np.ndarray | None, batch: int) -> list[np.ndarray]:
    """Every calibration input, re-batched to the exported batch size: the same images at any batch.

    The last batch is completed by wrapping around to the first images, so no image is dropped and none is
    added from elsewhere. Calibration never falls back to the timed input (built from test images): without
    calibration inputs this raises, and the row becomes an `error` row that says why.
    """
    if calibration is None or len(calibration) == 0:
        raise ValueError("int8 needs calibration images (the task's training images, or seeded inputs for a "
                         "model without data); none were given")
    count = -(-len(calibration) // batch)  # ceil
    images = np.resize(np.asarray(calibration, dtype=np.float32), (count * batch, *calibration.shape[1:]))
    return [np.ascontiguousarray(images[i * batch:(i + 1) * batch]) for i in range(count)]


def folded_copy(model: Any) -> Any:
    """Where every QAT here starts (NNCF's and the PT2E toolchains' alike): a copy of the model with its
    BatchNorms folded into the convolutions (`fold_batchnorm_modules`), so each trains the same convolutions.
    For PT2E it also spares torchao simulating the fold in training and undoing it at convert, each of which
    exported ~130 small pattern graphs: about 25 s of each QAT export on the 2-core host."""
    return fold_batchnorm_modules(copy.deepcopy(model).eval())


def export_for_training(model: Any, example: Any) -> Any:
    """torch.export of the model, BatchNorm folded (`folded_copy`), in train mode with a dynamic batch (training
    runs at the recipe's batch size): the graph PT2E QAT prepares.

    Traced at batch 2 at least: torch.export specializes a dimension of size 1 to a constant.
    """
    import torch

    x = example if example.shape[0] > 1 else torch.cat([example, example])
    return torch.export.export(folded_copy(model).train(), (x,),
                               dynamic_shapes=({0: torch.export.Dim("batch")},)).module()


def fold_batchnorm_modules(model: Any) -> Any:
    """Fold each Conv2d + BatchNorm2d pair in the module tree itself (the conv replaced, the BN an Identity).

    NNCF puts a fake quantizer after each BatchNorm it finds, so an unfolded model exports as float
    convolutions between Q/DQ pairs, which ONNX Runtime cannot fuse into integer kernels (measured: 3.8x
    slower than post-training int8). Folding in place keeps the model an ordinary module, which NNCF's
    tracer needs (it refuses torch.fx graph modules). A model torch.fx cannot trace is left as it is.
    """
    import torch
    from torch import nn
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    try:
        graph = torch.fx.symbolic_trace(model).graph
    except Exception as exc:  # data-dependent control flow: keep the BatchNorms, say so
        logger.info("BatchNorm not folded before QAT: torch.fx cannot trace the model (%s)", exc)
        return model
    modules = dict(model.named_modules())
    for node in graph.nodes:
        if node.op != "call_module" or not isinstance(modules.get(node.target), nn.BatchNorm2d):
            continue
        conv = node.args[0]
        if not (isinstance(conv, torch.fx.Node) and conv.op == "call_module" and len(conv.users) == 1
                and isinstance(modules.get(conv.target), nn.Conv2d)):
            continue
        fused = fuse_conv_bn_eval(modules[conv.target].eval(), modules[node.target].eval())
        for name, replacement in ((conv.target, fused), (node.target, nn.Identity())):
            parent, _, attr = name.rpartition(".")
            setattr(model.get_submodule(parent) if parent else model, attr, replacement)
    return model


def nncf_qat_onnx(model: Any, example: Any, batches: list[np.ndarray], plan: QatPlan, path: Path) -> Any:
    """NNCF quantization-aware training, exported as a Q/DQ ONNX file at `path`; returns the trained module.

    NNCF's torch backend initializes its quantizers on the calibration batches (as its post-training
    quantization does), the model trains with them, and `nncf.strip` leaves torch fake-quantize ops, which
    the TorchScript-based ONNX exporter writes as QuantizeLinear/DequantizeLinear (the torch.export-based
    one cannot trace them). That file keeps float weights behind QuantizeLinear (3x the size), so ONNX
    Runtime's hardware-independent (basic) optimizer folds them into int8 initializers once, offline.
    ONNX Runtime runs the result as it is; OpenVINO reads it into an int8 IR.
    """
    import nncf
    import onnxruntime as ort
    import torch

    model = folded_copy(model)
    dataset = nncf.Dataset([torch.from_numpy(b) for b in batches])
    quantized = nncf.quantize(model, dataset, subset_size=len(batches))
    plan.train(quantized)
    stripped = nncf.strip(quantized, do_copy=True, strip_format=nncf.StripFormat.NATIVE, example_input=example)
    raw = path.with_name("qat_float_weights.onnx")
    with torch.no_grad():
        torch.onnx.export(stripped.eval(), (example,), str(raw), dynamo=False)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(path)
    options.log_severity_level = 3
    ort.InferenceSession(str(raw), options, providers=["CPUExecutionProvider"])
    raw.unlink()
    return stripped
