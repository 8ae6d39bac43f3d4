"""The control for every fine-tuned variant: the uncompressed model trained for the same extra epochs.

Without it, fine-tuning's own gain is credited to the method (measured: 2 extra epochs took an MNIST
baseline from 97.0% to 98.0%, all of QAT's apparent gain over post-training quantization).
"""

from __future__ import annotations

from torch import nn

from edgebench.bench.errors import UsageError
from edgebench.compression.base import CompressionContext, CompressionMethod


class FineTune(CompressionMethod):
    name = "finetune"
    argument = "EPOCHS"
    summary = "no compression, only the extra epochs of training the other methods get (their control)"
    needs_task = True

    def __init__(self, arg: str | None) -> None:
        super().__init__(arg)
        if not (arg or "").isdigit() or int(arg) < 1:
            raise UsageError(f"bad finetune epochs {arg!r}: expected a whole number >= 1, e.g. finetune:2")
        self.epochs = int(arg)

    def training_epochs(self, per_method: int, has_task: bool) -> int:
        return self.epochs

    def apply(self, model: nn.Module, context: CompressionContext) -> nn.Module:
        model = context.task.fine_tune(model, self.epochs, context.seed)
        context.notes.append(f"fine-tuned {self.epochs} epochs, nothing removed (control)")
        return model.eval()
