"""What models are scored on, one module per kind of task (`classify`: top-1; `detect`: mAP); every
`LabelledTask` subclass defined in this package is registered. See `tasks.base` for the lifecycle."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgebench.bench.discovery import concrete_subclasses
from edgebench.tasks.base import CALIBRATION_IMAGES, LabelledTask

__all__ = ["CALIBRATION_IMAGES", "LabelledTask", "kinds", "kind_of", "task_class", "load_task_file"]

_REGISTRY: dict[str, type[LabelledTask]] = {}


def kinds() -> dict[str, type[LabelledTask]]:
    """Every kind of task, by name (imports this package's modules once: they import NumPy only)."""
    if not _REGISTRY:
        for cls in concrete_subclasses(__name__, __path__, LabelledTask, skip=("base",)):
            _REGISTRY[cls.kind] = cls
    return _REGISTRY


def kind_of(model: Any) -> type[LabelledTask]:
    """The kind of task a loaded model is scored on: the first that claims it, else the default."""
    found = kinds().values()
    claimed = [cls for cls in found if not cls.default and cls.claims(model)]
    return claimed[0] if claimed else next(cls for cls in found if cls.default)


def task_class(path: Path | str) -> type[LabelledTask]:
    """The kind a run's task file holds (files from before kinds were recorded are classification's)."""
    import numpy as np

    with np.load(path) as data:
        name = str(data["kind"]) if "kind" in data.files else "classify"
    return kinds()[name]


def load_task_file(path: Path | str) -> LabelledTask:
    return task_class(path).load(path)
