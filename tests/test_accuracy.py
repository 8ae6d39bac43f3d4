"""Accuracy is measured on a real labelled test split, in each runtime, on the artifact that runtime ships.

The embedded tasks are seeded stratified splits; every runtime scores the same images and agrees with
PyTorch at fp32; int8 artifacts are really integer in each runtime's own format and keep their accuracy.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from edgebench.bench import worker
from edgebench.bench.config import TimingConfig
from edgebench.bench.job import MeasureJob, save_job
from edgebench.bench.measure.contents import Contents, check
from edgebench.bench.measure.stats import accuracies_differ, wilson_interval
from edgebench.bench.runner import save_reference
from edgebench.models import load_model
from edgebench.models.tasks import digits_task, mnist_task
from edgebench.models.training import accuracy
from edgebench.runtimes import RuntimeOptions, adapter_ref, get_runtime
from edgebench.tasks.classify import Task

FAST = TimingConfig(warmup_iters=1, warmup_s=0.0, min_iters=3, min_s=0.0, max_s=5.0)
BATCH = 7  # 360 test images are not a multiple of 7: the last chunk is padded, and must not count twice


def test_mnist_is_a_seeded_stratified_split_of_the_embedded_images():
    task = mnist_task(seed=0)
    assert task.x_train.shape == (4000, 1, 28, 28) and task.x_test.shape == (1000, 1, 28, 28)
    assert np.bincount(task.y_test).tolist() == [100] * 10  # stratified
    again, other = mnist_task(seed=0), mnist_task(seed=1)
    assert np.array_equal(task.y_test, again.y_test) and np.array_equal(task.x_test, again.x_test)
    assert not np.array_equal(task.x_test, other.x_test)
    assert abs(float(task.x_train.mean())) < 0.1  # normalized like torchvision's MNIST recipe


def test_a_task_survives_the_file_children_read(tmp_path):
    task = digits_task()
    loaded = Task.load(task.save(tmp_path / "task.npz"))
    assert loaded.label == task.label == "digits (360 test images)"
    assert np.array_equal(loaded.x_test, task.x_test) and loaded.classes == task.classes
    calibration = loaded.calibration(count=16)
    assert calibration.shape == (16, 1, 8, 8)
    assert not any((calibration[i] == task.x_test).all(axis=(1, 2, 3)).any() for i in range(16))  # train only


@pytest.mark.parametrize(("correct", "total", "low", "high"), [
    (975, 1000, 0.9634, 0.9830), (1000, 1000, 0.9962, 1.0), (0, 50, 0.0, 0.0713), (1, 2, 0.0945, 0.9055)])
def test_wilson_interval_matches_published_values(correct, total, low, high):
    got = wilson_interval(correct, total)
    assert got == pytest.approx((low, high), abs=1e-4)


def test_one_point_on_1000_images_is_noise_and_three_points_are_not():
    assert not accuracies_differ((970, 1000), (980, 1000))
    assert accuracies_differ((950, 1000), (980, 1000))
    with pytest.raises(ValueError, match="at least one test item"):
        wilson_interval(0, 0)
    assert wilson_interval(1, 1) == pytest.approx((0.2065, 1.0), abs=1e-4)  # one image is a (wide) interval


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    model = load_model("digits_cnn")
    task = digits_task()
    reference = save_reference(model, (BATCH,), tmp_path_factory.mktemp("reference"), 0, task)
    return model, task, reference


def measure(runtime: str, precision: str, digits, tmp_path, qat_epochs: int = 0) -> dict:
    """Export then measure through the worker, as the runner does (a QAT export's reference replaces eager's)."""
    model, _, reference = digits
    job = MeasureJob(adapter=adapter_ref(get_runtime(runtime)),
                     options=RuntimeOptions(precision=precision, threads=1, model=model.source),
                     model_file=str(reference.model_file), input=str(reference.input(BATCH)),
                     reference=str(reference.outputs(BATCH)), artifact_dir=str(tmp_path / "artifact"), timing=FAST,
                     task=str(reference.task), calibration=str(reference.calibration), qat_epochs=qat_epochs)
    results = []
    for mode in ("export", "measure"):
        save_job(job, tmp_path / f"{mode}.json")
        assert worker.main([mode, str(tmp_path / f"{mode}.json")]) == 0, (tmp_path / "result.json").read_text()
        results.append(json.loads((tmp_path / "result.json").read_text()))
        job = replace(job, artifact=results[0]["artifact"], reference=results[0].get("reference", job.reference))
    return {**results[1], "artifact": results[0]["artifact"], "reference": job.reference,
            "contents": results[0].get("contents")}


# Real exports: PyTorch's takes a second and stays in mutmut's fast selection (it is what reaches the worker's
# accuracy code in-process); the other three are `slow`, run by `make test` only.
@pytest.mark.parametrize("runtime", ["pytorch", *(pytest.param(r, marks=pytest.mark.slow)
                                                 for r in ("onnxruntime", "openvino", "tflite"))])
def test_each_runtime_scores_its_own_artifact_on_the_whole_test_split(runtime, digits, tmp_path):
    model, task, _ = digits
    result = measure(runtime, "fp32", digits, tmp_path)
    if runtime != "pytorch" or result["contents"]:
        contents = Contents(**result["contents"])  # two convolutions and the classifier, stored as floats
        assert len(contents.distinct) == 3 and contents.integer_share == 0.0
    expected = accuracy(model.module, task)
    assert result["accuracy"] == pytest.approx(expected, abs=1.5 / len(task.y_test))  # fp32: at most one image
    assert result["accuracy_ci_low"] < result["accuracy"] < result["accuracy_ci_high"]
    correct = round(result["accuracy"] * len(task.y_test))
    assert correct / len(task.y_test) == pytest.approx(result["accuracy"])  # a whole number of the 360 images
    from edgebench.bench.measure.paired import unpack_correct  # which images: what paired tests compare

    right = unpack_correct(result["correct_bits"], len(task.y_test))
    with torch.no_grad():
        eager = model.module(torch.from_numpy(task.x_test)).argmax(1).numpy() == task.y_test
    assert right.sum() == correct and (right == eager).mean() >= 1 - 1.5 / len(task.y_test)


def _is_integer_artifact(runtime: str, artifact: str) -> bool:
    if runtime == "onnxruntime":
        import onnx

        graph = onnx.load(artifact).graph
        ops = {n.op_type for n in graph.node}
        int8_weights = [t for t in graph.initializer if len(t.dims) == 4
                        and t.data_type in (onnx.TensorProto.INT8, onnx.TensorProto.UINT8)]
        return {"QuantizeLinear", "DequantizeLinear"} <= ops and len(int8_weights) == 2
    if runtime == "openvino":
        xml = open(artifact).read()
        return "FakeQuantize" in xml or 'element_type="i8"' in xml
    if runtime == "tflite":
        from ai_edge_litert.interpreter import Interpreter

        interpreter = Interpreter(model_path=artifact)
        types = {np.dtype(d["dtype"]).name for d in interpreter.get_tensor_details()}
        return interpreter.get_input_details()[0]["dtype"] == np.int8 and "int8" in types
    if runtime == "pytorch-compiled":
        program = torch.export.load(artifact)
        targets = {str(n.target) for n in program.graph.nodes if n.op == "call_function"}
        return any(re.search(r"quantize_per_(tensor|channel)", t) for t in targets)
    if runtime == "aoti":  # the package's code calls oneDNN's integer convolutions
        from edgebench.runtimes.aoti import package_calls

        return any(call.startswith(("_qconv", "qconv")) for call in package_calls(Path(artifact)))
    if runtime == "executorch":  # its event tracer: XNNPACK ran every convolution in an integer kernel
        from edgebench.bench.measure.profile import summarise

        adapter = get_runtime("executorch")(RuntimeOptions(precision="int8", threads=1))
        adapter.load(Path(artifact))
        x = np.zeros((BATCH, 1, 8, 8), np.float32)
        convolutions = [line for line in summarise(adapter.profile(adapter.prepare(x), 2)).lines
                        if line.category == "convolution"]
        return bool(convolutions) and all(line.executed == "int8" for line in convolutions)
    raise AssertionError(runtime)


@pytest.mark.slow
@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino", "tflite", "pytorch-compiled"])
def test_int8_artifacts_are_really_integer_and_keep_their_accuracy(runtime, digits, tmp_path):
    if get_runtime(runtime).export_unavailable("cpu", "int8"):
        pytest.skip(get_runtime(runtime).export_unavailable("cpu", "int8"))
    model, task, _ = digits
    result = measure(runtime, "int8", digits, tmp_path)
    assert _is_integer_artifact(runtime, result["artifact"])
    assert abs(result["accuracy"] - accuracy(model.module, task)) < 0.03, result["accuracy"]
    assert result["cosine"] > 0.99 and result["fidelity_ok"]
    # read back from the file by the run itself (not only here): every weight tensor is stored as integers
    contents = Contents(**result["contents"])
    assert len(contents.distinct) == 3 and contents.integer_share == 1.0, result["contents"]
    assert contents.integer_mac_share == 1.0, result["contents"]  # every layer's tensor found by shape, in any layout
    assert check(contents, "int8", "none")[0] is True
    if runtime == "pytorch-compiled":  # Inductor's code for it calls oneDNN's integer convolution and matmul
        assert "integer kernels onednn.qconv_pointwise, onednn.qlinear_pointwise" in result["details"], result


@pytest.mark.slow
def test_a_fresh_measuring_process_compiles_pytorch_int8_to_integer_kernels(digits, tmp_path):
    """In a process that has not quantized anything (as the measuring child), the int8 program must still lower
    to oneDNN int8 kernels: torchao's Inductor passes register only when its X86 quantizer is imported, and
    without that the "int8" row timed float convolutions around quantize/dequantize ops."""
    import subprocess
    import sys

    from edgebench.runtimes._quant import calibration_batches
    from edgebench.runtimes._torch import quantize_x86

    model, task, _ = digits
    program, _ = quantize_x86(model.module, model.example, calibration_batches(task.calibration(count=16), 1))
    torch.export.save(program, str(tmp_path / "int8.pt2"))
    probe = ("from edgebench.runtimes._torch import compile_program; "
             f"print(compile_program({str(tmp_path / 'int8.pt2')!r}).integer_kernels)")
    fresh = {**os.environ, "TORCHINDUCTOR_FORCE_DISABLE_CACHES": "1"}  # compiled here, not read from a cache
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300,
                         cwd=Path(__file__).resolve().parents[1], env=fresh)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.splitlines()[0] == "['onednn.qconv_pointwise', 'onednn.qlinear_pointwise']", out.stdout


class _SharedReluBlock(torch.nn.Module):
    """A residual block that calls one ReLU module twice, as torchvision's ResNet blocks do."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.conv2 = torch.nn.Conv2d(3, 3, 3, padding=1), torch.nn.Conv2d(3, 3, 3, padding=1)
        self.relu = torch.nn.ReLU()

    def forward(self, x):
        return self.relu(self.conv2(self.relu(self.conv1(x))) + x)


def test_pytorch_int8_quantizes_a_module_called_twice():
    """torchao's X86 quantizer refused a graph whose ReLU module is called twice ("Input partition has more than
    one output node"): PyTorch int8 of resnet18, the default model, was an error row."""
    from edgebench.runtimes._torch import quantize_x86

    x = torch.randn(1, 3, 8, 8)
    program, _ = quantize_x86(_SharedReluBlock().eval(), x, [np.random.default_rng(0).standard_normal(
        (1, 3, 8, 8), dtype=np.float32) for _ in range(2)])
    targets = [str(n.target) for n in program.graph.nodes if n.op == "call_function"]
    assert sum("quantize_per_tensor" in t for t in targets) >= 2, targets


def test_torchscript_has_no_int8_and_says_so():
    assert get_runtime("torchscript").export_unavailable("cpu", "int8") == "TorchScript on cpu runs fp32, not int8"


@pytest.mark.slow
@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino", "tflite", "pytorch-compiled", "executorch"])
def test_quantization_aware_training_happens_in_each_runtimes_own_toolchain(runtime, digits, tmp_path):
    """The int8 export trains first (its outputs differ from the float model's), ships an integer artifact that
    keeps the accuracy, and is judged against the trained model it came from. (AOTInductor trains through the
    very code compiled PyTorch does, `TorchModuleRuntime.exported_program`; its int8 package is checked in
    `tests/test_aoti.py`: 34 s saved here.)"""
    if get_runtime(runtime).export_unavailable("cpu", "int8"):
        pytest.skip(get_runtime(runtime).export_unavailable("cpu", "int8"))
    model, task, reference = digits
    result = measure(runtime, "int8", digits, tmp_path, qat_epochs=1)
    assert _is_integer_artifact(runtime, result["artifact"])
    assert abs(result["accuracy"] - accuracy(model.module, task)) < 0.03, result["accuracy"]
    assert result["reference"] != str(reference.outputs(BATCH))
    with np.load(result["reference"]) as trained, np.load(reference.outputs(BATCH)) as untrained:
        assert not np.allclose(trained["out_0"], untrained["out_0"], atol=1e-3)  # the weights moved in training
    assert result["cosine"] > 0.99 and result["fidelity_ok"]
    if runtime == "onnxruntime":  # BatchNorm folded before NNCF: no float BN left between int8 convolutions
        import onnx

        assert "BatchNormalization" not in {n.op_type for n in onnx.load(result["artifact"]).graph.node}


def test_the_compress_child_prunes_fine_tunes_and_saves_what_every_runtime_exports(digits, tmp_path):
    """The worker's compress step, in-process as the child runs it: the chain is applied, fine-tuned on the
    task, and the saved module's outputs are the fidelity reference each runtime is then held to."""
    from edgebench.bench.job import CompressJob
    from edgebench.bench.variants import MODEL_FILE, load_module, outputs_path
    from edgebench.compression.measures import parameter_count

    model, _, reference = digits
    out = tmp_path / "variant"
    job = CompressJob(chain="prune-unstructured:0.5", model_file=str(reference.model_file), model=model.source,
                      out_dir=str(out), inputs={str(BATCH): str(reference.input(BATCH))},
                      task=str(reference.task), finetune_epochs=1, seed=0, threads=1)
    save_job(job, tmp_path / "compress.json")
    assert worker.main(["compress", str(tmp_path / "compress.json")]) == 0, (tmp_path / "result.json").read_text()
    info = json.loads((tmp_path / "result.json").read_text())
    assert info["finetune_epochs"] == 1 and 0.45 < info["sparsity"] < 0.55, info
    assert info["params"] == parameter_count(model.module) and "weights zeroed" in info["notes"]
    assert 0.5 < info["agreement"] < 1.0 and info["flops"] > 0  # fine-tuned after pruning: mostly, not all, agree
    saved = load_module(str(out / MODEL_FILE), model.source)
    with torch.no_grad():
        expected = saved(torch.from_numpy(np.load(reference.input(BATCH)))).numpy()
    with np.load(outputs_path(out, BATCH)) as outputs:
        assert np.allclose(next(iter(outputs.values())), expected)
    with torch.no_grad():  # and it is not the reference model any more
        original = model.module(torch.from_numpy(np.load(reference.input(BATCH)))).numpy()
    assert not np.allclose(original, expected)


def _hashes(images: np.ndarray) -> set[str]:
    import hashlib

    return {hashlib.sha256(np.ascontiguousarray(image).tobytes()).hexdigest() for image in images}


@pytest.mark.parametrize(("batch", "batches"), [(1, 128), (7, 19), (32, 4), (200, 1)])
def test_calibration_uses_every_training_image_at_any_batch_and_never_a_test_image(digits, batch, batches):
    """128 training images at batch 1 too (it was 32), re-batched with wrap-around; hashed against the test split."""
    from edgebench.runtimes._quant import calibration_batches
    from edgebench.tasks import CALIBRATION_IMAGES

    _, task, reference = digits
    calibration = np.load(reference.calibration)
    assert len(calibration) == CALIBRATION_IMAGES == 128
    assert _hashes(calibration) <= _hashes(task.x_train) and not _hashes(calibration) & _hashes(task.x_test)
    got = calibration_batches(calibration, batch)
    assert len(got) == batches and all(b.shape == (batch, 1, 8, 8) for b in got)
    assert _hashes(np.concatenate(got)) == _hashes(calibration)  # every image, nothing else


def test_int8_without_calibration_images_is_an_error_row_not_the_timed_input(digits, tmp_path):
    from edgebench.runtimes._quant import calibration_batches

    with pytest.raises(ValueError, match="int8 needs calibration images"):
        calibration_batches(None, 1)
    model, _, reference = digits
    job = MeasureJob(adapter=adapter_ref(get_runtime("onnxruntime")),
                     options=RuntimeOptions(precision="int8", threads=1, model=model.source),
                     model_file=str(reference.model_file), input=str(reference.input(BATCH)),
                     reference=str(reference.outputs(BATCH)), artifact_dir=str(tmp_path / "artifact"), timing=FAST)
    save_job(job, tmp_path / "export.json")
    assert worker.main(["export", str(tmp_path / "export.json")]) == 1
    assert "int8 needs calibration images" in json.loads((tmp_path / "result.json").read_text())["error"]


@pytest.mark.parametrize(("flags", "machine", "weight"), [
    (["avx", "avx2", "fma"], "x86_64", "uint8"),  # AVX2 without VNNI: u8s8 saturates
    (["avx2", "avx512f", "avx512bw"], "x86_64", "uint8"),  # AVX-512 without VNNI: the same
    (["avx2", "avx_vnni"], "x86_64", "int8"),
    (["avx2", "avx512f", "avx512_vnni"], "x86_64", "int8"),
    ([], "aarch64", "int8")])
def test_onnxruntime_int8_settings_follow_the_cpu_as_its_guide_advises(flags, machine, weight):
    from edgebench.runtimes._onnx import ort_int8_settings

    settings = ort_int8_settings(flags, machine)
    assert (settings.activation, settings.weight, settings.per_channel) == ("uint8", weight, True)
    assert ("VNNI" in settings.describe()) == (machine == "x86_64")


@pytest.mark.slow
@pytest.mark.parametrize(("flags", "weight_type"), [(["avx2"], "UINT8"), (["avx2", "avx512_vnni"], "INT8")])
def test_the_onnxruntime_int8_file_follows_the_cpu_and_says_so_in_the_row(flags, weight_type, digits, tmp_path,
                                                                           monkeypatch):
    """A faked CPU feature set reaches the export (worker in-process): the file's weights and the row's details."""
    import onnx

    import edgebench.bench.environment

    monkeypatch.setattr(edgebench.bench.environment, "cpu_info", lambda: {"flags": flags, "model": "faked"})
    monkeypatch.setattr("platform.machine", lambda: "x86_64")
    result = measure("onnxruntime", "int8", digits, tmp_path)
    weights = {onnx.TensorProto.DataType.Name(t.data_type) for t in onnx.load(result["artifact"]).graph.initializer
               if len(t.dims) == 4}
    assert weights == {weight_type}
    assert f"{weight_type.lower()} per-channel weights" in result["details"]


def test_scoring_accuracy_imports_no_scipy(tmp_path):
    """A measuring process scores accuracy after timing, one row at a time: importing scipy there (for the
    paired tests the parent runs) cost each row 0.6 s, 40 s of a study's wall time."""
    import subprocess
    import sys

    task = tmp_path / "task.npz"
    Task(name="t", x_train=np.zeros((2, 1, 2, 2), np.float32), y_train=np.zeros(2, np.int64),
         x_test=np.zeros((3, 1, 2, 2), np.float32), y_test=np.array([0, 1, 1]), classes=("a", "b")).save(task)
    code = ("import sys, numpy as np; from pathlib import Path; from edgebench.bench import worker\n"
            "class Fixed:\n"
            "    def predict(self, x): return [np.array([[0.0, 1.0]] * len(x))]\n"
            f"scored = worker._score(Fixed(), type('J', (), {{'task': {str(task)!r}}})(), Path({str(tmp_path)!r}), 1)\n"
            "print(scored['accuracy'], 'scipy' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).parent.parent).stdout.split()
    assert out == [str(2 / 3), "False"]
