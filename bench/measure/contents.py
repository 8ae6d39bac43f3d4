"""What an exported file really holds, checked against its row's label: integer weights in an int8 file (as a
share of weight elements and of multiply-accumulates), at most N distinct values in each clustered layer, and the
size the file packs to.

Reads the weight tensors each adapter finds in its own format (`Runtime.stored_weights`); knows no runtime.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

INTEGER_KINDS = "iu"  # numpy kinds of integer dtypes (int8, uint8, int4 stored as int8...)
MIN_INTEGER_SHARE = 0.9  # an int8 file whose weights are mostly not integer is not what its label says
MIN_MATCHED_MACS = 0.9  # the MAC share is given only when the file's tensors account for this much of the model's

ShapeKey = tuple[int, ...]


def shape_key(shape: Sequence[int]) -> ShapeKey:
    """A weight's dimensions over 1, sorted: the same for a layout's permutations (PyTorch OIHW, TFLite OHWI, a
    depthwise [1, H, W, C]) so a stored tensor can be matched to the layer it came from."""
    return tuple(sorted(int(d) for d in shape if d > 1))


@dataclass(frozen=True)
class Contents:
    """The weight tensors of one artifact, summarized."""

    distinct: tuple[int, ...]  # distinct values per weight tensor, in the file's order
    elements: tuple[int, ...]
    stored_bytes: int  # bytes the weight tensors take as stored
    integer_elements: int  # weight elements stored in an integer dtype
    packed_bytes: int  # bytes the weights take with each tensor of <= 256 values as indices + codebook
    model_macs: float = 0.0  # multiply-accumulates per image of the model's convolutions and linear layers
    matched_macs: float = 0.0  # of those, the MACs of the layers whose weights were found in the file
    integer_macs: float = 0.0  # of those, the MACs whose weights the file stores as integers

    @property
    def integer_share(self) -> float:
        total = sum(self.elements)
        return self.integer_elements / total if total else 0.0

    @property
    def integer_mac_share(self) -> float | None:
        """Share of the model's MACs whose weights are integer in the file; None when the file's tensors could not
        be matched to the model's layers (too few found by shape)."""
        if not self.model_macs or self.matched_macs < MIN_MATCHED_MACS * self.model_macs:
            return None
        return self.integer_macs / self.matched_macs


def layer_macs(module: Any, example: Any) -> dict[ShapeKey, tuple[float, int]]:
    """{weight shape key: (MACs per image, number of layers)} of the module's convolutions and linear layers, from
    one forward pass: a layer's MACs are its weight's elements times the output positions each weight serves."""
    import torch

    found: dict[ShapeKey, tuple[float, int]] = {}

    def hook(layer: torch.nn.Module, _inputs: Any, output: torch.Tensor) -> None:
        weight = layer.weight
        positions = output.numel() / (output.shape[0] * weight.shape[0]) if isinstance(
            layer, torch.nn.modules.conv._ConvNd) else output.numel() / output.shape[-1] / output.shape[0]
        key = shape_key(weight.shape)
        macs, count = found.get(key, (0.0, 0))
        found[key] = (macs + weight.numel() * positions, count + 1)

    kinds = (torch.nn.modules.conv._ConvNd, torch.nn.Linear)
    handles = [m.register_forward_hook(hook) for m in module.modules() if isinstance(m, kinds)]
    try:
        with torch.no_grad():
            module.eval()(example)
    finally:
        for handle in handles:
            handle.remove()
    return found


def read(weights: Sequence[np.ndarray], layers: Mapping[ShapeKey, tuple[float, int]] | None = None) -> Contents:
    """Summarize weight tensors: those with at least two dimensions over 1 (convolution and linear weights; a
    bias or a per-channel scale broadcast to [1, C, 1, 1] is not one). With the model's `layer_macs`, each tensor
    is matched to its layers by shape and its MACs counted (layers sharing a shape share their MACs evenly)."""
    distinct, elements, stored, integer, packed = [], [], 0, 0, 0
    layers = layers or {}
    per_tensor = {key: macs / count for key, (macs, count) in layers.items()}
    matched, integer_macs = 0.0, 0.0
    for array in weights:
        values = np.asarray(array)
        if sum(d > 1 for d in values.shape) < 2:
            continue
        count = len(np.unique(values))
        distinct.append(count)
        elements.append(values.size)
        stored += values.nbytes
        macs = per_tensor.get(shape_key(values.shape), 0.0)
        matched += macs
        if values.dtype.kind in INTEGER_KINDS:
            integer += values.size
            integer_macs += macs
        bits = values.dtype.itemsize * 8
        if count <= 256 and values.size > 256:  # indices of ceil(log2 k) bits plus the k values themselves
            packed += math.ceil((values.size * max(1, math.ceil(math.log2(count))) + count * bits) / 8)
        else:
            packed += values.nbytes
    model = sum(macs for macs, _ in layers.values())
    return Contents(tuple(distinct), tuple(elements), stored, integer, packed, model, min(matched, model),
                    min(integer_macs, model))


def packed_file_mb(contents: Contents, file_bytes: int) -> float:
    """The artifact's own size with its weights bit-packed: what a clustered deployment ships."""
    return (file_bytes - contents.stored_bytes + contents.packed_bytes) / 1e6


def clusters_of(compression: str) -> tuple[int, int | None] | None:
    """(N, K) of a `cluster:N[@lastK]` step in the chain (K None: every layer); None without clustering."""
    found = re.search(r"(?:^|\+)cluster:(\d+)(?:@last(\d+))?", compression)
    return (int(found.group(1)), int(found.group(2)) if found.group(2) else None) if found else None


def check(contents: Contents, precision: str, compression: str) -> tuple[bool | None, str]:
    """(whether the file holds what the row's label says, a note of what it holds). None: nothing to check."""
    notes, ok = [], None
    if precision == "int8":
        ok = contents.integer_share >= MIN_INTEGER_SHARE
        macs = contents.integer_mac_share
        if macs is None:
            notes.append(f"{contents.integer_share:.0%} of weight elements stored as integers")
        else:
            ok = ok and macs >= MIN_INTEGER_SHARE
            notes.append(f"{contents.integer_share:.0%} of weight elements ({macs:.0%} of MACs) stored as integers")
    clusters = clusters_of(compression)
    if clusters is not None:
        n, last = clusters
        held = sum(d <= n for d in contents.distinct)
        wanted = len(contents.distinct) if last is None else min(last, len(contents.distinct))
        ok = (ok is not False) and held >= wanted
        notes.append(f"{held} of {len(contents.distinct)} weight tensors hold <= {n} values (distinct values: "
                     f"{', '.join(map(str, contents.distinct))})")
    return ok, "; ".join(notes)
