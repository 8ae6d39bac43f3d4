"""A small CNN in the user-model form edgebench accepts: build() -> (nn.Module, example input)."""

import torch
from torch import nn


def build():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10),
    )
    return model.eval(), torch.randn(1, 3, 32, 32)


def not_a_model():
    return "nope", torch.zeros(1)
