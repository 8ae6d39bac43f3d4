"""Structured channel pruning with torch-pruning: whole channels removed along the dependency graph, then fine-tuned.

Channel counts are rounded to a multiple of 8: odd counts (11/22/44) ran slower than the unpruned model here,
because vectorized kernels pad to their lane width. The output layer keeps all its classes.
"""

from __future__ import annotations

import torch
from torch import nn

from compression.base import CompressionContext, CompressionMethod, parse_fraction
from models.training import finetune_recipe, fit

ROUND_TO = 8


class ChannelPruning(CompressionMethod):
    name = "prune-channels"
    argument = "RATIO"
    fine_tunes = True
    summary = "remove the weakest channels (torch-pruning, dependency-graph aware, multiples of 8), then fine-tune"

    def __init__(self, arg: str | None) -> None:
        super().__init__(arg)
        self.ratio = parse_fraction(self.name, arg)

    def apply(self, model: nn.Module, context: CompressionContext) -> nn.Module:
        import torch_pruning as tp

        model.eval()
        with torch.no_grad():
            outputs = model(context.example).shape[-1]
        # Layers whose outputs are the model's outputs keep every unit.
        keep = [m for m in model.modules() if isinstance(m, nn.Linear) and m.out_features == outputs]
        before = sum(p.numel() for p in model.parameters())
        pruner = tp.pruner.BasePruner(model, context.example, importance=tp.importance.GroupMagnitudeImportance(p=2),
                                      pruning_ratio=self.ratio, ignored_layers=keep, round_to=ROUND_TO)
        pruner.step()
        after = sum(p.numel() for p in model.parameters())
        epochs = self.finetune_epochs(context)
        if epochs:
            fit(model, context.task, finetune_recipe(epochs), context.seed)
        context.notes.append(f"channels cut by {self.ratio:.0%} (rounded to x{ROUND_TO}): "
                             f"{before:,} -> {after:,} params")
        return model.eval()
