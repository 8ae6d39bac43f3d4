"""End to end through the runner: real exports, real child processes, files written as rows finish."""

from __future__ import annotations

import csv
import io
import json
import platform

import pytest
from rich.console import Console

import runtimes
from bench.config import BenchConfig, TimingConfig
from bench.progress import Reporter
from bench.results import read_rows
from bench.runlog import RunLog
from bench.runner import Runner

from tests_paths import TINY_MODEL

REQUIRED_COLUMNS = ("model, weights, compression, runtime, precision, target, device, batch, threads, status, error, "
                    "size_mb, export_s, load_s, first_ms, p50_ms, p90_ms, p99_ms, mean_ms, std_ms, min_ms, max_ms, "
                    "throughput, iterations, peak_rss_mb, max_abs_diff, cosine").split(", ")


def run(config: BenchConfig):
    log = RunLog()
    try:
        return Runner(config, Reporter(Console(file=io.StringIO())), log).run()
    finally:
        log.close()


@pytest.fixture
def misbehaving(monkeypatch):
    """Registers the test-only failing adapters for one test."""
    import misbehaving_runtimes as module

    runtimes.runtime_names()  # discover the real ones first
    for cls in (module.SegfaultingRuntime, module.HangingRuntime, module.MissingPackageRuntime):
        monkeypatch.setitem(runtimes._REGISTRY, cls.name, cls)
    return module


def test_all_cpu_runtimes_end_to_end(tmp_path):
    names = ("pytorch", "torchscript", "onnxruntime", "openvino")
    # Long enough (0.3 s) for /proc/stat's 10 ms ticks to say what else ran meanwhile.
    timing = TimingConfig(warmup_iters=2, warmup_s=0.0, min_iters=5, min_s=0.3, max_s=10.0)
    summary = run(BenchConfig(model=TINY_MODEL, runtimes=names, batches=(1, 4), threads=1,
                              out=tmp_path / "run", timing=timing))
    rows = summary.rows
    assert [(r.runtime, r.batch) for r in rows] == [(n, b) for n in names for b in (1, 4)]
    for row in rows:
        assert row.status == "ok", row.error
        assert row.size_mb > 0 and row.p50_ms > 0 and row.iterations >= 5 and row.fidelity_ok
        assert row.min_ms <= row.p50_ms <= row.p90_ms <= row.p99_ms <= row.max_ms
        assert row.throughput == pytest.approx(row.batch * 1000 / row.mean_ms)
        assert row.peak_rss_mb > 0 and row.export_peak_rss_mb > 0
        assert 0 <= row.foreign_load <= 1
    pytorch = [r for r in rows if r.runtime == "pytorch"]
    assert all(r.max_abs_diff == 0 for r in pytorch)  # the baseline is the reference

    run_dir = summary.run_dir
    for name in ("rows.jsonl", "rows.csv", "table.md", "environment.json", "run.log", "samples.jsonl"):
        assert (run_dir / name).exists(), name
    with open(run_dir / "rows.csv") as f:
        header = next(csv.reader(f))
    assert set(REQUIRED_COLUMNS) <= set(header)
    samples = [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]
    assert [len(s["latency_ms"]) for s in samples] == [r.iterations for r in rows]
    env = json.loads((run_dir / "environment.json").read_text())
    assert env["packages"]["torch"] and env["cpu"] and env["threads"] == 1 and env["harness_overhead_us"] >= 0
    table = (run_dir / "table.md").read_text()
    assert "| ONNX Runtime | fp32 | 4 | ok" in table  # may carry a (noisy) flag on a busy machine
    assert not (run_dir / "artifacts").exists()  # exported models are removed unless asked to keep them
    assert read_rows(run_dir) == rows


def test_a_crashing_and_a_hanging_backend_become_error_rows(tmp_path, fast_timing, misbehaving):
    summary = run(BenchConfig(model=TINY_MODEL, runtimes=("segfaulting", "hanging", "coreml", "pytorch"),
                              threads=1, out=tmp_path / "run", timing=fast_timing, timeout_s=25))
    by_name = {r.runtime: r for r in summary.rows}
    assert by_name["segfaulting"].status == "error"
    assert "SIGSEGV" in by_name["segfaulting"].error and "first inference" in by_name["segfaulting"].error
    assert by_name["segfaulting"].size_mb > 0  # the export before the crash was still measured
    assert by_name["hanging"].status == "error"
    assert "timed out after 25 s while loading" in by_name["hanging"].error
    if platform.system() != "Darwin":  # converted and sized, then not run, with the reason
        coreml = by_name["coreml"]
        assert coreml.status == "unavailable" and coreml.size_mb > 0 and coreml.p50_ms is None
        assert coreml.error == "CoreML inference runs only on macOS"
    assert by_name["pytorch"].status == "ok"
    assert len(read_rows(summary.run_dir)) == 4
    assert "[1]" in (summary.run_dir / "table.md").read_text()  # reasons are footnoted


def test_a_named_runtime_with_a_missing_package_is_bad_input(tmp_path, fast_timing, misbehaving):
    from bench.errors import UsageError

    config = BenchConfig(model=TINY_MODEL, runtimes=("pytorch", "missingpkg"), out=tmp_path / "run",
                         timing=fast_timing)
    with pytest.raises(UsageError, match=r"'missingpkg' cannot run here: needs edgebench-no-such-package \(pip"):
        run(config)
    assert not (tmp_path / "run").exists()  # nothing was written
    with pytest.raises(UsageError, match="runtime 'tensorrt' cannot run here: TensorRT does not run on cpu"):
        run(BenchConfig(model=TINY_MODEL, runtimes=("tensorrt",), out=tmp_path / "run", timing=fast_timing))


def test_missing_package_is_an_unavailable_row_reason(misbehaving):
    reason = misbehaving.MissingPackageRuntime.export_unavailable("cpu", "fp32")
    assert reason == "needs edgebench-no-such-package (pip install edgebench-no-such-package)"
