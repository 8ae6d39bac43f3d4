"""The run folder is complete after every row, not only at the end of a run."""

import csv
import json

import numpy as np
import pytest

from edgebench.bench.measure.rounds import RoundResult, RowRounds
from edgebench.bench.measure.stats import LatencyStats
from edgebench.bench.results import COLUMNS, ResultRow, RunWriter, annotate_ratios, read_rows, split_row_key


def row(runtime: str, status: str = "ok", **values) -> ResultRow:
    return ResultRow(model="m", weights="w", compression="none", runtime=runtime, format=runtime.title(),
                     precision="fp32", target="cpu", device="cpu", batch=2, threads=1, status=status, **values)


def test_every_file_is_complete_after_each_row(tmp_path):
    writer = RunWriter(tmp_path, table_header="# header\n\n")
    writer.append(row("onnx", p50_ms=12.0), rounds=[[11.0, 12.0], [13.0]])
    with open(tmp_path / "rows.csv") as f:
        first = list(csv.DictReader(f))
    assert [r["runtime"] for r in first] == ["onnx"] and first[0]["p50_ms"] == "12.0"
    assert (tmp_path / "table.md").read_text().startswith("# header\n\n| Format |")
    assert "| Onnx | fp32 | 2 | ok |" in (tmp_path / "table.md").read_text()

    writer.append(row("tflite", status="error", error="boom"))
    with open(tmp_path / "rows.csv") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == COLUMNS
        assert [r["runtime"] for r in reader] == ["onnx", "tflite"]
    assert "| Tflite | fp32 | 2 | error [1] |" in (tmp_path / "table.md").read_text()
    assert [r.runtime for r in read_rows(tmp_path)] == ["onnx", "tflite"]
    samples = [json.loads(line) for line in (tmp_path / "samples.jsonl").read_text().splitlines()]
    # per round kept, and nothing for the error row
    assert samples == [{"key": "m|none|onnx|fp32|cpu|b2", "latency_ms": [11.0, 12.0, 13.0], "rounds": [2, 1]}]


def test_environment_is_written_for_people_to_read(tmp_path):
    writer = RunWriter(tmp_path)
    writer.write_environment({"cpu": "x", "path": tmp_path})
    assert (tmp_path / "environment.json").read_text() == f'{{\n  "cpu": "x",\n  "path": "{tmp_path}"\n}}'


def test_a_writer_without_a_header_starts_with_the_table(tmp_path):
    RunWriter(tmp_path).append(row("onnx"))
    assert (tmp_path / "table.md").read_text().startswith("| Format |")


def test_rows_round_trip_and_missing_runs_read_empty(tmp_path):
    assert read_rows(tmp_path) == []
    original = row("onnx", p50_ms=1.5, noisy=True, details="d")
    RunWriter(tmp_path).append(original)
    assert read_rows(tmp_path) == [original]


def test_latency_fills_every_column():
    r = row("onnx")
    r.add_latency(LatencyStats((1.0, 2.0, 4.0, 7.0, 10.0, 20.0, 40.0)))
    assert (r.p50_ms, r.p90_ms, r.p99_ms) == pytest.approx((7.0, 28.0, 38.8))
    assert (r.mean_ms, r.min_ms, r.max_ms, r.iterations) == (12.0, 1.0, 40.0, 7)
    assert r.std_ms == pytest.approx(LatencyStats((1.0, 2.0, 4.0, 7.0, 10.0, 20.0, 40.0)).std)
    assert r.throughput == pytest.approx(2 * 1000 / 12.0)


def test_key_names_every_dimension_of_a_row():
    r = row("onnx")
    r.precision, r.batch, r.target, r.compression = "fp16", 8, "gpu", "prune"
    assert r.key == "m|prune|onnx|fp16|gpu|b8"
    assert split_row_key(r.key) == ("m", "prune", "onnx", "fp16", "gpu", 8)


def _rounds(centres: list[float], cycles: list[int], completed: list[int] | None = None) -> RowRounds:
    """Rounds of 50 samples spread ±2% around each centre, timed in the given round-robin cycles."""
    spread = np.linspace(0.98, 1.02, 50)
    kept = [RoundResult(samples_ms=list(c * spread), warmup_iters=3, capped=False,
                        completed=completed[i] if completed else None, window_s=1.0 if completed else None)
            for i, c in enumerate(centres)]
    return RowRounds(kept=kept, cycles=cycles)


def test_speed_ups_are_paired_by_cycle_and_bracketed_by_their_interval():
    """The row is 2x faster than PyTorch in every cycle they share, while the machine's speed drifts 3x between
    cycles: the paired ratio is 2 with a tight interval; cycles the baseline missed are not used."""
    r = row("onnx", gflops_per_s=50.0)
    pytorch = _rounds([10.0, 20.0, 30.0], cycles=[0, 1, 2])
    mine = _rounds([5.0, 10.0, 15.0, 1.0], cycles=[0, 1, 2, 3])  # cycle 3: no baseline, a would-be 10x
    uncompressed = _rounds([6.0, 12.0, 18.0], cycles=[0, 1, 2])
    annotate_ratios(r, mine, pytorch, uncompressed, peaks={"fp32": 200.0})
    assert r.speedup == pytest.approx(2.0, rel=1e-3)
    assert r.speedup_ci_low <= r.speedup <= r.speedup_ci_high and r.speedup_ci_high - r.speedup_ci_low < 0.1
    assert r.compression_speedup == pytest.approx(1.2, rel=1e-3)
    assert r.compression_speedup_ci_low <= 1.2 <= r.compression_speedup_ci_high
    assert r.peak_fraction == pytest.approx(0.25)


def test_speed_ups_are_empty_without_a_baseline_or_a_shared_cycle_and_peak_needs_its_precision():
    r = row("onnx", gflops_per_s=50.0)
    r.precision = "int8"
    annotate_ratios(r, _rounds([5.0], cycles=[4]), pytorch=_rounds([10.0], cycles=[0]), uncompressed=None,
                    peaks={"fp32": 200.0})
    assert (r.speedup, r.speedup_ci_low, r.speedup_ci_high) == (None, None, None)
    assert (r.compression_speedup, r.compression_speedup_ci_low, r.compression_speedup_ci_high) == (None, None, None)
    assert r.peak_fraction is None


def test_throughput_speed_up_is_items_per_second_over_the_baselines():
    r = row("onnx")
    r.mode = "throughput"
    # The machine's speed triples over the cycles; the row does 3x PyTorch's requests in each: paired, the
    # ratio is 3 with no spread (unpaired, the same figures would give 1 to 9).
    pytorch = _rounds([10.0, 10.0, 10.0], cycles=[0, 1, 2], completed=[100, 200, 300])
    mine = _rounds([10.0, 10.0, 10.0], cycles=[0, 1, 2], completed=[300, 600, 900])
    annotate_ratios(r, mine, pytorch, None, peaks={})
    assert r.speedup == pytest.approx(3.0, rel=1e-3)
    assert r.speedup_ci_low == pytest.approx(3.0, rel=1e-3) and r.speedup_ci_high == pytest.approx(3.0, rel=1e-3)


def test_a_row_takes_its_figures_from_every_kept_round():
    r = row("onnx", flops=4_000_000_000)  # per inference at the row's batch (2)
    kept = [RoundResult(samples_ms=[10.0, 20.0], warmup_iters=10, capped=False, foreign_load=0.01, energy_j=0.3),
            RoundResult(samples_ms=[30.0, 40.0], warmup_iters=3, capped=True, foreign_load=0.5, steal=0.02,
                        energy_j=0.2)]
    r.add_rounds(RowRounds(kept=kept, cycles=[0, 1], repeated=1, stopped_by="2 rounds"))
    assert (r.p50_ms, r.iterations, r.repeats, r.rounds_repeated, r.stopped_by) == (25.0, 4, 2, 1, "2 rounds")
    assert r.warmup_iters == 10 and r.capped is True and r.noisy is True
    assert (r.foreign_load, r.steal) == (0.5, 0.02)
    assert r.energy_mj == pytest.approx(1e3 * 0.5 / (10 + 3 + 4))  # warm-up inferences drew power too
    assert r.throughput == pytest.approx(2 * 1000 / 25.0)  # latency mode: batch over the mean latency
    assert r.gflops_per_s == pytest.approx(4.0 / 2 * r.throughput)
    assert r.p50_ci_low_ms <= r.p50_ms <= r.p50_ci_high_ms


def test_a_throughput_row_takes_completions_over_the_windows():
    r = row("onnx", flops=1_000_000_000)
    kept = [RoundResult(samples_ms=[5.0], warmup_iters=3, capped=False, completed=150, window_s=1.5),
            RoundResult(samples_ms=[5.0], warmup_iters=3, capped=False, completed=50, window_s=0.5)]
    r.add_rounds(RowRounds(kept=kept, cycles=[0, 1]))
    assert r.throughput == pytest.approx(2 * 200 / 2.0)  # batch 2 x requests / seconds, not 1 / latency
    assert r.capped is False and r.energy_mj is None and r.gflops_per_s == pytest.approx(1.0 / 2 * 200)


def test_a_gpu_rows_share_of_peak_is_empty_with_the_reason_not_a_share_of_the_cpus_peak():
    """The measured peaks are the CPU's: dividing a GPU row's GFLOP/s by them printed a share of nothing."""
    cpu, gpu = row("onnx", gflops_per_s=50.0), row("onnx", gflops_per_s=50.0)
    gpu.target = "gpu"
    for r in (cpu, gpu):
        annotate_ratios(r, _rounds([5.0], cycles=[0]), pytorch=None, uncompressed=None, peaks={"fp32": 200.0})
    assert cpu.peak_fraction == pytest.approx(0.25)
    assert gpu.peak_fraction is None and "no % of peak on gpu" in gpu.details
