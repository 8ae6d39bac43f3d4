"""Global unstructured magnitude pruning (`torch.nn.utils.prune`), fine-tuned with the mask held, then made permanent.

It zeroes weights but keeps every tensor dense: the file and the latency stay the same and only the
zipped size shrinks, which is what the row shows.
"""

from __future__ import annotations

from torch import nn
from torch.nn.utils import prune

from edgebench.compression.base import CompressionContext, CompressionMethod, parse_fraction, weight_layers
from edgebench.models.training import finetune_recipe, fit


class UnstructuredPruning(CompressionMethod):
    name = "prune-unstructured"
    argument = "SPARSITY"
    fine_tunes = True
    summary = "zero the smallest weights globally (torch.nn.utils.prune), then fine-tune"

    def __init__(self, arg: str | None) -> None:
        super().__init__(arg)
        self.amount = parse_fraction(self.name, arg)

    def apply(self, model: nn.Module, context: CompressionContext) -> nn.Module:
        targets = [(module, "weight") for _, module in weight_layers(model)]
        prune.global_unstructured(targets, pruning_method=prune.L1Unstructured, amount=self.amount)
        epochs = self.finetune_epochs(context)
        if epochs:  # the masks stay in place while training, so pruned weights stay zero
            fit(model, context.task, finetune_recipe(epochs), context.seed)
        for module, attr in targets:
            prune.remove(module, attr)
        context.notes.append(f"{self.amount:.0%} of conv/linear weights zeroed (global L1)")
        return model.eval()
