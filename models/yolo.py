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

import torch
from torch import nn

from bench.errors import UsageError
from models.sources import ModelSource

YOLO_NAME = re.compile(r"^(yolov5[nsmlx]u|yolov8[nsmlx]|yolo11[nsmlx])$")
INPUT_SIZE = 640


def yolo_env() -> dict[str, str]:
    """Never let Ultralytics reach the network, install packages, or write settings outside the project
    (child processes get the same from `bench.isolation.QUIET_ENV`)."""
    from bench.isolation import QUIET_ENV, YOLO_CONFIG_DIR

    return {**{k: v for k, v in QUIET_ENV.items() if k.startswith("YOLO_")}, "YOLO_CONFIG_DIR": str(YOLO_CONFIG_DIR)}


@dataclass
class YoloSource(ModelSource):
    config: str  # e.g. yolov8n: the config yolov8n.yaml, at scale n

    random_init = True

    @property
    def name(self) -> str:  # type: ignore[override]
        return self.config

    @property
    def spec(self) -> str:
        return self.config

    def build(self, seed: int, pretrained: bool = False) -> tuple[nn.Module, torch.Tensor]:
        if pretrained:
            raise UsageError(f"{self.config}: pretrained YOLO weights are .pt downloads; pass WEIGHTS=path/to/"
                             "state_dict.pt instead")
        for key, value in yolo_env().items():
            os.environ.setdefault(key, value)
        from ultralytics.nn.tasks import DetectionModel

        torch.manual_seed(seed)
        module = DetectionModel(f"{self.config}.yaml", verbose=False)
        for head in module.modules():
            if hasattr(head, "export") and hasattr(head, "stride") and hasattr(head, "nc"):  # the Detect head
                head.export, head.format = True, "onnx"
        generator = torch.Generator().manual_seed(seed)
        return module.eval(), torch.rand(1, 3, INPUT_SIZE, INPUT_SIZE, generator=generator)

    def declared_preprocess(self) -> object:
        return "unit"  # Ultralytics feeds RGB in [0, 1]


def yolo_source(text: str) -> YoloSource | None:
    """The source for a YOLO name, None for other names; a one-line error when the extra is missing."""
    if not YOLO_NAME.match(text):
        return None
    import importlib.util

    if importlib.util.find_spec("ultralytics") is None:
        raise UsageError(f"MODEL={text} needs the yolo extra: .venv/bin/pip install -e '.[yolo]' "
                         "(ultralytics; the architecture is built offline from its YAML)")
    return YoloSource(text)
