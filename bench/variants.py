"""One compressed variant of the model, made once and saved for every runtime: the module, its outputs, its counts.

The baseline (`none`) is saved by the runner itself; every other variant by a `compress` child process
(`bench.worker compress`), so a method that crashes or hangs costs one error row, not the run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

MODEL_FILE = "model.pt"
AGREEMENT_INPUTS = 64  # seeded inputs on which a variant's top-1 is compared with the uncompressed model's


@dataclass
class VariantInfo:
    """What the compress step learned about the module it produced; copied into every row of the variant."""

    params: int
    sparsity: float
    finetune_epochs: int
    notes: str = ""
    agreement: float | None = None  # top-1 agreement with the uncompressed model on seeded inputs (PyTorch)
    flops: int | None = None  # per inference at batch 1, counted by PyTorch's FLOP counter
    pruned_fraction: float | None = None  # channels really removed by structured pruning (not the ratio asked)


def count_flops(module: nn.Module, example: torch.Tensor) -> int | None:
    """Floating-point operations of one inference (convolutions, matrix products), or None where uncountable.

    PyTorch's own counter (torch.utils.flop_counter), as the roofline column's numerator: multiply-adds
    count two. Element-wise work is left out, as every published FLOP figure leaves it out.
    """
    from torch.utils.flop_counter import FlopCounterMode

    try:
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            module(example)
    except Exception:  # a model the counter cannot follow still gets every other figure
        return None
    return int(counter.get_total_flops()) or None


def outputs_path(folder: Path, batch: int) -> Path:
    return folder / f"outputs_b{batch}.npz"


def save_outputs(path: Path | str, outputs: list[np.ndarray]) -> None:
    """A module's outputs as the measuring child reads its fidelity reference: out_0, out_1, ... in order."""
    np.savez(path, **{f"out_{i}": o for i, o in enumerate(outputs)})


def save_variant(module: nn.Module, folder: Path, inputs: dict[int, Path], finetune_epochs: int, notes: str,
                 baseline: nn.Module | None = None, seed: int = 0, pruned_fraction: float | None = None
                 ) -> VariantInfo:
    """Pickle the whole module (its architecture may have changed) and its eager outputs per batch size."""
    from edgebench.compression.measures import parameter_count, sparsity
    from edgebench.runtimes._torch import to_host

    folder.mkdir(parents=True, exist_ok=True)
    module = module.eval()
    torch.save(module, folder / MODEL_FILE)
    with torch.inference_mode():
        for batch, path in inputs.items():
            outputs = to_host(module(torch.from_numpy(np.load(path))))
            save_outputs(outputs_path(folder, batch), outputs)
    agreement = None
    if baseline is not None:
        first = np.load(next(iter(inputs.values())))
        agreement = top1_agreement(module, baseline.eval(), first, seed)
    first = torch.from_numpy(np.load(next(iter(inputs.values())))[:1])
    return VariantInfo(params=parameter_count(module), sparsity=sparsity(module),
                       finetune_epochs=finetune_epochs, notes=notes,
                       agreement=agreement, flops=count_flops(module, first), pruned_fraction=pruned_fraction)


def top1_agreement(module: nn.Module, baseline: nn.Module, like: np.ndarray, seed: int) -> float | None:
    """Share of seeded inputs on which both models pick the same class: fidelity where there are no labels."""
    from edgebench.models import make_input
    from edgebench.runtimes._torch import flatten_tensors

    x = make_input(torch.from_numpy(like[:1]), AGREEMENT_INPUTS, seed + 7)
    with torch.inference_mode():
        a, b = flatten_tensors(module(x)), flatten_tensors(baseline(x))
    if not a or a[0].dim() != 2:  # not a classifier's (batch, classes) output
        return None
    return float((a[0].argmax(1) == b[0].argmax(1)).float().mean())


def load_module(path: Path | str, source: str) -> nn.Module:
    """Unpickle a saved variant; the model source is resolved first so a user's classes can be found."""
    from edgebench.models.sources import resolve_source

    if source:
        resolve_source(source)
    return torch.load(path, map_location="cpu", weights_only=False).eval()
