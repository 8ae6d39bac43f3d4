"""Knowledge distillation: a smaller student trained on the teacher's soft targets (Hinton et al.), and its control.

`distill:STUDENT` trains STUDENT from scratch with the teacher's temperature-softened outputs mixed into the
loss; `student:STUDENT` trains the same student alone with the same data, batches, epochs and seed. The run
measures both, so a gain is only claimed when there is one (measured on MNIST: there was none).
"""

from __future__ import annotations

import torch
from torch import nn

from edgebench.bench.errors import UsageError
from edgebench.compression.base import CompressionContext, CompressionMethod
from edgebench.models.training import Recipe, fit


def _student_source(method: str, arg: str):
    from edgebench.models.sources import resolve_source
    from edgebench.models.zoo import ZOO

    try:
        return resolve_source(arg)
    except UsageError:
        raise UsageError(f"unknown student {arg!r} in {method}:{arg}: choose a model name, e.g. "
                         f"{', '.join(ZOO)}, a torchvision classifier, or path/to/file.py:function") from None


class _StudentTraining(CompressionMethod):
    argument = "STUDENT"
    position = "first"  # the student replaces the model; other methods may follow
    needs_task = True
    teacher_used = True
    task_kinds = ("classify",)  # soft targets over classes; a detector's distillation loss is another matter

    def __init__(self, arg: str | None) -> None:
        super().__init__(arg)
        self.source = _student_source(self.name, arg)

    def recipe(self) -> Recipe:
        """The student's own training recipe: the zoo's epochs for it, so 'alone' matches the family row."""
        return Recipe(epochs=getattr(self.source, "epochs", 6))

    def training_epochs(self, per_method: int, has_task: bool) -> int:
        return self.recipe().epochs

    def _student(self, seed: int) -> tuple[nn.Module, torch.Tensor]:
        if hasattr(self.source, "build_untrained"):  # zoo models: the seeded initialization, not the cache
            return self.source.build_untrained(seed)
        return self.source.build(seed)

    def check(self, model: nn.Module, example: torch.Tensor) -> None:
        student, student_example = self._student(0)
        if tuple(student_example.shape[1:]) != tuple(example.shape[1:]):
            raise UsageError(f"student {self.arg} takes input {tuple(student_example.shape[1:])}, but the teacher "
                             f"takes {tuple(example.shape[1:])}: choose a student of the same family")
        with torch.no_grad():
            got, want = student.eval()(example).shape, model.eval()(example).shape
        if got != want:
            raise UsageError(f"student {self.arg} gives outputs of shape {tuple(got)}, the teacher {tuple(want)}")

    def apply(self, model: nn.Module, context: CompressionContext) -> nn.Module:
        student, _ = self._student(context.seed)
        teacher = model if self.teacher_used else None
        recipe = self.recipe()
        fit(student, context.task, recipe, context.seed, teacher=teacher)
        how = f"T={recipe.temperature:g}, alpha={recipe.alpha:g}" if teacher is not None else "no teacher"
        context.notes.append(f"student {self.arg} trained {recipe.epochs} epochs from scratch ({how})")
        return student.eval()


class Distillation(_StudentTraining):
    name = "distill"
    summary = "train a smaller STUDENT on the teacher's soft targets (temperature 4, alpha 0.7)"


class StudentAlone(_StudentTraining):
    name = "student"
    summary = "the same STUDENT trained alone on the same data, epochs and seed (distillation's control)"
    teacher_used = False
