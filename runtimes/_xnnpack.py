"""XNNPACK's operator names, as its profiling reports them to ExecuTorch and LiteRT: type and precision.

XNNPACK names each operator it ran with its layout and data types in brackets (`Convolution (NHWC, QC8) IGEMM`,
`Fully Connected (NC, F32) GEMM`), and both runtimes that run it pass the name on unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass


def xnnpack_kind(event: str) -> str:
    """An operator's type: XNNPACK's operator before its data types (`Convolution (NHWC, F32) IGEMM #1`:
    Convolution), a portable kernel's operator (`native_call_cumsum.out`: cumsum.out)."""
    return event.removeprefix("native_call_").split(" (")[0].split(" #")[0]


def xnnpack_precision(event: str) -> str:
    """The precision in an XNNPACK operator's name: its data types in brackets, QS8/QU8/QC8/QD8 integer, F16,
    F32. A Convert is a conversion between them, and a portable kernel's event names no type: unknown ("")."""
    found = re.search(r"\(([^)]*)\)", event)
    if event.startswith(("native_call_", "Convert")) or not found:
        return ""
    types = [t.strip().upper() for t in found.group(1).split(",")]
    if any(t.startswith(("QS8", "QU8", "QC8", "QD8", "QC4", "X8")) for t in types):
        return "int8"
    if "F16" in types:
        return "fp16"
    if any(t in ("F32", "X32") for t in types):
        return "fp32"
    return ""


# XNNPACK's operators that compute multiply-adds, as its names begin.
MAC_OPERATORS = ("Convolution", "Fully Connected", "Deconvolution", "Batch Matrix Multiply")


def runs_as(kind: str, one_by_one: bool = False) -> tuple[str, ...]:
    """The XNNPACK operators a model's multiply-add operator may run as (`kind`: "convolution", "linear" or
    "deconvolution"): a 1x1 convolution with one group as a matrix product too, which XNNPACK names
    `Fully Connected`."""
    if kind == "convolution":
        return ("Convolution", "Fully Connected") if one_by_one else ("Convolution",)
    return {"linear": ("Fully Connected",), "deconvolution": ("Deconvolution",)}.get(kind, ())


@dataclass(frozen=True)
class MacOp:
    """One of a model's multiply-add operators, in the order the model runs them: the XNNPACK operators it may
    run as (a 1x1 convolution may run as `Fully Connected`), and its multiply-adds per inference."""

    runs_as: tuple[str, ...]
    macs: float


def match_macs(names: Sequence[str], model: Sequence[MacOp]) -> list[float] | None:
    """Each XNNPACK operator's multiply-adds (`names` in the order it ran them; 0 for those that compute none),
    where its multiply-add operators match the model's one for one, in order and in kind; None where they do not.

    XNNPACK's records name no layer and carry no shapes, and it fuses some of a model's operators into others (a
    pad into the convolution after it), so its operators are not the model's one for one; its multiply-add
    operators are, in the model's order. A mismatch gives none rather than a guess."""
    mine = [i for i, name in enumerate(names) if xnnpack_kind(name) in MAC_OPERATORS]
    if len(mine) != len(model):
        return None
    if any(xnnpack_kind(names[i]) not in op.runs_as for i, op in zip(mine, model, strict=True)):
        return None
    macs = [0.0] * len(names)
    for i, op in zip(mine, model, strict=True):
        macs[i] = op.macs
    return macs
