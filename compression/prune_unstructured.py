"""Global unstructured magnitude pruning (`torch.nn.utils.prune`), fine-tuned with the pruned weights held at zero.

It zeroes weights but keeps every tensor dense: the file and the latency stay the same and only the
zipped size shrinks, which is what the row shows. The fine-tune trains each layer's weight through a fixed mask
(a parametrization: weight = original x mask), the same training as `torch.nn.utils.prune`'s own
re-parametrisation; unlike it, a masked module can be deep-copied, which Ultralytics' trainer does for its EMA.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize, prune

from edgebench.compression.base import CompressionContext, CompressionMethod, parse_fraction, weight_layers
from edgebench.models.heads import detection_head


class Mask(nn.Module):
    """weight x mask: pruned weights stay zero, and get no gradient, however the model is trained."""

    def __init__(self, mask: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mask", mask)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight * self.mask


class UnstructuredPruning(CompressionMethod):
    name = "prune-unstructured"
    argument = "SPARSITY"
    fine_tunes = True
    summary = "zero the smallest weights globally (torch.nn.utils.prune), then fine-tune"

    def __init__(self, arg: str | None) -> None:
        super().__init__(arg)
        self.amount = parse_fraction(self.name, arg)

    def apply(self, model: nn.Module, context: CompressionContext) -> nn.Module:
        head = detection_head(model)  # a YOLO head's DFL is its fixed decode (weights 0..15), not a learned layer
        layers = [(name, m) for name, m in weight_layers(model) if head is None or not name.startswith(f"{head}.dfl")]
        prune.global_unstructured([(module, "weight") for _, module in layers], pruning_method=prune.L1Unstructured,
                                  amount=self.amount)
        for _, module in layers:
            mask = module.weight_mask.detach().clone()
            prune.remove(module, "weight")  # the zeros made permanent
            parametrize.register_parametrization(module, "weight", Mask(mask))
        epochs = self.finetune_epochs(context)
        if epochs:
            model = context.task.fine_tune(model, epochs, context.seed)  # a detector's trainer returns a copy
        for _, module in weight_layers(model):
            if parametrize.is_parametrized(module, "weight"):
                parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
        context.notes.append(f"{self.amount:.0%} of conv/linear weights zeroed (global L1)")
        return model.eval()
