"""YOLO detectors built offline from Ultralytics' own YAML configs (the `yolo` extra): the family n/s/m/l/x.

Only `.pt` weight files would download, so the architecture is built from the config shipped in the wheel,
with random weights (BatchNorm recalibrated like torchvision's) or the user's state_dict. The detection
head is put in export mode, as Ultralytics' own exporter does: one output tensor, boxes and class scores
decoded (1 x 84 x 8400 at 640x640), no post-processing (NMS), which is what every runtime then runs.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from edgebench.bench.errors import UsageError
from edgebench.models.sources import ModelSource

# `yolov8n`, or `yolov8n[nc=3,imgsz=128]` for another class count and input size (what a checkpoint sets).
YOLO_NAME = re.compile(r"^(?P<config>yolov5[nsmlx]u|yolov8[nsmlx]|yolo11[nsmlx])"
                       r"(?:\[nc=(?P<classes>[1-9]\d*),imgsz=(?P<size>[1-9]\d*)\])?$")
INPUT_SIZE = 640
CLASSES = 80  # COCO's, the configs' default


def yolo_env() -> dict[str, str]:
    """Never let Ultralytics reach the network, install packages, or write settings outside the project
    (child processes get the same from `bench.isolation.QUIET_ENV`)."""
    from edgebench.bench.isolation import QUIET_ENV, YOLO_CONFIG_DIR

    return {**{k: v for k, v in QUIET_ENV.items() if k.startswith("YOLO_")}, "YOLO_CONFIG_DIR": str(YOLO_CONFIG_DIR)}


@dataclass
class YoloSource(ModelSource):
    config: str  # e.g. yolov8n: the config yolov8n.yaml, at scale n
    classes: int = CLASSES
    size: int = INPUT_SIZE  # square input, pixels

    random_init = True
    detects = True  # outputs are decoded boxes and class scores: scored by mAP (models.detection)

    @property
    def name(self) -> str:  # type: ignore[override]
        return self.config

    @property
    def spec(self) -> str:
        if (self.classes, self.size) == (CLASSES, INPUT_SIZE):
            return self.config
        return f"{self.config}[nc={self.classes},imgsz={self.size}]"

    def build(self, seed: int, pretrained: bool = False) -> tuple[nn.Module, torch.Tensor]:
        if pretrained:
            raise UsageError(f"{self.config}: pretrained YOLO weights are .pt downloads; pass WEIGHTS=path/to/"
                             "state_dict.pt instead")
        for key, value in yolo_env().items():
            os.environ.setdefault(key, value)
        from ultralytics.nn.tasks import DetectionModel

        torch.manual_seed(seed)
        module = DetectionModel(f"{self.config}.yaml", nc=self.classes, verbose=False)
        export_mode(module)
        generator = torch.Generator().manual_seed(seed)
        return module.eval(), torch.rand(1, 3, self.size, self.size, generator=generator)

    def declared_preprocess(self) -> object:
        return "unit"  # Ultralytics feeds RGB in [0, 1]


def export_mode(module: nn.Module, on: bool = True) -> None:
    """The Detect head as Ultralytics' exporter sets it: one decoded output tensor, no NMS. `on=False` gives back
    its training forward (raw maps, what its loss takes)."""
    for head in module.modules():
        if hasattr(head, "export") and hasattr(head, "stride") and hasattr(head, "nc"):  # the Detect head
            head.export = on
            if on:
                head.format = "onnx"


@dataclass
class Checkpoint:
    """What edgebench takes from an Ultralytics training checkpoint (best.pt / last.pt)."""

    state_dict: dict[str, torch.Tensor]
    classes: tuple[str, ...]
    size: int  # the training image size, the model's input size here
    scale: str  # n, s, m, l or x, as trained


def is_ultralytics_checkpoint(path: Path) -> bool:
    """A pickled training checkpoint holds the model object; a state_dict file does not."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.endswith("data.pkl") for name in archive.namelist()) and b"ultralytics" in b"".join(
                archive.read(name) for name in archive.namelist() if name.endswith("data.pkl"))
    except (OSError, zipfile.BadZipFile):
        return False


def read_checkpoint(path: Path) -> Checkpoint:
    """best.pt / last.pt as Ultralytics writes them, loaded offline (its classes are needed to unpickle it, so
    this runs only with the yolo extra; a checkpoint runs code when loaded: load only checkpoints you trust)."""
    for key, value in yolo_env().items():
        os.environ.setdefault(key, value)
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
        model = checkpoint.get("ema") or checkpoint["model"]
        names = model.names
        args = checkpoint.get("train_args") or {}
    except Exception as exc:
        raise UsageError(f"weights file {str(path)!r} is not a readable Ultralytics checkpoint: "
                         f"{type(exc).__name__}: {exc}".splitlines()[0]) from exc
    classes = tuple(str(names[i]) for i in range(len(names))) if isinstance(names, dict) else tuple(map(str, names))
    size = args.get("imgsz", INPUT_SIZE)
    size = int(max(size) if isinstance(size, (list, tuple)) else size)
    scale = str((getattr(model, "yaml", None) or {}).get("scale", ""))
    return Checkpoint(model.float().state_dict(), classes, size, scale)


def yolo_source(text: str) -> YoloSource | None:
    """The source for a YOLO name, None for other names; a one-line error when the extra is missing."""
    match = YOLO_NAME.match(text)
    if not match:
        return None
    import importlib.util

    if importlib.util.find_spec("ultralytics") is None:
        raise UsageError(f"MODEL={text} needs the yolo extra: .venv/bin/pip install -e '.[yolo]' "
                         "(ultralytics; the architecture is built offline from its YAML)")
    if match["classes"]:
        return YoloSource(match["config"], int(match["classes"]), int(match["size"]))
    return YoloSource(match["config"])
