"""TFLite, CoreML and TensorRT adapters, and the GPU/NPU paths (these skip with the reason where absent)."""

from __future__ import annotations

import io
import os
import platform

import numpy as np
import pytest
import torch

from edgebench.models import load_model, make_input
from edgebench.runtimes import RuntimeOptions, artifact_size_bytes, get_runtime
from edgebench.runtimes.tflite import dequantize, quantize

from cuda_marks import cuda
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


def _mil_ops(package) -> set[str]:
    import coremltools as ct

    program = ct.models.MLModel(str(package), skip_model_load=True)._mil_program
    if program is None:  # a loaded package keeps no MIL program: read the op types from the spec
        spec = ct.utils.load_spec(str(package))
        return {op.type for block in spec.mlProgram.functions["main"].block_specializations.values()
                for op in block.operations}
    return {op.op_type for function in program.functions.values() for op in function.operations}


def test_coreml_int8_is_w8a8_calibrated_on_the_given_images(tiny, tmp_path):
    """int8 weights and quantized activations (quantize/dequantize around the ops), a quarter of fp32's size."""
    needs("coreml", "npu", "int8")
    model, x, _ = tiny
    rng = np.random.default_rng(0)
    adapter = get_runtime("coreml")(RuntimeOptions(target="npu", precision="int8", model=TINY_MODEL))
    adapter.calibration = rng.random((8, *x.shape[1:]), dtype=np.float32)
    package = adapter.export(model.module, x, tmp_path / "int8")
    full = get_runtime("coreml")(RuntimeOptions(precision="fp32", model=TINY_MODEL))
    full.export(model.module, x, tmp_path / "fp32")
    ops = _mil_ops(package)
    assert {"quantize", "dequantize"} <= ops
    assert ops & {"constexpr_affine_dequantize", "constexpr_blockwise_shift_scale"}  # int8 weights
    weights = "model.mlpackage/Data/com.apple.CoreML/weights/weight.bin"  # the tiny model's graph outweighs them
    assert (tmp_path / "int8" / weights).stat().st_size < 0.5 * (tmp_path / "fp32" / weights).stat().st_size
    assert adapter.trained is None  # post-training: the float model stays the fidelity reference
    adapter.calibration = adapter.calibration * 10  # wider activations: other scales in the graph
    adapter.export(model.module, x, tmp_path / "wider")
    graph = "model.mlpackage/Data/com.apple.CoreML/model.mlmodel"
    assert (tmp_path / "wider" / graph).read_bytes() != (tmp_path / "int8" / graph).read_bytes()


class _ShapeProductModel(torch.nn.Module):
    """`int()` of a shape product in forward, as YOLOv8's and YOLO11's heads do: traced, it is an aten::Int of a
    folded one-element constant, which coremltools 9.0 cannot convert under numpy >= 2.4 unaided."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3)

    def forward(self, x):
        y = self.conv(x)
        return y.reshape(y.shape[0], y.shape[1], int(y.shape[2] * y.shape[3]))


def test_coreml_converts_a_model_taking_int_of_a_shape_product(tmp_path):
    needs("coreml")
    x = torch.randn(1, 3, 8, 8)
    adapter = get_runtime("coreml")(RuntimeOptions(precision="fp32"))
    package = adapter.export(_ShapeProductModel().eval(), x, tmp_path)
    assert package.is_dir() and "conv" in _mil_ops(package)
    import coremltools.converters.mil.frontend.torch.ops as ops

    from edgebench.runtimes.coreml import _numpy_scalar_casts

    original = ops._cast
    with _numpy_scalar_casts():
        assert ops._cast is not original
    assert ops._cast is original  # the workaround is undone after the conversion


@pytest.mark.skipif(platform.system() == "Darwin", reason="CoreML runs on macOS")
def test_coreml_says_why_it_cannot_run_off_macos():
    assert get_runtime("coreml").run_unavailable("cpu") == "CoreML inference runs only on macOS"


def test_tensorrt_needs_a_gpu_target():
    reason = get_runtime("tensorrt").export_unavailable("cpu", "fp32")
    assert "TensorRT does not run on cpu" in reason and "gpu" in reason


@pytest.mark.parametrize("name", ["tensorrt", "onnxruntime-trt"])
def test_tensorrt_missing_package_is_named_with_the_major_version_that_works(name):
    """Both adapters need TensorRT 10 (the EP links libnvinfer.so.10; importing `tensorrt` loads it): the hint
    names the pin, not a bare `pip install tensorrt`, which gives TensorRT 11 today."""
    import importlib.util

    if importlib.util.find_spec("tensorrt"):
        pytest.skip("tensorrt is installed")
    assert get_runtime(name).missing_packages()[-1] == "'tensorrt-cu13>=10.13,<11'"
    reason = get_runtime(name).export_unavailable("gpu", "fp32") or get_runtime(name).run_unavailable("gpu")
    assert "pip install 'tensorrt-cu13>=10.13,<11'" in reason


def test_onnxruntime_without_cuda_provider_says_so():
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("onnxruntime-gpu is installed")
    assert "has no CUDAExecutionProvider" in get_runtime("onnxruntime").run_unavailable("gpu")
    assert "TensorrtExecutionProvider" in get_runtime("onnxruntime-trt").run_unavailable("gpu")


def test_tflite_npu_without_delegate_says_so(monkeypatch):
    monkeypatch.delenv("EDGEBENCH_TFLITE_DELEGATE", raising=False)
    assert "EDGEBENCH_TFLITE_DELEGATE" in get_runtime("tflite").run_unavailable("npu")


def test_tflite_npu_fp16_is_a_half_size_float16_model(tiny, tmp_path, monkeypatch):
    """The NPU's fp16 graph: fp16 weights, fp32 I/O, outputs within fp16 rounding of the float model's.
    Without a delegate library the interpreter runs it on the CPU, which is enough to check the file."""
    needs("tflite", "npu", "fp16")
    monkeypatch.delenv("EDGEBENCH_TFLITE_DELEGATE", raising=False)
    model, x, expected = tiny
    half = get_runtime("tflite")(RuntimeOptions(target="npu", precision="fp16", model=TINY_MODEL))
    half.load(half.export(model.module, x, tmp_path / "half"))
    full = get_runtime("tflite")(RuntimeOptions(target="cpu", precision="fp32", model=TINY_MODEL))
    full.export(model.module, x, tmp_path / "full")
    assert artifact_size_bytes(tmp_path / "half") < 0.8 * artifact_size_bytes(tmp_path / "full")
    assert "fp16 weights" in half.details() and "tensor types float32" in half.details()
    assert "delegates none" in half.details()
    out = half.predict(x.numpy())[0]
    np.testing.assert_allclose(out, expected, rtol=1e-2, atol=1e-2)
    assert not np.array_equal(out, expected)  # the weights really were rounded


def test_npu_precisions_agree_across_runtimes():
    """One command (`PRECISION=fp16,int8 TARGET=npu`) reaches every NPU row: the NPU runtimes offer the same."""
    assert {get_runtime(n).precisions["npu"] for n in ("openvino", "coreml", "tflite")} == {("fp16", "int8")}


def test_tflite_delegate_options_reach_the_delegate(tmp_path, monkeypatch):
    """EDGEBENCH_TFLITE_DELEGATE_OPTIONS is parsed and handed to every delegate library load_delegate opens."""
    import ai_edge_litert.interpreter as litert

    library = tmp_path / "libvendor_delegate.so"
    library.write_bytes(b"")
    monkeypatch.setenv("EDGEBENCH_TFLITE_DELEGATE", str(library))
    monkeypatch.setenv("EDGEBENCH_TFLITE_DELEGATE_OPTIONS", "backend_type=htp, log_level = 2")
    seen = []

    def load_delegate(path, options=None):
        seen.append((path, options))
        raise ValueError("stop here: no real delegate in this test")

    monkeypatch.setattr(litert, "load_delegate", load_delegate)
    adapter = get_runtime("tflite")(RuntimeOptions(target="npu", precision="int8"))
    with pytest.raises(ValueError, match="stop here"):
        adapter.load(tmp_path / "model.tflite")
    assert seen == [(str(library), {"backend_type": "htp", "log_level": "2"})]


@pytest.mark.parametrize("env,message", [
    ({"EDGEBENCH_TFLITE_DELEGATE": "/nowhere/libdelegate.so"},
     "EDGEBENCH_TFLITE_DELEGATE names /nowhere/libdelegate.so: no such file"),
    ({"EDGEBENCH_TFLITE_DELEGATE_OPTIONS": "backend_type"},
     "EDGEBENCH_TFLITE_DELEGATE_OPTIONS: 'backend_type' is not key=value"),
])
def test_bad_delegate_settings_are_one_line_before_any_work(env, message, monkeypatch):
    from edgebench.bench.errors import UsageError
    from edgebench.bench.targets import check_target

    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(UsageError, match=message):
        check_target("npu")


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
    from edgebench.bench.measure.fidelity import compare

    fid = compare(adapter.predict(x.numpy()), [ref], precision)
    assert fid.within_tolerance, (fid.max_abs_diff, fid.cosine)
    assert not adapter.label_mismatch()  # the TensorRT EP would otherwise pass on its CUDA fallback


@cuda
def test_gpu_run_reports_transfers_apart_from_compute(tmp_path, fast_timing):
    from rich.console import Console

    from edgebench.bench.config import BenchConfig
    from edgebench.bench.progress import Reporter
    from edgebench.bench.runlog import RunLog
    from edgebench.bench.runner import Runner

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
    from edgebench.runtimes.onnxrt import OnnxRuntime

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
    from edgebench.runtimes.onnxrt import cuda_provider_options

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
        if hasattr(torch.backends.cudnn, "conv"):  # torch >= 2.9 reads these; conv defaults to 'tf32'
            assert torch.backends.cudnn.conv.fp32_precision != "tf32", name
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False


def test_tf32_is_its_own_labelled_gpu_precision_and_only_where_the_gpu_has_it(tiny, tmp_path):
    """`tf32` rows allow TF32 on purpose (torch flags, the CUDA provider's use_tf32, TensorRT's flag); a GPU
    before Ampere computes them in IEEE fp32, so such a row is unavailable rather than mislabelled."""
    import onnx

    from edgebench.bench.measure.fidelity import TOLERANCES
    from edgebench.runtimes import _torch
    from edgebench.runtimes._onnx import export_onnx
    from edgebench.runtimes.onnxrt import cuda_provider_options

    for name in ("pytorch", "pytorch-compiled", "torchscript", "onnxruntime", "onnxruntime-trt", "tensorrt"):
        assert "tf32" in get_runtime(name).precisions["gpu"], name
    assert "runs fp32, bf16, int8, not tf32" in get_runtime("pytorch-compiled").export_unavailable("cpu", "tf32")
    assert "runs fp32, bf16, not tf32" in get_runtime("pytorch").export_unavailable("cpu", "tf32")
    assert cuda_provider_options("tf32")["use_tf32"] == 1
    assert TOLERANCES["fp32"] < TOLERANCES["tf32"] <= TOLERANCES["fp16"]
    _torch.fp32_math("tf32")
    assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
    _torch.fp32_math("fp32")
    assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
    assert "compute capability 8.0" in _torch.tf32_unsupported("gpu", "tf32", capability=(7, 5))
    assert _torch.tf32_unsupported("gpu", "tf32", capability=(9, 0)) is None
    assert _torch.tf32_unsupported("gpu", "fp32", capability=(7, 5)) is None
    model, x, _ = tiny
    graph = onnx.load(str(export_onnx(model.module, x, tmp_path / "m.onnx", "tf32"))).graph
    assert graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT  # the fp32 graph


def test_onnxruntime_gpu_fp32_sessions_start_with_tf32_overridden_off(tiny, tmp_path, monkeypatch):
    """The TensorRT EP's builder has no TF32 option: NVIDIA_TF32_OVERRIDE=0 reaches it, set before the session
    exists, for fp32 GPU rows only. Here the CPU build stands in: the session falls back, and says so."""
    from edgebench.runtimes.onnxrt import ieee_fp32_environment

    assert ieee_fp32_environment("gpu", "fp32") == {"NVIDIA_TF32_OVERRIDE": "0"}
    assert ieee_fp32_environment("gpu", "fp16") == {} and ieee_fp32_environment("cpu", "fp32") == {}
    # Set, then deleted: monkeypatch restores only what it saw, so the adapter's own setting is undone after the
    # test (an absent variable deleted is not recorded, and the "0" leaked into every later child's environment).
    monkeypatch.setenv("NVIDIA_TF32_OVERRIDE", "unset after the test")
    monkeypatch.delenv("NVIDIA_TF32_OVERRIDE")
    model, x, _ = tiny
    artifact = get_runtime("onnxruntime")(RuntimeOptions()).export(model.module, x, tmp_path)
    adapter = get_runtime("onnxruntime")(RuntimeOptions(target="gpu", precision="fp32"))
    try:
        adapter.load(artifact)
    except Exception as exc:  # a CPU build may refuse the CUDA provider outright; any other failure is a failure
        if "CUDA" not in str(exc):
            raise
        pytest.skip(f"this ONNX Runtime refuses a CUDA session: {exc}")
    assert os.environ.get("NVIDIA_TF32_OVERRIDE") == "0"
    assert adapter.details().endswith("NVIDIA_TF32_OVERRIDE=0")


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

    from edgebench.runtimes.onnxrt import installed_onnxruntimes, onnxruntime_conflict

    assert installed_onnxruntimes() == [f"onnxruntime {metadata.version('onnxruntime')}"]
    assert onnxruntime_conflict() is None
    real = metadata.version
    monkeypatch.setattr(metadata, "version", lambda name: "1.32.0" if name == "onnxruntime-gpu" else real(name))
    warning = onnxruntime_conflict()
    assert warning.startswith("onnxruntime ") and "and onnxruntime-gpu 1.32.0 are both installed" in warning
    from edgebench.bench.environment import capture

    assert capture()["warnings"] == [warning]


@pytest.mark.parametrize("name", ["onnxruntime", "torchscript"])
def test_an_fp16_export_leaves_the_callers_module_as_it_was(name, tmp_path):
    """`.to(dtype)` casts a module in place: an fp16 export must cast a copy, or the next export made from the same
    module in the process (the GPU tests share one) gets a half-precision (or CUDA) model. Reached on the CPU with
    fp16, which casts the same way as a move to the GPU."""
    model = load_model(TINY_MODEL)
    x = make_input(model.example, 1, seed=0)
    before = {k: v.clone() for k, v in model.module.state_dict().items()}
    adapter = get_runtime(name)(RuntimeOptions(target="cpu", precision="fp16", threads=1, model=TINY_MODEL))
    adapter.export(model.module, x, tmp_path)
    after = model.module.state_dict()
    assert {str(v.dtype) for v in after.values() if v.is_floating_point()} == {"torch.float32"}
    assert all(torch.equal(before[k], after[k]) and after[k].device.type == "cpu" for k in before)
