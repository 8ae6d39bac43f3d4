"""What a model's structure says about how it must be handled, read without importing torch.

A YOLO Detect head decodes boxes inside the model (DFL, anchors, strides, sigmoid): int8 toolchains must leave
that decode in float, and channel pruning must leave the head's outputs whole (4 x reg_max box bins and one
channel per class). Runtimes' exporting processes read this too, so this module imports nothing heavy.
"""

from __future__ import annotations

from typing import Any


def detection_head(model: Any) -> str | None:
    """The module path of a YOLO Detect head (it decodes boxes: DFL, anchors, strides, sigmoid), or None.

    int8 keeps that decode in float, as Ultralytics' own int8 exports do: one tensor concatenates box
    coordinates in pixels with class probabilities in [0, 1], and one int8 scale for both rounds every score
    to zero (measured: mAP50-95 0.0 from 52.8 with ONNX Runtime when it was quantized)."""
    for name, module in model.named_modules():
        if name and hasattr(module, "dfl") and hasattr(module, "stride") and hasattr(module, "nc"):
            return name
    return None


def in_decode(name_scopes: list[str], head: str) -> bool:
    """Whether an exported op (named by its PyTorch module scopes, outermost first, its own name last) is the
    head's decode: an op of the head's own forward, or anything inside its DFL; not its convolutions."""
    return (len(name_scopes) >= 2 and name_scopes[-2] == head) or any(
        scope == f"{head}.dfl" or scope.startswith(f"{head}.dfl.") for scope in name_scopes)
