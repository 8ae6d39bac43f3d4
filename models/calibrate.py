"""Give random-init models realistic activations by recalibrating BatchNorm statistics.

A torchvision model built with weights=None has running stats (mean 0, var 1) that do not match its
activations: mobilenet_v2's outputs fall to ~1e-9, denormal floats make some runtimes 100x slower, and
int8 quantization of such outputs is all zeros. Re-estimating the statistics on sample inputs fixes it.
"""

from __future__ import annotations

import torch
from torch import nn


def recalibrate_batchnorm(module: nn.Module, example: torch.Tensor, batches: int = 4, batch_size: int = 8,
                          seed: int = 0) -> int:
    """Re-estimate every BatchNorm's running mean/var on seeded random inputs; return how many were reset."""
    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return 0
    momenta = [bn.momentum for bn in norms]
    for bn in norms:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over the calibration batches
    generator = torch.Generator().manual_seed(seed)
    module.train()
    with torch.no_grad():
        for _ in range(batches):
            module(torch.randn((batch_size, *example.shape[1:]), generator=generator, dtype=example.dtype))
    for bn, momentum in zip(norms, momenta, strict=True):
        bn.momentum = momentum
    module.eval()
    return len(norms)
