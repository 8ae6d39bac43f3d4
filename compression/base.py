"""The one interface every compression method implements; the runner chains them without special cases.

Lifecycle (in one child process per variant): parse the spec's argument when the variant is named (bad
values are refused before anything runs), then apply(model, context) -> the compressed PyTorch module,
which every runtime exports. A method that fine-tunes says for how many epochs, so the run can measure
the control: the uncompressed model fine-tuned for the same epochs.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import nn

from edgebench.bench.errors import UsageError
from edgebench.tasks import LabelledTask as Task


@dataclass
class CompressionContext:
    """What a method may use: the task's data (None for models without labels; it trains with `task.fine_tune`),
    an example input, a seed."""

    example: torch.Tensor  # batch 1
    task: Task | None = None
    seed: int = 0
    finetune_epochs: int = 2  # what every fine-tuning method trains for (and the control with it)
    notes: list[str] = field(default_factory=list)  # what was done, for the row's details
    pruned_fraction: float | None = None  # share of prunable channels really removed (structured pruning)


class CompressionMethod(ABC):
    """A compression technique. Subclass it in one new file under compression/ and it is registered."""

    name: ClassVar[str]  # the spec's prefix, e.g. "prune-channels"
    argument: ClassVar[str] = ""  # what follows the colon, for help and errors; "" when it takes none
    summary: ClassVar[str]  # one line for --list
    position: ClassVar[str] = "any"  # "first": replaces the model; "last": quantizes it; "any"
    needs_task: ClassVar[bool] = False  # True when it cannot work without labelled data
    quantizes: ClassVar[bool] = False  # True when its result is measured at int8 only
    fine_tunes: ClassVar[bool] = False  # True when it trains for `finetune_epochs` after compressing (has a control)
    task_kinds: ClassVar[tuple[str, ...]] = ("classify", "detect")  # the tasks (`Task.kind`) it can be made for

    def __init__(self, arg: str | None) -> None:
        if self.argument and arg is None:
            raise UsageError(f"{self.name} needs an argument: {self.name}:{self.argument}")
        if not self.argument and arg is not None:
            raise UsageError(f"{self.name} takes no argument (got {self.name}:{arg})")
        self.arg = arg

    @property
    def spec(self) -> str:
        return self.name if self.arg is None else f"{self.name}:{self.arg}"

    def check(self, model: nn.Module, example: torch.Tensor) -> None:
        """Refuse, with a UsageError, a model this method can never apply to (called before anything runs)."""
        return None

    def training_epochs(self, per_method: int, has_task: bool) -> int:
        """Epochs of training on the task's data this method spends when each fine-tuning method gets
        `per_method` (0: none, or no task). Known before anything runs, so the run can plan the control."""
        return per_method if self.fine_tunes and has_task else 0

    def finetune_epochs(self, context: CompressionContext) -> int:
        trainable = context.task is not None and not context.task.training_unavailable()
        return self.training_epochs(context.finetune_epochs, trainable)

    def unavailable_for(self, task: Task | None) -> str:
        """Why this method cannot be made for a model scored on `task` ("" when it can)."""
        if task is None or task.kind in self.task_kinds:
            return ""
        from edgebench.tasks import kinds

        nouns = {name: cls.noun for name, cls in kinds().items()}
        return (f"{self.spec} applies to {' and '.join(nouns.get(k, k) for k in self.task_kinds)} only: "
                f"{task.noun} take {', '.join(_methods_for(task.kind))}")

    @abstractmethod
    def apply(self, model: nn.Module, context: CompressionContext) -> nn.Module:
        """Return the compressed module (in eval mode); add a short note of what was done to context.notes."""


def _methods_for(kind: str) -> list[str]:
    """The methods a model scored on a task of this kind can be compressed with, for the refusal's line."""
    from edgebench.compression import get_method, method_names

    return [name for name in method_names() if kind in get_method(name).task_kinds]


def parse_fraction(method: str, text: str) -> float:
    """A fraction strictly between 0 and 1, or one line saying so."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value < 1:
        raise UsageError(f"bad {method} amount {text!r}: expected a fraction between 0 and 1, e.g. {method}:0.5")
    return value


def weight_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Convolutions and linear layers, in definition order: what pruning and clustering act on."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear))]
