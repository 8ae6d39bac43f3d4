"""edgebench.bench.gpu_check's judgement of GPU rows, on rows written by hand (the run itself needs a GPU)."""

import json

import pytest
import torch

from edgebench.bench import gpu_check


def _row(**fields):
    row = {"target": "gpu", "runtime": "pytorch", "precision": "fp32", "batch": 1, "status": "ok", "error": "",
           "p50_ms": 1.0, "h2d_ms": 0.1, "d2h_ms": 0.05, "max_abs_diff": 1e-5, "fidelity_ok": True,
           "energy_mj": None, "energy_source": "no NVML energy counter (pip install nvidia-ml-py)",
           "device_memory_mb": 180.0, "device_memory_source": "torch.cuda.max_memory_allocated"}
    return {**row, **fields}


def _verdicts(tmp_path, rows, cuda_ep=False):
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return [(c.passed, c.detail) for c in gpu_check.check_rows("m", tmp_path, cuda_ep)]


def test_a_measured_gpu_row_passes_only_within_tolerance_with_copies_and_energy_or_its_reason(tmp_path):
    verdicts = _verdicts(tmp_path, [
        _row(),
        _row(fidelity_ok=False, max_abs_diff=3e-2),  # what TF32 under an fp32 label looks like
        _row(h2d_ms=None),
        _row(energy_source=""),
        _row(device_memory_mb=None, device_memory_source=""),
        _row(device_memory_mb=None, device_memory_source="NVML does not list process 7 on the row's GPU"),
        _row(target="cpu", fidelity_ok=False),  # CPU rows are not this script's business
    ])
    assert [passed for passed, _ in verdicts] == [True, False, False, False, False, True]
    assert "outside fp32 tolerance" in verdicts[1][1] and "no h2d/d2h" in verdicts[2][1]
    assert "no energy figure and no reason" in verdicts[3][1]
    assert "no GPU memory figure and no reason" in verdicts[4][1] and "GPU memory 180 MB" in verdicts[0][1]


def test_onnxruntime_gpu_rows_must_be_honestly_unavailable_without_its_cuda_provider(tmp_path):
    unavailable = _row(runtime="onnxruntime", status="unavailable",
                       error="onnxruntime 1.30 has no CUDAExecutionProvider (install onnxruntime-gpu)")
    quietly_on_cpu = _row(runtime="onnxruntime")
    assert [v[0] for v in _verdicts(tmp_path, [unavailable, quietly_on_cpu])] == [True, False]
    assert [v[0] for v in _verdicts(tmp_path, [unavailable, quietly_on_cpu], cuda_ep=True)] == [False, True]
    assert _verdicts(tmp_path, [_row(target="cpu")]) == [(False, "the run has no GPU rows")]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the answer where no CUDA device is visible")
def test_without_a_gpu_the_check_says_so_and_exits_2(tmp_path, capsys):
    assert gpu_check.main([str(tmp_path)]) == 2
    assert "no CUDA device visible to torch" in capsys.readouterr().err
    assert gpu_check.main([]) == 2


def test_a_step_runs_in_its_own_process_and_leaves_its_verdict(tmp_path):
    """What the runner starts for each step: `--step NAME OUT` writes the verdict whatever the step does; here
    the two steps a CPU can take: the environment, and TensorRT, not installed here."""
    import importlib.util
    import subprocess
    import sys

    from edgebench.bench.isolation import PROJECT_ROOT, project_env
    from edgebench.bench.steps import read_verdict

    for name in ("environment", "TensorRT"):
        subprocess.run([sys.executable, "-m", "edgebench.bench.gpu_check",
                        "--step", name, str(tmp_path)], cwd=PROJECT_ROOT,
                       env=project_env(), check=True, timeout=120)
    environment = read_verdict(tmp_path, "environment")
    assert environment.status == "proven" and f"torch {torch.__version__}" in environment.body
    tensorrt = read_verdict(tmp_path, "TensorRT")
    if importlib.util.find_spec("tensorrt") is None:
        assert tensorrt.status == "not available" and "tensorrt-cu13>=10.13,<11" in tensorrt.detail


def test_a_step_that_raises_is_failed_with_the_reason(tmp_path, monkeypatch):
    from edgebench.bench.steps import read_verdict

    def broken(out):
        raise RuntimeError("CUDA error: no kernel image is available\nmore")

    monkeypatch.setitem(gpu_check.STEPS, "TF32 control", broken)
    assert gpu_check.run_step("TF32 control", tmp_path) == 0
    verdict = read_verdict(tmp_path, "TF32 control")
    assert (verdict.status, verdict.detail) == ("failed", "RuntimeError: CUDA error: no kernel image is available")


@pytest.mark.parametrize("tf32_diff,tf32_within,ieee_diff,ieee_within,held", [
    (2e-2, False, 1e-5, True, True),
    (2e-2, True, 1e-5, True, False),  # TF32 passed the fp32 tolerance: the check cannot see TF32 under fp32
    (2e-2, False, 4e-3, True, False),  # only 5x IEEE fp32's own error: too close to tell apart reliably
    (2e-2, False, 1e-5, False, False),  # IEEE fp32 itself outside: the tolerance is wrong, not TF32 caught
    (2e-2, False, 0.0, True, True),
])
def test_the_tf32_control_holds_only_when_tf32_is_clearly_beyond_ieee_fp32(tf32_diff, tf32_within, ieee_diff,
                                                                            ieee_within, held):
    check = gpu_check.tf32_verdict(tf32_diff, tf32_within, ieee_diff, ieee_within)
    assert check.passed is held and "needs >= 10x" in check.detail


def test_without_pytest_the_gpu_tests_step_is_not_available_rather_than_failed(tmp_path, monkeypatch):
    """The lent machine's own Python may lack pytest: the step then says so and the next steps still count."""
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(gpu_check.importlib.util, "find_spec", lambda name, *a: None if name == "pytest" else
                        real(name, *a))
    verdict = gpu_check.step_gpu_tests(tmp_path)
    assert (verdict.status, verdict.detail) == ("not available", "pytest is not installed: the tests were not run")


def test_a_gpu_rows_profile_passes_only_with_its_convolutions_in_its_precision_and_no_tf32_under_fp32(tmp_path):
    """The profile step's judgement, on a profile.csv written by hand (the real one needs a GPU)."""
    from edgebench.bench.measure.profile import OUTSIDE, PROFILE_FILE, ProfileLine, write_profile
    from edgebench.bench.results import row_key

    def row(precision, model="m", **fields):
        return _row(**{"model": model, "compression": "none", "precision": precision, "profile_ms": 2.0, **fields})

    def lines(precision, *kernels, model="m"):
        key = row_key(model, "none", "pytorch", precision, "gpu", 1)
        return [ProfileLine("r", key, "pytorch", precision, f"{kind}: {kernel}", kind, "", category, executed,
                            kernel, 0.0, ms, ms / 2.0, 1.0) for kind, category, executed, kernel, ms in kernels] + \
            [ProfileLine("r", key, "pytorch", precision, OUTSIDE, OUTSIDE, "", "other", "", "", 0.0, 0.1, 0.05, 1.0)]

    conv = ("aten::cudnn_convolution", "convolution")
    relu = ("aten::relu_", "activation", "fp32", "vectorized_elementwise_kernel<float>", 0.1)
    write_profile(tmp_path / PROFILE_FILE, [
        *lines("fp32", (*conv, "fp32", "sm90_xmma_fprop_implicit_gemm_f32f32_f32f32_f32", 1.0), relu),
        *lines("tf32", (*conv, "tf32", "sm90_xmma_fprop_implicit_gemm_tf32f32_tf32f32_f32", 1.0), relu),
        *lines("fp32", (*conv, "fp32", "sm90_xmma_fprop_implicit_gemm_f32f32_f32f32_f32", 1.0),
               (*conv, "tf32", "sm90_xmma_fprop_implicit_gemm_tf32f32_tf32f32_f32", 0.2), model="tf32 inside"),
        *lines("fp16", (*conv, "", "cutlass_80_tensorop_s1688gemm", 1.0), model="unnamed"),
    ])
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in [
        row("fp32"), row("tf32"), row("fp32", model="tf32 inside"), row("fp16", model="unnamed"),
        row("fp32", model="not profiled", profile_ms=None, profile_note="no profiler"),
        row("fp32", model="cpu row", target="cpu"),
        row("fp32", model="onnx", runtime="onnxruntime", profile_ms=None, profile_note="CPU provider only"),
    ]))
    checks, tables = gpu_check.check_profiles("m", tmp_path, ("pytorch", "torchscript"))
    assert [c.passed for c in checks] == [True, True, False, False, False]
    assert "an fp32 row ran tf32 kernels: sm90_xmma_fprop_implicit_gemm_tf32f32" in checks[2].detail
    assert "slowest convolution kernel ran unknown: cutlass_80_tensorop_s1688gemm" in checks[3].detail
    assert "no profiler" in checks[4].detail
    assert "- 50.0% tf32 aten::cudnn_convolution: sm90_xmma_fprop_implicit_gemm_tf32f32" in tables
    assert [c.passed for c in gpu_check.check_profiles("m", tmp_path, ("tensorrt",))[0]] == [False]  # none: failed
