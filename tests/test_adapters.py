"""Each registered adapter: export to disk, load, run, and match PyTorch eager on a small model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgebench.bench.measure.fidelity import compare
from edgebench.models import load_model, make_input
from edgebench.runtimes import RuntimeOptions, artifact_size_bytes, get_runtime, runtime_names
from edgebench.runtimes.base import artifact_files

from tests_paths import TINY_MODEL

CPU_FP32 = [n for n in runtime_names() if "fp32" in get_runtime(n).precisions.get("cpu", ())]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    model = load_model(TINY_MODEL)
    folder = tmp_path_factory.mktemp("ref")
    torch.save(model.module.state_dict(), folder / "sd.pt")
    x = make_input(model.example, 2, seed=0)
    with torch.inference_mode():
        ref = model.module(x).numpy()
    return model, x, ref


@pytest.mark.parametrize("name", CPU_FP32)
def test_export_run_and_fidelity(name, reference, tmp_path):
    cls = get_runtime(name)
    reason = cls.export_unavailable("cpu", "fp32")
    if reason:
        pytest.skip(f"{name}: {reason}")
    model, x, ref = reference
    adapter = cls(RuntimeOptions(target="cpu", precision="fp32", threads=1, model=TINY_MODEL))
    artifact = adapter.export(model.module, x, tmp_path)
    assert artifact.exists()
    assert artifact_size_bytes(tmp_path) > 1000  # the weights are in what was written
    run_reason = cls.run_unavailable("cpu")
    if run_reason:
        pytest.skip(f"{name} exported ({artifact_size_bytes(tmp_path)} bytes) but cannot run here: {run_reason}")
    adapter.load(artifact)
    outputs = adapter.predict(x.numpy())
    fid = compare(outputs, [ref], "fp32")
    assert outputs[0].shape == ref.shape
    assert fid.within_tolerance, (fid.max_abs_diff, fid.cosine)
    # run() + sync() + fetch() is the timed path: it must give the same answer as predict().
    again = adapter.run(adapter.prepare(x.numpy()))
    adapter.sync()
    np.testing.assert_allclose(adapter.fetch(again)[0], outputs[0], rtol=1e-5, atol=1e-6)


CPU_REDUCED = [(n, p) for n in runtime_names() for p in get_runtime(n).precisions.get("cpu", ())
               if p not in ("fp32", "int8")]  # int8 needs calibration: tests/test_accuracy.py runs it on real data


@pytest.mark.parametrize(("name", "precision"), CPU_REDUCED)
def test_every_reduced_cpu_precision_exports_runs_and_holds_its_tolerance(name, precision, reference, tmp_path):
    """PyTorch bf16, OpenVINO bf16 and fp16, CoreML fp16: run here (CoreML exports only) and judged at their own
    precision. A CPU that cannot compute a precision says so through `label_mismatch` (the row's `unavailable`)."""
    cls = get_runtime(name)
    reason = cls.export_unavailable("cpu", precision)
    if reason:
        pytest.skip(f"{name} {precision}: {reason}")
    model, x, ref = reference
    adapter = cls(RuntimeOptions(target="cpu", precision=precision, threads=1, model=TINY_MODEL))
    artifact = adapter.export(model.module, x, tmp_path)
    assert artifact.exists()
    run_reason = cls.run_unavailable("cpu")
    if run_reason:
        pytest.skip(f"{name} {precision} exported ({artifact_size_bytes(tmp_path)} bytes) but cannot run here: "
                    f"{run_reason}")
    adapter.load(artifact)
    mismatch = adapter.label_mismatch()
    if mismatch:  # e.g. OpenVINO on a CPU without bf16 computes another precision: the row would say this
        assert precision.replace("fp", "f") in mismatch, mismatch  # OpenVINO names them f16 and bf16
        pytest.skip(f"this CPU: {mismatch}")
    outputs = adapter.predict(x.numpy())
    fid = compare(outputs, [ref], precision)
    assert outputs[0].shape == ref.shape and fid.within_tolerance, (fid.max_abs_diff, fid.cosine)


def test_onnx_export_keeps_weights_in_one_file(reference, tmp_path):
    model, x, _ = reference
    adapter = get_runtime("onnxruntime")(RuntimeOptions(model=TINY_MODEL))
    adapter.export(model.module, x, tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]


def _loaded_openvino(reference, folder, precision):
    """The tiny model exported and compiled by the OpenVINO adapter on this CPU."""
    model, x, _ = reference
    adapter = get_runtime("openvino")(RuntimeOptions(precision=precision, threads=1, model=TINY_MODEL))
    adapter.load(adapter.export(model.module, x, folder))
    return adapter


def test_openvino_precision_is_explicit_and_read_back(reference, tmp_path):
    adapter = _loaded_openvino(reference, tmp_path, "fp32")
    assert "inference precision f32" in adapter.details()
    # no stray ONNX counted; the layers note beside the IR is edgebench's, not the artifact's (NOTES_SUFFIX)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["layers.edgebench.json", "model.bin", "model.xml"]
    assert [p.name for p in artifact_files(tmp_path)] == ["model.bin", "model.xml"]


class _NpuLikeCompiledModel:
    """A real compiled model seen through the NPU plugin's rules: properties it does not list, or that were
    not set before compiling, throw when read (as openvino's NPU plugin does)."""

    def __init__(self, compiled, unreadable):
        self.compiled, self.unreadable = compiled, unreadable

    def get_property(self, name):
        if name in self.unreadable:
            raise RuntimeError(f"[ NPU ] Unsupported configuration key: {name}")
        if name == "SUPPORTED_PROPERTIES":
            return {k: v for k, v in self.compiled.get_property(name).items() if k != "PERFORMANCE_HINT"}
        return self.compiled.get_property(name)

    def create_infer_request(self):
        return self.compiled.create_infer_request()


def test_openvino_details_read_only_what_the_device_reports(reference, tmp_path):
    """A timed row must not turn into an error because details() read a property the device throws on."""
    adapter = _loaded_openvino(reference, tmp_path, "fp32")
    assert "hint LATENCY, streams 1" in adapter.details()
    adapter.compiled = _NpuLikeCompiledModel(adapter.compiled, unreadable={"NUM_STREAMS"})
    assert adapter.details() == ("inference precision f32, hint not reported by CPU, "
                                 "streams not reported by CPU")
    assert len(adapter.throughput_streams(reference[1].numpy())) >= 1


def test_unsupported_target_or_precision_has_a_reason():
    ts = get_runtime("torchscript")
    assert "runs fp32, not bf16" in ts.export_unavailable("cpu", "bf16")
    assert "does not run on npu" in ts.export_unavailable("npu", "fp32")


def test_openvino_reports_a_precision_it_did_not_honour(reference, tmp_path):
    """On CPUs without native bf16 OpenVINO silently computes f32; the row must not be labelled bf16."""
    adapter = _loaded_openvino(reference, tmp_path, "bf16")
    chosen = adapter.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
    if chosen == "bf16":
        assert adapter.label_mismatch() is None
    else:
        assert adapter.label_mismatch() == f"OpenVINO on CPU computes in {chosen} when asked for bf16 " \
                                               "(no native support on this device)"


def test_openvino_precision_fallback_both_branches():
    """Whatever this CPU does natively: a fallback is named, an honoured precision is not."""
    from edgebench.runtimes.openvino_ir import precision_fallback

    assert precision_fallback("CPU", "bf16", "f32") == \
        "OpenVINO on CPU computes in f32 when asked for bf16 (no native support on this device)"
    assert precision_fallback("CPU", "bf16", "bf16") is None
    assert precision_fallback("NPU", "f16", None) is None  # the NPU takes no hint


def test_openvino_honours_fp32_on_every_cpu(reference, tmp_path):
    model, x, _ = reference
    adapter = get_runtime("openvino")(RuntimeOptions(precision="fp32", threads=1, model=TINY_MODEL))
    adapter.load(adapter.export(model.module, x, tmp_path))
    assert adapter.label_mismatch() is None
