"""Structured channel pruning with torch-pruning: whole channels removed along the dependency graph, then fine-tuned.

Channel counts stay multiples of 8: odd counts (11/22/44) ran slower than the unpruned model here, because
vectorized kernels pad to their lane width. Each coupled group of layers keeps the multiple of 8 *nearest* to
what the ratio asks (never fewer than 8): rounding down turned "30%" into 50% of a 16-channel stage. What was
really removed, per layer and overall, is recorded (`pruned_fraction`), and a layer the ratio could not be met
on within 5 points is named in the row's notes. The output layer keeps all its classes.
"""

from __future__ import annotations

import torch
from torch import nn

from edgebench.compression.base import CompressionContext, CompressionMethod, parse_fraction, weight_layers
from edgebench.models.heads import detection_head

ROUND_TO = 8
TOLERANCE = 0.05  # a layer whose realised fraction is further than this from the request is named in the notes


def kept_channels(channels: int, ratio: float, round_to: int = ROUND_TO) -> int:
    """The multiple of `round_to` nearest to channels x (1 - ratio), at least one multiple and at most all."""
    if channels <= round_to:
        return channels
    nearest = int(round(channels * (1 - ratio) / round_to)) * round_to
    return min(channels, max(round_to, nearest))


def out_widths(model: nn.Module) -> dict[str, int]:
    """Output channels (or features) of every convolution and linear layer, by name."""
    return {name: m.out_channels if hasattr(m, "out_channels") else m.out_features for name, m in weight_layers(model)}


class SplitC2f(nn.Module):
    """Ultralytics' C2f block with its first convolution as two (`cv0`, `cv1`) instead of one whose output is
    chunked in halves: the same function, in a form torch-pruning's dependency graph follows (a chunk of a
    pruned tensor is not; it failed with an index out of range). torch-pruning's own YOLOv8 example does this."""

    def __init__(self, block: nn.Module) -> None:
        import copy

        super().__init__()
        half = block.cv1.conv.out_channels // 2
        self.cv0, self.cv1 = copy.deepcopy(block.cv1), copy.deepcopy(block.cv1)
        for conv, part in ((self.cv0, slice(0, half)), (self.cv1, slice(half, 2 * half))):
            conv.conv.weight = nn.Parameter(block.cv1.conv.weight.data[part].clone())
            conv.conv.out_channels = half
            if conv.conv.bias is not None:
                conv.conv.bias = nn.Parameter(block.cv1.conv.bias.data[part].clone())
            bn, source = conv.bn, block.cv1.bn
            bn.weight, bn.bias = (nn.Parameter(source.weight.data[part].clone()),
                                  nn.Parameter(source.bias.data[part].clone()))
            bn.running_mean, bn.running_var = source.running_mean[part].clone(), source.running_var[part].clone()
            bn.num_features = half
        self.cv2, self.m = block.cv2, block.m
        for attr in ("f", "i", "type", "np"):  # where Ultralytics' model loop finds its input, and its index
            if hasattr(block, attr):
                setattr(self, attr, getattr(block, attr))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = [self.cv0(x), self.cv1(x)]
        y.extend(m(y[-1]) for m in self.m)
        return self.cv2(torch.cat(y, 1))


def split_c2f_blocks(model: nn.Module) -> int:
    """Replace every Ultralytics C2f (and subclass keeping its forward, as YOLO11's C3k2) by `SplitC2f`; how many."""
    try:
        from ultralytics.nn.modules.block import C2f
    except ImportError:  # no Ultralytics: no such block in the model
        return 0
    found = [(name, m) for name, m in model.named_modules() if isinstance(m, C2f) and type(m).forward is C2f.forward]
    for name, block in found:
        owner, _, attr = name.rpartition(".")
        setattr(model.get_submodule(owner) if owner else model, attr, SplitC2f(block))
    return len(found)


class ChannelPruning(CompressionMethod):
    name = "prune-channels"
    argument = "RATIO"
    fine_tunes = True
    summary = "remove the weakest channels (torch-pruning, dependency-graph aware, nearest multiple of 8), then " \
              "fine-tune; the realised fraction is recorded"

    def __init__(self, arg: str | None) -> None:
        super().__init__(arg)
        self.ratio = parse_fraction(self.name, arg)

    def apply(self, model: nn.Module, context: CompressionContext) -> nn.Module:
        import torch_pruning as tp

        model.eval()
        with torch.no_grad():
            outputs = model(context.example).shape[-1]
        # Layers whose outputs are the model's outputs keep every unit; a detector keeps its whole head (box bins
        # and one channel per class), so the backbone and neck are pruned and the head's inputs follow.
        keep = [m for m in model.modules() if isinstance(m, nn.Linear) and m.out_features == outputs]
        head = detection_head(model)
        if head is not None:
            keep += list(model.get_submodule(head).modules())
            split_c2f_blocks(model)
        before_params, before = sum(p.numel() for p in model.parameters()), out_widths(model)
        prunable = [name for name, m in weight_layers(model) if not any(m is k for k in keep)]
        graph = tp.DependencyGraph().build_dependency(model, example_inputs=context.example)
        ratios = {}
        for group in graph.get_all_groups(ignored_layers=keep, root_module_types=(nn.Conv2d, nn.Linear)):
            root = group[0].dep.target.module
            channels = graph.get_out_channels(root)
            kept = kept_channels(channels, self.ratio)
            # torch-pruning keeps int(channels x (1 - ratio)): half a channel of margin makes that exactly `kept`
            ratios[root] = 1 - (kept + 0.5) / channels if kept < channels else 0.0
        pruner = tp.pruner.BasePruner(model, context.example, importance=tp.importance.GroupMagnitudeImportance(p=2),
                                      pruning_ratio=0.0, pruning_ratio_dict=ratios, ignored_layers=keep)
        pruner.step()
        after_params, after = sum(p.numel() for p in model.parameters()), out_widths(model)
        epochs = self.finetune_epochs(context)
        if epochs:
            model = context.task.fine_tune(model, epochs, context.seed)
        removed = {name: 1 - after[name] / before[name] for name in prunable}
        total = sum(before[n] for n in prunable)
        context.pruned_fraction = 1 - sum(after[n] for n in prunable) / total if total else 0.0
        layers = ", ".join(f"{n} {before[n]}->{after[n]}" for n in prunable)
        missed = [f"{n} {removed[n]:.0%}" for n in prunable if abs(removed[n] - self.ratio) > TOLERANCE]
        context.notes.append(
            f"channels: {self.ratio:.0%} asked, {context.pruned_fraction:.1%} removed (nearest multiple of "
            f"{ROUND_TO}); params {before_params:,} -> {after_params:,} ({1 - after_params / before_params:.1%} "
            f"removed); per layer {layers}")
        if not epochs:  # a model without labelled data (or none a trainer takes: a COCO folder)
            context.notes.append("not fine-tuned: no labelled data a trainer takes")
        if missed:
            context.notes.append(f"{self.ratio:.0%} not met within {TOLERANCE:.0%} on: {', '.join(missed)}")
        return model.eval()
