"""End to end through the runner: real exports, real child processes, files written as rows finish."""

from __future__ import annotations

import csv
import io
import json
import platform
import re

import pytest
from rich.console import Console

import edgebench.runtimes
from edgebench.bench.config import BenchConfig, TimingConfig
from edgebench.bench.measure.floor import DEFAULT as DEFAULT_FLOOR
from edgebench.bench.measure.rounds import NoiseGuard
from edgebench.bench.progress import Reporter
from edgebench.bench.results import read_rows
from edgebench.bench.runlog import RunLog
from edgebench.bench.runner import Runner

from tests_paths import ASSETS, TINY_MODEL

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

    edgebench.runtimes.runtime_names()  # discover the real ones first
    for cls in (module.SegfaultingRuntime, module.HangingRuntime, module.MissingPackageRuntime,
                module.RaisingRuntime, module.OomKilledRuntime, module.MemoryHungryRuntime, module.PerturbedRuntime,
                module.NoisyNeighbourRuntime):
        monkeypatch.setitem(edgebench.runtimes._REGISTRY, cls.name, cls)
    return module


@pytest.mark.slow
def test_all_cpu_runtimes_end_to_end(tmp_path):
    names = ("pytorch", "torchscript", "onnxruntime", "openvino")
    # Long enough (0.3 s) for /proc/stat's 10 ms ticks to say what else ran meanwhile.
    timing = TimingConfig(warmup_iters=2, warmup_s=0.0, min_iters=5, min_s=0.3, max_s=10.0)
    summary = run(BenchConfig(model=TINY_MODEL, runtimes=names, batches=(1, 4), threads=1,
                              out=tmp_path / "run", timing=timing, repeats=2, warm_exports=False))
    rows = summary.rows
    for row in rows:  # two interleaved rounds each, an interval around the median, a speed-up with its own
        assert row.repeats == 2 and row.p50_ci_low_ms <= row.p50_ms <= row.p50_ci_high_ms
        assert row.speedup_ci_low <= row.speedup <= row.speedup_ci_high and row.mode == "latency"
        assert row.flops > 0 and row.gflops_per_s > 0 and 0 < row.peak_fraction
    assert all(r.speedup == pytest.approx(1.0) for r in rows if r.runtime == "pytorch" and r.batch == 1)
    assert rows[1].flops == 4 * rows[0].flops  # batch 4 does four images' work
    assert [(r.runtime, r.batch) for r in rows] == [(n, b) for n in names for b in (1, 4)]
    for row in rows:
        assert row.status == "ok", row.error
        assert row.size_mb > 0 and row.p50_ms > 0 and row.iterations >= 5 and row.fidelity_ok
        assert row.min_ms <= row.p50_ms <= row.p90_ms <= row.p99_ms <= row.max_ms
        assert row.throughput == pytest.approx(row.batch * 1000 / row.mean_ms)
        assert row.peak_rss_mb > 0
        # Fresh export processes give their peak; an artifact restored from the cache keeps its exporter's figure,
        # which a forked export (an earlier test's) left empty.
        assert row.export_peak_rss_mb > 0 or "artifact from cache" in row.details
        assert row.foreign_load is not None
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
    assert all(len(s["rounds"]) == 2 and sum(s["rounds"]) == len(s["latency_ms"]) for s in samples)
    env = json.loads((run_dir / "environment.json").read_text())
    assert env["packages"]["torch"] and env["cpu"] and env["threads"] == 1 and env["harness_overhead_us"] > 0
    assert env["gemm_peak_gflops"]["fp32"] > 0 and env["repeats"] == 2
    assert env["aa_floor"]["floor"] == DEFAULT_FLOOR.floor and env["aa_floor"]["comparisons"] == 0  # none stored
    table = (run_dir / "table.md").read_text()
    assert "| ONNX Runtime | fp32 | 4 | ok" in table  # may carry a (noisy) flag on a busy machine
    assert "- A/A floor (" in table and "±3.0% (default, not measured on this machine" in table
    assert "sign-test interval over the cycles (50.0% over 2, below 95%: more REPEATS give 95%)" in table
    for row in rows:  # the default floor widens every speed-up: identical rows read within noise
        if row.runtime == "pytorch" and row.batch == 1:
            assert row.speedup_ci_low <= 1 / (1 + DEFAULT_FLOOR.floor) + 1e-9 < 1 + DEFAULT_FLOOR.floor - 1e-9 \
                <= row.speedup_ci_high
    assert not (run_dir / "artifacts").exists()  # exported models are removed unless asked to keep them
    assert read_rows(run_dir) == rows


@pytest.mark.slow
def test_misbehaving_backends_become_rows_that_say_what_happened(tmp_path, fast_timing, misbehaving):
    """One run through real child processes: every failure is a row with its reason, and the run goes on."""
    names = ("pytorch", "segfaulting", "hanging", "raising", "oomkilled", "memoryhungry", "perturbed",
             "noisyneighbour", "coreml")
    timing = TimingConfig(warmup_iters=2, warmup_s=0.0, min_iters=5, min_s=0.5, max_s=10.0)
    summary = run(BenchConfig(model=TINY_MODEL, runtimes=names, threads=1, out=tmp_path / "run", timing=timing,
                              repeats=1, noise_guard=NoiseGuard(retries=1, quiet_wait_s=0.1),
                              timeout_s=25, export_jobs=2))  # two at once: the rest export while one hangs
    by_name = {r.runtime: r for r in summary.rows}
    assert list(by_name) == list(names)
    segfaulting = by_name["segfaulting"]
    assert segfaulting.status == "error"
    assert segfaulting.error == "process killed by SIGSEGV while first inference"
    assert segfaulting.size_mb > 0  # the export before the crash was still measured
    assert by_name["hanging"].status == "error"
    assert by_name["hanging"].error == "timed out after 25 s while loading"
    # A Python exception in the adapter: an error row with the exception, never a success.
    raising = by_name["raising"]
    assert raising.status == "error" and raising.p50_ms is None
    assert raising.error == "RuntimeError: backend refused the model (while loading)"
    oom = by_name["oomkilled"]
    assert oom.status == "error" and oom.error == "process killed by SIGKILL (out of memory?) while first inference"
    assert oom.peak_rss_mb > 0  # what it had reached when it was killed
    if platform.system() != "Darwin":  # converted and sized, then not run, with the reason
        coreml = by_name["coreml"]
        assert coreml.status == "unavailable" and coreml.size_mb > 0 and coreml.p50_ms is None
        assert coreml.error == "CoreML inference runs only on macOS"
        assert coreml.peak_rss_mb is None  # nothing was run: no memory figure
    # Peak memory is each measuring process's own: the ballast shows up, and never more than it. (Not all of
    # it: measured here, plain PyTorch peaks ~130 MB above its steady state, a transient the ballast absorbs.)
    extra = by_name["memoryhungry"].peak_rss_mb - by_name["pytorch"].peak_rss_mb
    assert misbehaving.BALLAST_MB / 2 < extra < misbehaving.BALLAST_MB + 60, extra
    # Outputs 1% off pass the int8 tolerance but not fp32's: the row is judged at its own precision.
    perturbed = by_name["perturbed"]
    assert perturbed.status == "ok" and perturbed.fidelity_ok is False
    assert perturbed.cosine == pytest.approx(1.0) and perturbed.max_abs_diff > 0
    assert by_name["pytorch"].fidelity_ok is True
    # A neighbour spinning a core during timing reaches the row, the table and the CSV.
    noisy = by_name["noisyneighbour"]
    assert noisy.status == "ok" and noisy.noisy is True and noisy.foreign_load > 0.1
    assert noisy.rounds_repeated == 1  # measured again once (the guard's limit here), then kept and flagged
    assert "measuring it again" in (summary.run_dir / "run.log").read_text()
    table = (summary.run_dir / "table.md").read_text()
    assert "| Noisy neighbour | fp32 | 1 | ok (noisy) |" in table
    assert re.search(r"\| Perturbed \| fp32 \| 1 \| ok \(fidelity!(, noisy)?\) \|", table)  # a busy neighbour may add
    with open(summary.run_dir / "rows.csv") as f:
        csv_rows = {r["runtime"]: r for r in csv.DictReader(f)}
    assert csv_rows["noisyneighbour"]["noisy"] == "True" and csv_rows["perturbed"]["fidelity_ok"] == "False"
    assert len(read_rows(summary.run_dir)) == len(names)
    assert "[1]" in table  # reasons are footnoted


def test_a_named_runtime_with_a_missing_package_is_bad_input(tmp_path, fast_timing, misbehaving):
    from edgebench.bench.errors import UsageError

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


@pytest.mark.slow
def test_runtimes_unset_default_folder_kept_artifacts_and_an_unavailable_row(tmp_path, fast_timing, monkeypatch):
    """RUNTIMES unset: a runtime whose package is missing is an `unavailable` row with the pip line, not an error.

    Also the default run folder (results/<time>-<model>-<targets>) and --keep-artifacts.
    """
    from edgebench.bench import runner

    import misbehaving_runtimes as module

    edgebench.runtimes.runtime_names()
    monkeypatch.setattr(edgebench.runtimes, "_REGISTRY", {"pytorch": edgebench.runtimes.get_runtime("pytorch"),
                                                          "missingpkg": module.MissingPackageRuntime})
    monkeypatch.setattr(runner, "RESULTS_DIR", tmp_path / "results")
    summary = run(BenchConfig(model=TINY_MODEL, threads=1, timing=fast_timing, keep_artifacts=True, repeats=1))
    assert [(r.runtime, r.status) for r in summary.rows] == [("pytorch", "ok"), ("missingpkg", "unavailable")]
    assert summary.rows[1].error == "needs edgebench-no-such-package (pip install edgebench-no-such-package)"
    assert summary.run_dir.parent == tmp_path / "results"
    assert re.fullmatch(r"\d{8}-\d{6}-tiny_cnn_build-cpu", summary.run_dir.name), summary.run_dir.name
    artifacts = summary.run_dir / "artifacts" / "tiny_cnn_build" / "none" / "cpu-pytorch-fp32-b1"
    assert artifacts.is_dir() and any(artifacts.iterdir())  # --keep-artifacts kept the exported model
    assert (summary.run_dir / "reference" / "tiny_cnn_build" / "input_b1.npy").exists()


@pytest.mark.parametrize("model,weights", [("resnet19", None), (TINY_MODEL, "no-such-weights.pt")])
def test_bad_model_or_weights_write_no_folder(tmp_path, fast_timing, monkeypatch, model, weights):
    from edgebench.bench import runner
    from edgebench.bench.errors import UsageError

    monkeypatch.setattr(runner, "RESULTS_DIR", tmp_path / "results")
    for out in (None, tmp_path / "named"):
        with pytest.raises(UsageError):
            run(BenchConfig(model=model, weights=weights, runtimes=("pytorch",), out=out, timing=fast_timing,
                            repeats=1))
    assert not (tmp_path / "results").exists() and not (tmp_path / "named").exists()


BLOCK_TORCH = """
import sys

if sys.orig_argv[-3:-1] == ["edgebench.bench.worker", "measure"]:
    class _NoTorch:
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch."):
                raise ImportError("the measuring process imported torch")
            return None

    sys.meta_path.insert(0, _NoTorch())
"""


@pytest.mark.slow
@pytest.mark.parametrize("name", ["onnxruntime", "openvino", "tflite"])
def test_the_measuring_process_imports_only_its_runtime(tmp_path, fast_timing, monkeypatch, name):
    """Its peak memory is what a deployment needs: importing torch there (~500 MB) must fail the row."""
    if edgebench.runtimes.get_runtime(name).export_unavailable("cpu", "fp32"):
        pytest.skip(edgebench.runtimes.get_runtime(name).export_unavailable("cpu", "fp32"))
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BLOCK_TORCH)
    monkeypatch.setenv("PYTHONPATH", str(site))
    summary = run(BenchConfig(model=TINY_MODEL, runtimes=(name, "pytorch"), threads=1, out=tmp_path / "run", repeats=1,
                              timing=fast_timing))
    measured, blocked = summary.rows
    assert measured.status == "ok", measured.error
    # The block works: PyTorch eager's own measuring process cannot load.
    assert blocked.status == "error" and "the measuring process imported torch" in blocked.error


def test_exports_of_a_kind_planned_twice_fork_from_a_warm_process_and_leave_their_peak_empty(tmp_path, fast_timing):
    """Each runtime exports twice (uncompressed, pruned): both fork from its warm process, and a forked child's
    peak RSS leaves out the libraries it inherited, so no figure rather than a wrong one. The compression,
    planned once, and a plain run's exports start fresh and keep their peak."""
    from edgebench.bench.runner import plan_run, planned_warm_uses

    config = BenchConfig(model=TINY_MODEL, runtimes=("onnxruntime",), threads=1, out=tmp_path / "run", repeats=1,
                         timing=fast_timing, cache=False, compress=("prune-unstructured:0.5",))
    summary = run(config)
    assert [r.status for r in summary.rows] == ["ok"] * 2
    assert all(r.export_peak_rss_mb is None and r.peak_rss_mb > 0 for r in summary.rows)
    log = (summary.run_dir / "run.log").read_text()
    assert log.count("(forked from a warm process)") == 2
    onnx = ("export", "edgebench.runtimes.onnxrt:OnnxRuntime", "fp32")
    assert planned_warm_uses(plan_run(config)[2]) == {onnx: 2, ("compress",): 1}
    plain = BenchConfig(model=TINY_MODEL, runtimes=("onnxruntime", "tflite"), out=tmp_path / "plain")
    assert set(planned_warm_uses(plan_run(plain)[2]).values()) == {1}  # a plain run: every export fresh


@pytest.mark.slow
def test_a_compression_study_measures_every_variant_with_its_controls_in_each_runtime(tmp_path, fast_timing):
    """digits_cnn in two runtimes (NNCF trains both QAT rows: LiteRT's PT2E QAT, 22 s here, is in
    test_accuracy.py): pruning with its fine-tuning control, and QAT with post-training int8 of the
    baseline and of the control, every row scored on the digits test split, one row at a time after timing;
    two rows export at once, except exports that train (QAT), which go one at a time."""
    import datetime as dt

    config = BenchConfig(model="digits_cnn", runtimes=("onnxruntime", "openvino"), threads=1, timing=fast_timing,
                         repeats=1, compress=("prune-unstructured:0.75", "qat"), finetune_epochs=1,
                         out=tmp_path / "run", export_jobs=2)
    summary = run(config)
    log = (summary.run_dir / "run.log").read_text()
    scored = re.findall(r"stages: measuring .* accuracy ([\d.]+) s, close", log)
    assert len(scored) == log.count("stages: measuring") == 12  # every row scored apart, before closing
    exports = [(dt.datetime.strptime(m[0], "%Y-%m-%d %H:%M:%S,%f"), float(m[1]))
               for m in re.findall(r"^(\S+ \S+) INFO edgebench: \S+(?: \S+)? int8 b1 on cpu stages: export process "
                                   r"([\d.]+) s", log, re.M)]
    (first_end, first_s), (second_end, second_s) = exports[-2:]  # the QAT variant's, in either order
    assert second_end - dt.timedelta(seconds=second_s) >= first_end - dt.timedelta(seconds=0.05) or \
        first_end - dt.timedelta(seconds=first_s) >= second_end - dt.timedelta(seconds=0.05)
    got = [(r.compression, r.runtime, r.precision, r.status) for r in summary.rows]
    assert got == [(c, rt, p, "ok") for c, precisions in (
        ("none", ("fp32", "int8")), ("finetune:1", ("fp32", "int8")), ("prune-unstructured:0.75", ("fp32",)),
        ("qat", ("int8",))) for rt in ("onnxruntime", "openvino") for p in precisions]

    rows = {(r.compression, r.runtime, r.precision): r for r in summary.rows}
    base, pruned = rows["none", "onnxruntime", "fp32"], rows["prune-unstructured:0.75", "onnxruntime", "fp32"]
    assert all(r.dataset == "digits (360 test images)" and r.accuracy_ci_low < r.accuracy < r.accuracy_ci_high
               for r in summary.rows)
    assert base.finetune_epochs == 0 and pruned.finetune_epochs == 1
    assert rows["qat", "openvino", "int8"].finetune_epochs
    assert pruned.sparsity > 0.6 and base.sparsity == 0 and pruned.params == base.params
    assert pruned.zip_mb < 0.75 * base.zip_mb and abs(pruned.size_mb - base.size_mb) < 0.05 * base.size_mb
    for rt in ("onnxruntime", "openvino"):  # post-training and trained int8 alike store integer weights
        assert all(rows[c, rt, "int8"].integer_weights > 0.9 and rows[c, rt, "int8"].contents_ok
                   for c in ("none", "qat"))
    table = (summary.run_dir / "table.md").read_text()
    assert "| Format | Compression | Precision | Batch | Status | Size (MB) | Zip (MB) |" in table
    assert "Accuracy % (95% CI)" in table and "- Compression: none, prune-unstructured:0.75, qat;" in table


@pytest.mark.slow
def test_a_method_that_fails_on_a_model_is_an_error_row_and_the_rest_is_measured(tmp_path, fast_timing):
    """A user's model scored on DATA=digits: clustering cannot trace it (an error row per runtime, saying why),
    while the baseline and the fine-tuning control are measured."""
    config = BenchConfig(model=f"{ASSETS / 'untraceable.py'}:build", data="digits", runtimes=("onnxruntime",),
                         repeats=1,
                         threads=1, timing=fast_timing, compress=("cluster:4",), finetune_epochs=1,
                         out=tmp_path / "run")
    summary = run(config)
    assert [(r.compression, r.status) for r in summary.rows] == [
        ("none", "ok"), ("finetune:1", "ok"), ("cluster:4", "error")]
    assert summary.rows[0].weights == "as built by untraceable:build" and summary.rows[0].accuracy is not None
    error = summary.rows[2].error
    assert error.startswith("compress: TraceError: symbolically traced variables cannot be used as inputs to "
                            "control flow") and error.endswith("(while cluster:4)"), error


def test_a_student_that_cannot_replace_the_teacher_is_refused_before_anything_is_written(tmp_path):
    from edgebench.bench.errors import UsageError

    config = BenchConfig(model="digits_cnn", runtimes=("onnxruntime",), compress=(f"distill:{TINY_MODEL}",), repeats=1,
                         out=tmp_path / "run")
    with pytest.raises(UsageError, match=r"student .*tiny_cnn.py:build takes input \(3, 32, 32\), but the teacher "
                                         r"takes \(1, 8, 8\): choose a student of the same family"):
        run(config)
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_a_warm_rerun_exports_nothing_and_a_changed_key_exports_again(tmp_path, fast_timing, monkeypatch):
    import edgebench.bench.cache

    monkeypatch.setattr(edgebench.bench.cache, "CACHE_DIR", tmp_path / "cache")  # not the exports of earlier tests
    def once(name: str, **changes):
        config = BenchConfig(model=TINY_MODEL, runtimes=("onnxruntime",), threads=1, timing=fast_timing, repeats=1,
                             out=tmp_path / name, keep_artifacts=True, **changes)
        (row,) = run(config).rows
        return row, next((tmp_path / name / "jobs").glob("*/none/cpu-onnxruntime-fp32-b1"))

    cold, cold_job = once("cold")
    from edgebench.bench.readying import LoadTimes

    remembered = LoadTimes(tmp_path / "cache").seconds  # beside the cache: the next run's readying order
    assert remembered == {LoadTimes.key(cold.model, "none", "onnxruntime", "fp32", "cpu", 1, 1): cold.load_s}
    import edgebench.bench.runner

    with monkeypatch.context() as warm_only:  # a restored artifact is copied, not deflated again (seconds at 47 MB)
        warm_only.setattr(edgebench.bench.runner, "zipped_bytes",
                          lambda folder: pytest.fail("the warm run zipped again"))
        warm, warm_job = once("warm")
    other, other_job = once("other", seed=1)  # other weights: another key
    assert (cold_job / "export.log").exists() and not (warm_job / "export.log").exists()
    assert "artifact from cache" in warm.details and "artifact from cache" not in cold.details
    assert warm.export_s == cold.export_s and warm.size_mb == cold.size_mb and warm.status == "ok"
    assert warm.zip_mb == cold.zip_mb > 0
    assert (other_job / "export.log").exists() and "artifact from cache" not in other.details
    uncached, uncached_job = once("uncached", cache=False)
    assert (uncached_job / "export.log").exists()


@pytest.mark.slow
def test_throughput_mode_keeps_requests_in_flight_and_says_so(tmp_path, fast_timing):
    config = BenchConfig(model=TINY_MODEL, runtimes=("pytorch", "onnxruntime", "openvino"), threads=2,
                         timing=fast_timing, repeats=1, out=tmp_path / "run", mode="throughput")
    rows = {r.runtime: r for r in run(config).rows}
    assert all(r.status == "ok" and r.mode == "throughput" and r.throughput > 0 for r in rows.values())
    assert "hint THROUGHPUT" in rows["openvino"].details
    assert rows["onnxruntime"].speedup == pytest.approx(rows["onnxruntime"].throughput / rows["pytorch"].throughput)
    assert "throughput mode" in (tmp_path / "run" / "table.md").read_text()


@pytest.mark.slow
def test_a_variant_is_timed_beside_its_uncompressed_baselines_and_its_ratios_are_paired(tmp_path, fast_timing):
    """A later variant's rows are compared with baselines timed in the same cycles: the uncompressed fp32 row
    of each runtime, kept loaded in its own process, goes just before the variant's row in every round; each
    row gets a speed-up against its own runtime's baseline and against PyTorch's, with intervals; and the
    baselines' processes end with the run."""
    from live_processes import alive, processes_mentioning

    config = BenchConfig(model=TINY_MODEL, runtimes=("pytorch", "onnxruntime"), threads=1, timing=fast_timing,
                         repeats=2, compress=("prune-unstructured:0.5",), finetune_epochs=0, out=tmp_path / "run",
                         noise_guard=NoiseGuard(retries=0), export_jobs=2)  # no retry of
                         # rounds of a few ms (it would upset the order); exports two at a time, rows in order
    summary = run(config)
    rows = {(r.compression, r.runtime): r for r in summary.rows}
    assert all(r.status == "ok" for r in rows.values()), [r.error for r in rows.values()]
    for row in rows.values():
        assert row.compression_speedup_ci_low <= row.compression_speedup <= row.compression_speedup_ci_high
        assert row.speedup_ci_low <= row.speedup <= row.speedup_ci_high
    assert rows["none", "pytorch"].speedup == rows["none", "pytorch"].compression_speedup == 1.0  # itself, paired
    assert rows["none", "onnxruntime"].compression_speedup == 1.0
    log = (summary.run_dir / "run.log").read_text()
    timed = re.findall(r"edgebench: (.+?) round (\d):", log)
    variant = [label for label, _ in timed[4:]]  # after the uncompressed variant's 2 rounds x 2 rows
    assert variant == ["PyTorch fp32 b1 on cpu (uncompressed baseline)", "PyTorch fp32 b1 on cpu",
                       "ONNX Runtime fp32 b1 on cpu (uncompressed baseline)", "ONNX Runtime fp32 b1 on cpu"] * 2
    assert not [pid for pid in processes_mentioning(str(summary.run_dir)) if alive(pid)]
    table = (summary.run_dir / "table.md").read_text()
    assert "Speed-up vs its fp32 uncompressed (95% CI)" in table


def test_each_row_is_paired_with_pytorch_eager_and_its_own_runtimes_fp32(tmp_path):
    """Compiled PyTorch int8 is divided by compiled fp32 (compilation on both sides of its compression
    speed-up) and, like every row, by eager fp32 for the framework speed-up."""
    from types import SimpleNamespace

    def job(runtime: str, precision: str) -> SimpleNamespace:
        return SimpleNamespace(runtime=SimpleNamespace(name=runtime), precision=precision, target="cpu", batch=1,
                               label=f"{runtime} {precision}")

    jobs = [job("pytorch", "fp32"), job("pytorch-compiled", "fp32"), job("pytorch-compiled", "int8"),
            job("onnxruntime", "fp32"), job("onnxruntime", "int8")]
    sessions = {i: (None, {}) for i in range(len(jobs))}
    _, baseline_of, _, order = Runner.pairing(None, jobs, sessions, "m", True, tmp_path)
    assert baseline_of == {0: (0, 0), 1: (0, 1), 2: (0, 1), 3: (0, 3), 4: (0, 3)}
    assert order[:2] == [0, 1]  # baselines are timed before the rows compared with them


@pytest.mark.slow
def test_pytorch_int8_runs_compiled_beside_compiled_fp32_and_eager_says_where_it_went(tmp_path, fast_timing):
    config = BenchConfig(model=TINY_MODEL, runtimes=("pytorch", "pytorch-compiled"), precisions=("fp32", "int8"),
                         threads=1, timing=fast_timing, repeats=2, out=tmp_path / "run")
    rows = {(r.runtime, r.precision): r for r in run(config).rows}
    assert rows["pytorch", "int8"].status == "unavailable" and "pytorch-compiled" in rows["pytorch", "int8"].error
    fp32, int8 = rows["pytorch-compiled", "fp32"], rows["pytorch-compiled", "int8"]
    assert fp32.status == int8.status == "ok", (fp32.error, int8.error)
    assert "torch.compile (Inductor, freezing), compiled at load in" in fp32.details and fp32.fidelity_ok
    assert "integer kernels onednn.q" in int8.details and int8.contents_ok is True, int8.details
    assert fp32.compression_speedup == 1.0 and int8.compression_speedup is not None  # its own fp32, paired
    assert fp32.speedup is not None and rows["pytorch", "fp32"].speedup == 1.0


@pytest.mark.parametrize("name,target,expected", [
    ("onnxruntime", "gpu", "has no CUDAExecutionProvider"),
    ("openvino", "gpu", "found no GPU device"),
    ("onnxruntime", "cpu", None),
])
def test_an_artifact_nothing_here_can_run_is_not_exported(name, target, expected):
    """A GPU row of a runtime whose GPU path is absent here is `unavailable` before its export, not after it."""
    from edgebench.bench.runner import Job, unavailable_before_export
    from edgebench.runtimes import get_runtime

    if name == "onnxruntime" and target == "gpu":
        import onnxruntime as ort

        if "CUDAExecutionProvider" in ort.get_available_providers():
            pytest.skip("this ONNX Runtime has its CUDA provider")
    reason = unavailable_before_export(Job(target, get_runtime(name), "fp32", 1))
    assert (reason is None) if expected is None else (expected in reason)


def test_the_harness_numbers_gpus_as_its_children_and_nvml_do(monkeypatch, tmp_path):
    """The cache key's device facts are read in the harness: under CUDA's default order (fastest first) its
    device 0 could be another GPU than the children's (PCI order, set at spawn) on a machine with mixed GPUs."""
    import os

    from edgebench.bench.runlog import RunLog

    def make_runner() -> None:
        log = RunLog()
        Runner(BenchConfig(model=TINY_MODEL, out=tmp_path / "run"), Reporter(Console(file=io.StringIO())), log)
        log.close()

    monkeypatch.delenv("CUDA_DEVICE_ORDER", raising=False)
    make_runner()
    assert os.environ["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
    monkeypatch.setenv("CUDA_DEVICE_ORDER", "FASTEST_FIRST")  # a user's own choice is kept
    make_runner()
    assert os.environ["CUDA_DEVICE_ORDER"] == "FASTEST_FIRST"


@pytest.mark.slow
def test_each_export_runs_alone_while_rows_load_two_at_a_time(tmp_path, fast_timing):
    """LOAD_JOBS=2 (the default) readies rows side by side, but an export never overlaps another process's work:
    each export process's span (from its end and its wall time in run.log) is disjoint from every other's."""
    import datetime as dt

    config = BenchConfig(model=TINY_MODEL, runtimes=("pytorch", "torchscript", "onnxruntime"), threads=1,
                         timing=fast_timing, repeats=1, cache=False, warm_exports=False, out=tmp_path / "run")
    summary = run(config)
    assert config.load_jobs == 2 and [r.status for r in summary.rows] == ["ok"] * 3
    log = (summary.run_dir / "run.log").read_text()
    spans = []
    for stamp, wall in re.findall(r"^(\S+ \S+) INFO edgebench: .* stages: export process ([\d.]+) s", log, re.M):
        end = dt.datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f")
        spans.append((end - dt.timedelta(seconds=float(wall)), end))
    assert len(spans) == 3
    slack = dt.timedelta(seconds=0.05)  # the log's stamp comes just after the process ends
    assert not any(a[0] < b[1] - slack and b[0] < a[1] - slack for i, a in enumerate(spans) for b in spans[i + 1:])
    assert "rows load 2 at a time" in (summary.run_dir / "table.md").read_text()
