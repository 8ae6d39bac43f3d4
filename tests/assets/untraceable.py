"""A digits-shaped user model (1x8x8 in, 10 classes out) whose Python control flow torch.fx cannot trace.

torch.export specializes the shape check, so every runtime exports it; weight clustering, which folds
BatchNorm through torch.fx, fails on it: the run must turn that into error rows and measure the rest.
"""

import torch
from torch import nn


class ShapeChecking(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        if x.shape[-1] != 8:  # data-independent for torch.export, a TraceError for torch.fx.symbolic_trace
            raise ValueError("expected 8x8 digits")
        return self.fc(torch.relu(self.bn(self.conv(x))).mean((2, 3)))


def build():
    torch.manual_seed(0)
    return ShapeChecking().eval(), torch.zeros(1, 1, 8, 8)
