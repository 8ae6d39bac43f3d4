"""The child's side of the contract, run in this process: what it writes for success, failure and noise."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch

import edgebench.bench.measure.cpuload
from edgebench.bench import worker
from edgebench.bench.config import TimingConfig
from edgebench.bench.job import MeasureJob, save_job
from edgebench.bench.measure.cpuload import CpuSnapshot, ForeignLoadTracker
from edgebench.bench.measure.rounds import RE_WARMUP_ITERS, RoundResult
from edgebench.bench.runner import save_reference
from edgebench.models import load_model
from edgebench.runtimes import RuntimeOptions, adapter_ref, get_runtime

from tests_paths import MANY_HEADS_MODEL, TINY_MODEL


def make_job(tmp_path, source: str = TINY_MODEL, runtime: str = "pytorch",
             target: str = "cpu") -> tuple[MeasureJob, Path]:
    """A job as the runner writes it, for a real adapter."""
    model = load_model(source)
    reference = save_reference(model, (2,), tmp_path / "reference", seed=0)
    spec = MeasureJob(
        adapter=adapter_ref(get_runtime(runtime)),
        options=RuntimeOptions(target=target, precision="fp32", threads=1, model=model.source, seed=0),
        model_file=str(reference.model_file), input=str(reference.input(2)),
        reference=str(reference.outputs(2)), artifact_dir=str(tmp_path / "artifacts" / "nested" / "row"),
        timing=TimingConfig(warmup_iters=1, warmup_s=0.0, min_iters=4, min_s=0.0, max_s=10.0),
    )
    return spec, tmp_path / "job"


@pytest.fixture(autouse=True)
def keep_torch_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)  # the export step sets the job's thread count in this process


@pytest.fixture
def job(tmp_path):
    return make_job(tmp_path)


@pytest.fixture
def phases(monkeypatch):
    """Every phase the worker announces, in order."""
    seen = []
    real = worker._phase

    def record(job_dir, text):
        seen.append(text)
        real(job_dir, text)

    monkeypatch.setattr(worker, "_phase", record)
    return seen


def run_worker(mode: str, spec: MeasureJob, job_dir) -> tuple[int, dict]:
    job_dir.mkdir(exist_ok=True)
    path = job_dir / f"{mode}.json"
    save_job(spec, path)
    code = worker.main([mode, str(path)])
    return code, json.loads((job_dir / worker.RESULT_FILE).read_text())


def export_then_measure(spec: MeasureJob, job_dir) -> tuple[int, dict]:
    t0 = time.perf_counter()
    code, exported = run_worker("export", spec, job_dir)
    assert code == 0 and 0 < exported["export_s"] <= time.perf_counter() - t0, exported
    assert Path(exported["artifact"]).parent == Path(spec.artifact_dir) and Path(exported["artifact"]).exists()
    return run_worker("measure", replace(spec, artifact=exported["artifact"]), job_dir)


def test_a_measurement_reports_samples_fidelity_and_load(job, monkeypatch, phases):
    spec, job_dir = job
    readings = iter([CpuSnapshot(total=0, idle=0, steal=0, own=0), CpuSnapshot(total=100, idle=50, steal=2, own=20)])
    monkeypatch.setattr(edgebench.bench.measure.cpuload, "ForeignLoadTracker",
                        lambda: ForeignLoadTracker(read=lambda: next(readings)))
    t0 = time.perf_counter()
    code, result = export_then_measure(spec, job_dir)
    elapsed = time.perf_counter() - t0
    assert code == 0, result
    assert phases == ["loading model", "exporting", "reading the artifact back", "loading", "first inference", "timing"]
    assert 0 < result["load_s"] < elapsed and 0 < result["first_ms"] < elapsed * 1e3
    (timed,) = [RoundResult(**r) for r in result["rounds"]]  # one round unless the job asks for more
    assert all(0 < s < elapsed * 1e3 for s in timed.samples_ms)
    assert len(timed.samples_ms) == 4 and timed.warmup_iters == 1 and timed.capped is False
    assert result["fidelity_ok"] is True and result["max_abs_diff"] == 0.0 and result["cosine"] == pytest.approx(1)
    assert timed.foreign_load == pytest.approx(0.3) and timed.steal == pytest.approx(0.02)
    assert timed.noisy is True
    assert result["load_s"] > 0 and result["first_ms"] > 0 and result["device"] == "cpu"
    assert result["h2d_ms"] is None and result["d2h_ms"] is None  # no device copies on a CPU
    assert (job_dir / worker.STATUS_FILE).read_text() == "timing"


def test_outputs_are_judged_at_the_rows_precision(job, monkeypatch):
    import misbehaving_runtimes

    spec, job_dir = job
    spec.adapter = adapter_ref(misbehaving_runtimes.PerturbedRuntime)
    code, result = export_then_measure(spec, job_dir)
    assert code == 0 and result["fidelity_ok"] is False and result["cosine"] == pytest.approx(1.0)


def test_an_adapter_exception_is_an_error_not_a_success(job, capsys):
    import misbehaving_runtimes

    spec, job_dir = job
    spec.adapter = adapter_ref(misbehaving_runtimes.RaisingRuntime)
    code, result = export_then_measure(spec, job_dir)
    assert code == 1
    assert result == {"error": "RuntimeError: backend refused the model"}
    assert (job_dir / worker.STATUS_FILE).read_text() == "loading"
    assert "Traceback" in capsys.readouterr().err  # the traceback goes to the child's log


def test_a_runtime_that_cannot_run_here_says_why(job):
    coreml = get_runtime("coreml")
    reason = coreml.run_unavailable("cpu")
    if reason is None:
        pytest.skip("CoreML runs here")
    spec, job_dir = job
    spec.adapter = adapter_ref(coreml)
    code, result = run_worker("measure", replace(spec, artifact="unused"), job_dir)
    assert code == 0 and result == {"unavailable": reason}


def test_outputs_keep_their_order_beyond_ten(tmp_path):
    """Twelve outputs of sizes 1..12: reference files out_0..out_11 must not sort as text (out_10 < out_2)."""
    spec, job_dir = make_job(tmp_path, MANY_HEADS_MODEL)
    code, result = export_then_measure(spec, job_dir)
    assert code == 0 and result["fidelity_ok"] is True and result["max_abs_diff"] == 0.0, result


def test_the_onnx_export_gets_the_example_input(tmp_path):
    spec, job_dir = make_job(tmp_path, runtime="onnxruntime")
    code, result = export_then_measure(spec, job_dir)
    assert code == 0 and result["fidelity_ok"] is True, result


def test_availability_is_asked_for_the_jobs_target(tmp_path):
    tflite = get_runtime("tflite")
    reason = tflite.run_unavailable("npu")
    if reason is None:
        pytest.skip("a TFLite NPU delegate is configured here")
    spec, job_dir = make_job(tmp_path, runtime="tflite", target="npu")
    code, result = run_worker("measure", replace(spec, artifact="unused"), job_dir)
    assert code == 0 and result == {"unavailable": reason}


def test_an_accelerator_target_reports_transfers_apart_from_compute_only_where_they_are_apart(tmp_path,
                                                                                             monkeypatch):
    """On a non-CPU target, copies are timed apart when the adapter's prepare() and fetch() do them (a stand-in
    adapter says so on this CPU: the worker's plumbing is checked, not an accelerator's figures); where the
    runtime copies inside run(), as PyTorch's adapter does given `npu` here, no copy figure is reported."""
    import edgebench.runtimes

    import misbehaving_runtimes

    edgebench.runtimes.runtime_names()
    monkeypatch.setitem(edgebench.runtimes._REGISTRY, "copying", misbehaving_runtimes.CopyingRuntime)
    spec, job_dir = make_job(tmp_path / "apart", runtime="copying", target="npu")
    code, result = export_then_measure(spec, job_dir)
    assert code == 0, result
    assert result["h2d_ms"] > 0 and result["d2h_ms"] > 0
    spec, job_dir = make_job(tmp_path / "inside", target="npu")
    code, result = export_then_measure(spec, job_dir)
    assert code == 0, result
    assert result["h2d_ms"] is None and result["d2h_ms"] is None


def test_transfer_times_are_medians_of_prepare_and_fetch(tmp_path):
    """prepare() is timed as host-to-device and fetch() as device-to-host, never run() itself."""
    import numpy as np

    from edgebench.runtimes import RuntimeOptions

    class Slow(get_runtime("pytorch")):
        delays = {"prepare": 0.004, "fetch": 0.002, "run": 0.2}
        calls = {"prepare": 0, "fetch": 0, "run": 0, "sync": 0}

        def prepare(self, x):
            self.calls["prepare"] += 1
            time.sleep(self.delays["prepare"])
            return x

        def run(self, inputs):
            self.calls["run"] += 1
            time.sleep(self.delays["run"])
            return [inputs]

        def sync(self):
            self.calls["sync"] += 1

        def fetch(self, outputs):
            assert outputs[0] is x  # what run() returned
            self.calls["fetch"] += 1
            time.sleep(self.delays["fetch"])
            return outputs

    adapter = Slow(RuntimeOptions(model=TINY_MODEL))
    x = np.zeros((1, 3), dtype=np.float32)
    times = worker._transfer_times(adapter, x, x, repeats=3)
    assert adapter.calls == {"prepare": 3, "fetch": 3, "run": 3, "sync": 6}
    assert 4 <= times["h2d_ms"] < 150 and 2 <= times["d2h_ms"] < 150  # run()'s 200 ms is in neither


def test_timings_are_in_milliseconds(tmp_path):
    import misbehaving_runtimes

    spec, job_dir = make_job(tmp_path)
    spec.adapter = adapter_ref(misbehaving_runtimes.SteadyRuntime)
    code, result = export_then_measure(spec, job_dir)
    floor = misbehaving_runtimes.SteadyRuntime.SLEEP_MS
    samples = [s for r in result["rounds"] for s in r["samples_ms"]]
    assert code == 0 and result["first_ms"] >= floor and min(samples) >= floor, result


def test_later_rounds_warm_up_briefly_and_each_round_keeps_its_own_samples(job):
    spec, job_dir = job
    spec.rounds = 3
    spec.timing = replace(spec.timing, warmup_iters=6)
    code, result = export_then_measure(spec, job_dir)
    assert code == 0, result
    assert [r["warmup_iters"] for r in result["rounds"]] == [6, RE_WARMUP_ITERS, RE_WARMUP_ITERS]
    assert all(len(r["samples_ms"]) == spec.timing.min_iters for r in result["rounds"])


def test_a_precision_the_runtime_did_not_honour_is_unavailable(job):
    import misbehaving_runtimes

    spec, job_dir = job
    spec.adapter = adapter_ref(misbehaving_runtimes.MislabelledRuntime)
    code, result = export_then_measure(spec, job_dir)
    assert code == 0 and result == {"unavailable": "computes in f32 when asked for fp32 (test)"}


def test_an_artifact_folder_left_by_an_earlier_run_is_reused(job):
    """--out may name an existing folder (without rows.jsonl) that still holds kept artifacts."""
    spec, job_dir = job
    Path(spec.artifact_dir).mkdir(parents=True)
    code, result = export_then_measure(spec, job_dir)
    assert code == 0 and result["details"] == "", result


@pytest.mark.parametrize("name,error", [
    ("SilentRaisingRuntime", "RuntimeError: (no message)"),
    ("VerboseRaisingRuntime", "RuntimeError: " + ("word " * 80)[:400]),  # one line, at most 400 characters
])
def test_an_exception_message_becomes_one_short_line(job, name, error):
    import misbehaving_runtimes

    spec, job_dir = job
    spec.adapter = adapter_ref(getattr(misbehaving_runtimes, name))
    code, result = export_then_measure(spec, job_dir)
    assert code == 1 and result == {"error": error}


def test_the_energy_counter_is_read_in_the_measuring_process_and_named_in_the_result(tmp_path, monkeypatch):
    """A fake RAPL counter that this test advances while the real child measures: the counter is found there
    and each round carries the joules it moved by; without one, the result says why."""
    import threading

    from test_energy import fake_powercap

    from edgebench.bench.measure.energy import POWERCAP_DIR_ENV

    root = fake_powercap(tmp_path / "powercap", {0: 1000}, wrap=10**12)
    counter, done = root / "intel-rapl:0" / "energy_uj", threading.Event()

    def burn() -> None:  # 1 J per 2 ms, rewritten atomically so the child never reads half a number
        uj = 1000
        while not done.wait(0.002):
            uj += 1_000_000
            (root / "next").write_text(str(uj))
            (root / "next").replace(counter)

    monkeypatch.setenv(POWERCAP_DIR_ENV, str(root))
    spec, job_dir = make_job(tmp_path / "rapl")
    # rounds of at least 0.1 s, so each spans many of the counter's steps even when this thread is starved;
    # 4 iterations of the tiny model take ~3 ms and could fall between two steps (CI saw a round with 0 J)
    spec.timing = replace(spec.timing, min_s=0.1)
    burner = threading.Thread(target=burn)
    burner.start()
    try:
        code, result = export_then_measure(spec, job_dir)
    finally:
        done.set()
        burner.join()
    assert code == 0, result
    assert result["energy_source"] == "RAPL package energy (1 package)"
    assert all(r["energy_j"] > 0 for r in result["rounds"]), result["rounds"]
    monkeypatch.setenv(POWERCAP_DIR_ENV, str(tmp_path / "absent"))
    spec, job_dir = make_job(tmp_path / "none")
    code, result = export_then_measure(spec, job_dir)
    assert result["energy_source"].startswith("no readable RAPL") and result["rounds"][0]["energy_j"] is None



def test_a_quantization_aware_export_hands_the_adapter_its_training_plan(job, tmp_path):
    """qat_epochs reach the adapter as a QatPlan before export (mutmut: `adapter.qat = None` made QAT silently
    post-training int8, and only 45-second whole exports noticed); the trained model's outputs become the row's
    reference."""

    import misbehaving_runtimes

    spec, job_dir = job
    task = tmp_path / "task.npz"
    task.write_bytes(b"task")
    spec = replace(spec, adapter=adapter_ref(misbehaving_runtimes.QatRecordingRuntime), qat_epochs=3, task=str(task))
    code, exported = run_worker("export", spec, job_dir)
    assert code == 0, exported
    plan = json.loads((Path(spec.artifact_dir) / "qat_plan.json").read_text())
    assert plan == {"task_file": str(task), "epochs": 3, "seed": 0}
    assert exported["reference"] == str(job_dir / "qat_outputs.npz") and Path(exported["reference"]).exists()
    spec = replace(spec, qat_epochs=0)
    code, exported = run_worker("export", spec, job_dir)
    assert code == 0 and json.loads((Path(spec.artifact_dir) / "qat_plan.json").read_text()) is None
    assert "reference" not in exported
