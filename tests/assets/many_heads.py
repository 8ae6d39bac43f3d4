"""A user model with twelve outputs of different sizes: output order must survive every hand-off."""

import torch
from torch import nn


class ManyHeads(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Linear(6, 8)
        self.heads = nn.ModuleList(nn.Linear(8, n) for n in range(1, 13))

    def forward(self, x):
        h = torch.relu(self.body(x))
        return tuple(head(h) for head in self.heads)


def build():
    torch.manual_seed(0)
    return ManyHeads().eval(), torch.randn(1, 6)
