"""Quantization-aware training: fine-tune with int8 fake quantization (torchao PT2E QAT), then quantize per runtime.

The model is exported with a dynamic batch, prepared with torchao's X86 QAT config (per-channel symmetric
int8 weights, uint8 activations), and fine-tuned so the weights settle where int8 rounding hurts least.
The trained weights are then loaded back into the original architecture, and each runtime quantizes them
with its own int8 toolchain (calibrated on the task's images), which uses the same per-channel weight grid.
Its rows are int8 only, and compared with the baseline fine-tuned as long and quantized the same way.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from compression.base import CompressionContext, CompressionMethod
from models.training import finetune_recipe, fit


class QuantizationAwareTraining(CompressionMethod):
    name = "qat"
    summary = "fine-tune with int8 fake quantization (torchao PT2E QAT); every runtime then runs it in int8"
    position = "last"
    needs_task = True
    quantizes = True
    fine_tunes = True

    def apply(self, model: nn.Module, context: CompressionContext) -> nn.Module:
        import torchao.quantization.pt2e as pt2e
        from torchao.quantization.pt2e import quantize_pt2e
        from torchao.quantization.pt2e.quantizer import x86_inductor_quantizer as x86

        x = torch.from_numpy(context.task.x_train[:2])
        batch = torch.export.Dim("batch")
        exported = torch.export.export(copy.deepcopy(model).train(), (x,), dynamic_shapes={"x": {0: batch}})
        quantizer = x86.X86InductorQuantizer().set_global(x86.get_default_x86_inductor_quantization_config(is_qat=True))
        prepared = quantize_pt2e.prepare_qat_pt2e(exported.module(), quantizer)
        pt2e.allow_exported_model_train_eval(prepared)  # exported programs refuse .train()/.eval() otherwise
        fit(prepared, context.task, finetune_recipe(context.finetune_epochs), context.seed)
        trained = prepared.state_dict()
        wanted = model.state_dict()
        model.load_state_dict({name: trained[name] for name in wanted})  # same names; observers left behind
        context.notes.append(f"QAT {context.finetune_epochs} epochs (torchao PT2E, X86 int8 config), "
                             "re-quantized by each runtime")
        return model.eval()
