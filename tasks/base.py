"""The one interface every kind of labelled task implements: what a model is scored on, trained on and calibrated
with. The runner, the measuring and compressing processes and the study use it without asking which kind it is.

Lifecycle of a task in a run:
- the parent resolves it for a model (`claims`, `resolve`: DATA, or a zoo model's own data) and saves it to one
  `.npz` (`save`) that every child reads (`load`); the header says what the scores mean (`scored_on`);
- the timed input and the int8 calibration images come from it (`timed_input`, `calibration`: training images,
  never test images);
- a compressing process fine-tunes with it (`fine_tune`; `training_unavailable` says why it cannot);
- each measuring process scores its own artifact on it (`score`: NumPy only, nothing its runtime does not need)
  and hands an answer back; the parent puts that answer on the row (`fill`).
A new kind is one module in this package defining one subclass; it is found automatically (`edgebench.tasks`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import fields
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

CALIBRATION_IMAGES = 128  # training images every int8 toolchain calibrates on, whatever the task


class LabelledTask(ABC):
    """Labelled data of one kind (a dataclass per kind), with how a runtime's outputs on it are scored."""

    kind: ClassVar[str]  # the name a task file records and `make study TASK=` takes, e.g. "classify"
    noun: ClassVar[str]  # the models it scores, in words: "classifiers"
    default: ClassVar[bool] = False  # the kind a model gets when no other kind claims it

    # --- in the parent: which models, which data, what the header says ---------------------------------------
    @classmethod
    @abstractmethod
    def claims(cls, model: Any) -> bool:
        """Whether a loaded model (`models.loading.LoadedModel`) is scored by this kind of task."""

    @classmethod
    @abstractmethod
    def resolve(cls, config: Any, model: Any) -> LabelledTask | None:
        """The model's labelled data from the run's config (`DATA=`, or the zoo model's own); None when it has
        none. Bad data fails here with one line (`UsageError`), before a run folder exists."""

    @property
    @abstractmethod
    def label(self) -> str:
        """What the tables call the data, with its size."""

    @abstractmethod
    def scored_on(self) -> str:
        """The table header's words for what the score columns mean."""

    # --- data every process reads ----------------------------------------------------------------------------
    def save(self, path: Path) -> Path:
        """Every field of the kind's dataclass, and the kind, in one `.npz` every child reads (strings and tuples
        of strings as NumPy strings: nothing pickled)."""
        np.savez(path, kind=np.array(self.kind), **{f.name: np.asarray(getattr(self, f.name)) for f in fields(self)})
        return path

    @classmethod
    def load(cls, path: Path | str) -> LabelledTask:
        """A saved task, each field read back as its declared type; a field the file lacks (written before the
        field existed) keeps its default."""
        values: dict[str, Any] = {}
        with np.load(path) as data:
            for field in fields(cls):
                if field.name not in data.files:
                    continue
                value, declared = data[field.name], str(field.type)
                if declared == "str":
                    value = str(value)
                elif declared.startswith("tuple"):
                    value = tuple(str(v) for v in value)
                values[field.name] = value
        return cls(**values)

    @abstractmethod
    def timed_input(self, batch: int) -> np.ndarray:
        """The batch that is timed: real test images, so int8 is calibrated for what it is measured on."""

    @abstractmethod
    def calibration(self, count: int = CALIBRATION_IMAGES, seed: int = 0) -> np.ndarray:
        """Training images for int8 calibration, the same for every runtime."""

    # --- in the compressing process --------------------------------------------------------------------------
    @abstractmethod
    def training_unavailable(self) -> str:
        """Why this data cannot fine-tune a model ("" when it can)."""

    @abstractmethod
    def fine_tune(self, model: Any, epochs: int, seed: int = 0) -> Any:
        """`model` trained `epochs` more on the training split; returns the trained module (maybe a copy)."""

    # --- in the measuring process, then the parent -----------------------------------------------------------
    @classmethod
    @abstractmethod
    def score(cls, predict: Callable[[np.ndarray], list[Any]], task_file: str, batch: int,
              job_dir: Path) -> dict[str, Any]:
        """The loaded artifact (`predict`: a batch in, the runtime's outputs out) on the whole test split, in
        its own process; a JSON-able answer (large parts go to files in `job_dir`)."""

    @classmethod
    @abstractmethod
    def fill(cls, row: Any, answer: dict[str, Any], run_dir: Path, seed: int) -> None:
        """Put a measuring process's answer on its row (`bench.results.ResultRow`), in the parent."""


def padded_batches(x: np.ndarray, batch: int) -> Iterator[tuple[np.ndarray, int]]:
    """(chunk, real images in it) over `x`, `batch` at a time: artifacts have a fixed batch size, so the last
    chunk is padded by repeating its final image."""
    for i in range(0, len(x), batch):
        chunk = x[i:i + batch]
        real = len(chunk)
        if real < batch:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch - real, axis=0)])
        yield chunk, real


def model_output(model: Any) -> Any:
    """A loaded model's (first) output on its example input: what a task's labels must fit."""
    import torch

    with torch.no_grad():
        outputs = model.module(model.example)
    return outputs[0] if isinstance(outputs, (tuple, list)) else outputs
