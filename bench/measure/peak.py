"""The machine's measured arithmetic peak per precision: what a row's achieved GFLOP/s is a fraction of.

The faster of two dense kernels through PyTorch (oneDNN underneath, the CPU's best library that every
install here has) at the run's thread count: a square matrix product, and a 3x3 convolution of 256 channels
at 56x56 (resnet's middle layer shape; oneDNN's convolutions beat its GEMM here, 224 against 196 GFLOP/s
in fp32 on 2 cores, and OpenVINO reached 218 on resnet18). int8 is timed with the kernels int8 rows really
run: the same convolution through PyTorch's quantized engines (oneDNN, x86, FBGEMM: u8 x s8 products, as ONNX
Runtime, OpenVINO and XNNPACK compute), beside `torch._int_mm`. `_int_mm` alone was a reference loop on an
AVX2 host without VNNI (3.4 GOP/s) while the runtimes' int8 convolutions ran at 40-48: "% of peak" read
1,190-1,420%. Best of several tries: a neighbour can only slow a try down. A practical roofline ceiling, not
the datasheet's: what this machine, as shared now, gives a dense kernel; a row above it is not given a share.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable

GEMM_SIZE = 1024  # 2.1 GFLOP per product: tens of ms here, long enough to time, short enough to repeat
TRIES = 8
SMALL_GEMM_SIZE = 256  # for a precision the CPU only emulates


def _best_gflops(product: Callable[[], object], flops: float, tries: int = TRIES) -> float:
    """Best of `tries` timed calls of a product already called once (allocation and kernel selection)."""
    best = float("inf")
    for _ in range(tries):
        t0 = time.perf_counter()
        product()
        best = min(best, time.perf_counter() - t0)
    return flops / best / 1e9


def _operands(name: str, size: int, kernel: str = "gemm") -> tuple[Callable[[], object], float]:
    """A zero-argument dense kernel at `name` precision, and its FLOPs; `size` scales it down for slow cases."""
    import torch
    from torch.nn import functional as F

    if name == "int8" and kernel.startswith("conv:"):
        from torch.ao.nn.quantized import functional as quantized

        torch.backends.quantized.engine = kernel.split(":", 1)[1]
        channels, side = size // 4, 56 * size // GEMM_SIZE
        with warnings.catch_warnings():  # quantized tensors are deprecated in favour of torchao; the kernels are not
            warnings.simplefilter("ignore")
            x = torch.quantize_per_tensor(torch.rand(1, channels, side, side), 1 / 128, 0, torch.quint8)
            w = torch.quantize_per_tensor(torch.randn(channels, channels, 3, 3), 1 / 64, 0, torch.qint8)
        bias = torch.zeros(channels)
        return ((lambda: quantized.conv2d(x, w, bias, padding=1, scale=0.1, zero_point=0)),
                2.0 * channels * channels * 9 * side * side)
    if name == "int8":
        a8 = torch.randint(-128, 128, (size, size), dtype=torch.int8)
        b8 = torch.randint(-128, 128, (size, size), dtype=torch.int8)
        return (lambda: torch._int_mm(a8, b8)), 2.0 * size ** 3
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[name]
    if kernel == "conv":
        channels, side = size // 4, 56 * size // GEMM_SIZE
        x, w = torch.randn(1, channels, side, side).to(dtype), torch.randn(channels, channels, 3, 3).to(dtype)
        return (lambda: F.conv2d(x, w, padding=1)), 2.0 * channels * channels * 9 * side * side
    a, b = torch.randn(size, size).to(dtype), torch.randn(size, size).to(dtype)
    return (lambda: a @ b), 2.0 * size ** 3


def _kernel_peak(name: str, size: int, kernel: str) -> float:
    product, flops = _operands(name, size, kernel)
    t0 = time.perf_counter()
    product()
    if time.perf_counter() - t0 > 0.1:  # emulated: measure a smaller one rather than wait
        product, flops = _operands(name, SMALL_GEMM_SIZE, kernel)
        product()
    return _best_gflops(product, flops)


def gemm_peaks(threads: int, precisions: tuple[str, ...] = ("fp32",), size: int = GEMM_SIZE) -> dict[str, float]:
    """GFLOP/s (GOP/s for int8) of an n x n x n matrix product per precision, measured now on `threads` threads.

    Only the precisions the run measures. A precision the CPU cannot multiply natively shows as a very low
    figure (fp16 without AVX512-FP16 ran at 1 GFLOP/s here, emulated): it is measured on a smaller product
    when one full-size product takes over 0.1 s, so the run does not wait for it. One the library cannot
    multiply at all is left out.
    """
    import torch

    previous, engine = torch.get_num_threads(), torch.backends.quantized.engine
    torch.set_num_threads(threads)
    engines = [f"conv:{e}" for e in ("onednn", "x86", "fbgemm") if e in torch.backends.quantized.supported_engines]
    peaks = {}
    try:
        for name in dict.fromkeys(p for p in precisions if p in ("fp32", "bf16", "fp16", "int8")):
            found = []
            for kernel in ("gemm", *engines) if name == "int8" else ("gemm", "conv"):
                try:
                    found.append(_kernel_peak(name, size, kernel))
                except RuntimeError:  # no such kernel in this build
                    continue
            if found:
                peaks[name] = round(max(found), 1)
    finally:
        torch.set_num_threads(previous)
        torch.backends.quantized.engine = engine
    return peaks
