"""TFLite, CoreML and TensorRT adapters, and the GPU/NPU paths (these skip with the reason where absent)."""

from __future__ import annotations

import io
import platform

import numpy as np
import pytest
import torch

from models import load_model, make_input
from runtimes import RuntimeOptions, artifact_size_bytes, get_runtime
from runtimes.tflite import dequantize, quantize

from tests_paths import TINY_MODEL


def needs(name: str, target: str = "cpu", precision: str = "fp32"):
    reason = get_runtime(name).export_unavailable(target, precision)
    if reason:
        pytest.skip(f"{name}: {reason}")


@pytest.fixture(scope="module")
def tiny():
    model = load_model(TINY_MODEL)
    x = make_input(model.example, 1, seed=0)
    with torch.inference_mode():
        return model, x, model.module(x).numpy()


def test_tflite_quantization_round_trip():
    detail = {"dtype": np.int8, "quantization": (0.05, -3)}
    x = np.array([-1.0, 0.0, 0.5, 100.0], dtype=np.float32)
    q = quantize(x, detail)
    assert q.dtype == np.int8 and q.tolist() == [-23, -3, 7, 127]  # saturates at int8's max
    np.testing.assert_allclose(dequantize(q, detail)[:3], x[:3], atol=0.025)
    float_detail = {"dtype": np.float32, "quantization": (0.0, 0)}
    assert quantize(x, float_detail) is x or np.array_equal(quantize(x, float_detail), x)
    # Exact values, rounding and saturation both ways, uint8, and float tensors whose dtype is still honoured.
    detail = {"dtype": np.int8, "quantization": (0.5, 3)}
    q = quantize(np.array([0.0, 1.0, -1.26, 100.0, -100.0], dtype=np.float32), detail)
    assert q.tolist() == [3, 5, 0, 127, -128]
    assert dequantize(q, detail).tolist() == [0.0, 1.0, -1.5, 62.0, -65.5]
    unsigned = {"dtype": np.uint8, "quantization": (0.1, 128)}
    assert quantize(np.array([-20.0, 0.0, 1.0]), unsigned).tolist() == [0, 128, 138]
    assert quantize(np.array([1.5], dtype=np.float64), float_detail).dtype == np.float32
    assert dequantize(np.array([1.5], dtype=np.float32), float_detail).tolist() == [1.5]


def test_coreml_converts_fp32_and_fp16_packages_and_measures_their_size(tiny, tmp_path):
    needs("coreml")
    model, x, _ = tiny
    sizes = {}
    for precision in ("fp32", "fp16"):
        folder = tmp_path / precision
        folder.mkdir()
        adapter = get_runtime("coreml")(RuntimeOptions(precision=precision, model=TINY_MODEL))
        path = adapter.export(model.module, x, folder)
        assert path.name == "model.mlpackage" and path.is_dir()
        sizes[precision] = artifact_size_bytes(folder)
    weights = sum(p.numel() for p in model.module.parameters())
    assert sizes["fp32"] >= 4 * weights and sizes["fp16"] < sizes["fp32"]


@pytest.mark.skipif(platform.system() == "Darwin", reason="CoreML runs on macOS")
def test_coreml_says_why_it_cannot_run_off_macos():
    assert get_runtime("coreml").run_unavailable("cpu") == "CoreML inference runs only on macOS"


def test_tensorrt_needs_a_gpu_target():
    reason = get_runtime("tensorrt").export_unavailable("cpu", "fp32")
    assert "TensorRT does not run on cpu" in reason and "gpu" in reason


def test_tensorrt_missing_package_is_named():
    import importlib.util

    if importlib.util.find_spec("tensorrt"):
        pytest.skip("tensorrt is installed")
    assert "pip install tensorrt" in get_runtime("tensorrt").export_unavailable("gpu", "fp32")


def test_onnxruntime_without_cuda_provider_says_so():
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("onnxruntime-gpu is installed")
    assert "has no CUDAExecutionProvider" in get_runtime("onnxruntime").run_unavailable("gpu")
    assert "TensorrtExecutionProvider" in get_runtime("onnxruntime-trt").run_unavailable("gpu")


def test_tflite_npu_without_delegate_says_so(monkeypatch):
    monkeypatch.delenv("EDGEBENCH_TFLITE_DELEGATE", raising=False)
    assert "EDGEBENCH_TFLITE_DELEGATE" in get_runtime("tflite").run_unavailable("npu")


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none visible to torch)")


@cuda
@pytest.mark.parametrize("name,precision", [("pytorch", "fp32"), ("pytorch", "fp16"), ("torchscript", "fp32"),
                                            ("onnxruntime", "fp32"), ("onnxruntime", "fp16"),
                                            ("onnxruntime-trt", "fp32"), ("onnxruntime-trt", "fp16"),
                                            ("tensorrt", "fp32"), ("tensorrt", "fp16")])
def test_gpu_adapters_export_run_and_match(name, precision, tiny, tmp_path):
    needs(name, "gpu", precision)
    cls = get_runtime(name)
    if cls.run_unavailable("gpu"):
        pytest.skip(cls.run_unavailable("gpu"))
    model, x, ref = tiny
    adapter = cls(RuntimeOptions(target="gpu", precision=precision, threads=1, model=TINY_MODEL))
    adapter.load(adapter.export(model.module, x, tmp_path))
    from bench.fidelity import compare

    fid = compare(adapter.predict(x.numpy()), [ref], precision)
    assert fid.within_tolerance, (fid.max_abs_diff, fid.cosine)


@cuda
def test_gpu_run_reports_transfers_apart_from_compute(tmp_path, fast_timing):
    from rich.console import Console

    from bench.config import BenchConfig
    from bench.progress import Reporter
    from bench.runlog import RunLog
    from bench.runner import Runner

    log = RunLog()
    try:
        summary = Runner(BenchConfig(model=TINY_MODEL, runtimes=("pytorch", "onnxruntime"), targets=("cpu", "gpu"),
                                     threads=1, out=tmp_path / "run", timing=fast_timing),
                         Reporter(Console(file=io.StringIO())), log).run()
    finally:
        log.close()
    gpu_rows = [r for r in summary.rows if r.target == "gpu" and r.status == "ok"]
    assert gpu_rows and all(r.h2d_ms is not None and r.d2h_ms is not None for r in gpu_rows)
    assert "GPU ms" in (summary.run_dir / "table.md").read_text()


def test_tensorrt_int8_is_an_explicitly_quantized_onnx_graph_with_symmetric_int8(tmp_path):
    """Built here without TensorRT: the Q/DQ file its int8 engine is made from must be symmetric int8 throughout
    (TensorRT rejects non-zero zero points and uint8 activations)."""
    import onnx
    from onnx import numpy_helper

    model = load_model(TINY_MODEL)
    adapter = get_runtime("tensorrt")(RuntimeOptions(target="gpu", precision="int8"))
    adapter.calibration = np.random.default_rng(0).standard_normal((16, *model.example.shape[1:])).astype(np.float32)
    graph = onnx.load(str(adapter._int8_onnx(model.module, model.example, tmp_path))).graph
    constants = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    quantizers = [n for n in graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert quantizers and "Conv" in {n.op_type for n in graph.node}
    zero_points = [constants[n.input[2]] for n in quantizers if len(n.input) > 2 and n.input[2] in constants]
    assert zero_points and all(z.dtype == np.int8 and not z.any() for z in zero_points)
    assert not (tmp_path / "float.onnx").exists()


def test_tensorrt_runs_int8_on_the_gpu_but_says_why_it_has_no_quantization_aware_row():
    tensorrt = get_runtime("tensorrt")
    assert "int8" in tensorrt.precisions["gpu"]
    assert "symmetric" in tensorrt.qat_unavailable() and get_runtime("onnxruntime").qat_unavailable() is None


def test_an_onnx_runtime_session_that_fell_back_to_another_provider_is_not_timed_under_the_label(tiny, tmp_path):
    """ONNX Runtime falls back to the CPU with only a warning when the requested provider cannot load. Here
    CUDA is absent and the CPU provider stands in for any fallback: the row must become `unavailable`."""
    from runtimes.onnxrt import OnnxRuntime

    class CudaRequested(OnnxRuntime):  # skips run_unavailable, as a provider that is listed but fails would
        provider = "CUDAExecutionProvider"

    model, x, _ = tiny
    adapter = CudaRequested(RuntimeOptions(target="gpu", precision="fp32"))
    artifact = OnnxRuntime(RuntimeOptions()).export(model.module, x, tmp_path)
    adapter.load(artifact)
    assert adapter.label_mismatch().startswith("ONNX Runtime did not use CUDAExecutionProvider (the session fell "
                                               "back to CPUExecutionProvider")
    honest = OnnxRuntime(RuntimeOptions())
    honest.load(artifact)
    assert honest.label_mismatch() is None and honest.details() == "providers CPUExecutionProvider"


def test_fp32_on_a_gpu_is_ieee_fp32_in_the_options_each_runtime_receives(tiny, tmp_path):
    """TF32 is the default of cuDNN under torch, of ONNX Runtime's CUDA provider and of TensorRT's builder:
    each adapter turns it off for fp32 (and leaves it to fp16 rows, which do not use it)."""
    from runtimes.onnxrt import cuda_provider_options

    assert cuda_provider_options("fp32")["use_tf32"] == 0 and cuda_provider_options("fp16")["use_tf32"] == 1
    trt_ep = get_runtime("onnxruntime-trt")(RuntimeOptions(target="gpu", precision="fp32"))
    assert ("CUDAExecutionProvider", {"device_id": 0, "use_tf32": 0}) in trt_ep.provider_list(tmp_path / "m.onnx")
    cuda = get_runtime("onnxruntime")(RuntimeOptions(target="gpu", precision="fp32"))
    assert cuda.provider_list(tmp_path / "m.onnx") == [("CUDAExecutionProvider", {"device_id": 0, "use_tf32": 0})]
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    model, x, _ = tiny
    for name in ("pytorch", "torchscript"):
        adapter = get_runtime(name)(RuntimeOptions(model=TINY_MODEL))
        adapter.load(adapter.export(model.module, x, tmp_path))
        assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32, name
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the answer where no CUDA device is visible")
@pytest.mark.parametrize("name, precision", [("pytorch", "fp32"), ("torchscript", "fp16"), ("onnxruntime", "fp16")])
def test_a_gpu_artifact_that_needs_cuda_to_be_made_is_unavailable_without_it(name, precision):
    """A Mac asked for TARGET=gpu (for CoreML) or a CPU box: exports that trace on CUDA say so instead of
    erroring; an fp32 ONNX file needs no GPU to be made, and its run is refused later with the reason."""
    assert get_runtime(name).export_unavailable("gpu", precision).startswith("no CUDA device visible to torch")
    assert get_runtime("onnxruntime").export_unavailable("gpu", "fp32") is None


@pytest.mark.parametrize("name, target, apart", [
    ("openvino", "npu", False), ("tflite", "npu", False), ("coreml", "npu", False), ("coreml", "gpu", False),
    ("pytorch", "gpu", True), ("torchscript", "gpu", True), ("tensorrt", "gpu", True), ("pytorch", "cpu", False)])
def test_copy_times_are_reported_only_where_prepare_and_fetch_do_the_copies(name, target, apart):
    """On an NPU, OpenVINO, CoreML and TFLite delegates copy inside run(): no h2d/d2h figure rather than a
    near-zero one. The worker asks `copies_apart()` before timing copies."""
    assert get_runtime(name)(RuntimeOptions(target=target)).copies_apart() is apart


def test_two_onnx_runtime_distributions_in_one_environment_are_named_with_a_warning(monkeypatch):
    """`onnxruntime` and `onnxruntime-gpu` share one package folder: `make list` and every run's environment
    warn when both are installed (faked here: this venv has the CPU one only)."""
    from importlib import metadata

    from runtimes.onnxrt import installed_onnxruntimes, onnxruntime_conflict

    assert installed_onnxruntimes() == [f"onnxruntime {metadata.version('onnxruntime')}"]
    assert onnxruntime_conflict() is None
    real = metadata.version
    monkeypatch.setattr(metadata, "version", lambda name: "1.32.0" if name == "onnxruntime-gpu" else real(name))
    warning = onnxruntime_conflict()
    assert warning.startswith("onnxruntime ") and "and onnxruntime-gpu 1.32.0 are both installed" in warning
    from bench.environment import capture

    assert capture()["warnings"] == [warning]
