"""A network whose cost is known: one 7x7 convolution of 64 channels holds nearly all its multiply-adds
(231.2M of 231.4M at 96x96); the layers around it are cheap. Every profiler must name that convolution first."""

import torch
from torch import nn


def build():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 1), nn.ReLU(),  # a cheap first layer, for the int8 test to leave in float
        nn.Conv2d(8, 64, 7, padding=3), nn.ReLU(),  # the dominant one
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10),
    )
    return model.eval(), torch.randn(1, 3, 96, 96)
