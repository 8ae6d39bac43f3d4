"""Classification: top-1 accuracy on a labelled test split, in each runtime's own process, with a Wilson interval
and the per-image results kept for paired (McNemar) comparisons. The data come from `models.tasks` (embedded
MNIST, scikit-learn's digits, or a user's ImageFolder)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgebench.tasks.base import CALIBRATION_IMAGES, LabelledTask, padded_batches

ANSWER_FIELDS = ("accuracy", "accuracy_ci_low", "accuracy_ci_high", "correct_bits", "at_chance")


@dataclass
class Task(LabelledTask):
    """A fixed, seeded, stratified train/test split as float32 NCHW arrays, already normalized."""

    name: str  # what the tables call the test set, e.g. "mnist (1000 test images)"
    x_train: np.ndarray  # float32, N x C x H x W, already normalized
    y_train: np.ndarray  # int64 class indices
    x_test: np.ndarray
    y_test: np.ndarray
    classes: tuple[str, ...]
    preprocessing: str = ""  # how the images became these arrays (models.preprocess), for the table's header

    kind = "classify"
    noun = "classifiers"
    default = True  # a model no other kind claims is a classifier (or has no labels at all)

    @classmethod
    def claims(cls, model: Any) -> bool:
        return True

    @classmethod
    def resolve(cls, config: Any, model: Any) -> Task | None:
        """DATA if given, else the zoo model's own task, else none; images and classes must fit the model."""
        from edgebench.bench.errors import UsageError
        from edgebench.models import resolve_source
        from edgebench.models.preprocess import resolve
        from edgebench.models.tasks import check_task_fits, load_task
        from edgebench.tasks.base import model_output

        name = config.data or resolve_source(model.source).task
        if not name:
            if config.preprocess:
                raise UsageError(f"PREPROCESS={config.preprocess} applies to labelled images, and {model.name} has "
                                 "none: give DATA=mnist|digits|folder")
            return None
        size = int(model.example.shape[1])
        preprocessing = resolve(config.preprocess, resolve_source(model.source).declared_preprocess(), size, name)
        task = load_task(name, tuple(model.example.shape[1:]), config.seed, preprocessing)
        check_task_fits(task, tuple(model.example.shape[1:]), int(model_output(model).shape[-1]), model.name)
        return task

    @property
    def label(self) -> str:
        return f"{self.name} ({len(self.y_test)} test images)"

    def scored_on(self) -> str:
        return (f"; accuracy on {self.label}, top-1 in each runtime, 95% Wilson interval; preprocessing: "
                f"{self.preprocessing}")

    def timed_input(self, batch: int) -> np.ndarray:
        """The first test images as the timed input: int8 is calibrated for real images, not for noise."""
        return np.resize(self.x_test, (batch, *self.x_test.shape[1:]))

    def calibration(self, count: int = CALIBRATION_IMAGES, seed: int = 0) -> np.ndarray:
        """Training images (never test images) for int8 calibration, the same ones for every runtime."""
        rng = np.random.default_rng(seed)
        pick = rng.choice(len(self.x_train), size=min(count, len(self.x_train)), replace=False)
        return self.x_train[np.sort(pick)]

    def training_unavailable(self) -> str:
        return ""  # a classifier always trains, with edgebench's recipe (`models.training`)

    def fine_tune(self, model: Any, epochs: int, seed: int = 0) -> Any:
        """`model` trained `epochs` more on the training split with edgebench's fine-tuning recipe (in place)."""
        from edgebench.models.training import finetune_recipe, fit

        return fit(model, self, finetune_recipe(epochs), seed)

    @classmethod
    def score(cls, predict: Callable[[np.ndarray], list[Any]], task_file: str, batch: int,
              job_dir: Path) -> dict[str, Any]:
        """Top-1 of the loaded artifact on the whole test split, `batch` images at a time."""
        from edgebench.bench.measure.paired import pack_correct
        from edgebench.bench.measure.stats import at_chance, wilson_interval

        with np.load(task_file) as data:
            x, y, classes = data["x_test"], data["y_test"], len(data["classes"])
        predicted = []
        for chunk, real in padded_batches(x, batch):
            logits = predict(np.ascontiguousarray(chunk))[0]
            predicted.append(np.asarray(logits).reshape(batch, -1)[:real].argmax(1))
        predicted = np.concatenate(predicted)
        right = predicted == y
        correct = int(right.sum())
        low, high = wilson_interval(correct, len(y))
        return {"accuracy": correct / len(y), "accuracy_ci_low": low, "accuracy_ci_high": high,
                "correct_bits": pack_correct(right), "at_chance": at_chance(predicted, y, classes)}

    @classmethod
    def fill(cls, row: Any, answer: dict[str, Any], run_dir: Path, seed: int) -> None:
        for name in ANSWER_FIELDS:
            setattr(row, name, answer[name])
