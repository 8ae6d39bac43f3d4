"""One interface per kind of task (`edgebench.tasks`): found by dropping a file, chosen per model, read back from
the file a run saves, and the only thing the runner, the worker and the study ask about a task."""

from __future__ import annotations

import numpy as np
import pytest

from edgebench import tasks
from edgebench.tasks.base import CALIBRATION_IMAGES, LabelledTask, padded_batches
from edgebench.tasks.classify import Task

SEGMENT = '''
from edgebench.tasks.base import LabelledTask


class SegmentTask(LabelledTask):
    kind = "segment"
    noun = "segmenters"

    @classmethod
    def claims(cls, model):
        return getattr(model, "segments", False)

    @classmethod
    def resolve(cls, config, model):
        return None

    label = "masks"
    scored_on = save = timed_input = calibration = training_unavailable = fine_tune = lambda self, *a: None
    load = score = fill = classmethod(lambda cls, *a: None)
'''


@pytest.fixture
def third_kind(tmp_path, monkeypatch):
    """A third kind of task as one file in the package's search path."""
    (tmp_path / "segment.py").write_text(SEGMENT)
    monkeypatch.setattr(tasks, "__path__", [*tasks.__path__, str(tmp_path)])
    monkeypatch.setattr(tasks, "_REGISTRY", {})
    yield
    import sys

    sys.modules.pop("edgebench.tasks.segment", None)


def test_a_third_kind_of_task_is_one_file(third_kind):
    from edgebench.study import studies

    assert list(tasks.kinds()) == ["classify", "detect", "segment"]

    import torch

    class Model:
        source, module, segments = "digits_cnn", torch.nn.Identity(), True

    assert tasks.kind_of(Model()).kind == "segment"  # the model it claims
    assert "segment" not in studies()  # no study module for it: `make study TASK=segment` is refused


def test_each_model_gets_its_kind_and_a_saved_task_comes_back_as_its_kind(tmp_path):
    from edgebench.models import load_model
    from edgebench.models.tasks import digits_task

    assert tasks.kind_of(load_model("digits_cnn")).kind == "classify"
    pytest.importorskip("ultralytics", reason="YOLO models need the yolo extra")
    assert tasks.kind_of(load_model("yolov8n[nc=3,imgsz=64]")).kind == "detect"
    task = digits_task()
    path = task.save(tmp_path / "task.npz")
    back = tasks.load_task_file(path)
    assert isinstance(back, Task)
    for name, value in vars(task).items():  # every field back, with its type (strings, tuples, arrays)
        got = getattr(back, name)
        assert (np.array_equal(got, value) and got.dtype == value.dtype) if isinstance(value, np.ndarray) \
            else (got == value and type(got) is type(value)), name
    legacy = tmp_path / "legacy.npz"  # written before task files recorded their kind
    np.savez(legacy, **{k: v for k, v in np.load(path).items() if k != "kind"})
    assert tasks.task_class(legacy) is Task
    assert len(task.calibration()) == CALIBRATION_IMAGES


def test_every_kind_implements_the_whole_interface():
    for name, cls in tasks.kinds().items():
        assert issubclass(cls, LabelledTask) and cls.kind == name and cls.noun
        assert not getattr(cls, "__abstractmethods__", None), (name, cls.__abstractmethods__)
    assert [cls.kind for cls in tasks.kinds().values() if cls.default] == ["classify"]


def test_classification_scores_the_predictions_it_is_given(tmp_path):
    """The measuring process's step: top-1 over padded fixed-size batches, the padding never counted."""
    from edgebench.models.tasks import digits_task

    task = digits_task()
    path = str(task.save(tmp_path / "task.npz"))
    truth = task.y_test

    def predict(batch: np.ndarray) -> list[np.ndarray]:  # one-hot true labels, the padding repeating the last
        seen = predict.offset
        labels = truth[seen:seen + len(batch)]
        predict.offset += len(batch)
        labels = np.pad(labels, (0, len(batch) - len(labels)), mode="edge")
        return [np.eye(10)[labels]]

    predict.offset = 0
    answer = Task.score(predict, path, 16, tmp_path)
    assert answer["accuracy"] == 1.0 and answer["accuracy_ci_low"] < 1.0
    chunks = list(padded_batches(np.arange(10), 4))
    assert [real for _, real in chunks] == [4, 4, 2] and list(chunks[-1][0]) == [8, 9, 9, 9]
