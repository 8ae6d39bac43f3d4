"""Detection: COCO mAP of a YOLO detector on labelled images, in each runtime's own process, as Ultralytics validates.

The measuring process keeps only the anchors that pass the confidence threshold (NumPy only); the parent runs the
one shared post-processing and pycocotools on them (`bench.measure.detections`), so every runtime is scored by the
same code, and pairs each row's mAP with its control's over the same images. The data come from
`models.detection` (a data.yaml or a COCO folder); fine-tuning is Ultralytics' own trainer
(`models.yolo_training`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from edgebench.bench.errors import UsageError
from edgebench.tasks.base import CALIBRATION_IMAGES, LabelledTask, model_output, padded_batches

DETECTIONS = "detections"  # the run folder's: each scored row's boxes in COCO's results format


def is_detector(model: Any) -> bool:
    """A YOLO detector: a named one (`models.yolo`), or a user's model file whose module holds an Ultralytics
    Detect head (its output is then the decoded boxes and class scores every detector row is scored on)."""
    from edgebench.models import resolve_source
    from edgebench.models.heads import detection_head

    return bool(getattr(resolve_source(model.source), "detects", False)) or detection_head(model.module) is not None


@dataclass
class DetectionTask(LabelledTask):
    """A detector's validation split (letterboxed once), its ground truth, and training images for calibration."""

    name: str
    train_images: np.ndarray  # uint8 N x 3 x S x S, letterboxed RGB: int8 calibration only
    images: np.ndarray  # uint8 N x 3 x S x S, letterboxed RGB: the validation split
    ratio_pads: np.ndarray  # N x 4 float64: gain_h, gain_w, pad_left, pad_top (back to the original pixels)
    original_shapes: np.ndarray  # N x 2 int: height, width
    ground_truth: str  # COCO json: the validation split's boxes in original pixels, category id = class index
    classes: tuple[str, ...]
    note: str = ""  # what the label should also say (a sampled split, calibration taken from elsewhere)
    data_yaml: str = ""  # the Ultralytics data.yaml it was read from: what fine-tuning trains on ("" for COCO)

    kind = "detect"
    noun = "detectors"

    @classmethod
    def claims(cls, model: Any) -> bool:
        return is_detector(model)

    @classmethod
    def resolve(cls, config: Any, model: Any) -> DetectionTask | None:
        """DATA as an Ultralytics data.yaml or a COCO folder, letterboxed to the model's input; its classes must be
        the model's."""
        from edgebench.models.detection import load_detection_task

        if config.preprocess:
            raise UsageError(f"PREPROCESS={config.preprocess} applies to classifiers: a detector's images are "
                             "letterboxed as Ultralytics' validator does")
        if not config.data:
            return None
        task = load_detection_task(config.data, int(model.example.shape[-1]), config.seed)
        task.check_fits(tuple(model.example.shape[1:]), tuple(model_output(model).shape), model.name)
        return task

    def scored_on(self) -> str:
        from edgebench.bench.measure.detections import POSTPROCESSING

        return (f"; mAP on {self.label}: COCO mAP50-95 and mAP50 (pycocotools) in each runtime, 95% bootstrap "
                f"interval over images; post-processing outside the timed inference (post_ms per image): "
                f"{POSTPROCESSING}; preprocessing: {self.preprocessing}; mAP changes are paired over images against "
                "the row's control: the runtime's fp32 uncompressed row, or for a fine-tuned variant the baseline "
                "fine-tuned as long (Ultralytics' trainer), at the same precision")

    def training_unavailable(self) -> str:
        """Why a detector cannot be fine-tuned on this data ("" when it can): Ultralytics' trainer reads a
        data.yaml with YOLO label files, not COCO json."""
        if self.data_yaml:
            return ""
        return (f"DATA {self.name!r} is a COCO folder, and Ultralytics' trainer takes a data.yaml with YOLO label "
                "files: fine-tuning needs DATA=path/to/data.yaml")

    def fine_tune(self, model: Any, epochs: int, seed: int = 0) -> Any:
        """`model` trained `epochs` more by Ultralytics' own trainer and loss on the data.yaml's train split;
        returns the trained module (the trainer's EMA weights, as its checkpoints hold), head in export mode."""
        from edgebench.models.yolo_training import finetune_yolo

        return finetune_yolo(model, Path(self.data_yaml), epochs, int(self.images.shape[-1]), seed)

    @property
    def preprocessing(self) -> str:
        size = self.images.shape[-1]
        return (f"letterbox to {size}x{size} (Ultralytics' validator: long side resized, grey padding 114), "
                "RGB in [0, 1]")

    @property
    def label(self) -> str:
        return f"{self.name} ({len(self.images)} val images{'; ' + self.note if self.note else ''})"

    @staticmethod
    def to_input(images: np.ndarray) -> np.ndarray:
        """uint8 letterboxed images -> the float32 the model takes (Ultralytics divides by 255)."""
        return np.ascontiguousarray(images, dtype=np.float32) / np.float32(255.0)

    def timed_input(self, batch: int) -> np.ndarray:
        """The first validation images as the timed input: real pictures, not noise."""
        return self.to_input(np.resize(self.images, (batch, *self.images.shape[1:])))

    def calibration(self, count: int = CALIBRATION_IMAGES, seed: int = 0) -> np.ndarray:
        rng = np.random.default_rng(seed)
        pick = rng.choice(len(self.train_images), size=min(count, len(self.train_images)), replace=False)
        return self.to_input(self.train_images[np.sort(pick)])

    def check_fits(self, input_size: tuple[int, ...], outputs: tuple[int, ...], model_name: str) -> None:
        """The letterboxed size must be the model's input and the data set's classes its classes."""
        if tuple(self.images.shape[1:]) != tuple(input_size):
            raise UsageError(f"DATA {self.name!r} was letterboxed to {tuple(self.images.shape[1:])}, but "
                             f"{model_name} takes {tuple(input_size)}")
        model_classes = outputs[1] - 4 if len(outputs) == 3 else -1
        if model_classes != len(self.classes):
            raise UsageError(f"DATA {self.name!r} has {len(self.classes)} classes ({', '.join(self.classes[:5])}"
                             f"{', ...' if len(self.classes) > 5 else ''}), but {model_name} detects "
                             f"{model_classes if model_classes >= 0 else 'no'} classes (output {tuple(outputs)})")

    @classmethod
    def score(cls, predict: Callable[[np.ndarray], list[Any]], task_file: str, batch: int,
              job_dir: Path) -> dict[str, Any]:
        """The raw outputs on the whole validation split, reduced to the anchors that pass the confidence
        threshold (`bench.measure.detections.candidates`), saved for the parent to post-process and score."""
        from edgebench.bench.measure.detections import candidates, pack

        with np.load(task_file) as data:
            images = data["images"]
        kept = []
        for chunk, real in padded_batches(images, batch):
            kept += candidates(np.asarray(predict(cls.to_input(chunk))[0]))[:real]
        path = job_dir / "detections.npz"
        np.savez(path, **pack(kept))
        return {"detections_file": str(path), "task_file": task_file}

    @classmethod
    def fill(cls, row: Any, answer: dict[str, Any], run_dir: Path, seed: int) -> None:
        """The row's mAP, post-processed and evaluated here, the same code for every runtime; its boxes are kept in
        the run folder (detections/<row>.json), and its mAP is paired with its control's (`control_spec`)."""
        from edgebench.bench.measure.detections import paired_difference, score_detections, unpack
        from edgebench.bench.results import control_spec, row_key

        task = _cached(answer["task_file"])
        candidates_file = Path(answer["detections_file"])
        with np.load(candidates_file) as packed:
            per_image = unpack(dict(packed))
        score = score_detections(task, per_image, seed)
        row.map50_95, row.map50, row.map_ci_low, row.map_ci_high = (score.map50_95, score.map50, score.map_ci_low,
                                                                    score.map_ci_high)
        row.postprocess_ms = score.postprocess_ms
        (run_dir / DETECTIONS).mkdir(exist_ok=True)
        detections_file(run_dir, row.key).write_text(json.dumps(score.detections))
        candidates_file.unlink()
        wanted = control_spec(row)  # a control is measured before the variants it controls: scored already
        if wanted is None:
            return
        control = detections_file(run_dir, row_key(row.model, wanted[0], row.runtime, wanted[1], row.target,
                                                   row.batch))
        if control.is_file():
            row.map_delta, row.map_delta_ci_low, row.map_delta_ci_high = paired_difference(
                task.ground_truth, score.detections, json.loads(control.read_text()), seed=seed)
            row.map_control = " ".join(wanted)


@lru_cache(maxsize=1)  # a run scores one model's rows after another: one set held at a time
def _cached(task_file: str) -> DetectionTask:
    """A run's validation set, read once however many rows it scores."""
    return DetectionTask.load(task_file)


def detections_file(run_dir: Path, key: str) -> Path:
    """A detector row's boxes in COCO's results format, in its run folder."""
    return run_dir / DETECTIONS / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', key)}.json"
