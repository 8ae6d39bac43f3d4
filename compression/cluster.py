"""Weight clustering: k-means (scikit-learn) per layer to N shared values, centroids fine-tuned with assignments frozen.

BatchNorm is folded into the convolutions first: exporters fold it anyway, and folding after clustering would
scale each output channel differently and turn N distinct values into N x channels. The scope is every
conv/linear layer, or the last K of them in execution order (`cluster:32@last3`); the row's notes name them.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from edgebench.bench.errors import UsageError
from edgebench.compression.base import CompressionContext, CompressionMethod, weight_layers

FIT_SAMPLE = 20_000  # k-means is fitted on at most this many weights per layer, then every weight is assigned


class Codebook(nn.Module):
    """weight = centroids[assignment]: training moves the shared values, never which weight uses which."""

    def __init__(self, centroids: torch.Tensor, assignment: torch.Tensor) -> None:
        super().__init__()
        self.centroids = nn.Parameter(centroids)
        self.register_buffer("assignment", assignment)

    def forward(self, original: torch.Tensor) -> torch.Tensor:
        return self.centroids[self.assignment]


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Conv + BatchNorm pairs fused into one convolution (torch.fx), as an exporter would."""
    from torch.fx.experimental.optimization import fuse

    return fuse(model.eval())


def kmeans_codebook(weight: torch.Tensor, clusters: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.cluster import KMeans

    values = weight.detach().cpu().numpy().reshape(-1, 1).astype(np.float64)
    rng = np.random.default_rng(seed)
    sample = values if len(values) <= FIT_SAMPLE else values[rng.choice(len(values), FIT_SAMPLE, replace=False)]
    k = min(clusters, len(np.unique(sample)))
    kmeans = KMeans(n_clusters=k, n_init=1, random_state=seed).fit(sample)
    centroids = torch.tensor(kmeans.cluster_centers_.ravel(), dtype=weight.dtype)
    assignment = torch.from_numpy(kmeans.predict(values).astype(np.int64)).reshape(weight.shape)
    return centroids, assignment


def execution_order(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Conv/linear layers in the order the forward pass runs them (torch.fx), so "the last K" are the K nearest
    the output: in a ResNet block the shortcut's 1x1 convolution runs before the block's own, though it is
    defined after them. Definition order where the model cannot be traced."""
    layers = dict(weight_layers(model))
    try:
        graph = model.graph if isinstance(model, torch.fx.GraphModule) else torch.fx.symbolic_trace(model).graph
    except Exception:
        return list(layers.items())
    ran = [node.target for node in graph.nodes if node.op == "call_module" and node.target in layers]
    return [(name, layers[name]) for name in dict.fromkeys(ran)] + \
        [(name, layer) for name, layer in layers.items() if name not in ran]


class WeightClustering(CompressionMethod):
    name = "cluster"
    argument = "N[@lastK]"
    fine_tunes = True
    task_kinds = ("classify",)  # its BatchNorm folding traces the model with torch.fx, which a YOLO model refuses
    summary = "k-means each layer's weights to N shared values (all layers, or the last K), then fine-tune centroids"

    def __init__(self, arg: str | None) -> None:
        super().__init__(arg)
        count, _, scope = arg.partition("@")
        if not count.isdigit() or int(count) < 2:
            raise UsageError(f"bad cluster count {count!r} in cluster:{arg}: expected a whole number >= 2, "
                             "e.g. cluster:16")
        self.clusters = int(count)
        self.last = None
        if scope:
            if not (scope.startswith("last") and scope[4:].isdigit() and int(scope[4:]) >= 1):
                raise UsageError(f"bad cluster scope {scope!r} in cluster:{arg}: expected lastK with K >= 1, "
                                 "e.g. cluster:32@last3 (or no scope for every layer)")
            self.last = int(scope[4:])

    def apply(self, model: nn.Module, context: CompressionContext) -> nn.Module:
        model = fold_batchnorm(model)
        layers = execution_order(model)
        scope = layers if self.last is None else layers[-self.last:]
        for i, (_, layer) in enumerate(scope):
            centroids, assignment = kmeans_codebook(layer.weight, self.clusters, context.seed + i)
            parametrize.register_parametrization(layer, "weight", Codebook(centroids, assignment), unsafe=True)
            layer.parametrizations.weight.original.requires_grad_(False)
        epochs = self.finetune_epochs(context)
        if epochs:
            model = context.task.fine_tune(model, epochs, context.seed)  # a detector's trainer returns a copy
        for _, layer in weight_layers(model):
            if parametrize.is_parametrized(layer, "weight"):
                parametrize.remove_parametrizations(layer, "weight", leave_parametrized=True)
        where = "all" if self.last is None else f"the last {len(scope)} (in execution order) of"
        context.notes.append(f"{self.clusters} shared values per layer in {where} {len(layers)} conv/linear layers "
                             f"(BatchNorm folded first): {', '.join(name for name, _ in scope)}")
        return model.eval()

    @staticmethod
    def clustered_layers(model: nn.Module, clusters: int) -> list[str]:
        """Names of conv/linear layers whose weights hold at most `clusters` distinct values."""
        return [name for name, layer in weight_layers(model) if len(torch.unique(layer.weight)) <= clusters]
