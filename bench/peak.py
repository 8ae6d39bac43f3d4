"""The machine's measured arithmetic peak per precision: what a row's achieved GFLOP/s is a fraction of.

A short square GEMM through PyTorch (oneDNN/MKL underneath, the CPU's best library that every install here
has) at the run's thread count, best of several tries: a neighbour can only slow a try down. It is a
practical roofline ceiling, not the datasheet's: what this machine, as shared now, gives a dense kernel.
"""

from __future__ import annotations

import time
from collections.abc import Callable

GEMM_SIZE = 1024  # 2.1 GFLOP per product: tens of ms here, long enough to time, short enough to repeat
TRIES = 8
SMALL_GEMM_SIZE = 256  # for a precision the CPU only emulates


def _best_gflops(product: Callable[[], object], flops: float, tries: int = TRIES) -> float:
    product()  # first call: allocation and kernel selection
    best = float("inf")
    for _ in range(tries):
        t0 = time.perf_counter()
        product()
        best = min(best, time.perf_counter() - t0)
    return flops / best / 1e9


def _operands(name: str, size: int) -> tuple[Callable[[], object], float]:
    import torch

    if name == "int8":
        a8 = torch.randint(-128, 128, (size, size), dtype=torch.int8)
        b8 = torch.randint(-128, 128, (size, size), dtype=torch.int8)
        return (lambda: torch._int_mm(a8, b8)), 2.0 * size ** 3
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[name]
    a, b = torch.randn(size, size).to(dtype), torch.randn(size, size).to(dtype)
    return (lambda: a @ b), 2.0 * size ** 3


def gemm_peaks(threads: int, precisions: tuple[str, ...] = ("fp32",), size: int = GEMM_SIZE) -> dict[str, float]:
    """GFLOP/s (GOP/s for int8) of an n x n x n matrix product per precision, measured now on `threads` threads.

    Only the precisions the run measures. A precision the CPU cannot multiply natively shows as a very low
    figure (fp16 without AVX512-FP16 ran at 1 GFLOP/s here, emulated): it is measured on a smaller product
    when one full-size product takes over 0.1 s, so the run does not wait for it. One the library cannot
    multiply at all is left out.
    """
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    peaks = {}
    try:
        for name in dict.fromkeys(p for p in precisions if p in ("fp32", "bf16", "fp16", "int8")):
            try:
                product, flops = _operands(name, size)
                t0 = time.perf_counter()
                product()
                if time.perf_counter() - t0 > 0.1:
                    product, flops = _operands(name, SMALL_GEMM_SIZE)
                peaks[name] = round(_best_gflops(product, flops), 1)
            except RuntimeError:  # no such GEMM in this build
                continue
    finally:
        torch.set_num_threads(previous)
    return peaks
