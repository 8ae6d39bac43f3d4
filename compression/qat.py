"""Quantization-aware training: each runtime fine-tunes with int8 fake quantization in its own toolchain.

Where the fake quantizers sit, and how they round, is the runtime's own business (NNCF for ONNX Runtime
and OpenVINO, LiteRT's PT2E quantizer for TFLite, torchao's X86 PT2E quantizer for PyTorch), so the training
happens in each runtime's int8 export (`runtimes._quant.QatPlan`), not here: this step passes the model on
unchanged (after any pruning before it in the chain) and marks the variant int8-only. Its rows are compared
with the baseline fine-tuned as long and quantized after training by the same runtime.
"""

from __future__ import annotations

from torch import nn

from edgebench.compression.base import CompressionContext, CompressionMethod


class QuantizationAwareTraining(CompressionMethod):
    name = "qat"
    summary = "int8 fake-quantized fine-tuning, in each runtime's own toolchain (NNCF, LiteRT PT2E, torchao PT2E)"
    position = "last"
    needs_task = True
    quantizes = True
    fine_tunes = True
    task_kinds = ("classify",)  # the runtimes' QAT toolchains train with edgebench's classifier recipe

    def apply(self, model: nn.Module, context: CompressionContext) -> nn.Module:
        context.notes.append(f"QAT {context.finetune_epochs} epochs at export, in each runtime's toolchain")
        return model.eval()
