"""A small network with a running product (`torch.cumprod`): PyTorch runs it; ExecuTorch cannot lower it (not in
the Core ATen operator set its kernels implement), so its row is `unavailable`, naming it."""

import torch
from torch import nn


class WithCumprod(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cumprod(torch.sigmoid(self.conv(x)), dim=-1).mean(dim=(2, 3))


def build():
    torch.manual_seed(0)
    return WithCumprod().eval(), torch.randn(1, 3, 16, 16)
