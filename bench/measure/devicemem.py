"""A measuring process's memory on its accelerator, beside its host peak RSS: what a GPU row costs the device.

Each runtime reports through its own counter where it has one (PyTorch's caching allocator keeps a true peak);
otherwise NVML's figure for this process on the row's GPU, read after the timed rounds (NVML keeps no
per-process peak, so it is the memory held then, which includes what the runtime reserved and did not free).
"""

from __future__ import annotations

import os
from typing import Any

NVML_SOURCE = "NVML process memory after timing (held, not a peak: NVML keeps none)"


def nvml_process_mb(pynvml: Any, pid: int | None = None) -> tuple[float | None, str]:
    """(MB this process holds on the row's GPU, source) or (None, why not)."""
    from edgebench.bench.measure.energy import cuda_device_handle

    pid = os.getpid() if pid is None else pid
    handle = cuda_device_handle(pynvml)
    for proc in pynvml.nvmlDeviceGetComputeRunningProcesses(handle):
        if proc.pid == pid:
            if proc.usedGpuMemory is None:  # containers without the host's PID namespace report none
                return None, "NVML lists this process without its memory (a container's PID namespace?)"
            return proc.usedGpuMemory / 1e6, NVML_SOURCE
    return None, f"NVML does not list process {pid} on the row's GPU (a container's PID namespace?)"


def nvml_device_memory() -> tuple[float | None, str]:
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:  # no package or no driver
        return None, "no device memory figure: NVML unavailable (pip install nvidia-ml-py)"
    try:
        return nvml_process_mb(pynvml)
    except Exception as exc:  # an NVML call this driver does not support
        return None, f"no device memory figure: NVML failed ({type(exc).__name__}: {exc})"
