"""How an image becomes the model's input: part of the model, declared, never a silent guess.

A model scored with another model's preprocessing scores at chance (a user's [0, 1] CNN normalized with
ImageNet's statistics: 17.5% instead of 91.4%). So the preprocessing comes, in this order, from `PREPROCESS=`
(a named choice or `file.py:function`), from the model (a torchvision model: its weights' statistics; a zoo
model: its task's; a user's model file: a `preprocess` beside its build function), and only then from a
guess by channel count, which the table's header names together with how to change it.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgebench.bench.errors import UsageError

# name -> (per-channel mean, per-channel std, what it is), applied after scaling pixels to [0, 1].
NAMED: dict[str, tuple[tuple[float, ...], tuple[float, ...], str]] = {
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225), "ImageNet mean/std (torchvision's weights)"),
    "unit": ((0.0,), (1.0,), "pixels in [0, 1], no normalization (torchvision ToTensor)"),
    "signed": ((0.5,), (0.5,), "pixels in [-1, 1] (mean 0.5, std 0.5)"),
    "mnist": ((0.1307,), (0.3081,), "MNIST mean/std (0.1307, 0.3081)"),
    "digits": ((0.5,), (1.0,), "pixels in [-0.5, 0.5] (scikit-learn digits / 16 - 0.5)"),
}
HOOK = "preprocess"  # the name a user's model file may define: a NAMED key, or a function PIL image -> tensor


def choices() -> str:
    return f"{', '.join(NAMED)}, or path/to/file.py:function (a PIL image -> CHW float tensor)"


@dataclass(frozen=True)
class Preprocessing:
    """One way of turning images into inputs, with who chose it (shown in the table's header)."""

    name: str  # a NAMED key, or the `file.py:function` that does it
    origin: str  # e.g. "PREPROCESS=unit", "declared by the model", "guessed from 3 channels"
    declared: bool = True  # False: a guess, which the header says and says how to change
    function: Callable[[Any], Any] | None = None  # a user's own transform (PIL image -> tensor)

    def statistics(self, channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """(mean, std) per channel for a named choice (one value stands for every channel)."""
        mean, std, _ = NAMED[self.name]
        return (mean * channels if len(mean) == 1 else mean), (std * channels if len(std) == 1 else std)

    def describe(self) -> str:
        what = NAMED[self.name][2] if self.name in NAMED else f"{self.name} (the user's function)"
        text = f"{what}, {self.origin}"
        if not self.declared:
            text += f"; the model declares none: set PREPROCESS= ({choices()}) or define `{HOOK}` in the model file"
        return text

    def transform(self, input_size: tuple[int, ...]) -> Callable[[Any], Any]:
        """PIL image -> the model's input tensor: resized, channels matched, then this preprocessing."""
        from torchvision import transforms

        channels, height, width = input_size
        if self.function is not None:
            return self.function
        steps: list[Any] = [transforms.Resize((height, width))]
        if channels == 1:  # ImageFolder's loader gives RGB
            steps.append(transforms.Grayscale())
        steps.append(transforms.ToTensor())
        mean, std = self.statistics(channels)
        if any(m != 0.0 for m in mean) or any(s != 1.0 for s in std):
            steps.append(transforms.Normalize(mean, std))
        return transforms.Compose(steps)


def _function(text: str) -> Callable[[Any], Any]:
    file_part, _, name = text.rpartition(":")
    path = Path(file_part).expanduser()
    if not path.is_file():
        raise UsageError(f"PREPROCESS file {str(path)!r} does not exist (expected {choices()})")
    spec = importlib.util.spec_from_file_location(f"edgebench_preprocess_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise UsageError(f"importing PREPROCESS file {path} failed: {type(exc).__name__}: {exc}") from exc
    fn = getattr(module, name, None)
    if not callable(fn):
        raise UsageError(f"PREPROCESS file {path} defines no function {name!r}")
    return fn


def parse(value: Any, origin: str) -> Preprocessing:
    """A named choice, `file.py:function`, or (from a model file) a function itself; else one line."""
    if callable(value):
        return Preprocessing(getattr(value, "__name__", "function"), origin, function=value)
    text = str(value).strip()
    if text in NAMED:
        return Preprocessing(text, origin)
    if ":" in text:
        return Preprocessing(text, origin, function=_function(text))
    raise UsageError(f"unknown preprocessing {text!r} ({origin}): choose {choices()}")


def resolve(requested: str | None, declared: Any, channels: int, task_default: str | None = None) -> Preprocessing:
    """PREPROCESS= first, then what the model declares, then a guess (said as a guess): an embedded task's own
    statistics (`task_default`: mnist, digits), else by channel count."""
    if requested:
        return parse(requested, f"PREPROCESS={requested}")
    if declared is not None:
        return parse(declared, "declared by the model")
    if task_default in NAMED:
        return Preprocessing(task_default, f"the {task_default} task's own, guessed", declared=False)
    if channels == 3:
        return Preprocessing("imagenet", "guessed from 3 channels", declared=False)
    return Preprocessing("unit", f"guessed from {channels} channel(s)", declared=False)
