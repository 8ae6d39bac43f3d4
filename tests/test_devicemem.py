"""A GPU row's device memory, beside its host peak RSS: each runtime's own counter, or NVML's per-process figure,
always with its source; reached here without a GPU through fakes of NVML and of the CUDA allocator."""

from __future__ import annotations

import io
from types import SimpleNamespace

from edgebench.bench.measure.devicemem import NVML_SOURCE, nvml_process_mb
from edgebench.runtimes import RuntimeOptions, get_runtime


class _FakeNvml:
    def __init__(self, processes):
        self.processes = processes

    def nvmlDeviceGetHandleByIndex(self, index):
        return index

    def nvmlDeviceGetComputeRunningProcesses(self, handle):
        return self.processes


def test_nvml_gives_this_processs_memory_on_the_rows_gpu_or_says_why_not():
    others = SimpleNamespace(pid=1, usedGpuMemory=9_000_000_000)
    assert nvml_process_mb(_FakeNvml([others, SimpleNamespace(pid=7, usedGpuMemory=250_000_000)]), pid=7) == \
        (250.0, NVML_SOURCE)
    mb, why = nvml_process_mb(_FakeNvml([others]), pid=7)
    assert mb is None and "does not list process 7" in why
    mb, why = nvml_process_mb(_FakeNvml([SimpleNamespace(pid=7, usedGpuMemory=None)]), pid=7)
    assert mb is None and "without its memory" in why


def test_pytorch_rows_report_the_allocators_peak_and_cpu_rows_nothing(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device=None: 123_000_000)
    gpu = get_runtime("pytorch")(RuntimeOptions(target="gpu"))
    assert gpu.device_memory() == (123.0, "torch.cuda.max_memory_allocated (peak, PyTorch's allocator)")
    for name in ("pytorch", "onnxruntime", "openvino"):
        assert get_runtime(name)(RuntimeOptions(target="cpu")).device_memory() == (None, "")


def test_the_figure_reaches_the_row_and_the_details_table_beside_peak_rss(tmp_path, fast_timing, monkeypatch):
    """From the measuring process to the row and table.md; a CPU-only run's table keeps its columns."""
    from rich.console import Console

    import edgebench.runtimes
    from edgebench.bench.config import BenchConfig
    from edgebench.bench.progress import Reporter
    from edgebench.bench.runlog import RunLog
    from edgebench.bench.runner import Runner

    import misbehaving_runtimes
    from tests_paths import TINY_MODEL

    edgebench.runtimes.runtime_names()
    monkeypatch.setitem(edgebench.runtimes._REGISTRY, "devicememory", misbehaving_runtimes.DeviceMemoryRuntime)
    log = RunLog()
    try:
        summary = Runner(BenchConfig(model=TINY_MODEL, runtimes=("pytorch", "devicememory"), threads=1,
                                     timing=fast_timing, repeats=1, out=tmp_path / "run"),
                         Reporter(Console(file=io.StringIO())), log).run()
    finally:
        log.close()
    rows = {r.runtime: r for r in summary.rows}
    assert (rows["devicememory"].device_memory_mb, rows["devicememory"].device_memory_source) == \
        (42.0, "test counter (peak)")
    assert (rows["pytorch"].device_memory_mb, rows["pytorch"].device_memory_source) == (None, "")
    table = (summary.run_dir / "table.md").read_text()
    assert "| Peak RSS (MB) | Device memory (MB) |" in table and "| 42 (test counter) |" in table
