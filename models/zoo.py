"""Small trained models for the embedded tasks: a ResNet family on MNIST, and a tiny CNN on sklearn digits.

They give every compression method a real accuracy to lose. Training takes seconds to a minute on 2 cores
and is cached under models/.cache (keyed by name, seed, recipe and torch version), so it happens once.
The MNIST ResNets are big enough (2.5-37.5 million multiply-adds per image) for runtimes to differ for real
reasons, unlike a 29k-parameter toy where an inference is 40 us of overhead.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from edgebench.bench.runlog import logger
from edgebench.models.sources import ModelSource

CACHE_DIR = Path(__file__).resolve().parent / ".cache"


class BasicBlock(nn.Module):
    """ResNet's basic block; every ReLU is its own module, so graph-based quantizers see one use each."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu2 = nn.ReLU()
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu1(self.bn1(self.conv1(x)))
        return self.relu2(self.bn2(self.conv2(out)) + identity)


class MnistResNet(nn.Module):
    """A 3-stage ResNet for 1x28x28 digits; `width` channels in the first stage, doubled at each stride."""

    def __init__(self, width: int = 16, classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        self.layer1 = BasicBlock(width, width, 1)
        self.layer2 = BasicBlock(width, 2 * width, 2)
        self.layer3 = BasicBlock(2 * width, 4 * width, 2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(4 * width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.flatten(self.pool(self.layer3(self.layer2(self.layer1(self.stem(x)))))))


class DigitsCNN(nn.Module):
    """A tiny CNN for 1x8x8 digits: trains in about a second, for tests of every method."""

    def __init__(self, width: int = 16, classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, 2, 1, bias=False), nn.BatchNorm2d(2 * width), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(2 * width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


@dataclass
class TrainedSource(ModelSource):
    """A zoo model trained on its task at first use, then read from the cache."""

    arch: str
    factory: Callable[[], nn.Module]
    input_shape: tuple[int, ...]
    epochs: int
    family: str
    task: str = ""  # the embedded task it is trained and scored on

    random_init = False

    @property
    def name(self) -> str:  # type: ignore[override]
        return self.arch

    @property
    def spec(self) -> str:
        return self.arch

    def architecture(self) -> nn.Module:
        return self.factory()

    def declared_preprocess(self) -> object:
        return self.task  # trained on its embedded task's arrays: "mnist" or "digits" statistics

    def build_untrained(self, seed: int) -> tuple[nn.Module, torch.Tensor]:
        """The architecture at its seeded initialization, as training starts from it (distillation students)."""
        torch.manual_seed(seed)
        return self.factory(), torch.zeros((1, *self.input_shape))

    def cache_path(self, seed: int) -> Path:
        version = torch.__version__.split("+")[0]
        return CACHE_DIR / f"{self.arch}-{self.task}-e{self.epochs}-seed{seed}-torch{version}.pt"

    def build(self, seed: int, pretrained: bool = False) -> tuple[nn.Module, torch.Tensor]:
        from edgebench.models.tasks import load_task
        from edgebench.models.training import Recipe, fit

        module, example = self.build_untrained(seed)
        path = self.cache_path(seed)
        if path.is_file():
            module.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
            return module.eval(), example
        logger.info("training %s on %s (%d epochs, first use; cached in %s)", self.arch, self.task, self.epochs, path)
        fit(module, load_task(self.task, self.input_shape, seed), Recipe(self.epochs), seed)
        CACHE_DIR.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save(module.state_dict(), tmp)
        tmp.replace(path)  # atomic: two runs training at once never read half a file
        return module.eval(), example


def _mnist(width: int) -> Callable[[], nn.Module]:
    return lambda: MnistResNet(width)


ZOO: dict[str, TrainedSource] = {
    "mnist_resnet_s": TrainedSource("mnist_resnet_s", _mnist(8), (1, 28, 28), 6, "mnist_resnet", "mnist"),
    "mnist_resnet_m": TrainedSource("mnist_resnet_m", _mnist(16), (1, 28, 28), 6, "mnist_resnet", "mnist"),
    "mnist_resnet_l": TrainedSource("mnist_resnet_l", _mnist(32), (1, 28, 28), 6, "mnist_resnet", "mnist"),
    "digits_cnn": TrainedSource("digits_cnn", DigitsCNN, (1, 8, 8), 15, "digits_cnn", "digits"),
    "digits_cnn_s": TrainedSource("digits_cnn_s", lambda: DigitsCNN(8), (1, 8, 8), 15, "digits_cnn", "digits"),
}
