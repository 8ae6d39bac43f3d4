"""The child's side of the contract, run in this process: what it writes for success, failure and noise."""

from __future__ import annotations

import json
from dataclasses import asdict

import pytest
import torch

import bench.cpuload
from bench import worker
from bench.config import TimingConfig
from bench.cpuload import CpuSnapshot, ForeignLoadTracker
from bench.runner import save_reference
from models import load_model
from runtimes import adapter_ref, get_runtime

from tests_paths import TINY_MODEL


@pytest.fixture
def job(tmp_path):
    """A job as the runner writes it, for the real PyTorch adapter on the tiny model."""
    threads = torch.get_num_threads()
    model = load_model(TINY_MODEL)
    reference = save_reference(model, (2,), tmp_path / "reference", seed=0)
    spec = {
        "adapter": adapter_ref(get_runtime("pytorch")),
        "options": {"target": "cpu", "precision": "fp32", "threads": 1, "model": model.source, "seed": 0},
        "state_dict": str(reference.state_dict), "input": str(reference.input(2)),
        "reference": str(reference.outputs(2)), "artifact_dir": str(tmp_path / "artifact"),
        "timing": asdict(TimingConfig(warmup_iters=1, warmup_s=0.0, min_iters=4, min_s=0.0, max_s=10.0)),
    }
    yield spec, tmp_path / "job"
    torch.set_num_threads(threads)  # the export step sets the job's thread count in this process


def run_worker(mode: str, spec: dict, job_dir) -> tuple[int, dict]:
    job_dir.mkdir(exist_ok=True)
    path = job_dir / f"{mode}.json"
    path.write_text(json.dumps(spec))
    code = worker.main([mode, str(path)])
    return code, json.loads((job_dir / worker.RESULT_FILE).read_text())


def export_then_measure(spec: dict, job_dir) -> tuple[int, dict]:
    code, exported = run_worker("export", spec, job_dir)
    assert code == 0 and exported["export_s"] > 0, exported
    return run_worker("measure", {**spec, "artifact": exported["artifact"]}, job_dir)


def test_a_measurement_reports_samples_fidelity_and_load(job, monkeypatch):
    spec, job_dir = job
    readings = iter([CpuSnapshot(total=0, idle=0, steal=0, own=0), CpuSnapshot(total=100, idle=50, steal=2, own=20)])
    monkeypatch.setattr(bench.cpuload, "ForeignLoadTracker", lambda: ForeignLoadTracker(read=lambda: next(readings)))
    code, result = export_then_measure(spec, job_dir)
    assert code == 0, result
    assert len(result["samples_ms"]) == 4 and result["warmup_iters"] == 1 and result["capped"] is False
    assert result["fidelity_ok"] is True and result["max_abs_diff"] == 0.0 and result["cosine"] == pytest.approx(1)
    assert result["foreign_load"] == pytest.approx(0.3) and result["steal"] == pytest.approx(0.02)
    assert result["noisy"] is True
    assert result["load_s"] > 0 and result["first_ms"] > 0 and result["device"] == "cpu"
    assert result["h2d_ms"] is None and result["d2h_ms"] is None  # no device copies on a CPU
    assert (job_dir / worker.STATUS_FILE).read_text() == "timing"


def test_outputs_are_judged_at_the_rows_precision(job, monkeypatch):
    import misbehaving_runtimes

    spec, job_dir = job
    spec["adapter"] = adapter_ref(misbehaving_runtimes.PerturbedRuntime)
    code, result = export_then_measure(spec, job_dir)
    assert code == 0 and result["fidelity_ok"] is False and result["cosine"] == pytest.approx(1.0)


def test_an_adapter_exception_is_an_error_not_a_success(job, capsys):
    import misbehaving_runtimes

    spec, job_dir = job
    spec["adapter"] = adapter_ref(misbehaving_runtimes.RaisingRuntime)
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
    spec["adapter"] = adapter_ref(coreml)
    code, result = run_worker("measure", {**spec, "artifact": "unused"}, job_dir)
    assert code == 0 and result == {"unavailable": reason}
