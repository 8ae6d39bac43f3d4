"""XNNPACK's operator names, as its profiling reports them to ExecuTorch and LiteRT: type and precision.

XNNPACK names each operator it ran with its layout and data types in brackets (`Convolution (NHWC, QC8) IGEMM`,
`Fully Connected (NC, F32) GEMM`), and both runtimes that run it pass the name on unchanged.
"""

from __future__ import annotations

import re


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
