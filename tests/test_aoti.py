"""AOTInductor: a real compiled package, loaded without tracing or compiling, frozen onto oneDNN kernels, int8 in
integer kernels, and keyed and refused by the CPU it was built for."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from edgebench.bench.measure.fidelity import compare
from edgebench.models import load_model
from edgebench.runtimes import RuntimeOptions, get_runtime
from edgebench.runtimes.aoti import missing_extensions, package_calls
from edgebench.runtimes.base import ProfileUnavailable

from tests_paths import ASSETS

BIG_CONV = f"{ASSETS / 'one_big_conv.py'}:build"
AOTI = get_runtime("aoti")
pytestmark = pytest.mark.skipif(AOTI.export_unavailable("cpu", "fp32") is not None,
                                reason=f"{AOTI.export_unavailable('cpu', 'fp32')}")


@pytest.fixture(scope="module")
def packages(tmp_path_factory):
    """fp32 and int8 packages of a one-big-convolution network, compiled once for the module's tests."""
    model = load_model(BIG_CONV)
    made = {}
    for precision in ("fp32", "int8"):
        folder = tmp_path_factory.mktemp(precision)
        adapter = AOTI(RuntimeOptions(target="cpu", precision=precision, threads=1))
        adapter.calibration = np.random.default_rng(0).standard_normal(
            (8, *model.example.shape[1:])).astype(np.float32)
        made[precision] = adapter.export(model.module, model.example, folder)
    return model, made


def _loaded(artifact: Path, precision: str):
    adapter = AOTI(RuntimeOptions(target="cpu", precision=precision, threads=1))
    adapter.load(artifact)
    return adapter


def test_fp32_package_is_frozen_onto_onednn_and_matches_pytorch(packages):
    """Compiled with autograd on, Inductor skips freezing and the package calls plain aten convolutions
    (measured 1.9x slower on resnet18): the package must call oneDNN's prepacked convolution."""
    model, made = packages
    calls = package_calls(made["fp32"])
    assert any(call.startswith("mkldnn__convolution_pointwise") for call in calls), calls
    assert "convolution" not in calls, calls
    adapter = _loaded(made["fp32"], "fp32")
    with torch.inference_mode():
        reference = model.module(model.example).numpy()
    assert compare(adapter.predict(model.example.numpy()), [reference], "fp32").within_tolerance
    assert adapter.label_mismatch() is None
    assert "compiled at export for" in adapter.details()


def test_int8_package_calls_integer_kernels_and_stays_within_int8s_tolerance(packages):
    model, made = packages
    adapter = _loaded(made["int8"], "int8")
    assert adapter.integer_kernels() and all("q" in k for k in adapter.integer_kernels()), package_calls(made["int8"])
    assert adapter.label_mismatch() is None
    assert "integer kernels _qconv" in adapter.details(), adapter.details()
    with torch.inference_mode():
        reference = model.module(model.example).numpy()
    assert compare(adapter.predict(model.example.numpy()), [reference], "int8").within_tolerance
    # a float package loaded under an int8 label is refused, not timed as int8
    assert "calls no integer kernel" in _loaded(made["fp32"], "int8").label_mismatch()


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_a_fresh_process_loads_the_package_without_tracing_compiling_or_importing_the_compiler(packages, precision):
    """The point of AOTInductor: the serving process neither traces nor compiles. With no C++ compiler on its
    PATH it still runs, and Dynamo and Inductor (and torchao, for int8) are never imported."""
    model, made = packages
    probe = ("import sys, numpy as np, torch\n"
             "from edgebench.runtimes import RuntimeOptions, get_runtime\n"
             f"a = get_runtime('aoti')(RuntimeOptions(precision={precision!r}, threads=1))\n"
             f"a.load(__import__('pathlib').Path({str(made[precision])!r}))\n"
             f"out = a.predict(np.zeros({tuple(model.example.shape)}, np.float32))\n"
             "compiler = ('torch._dynamo', 'torch._inductor', 'torchao')\n"
             "print(out[0].shape, sorted(m for m in compiler if m in sys.modules))\n")
    bare = {**os.environ, "PATH": str(Path(sys.executable).parent)}  # no g++ / c++
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300, env=bare,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "(1, 10) []", out.stdout


def test_a_package_built_for_extensions_this_cpu_lacks_is_refused_in_one_line(packages, monkeypatch):
    _, made = packages
    assert missing_extensions("AVX512 AVX512_VNNI", ["sse4_2", "avx2", "fma"]) == ["AVX512", "AVX512_VNNI"]
    assert missing_extensions("AVX512 AVX512_VNNI", ["avx2", "avx512f", "avx512_vnni"]) == []
    assert missing_extensions("AVX2", ["avx2"]) == []
    import edgebench.bench.environment as environment

    monkeypatch.setattr(environment, "cpu_info", lambda: {"flags": ["sse4_2"]})
    isa = AOTI.read_metadata(made["fp32"])["AOTI_CPU_ISA"]
    with pytest.raises(RuntimeError, match=f"compiled for {isa}; this CPU lacks"):
        _loaded(made["fp32"], "fp32")


def test_the_cache_keys_a_package_by_the_cpu_extensions_and_threads_it_was_built_for(monkeypatch):
    import edgebench.bench.environment as environment

    one, two = RuntimeOptions(threads=1), RuntimeOptions(threads=2)
    assert AOTI.host_facts(one) != AOTI.host_facts(two)
    monkeypatch.setattr(environment, "cpu_info", lambda: {"flags": ["avx2"]})
    avx2 = AOTI.host_facts(one)
    monkeypatch.setattr(environment, "cpu_info", lambda: {"flags": ["avx2", "avx512f", "avx512_vnni"]})
    assert AOTI.host_facts(one) != avx2
    assert get_runtime("onnxruntime").host_facts(one) == get_runtime("onnxruntime").host_facts(two) == {}


def test_shim_calls_get_the_programs_multiply_adds_only_where_they_match_in_order():
    from edgebench.runtimes.aoti import shim_macs

    program = [{"kind": "convolution", "macs": 10}, {"kind": "convolution", "macs": 5}, {"kind": "linear", "macs": 2}]
    calls = ["aoti_torch_cpu__qconv_pointwise_tensor", "aoti_torch_cpu__qconv2d_pointwise_binary_tensor",
             "aoti_torch_cpu__qlinear_pointwise_tensor"]
    assert shim_macs(calls, program) == {calls[0]: 10, calls[1]: 5, calls[2]: 2}
    assert shim_macs(calls[::-1], program) is None  # a linear call where the program has a convolution
    assert shim_macs(calls[:2], program) is None and shim_macs(calls, None) is None


def test_its_profile_comes_from_an_instrumented_build_of_the_same_program(packages, tmp_path, monkeypatch):
    """The timed package records nothing torch.profiler sees; a second build of the program kept beside it, with
    Inductor's kernel profiling, records each kernel: the dominant convolution first, in fp32 through oneDNN's
    shim, and in int8 through oneDNN's integer convolution. The program is no part of the package's size. A
    profile taken again (after a noisy one) reuses the build, which close() removes."""
    import shutil

    from edgebench.bench.measure.profile import summarise
    from edgebench.runtimes import aoti
    from edgebench.runtimes.aoti import PROGRAM_NOTE
    from edgebench.runtimes.base import artifact_size_bytes

    builds = []
    real_compile = aoti.compile_package
    monkeypatch.setattr(aoti, "compile_package", lambda *args: builds.append(args[1]) or real_compile(*args))
    model, made = packages
    for precision, executed in (("fp32", "fp32"), ("int8", "int8")):
        adapter = _loaded(made[precision], precision)
        prepared = adapter.prepare(model.example.numpy())
        profile = summarise(adapter.profile(prepared, 5))
        assert len(summarise(adapter.profile(prepared, 2)).lines) > 1 and len(builds) == 1, builds  # reused
        adapter.close()
        assert not builds.pop().parent.exists()
        top = profile.top(1)[0]
        assert top.operator.startswith("aoti_torch_cpu_") and top.category == "convolution", profile.lines
        assert top.executed == executed and top.share > 0.5
        generated = {line.operator: line.executed for line in profile.lines if "_cpp_fused_" in line.operator}
        assert generated, profile.lines  # its generated kernels, by name, in the type of their first input
        if precision == "fp32":
            assert set(generated.values()) == {"fp32"}, generated
        else:  # the input's quantization reads float; the kernels after it read integers
            assert {executed for name, executed in generated.items() if "_fused_quantize_per_tensor_0" in name} == \
                {"fp32"} and "int8" in generated.values(), generated
        # the program's multiply-adds, matched in order to the oneDNN calls: both convolutions and the linear layer
        assert sum(line.macs for line in profile.lines) == 96 * 96 * 8 * 3 + 96 * 96 * 64 * 8 * 49 + 640
        assert profile.integer_mac_share() == (1.0 if precision == "int8" else 0.0)
    folder = made["fp32"].parent
    assert (folder / PROGRAM_NOTE).exists()
    assert artifact_size_bytes(folder) == made["fp32"].stat().st_size
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(made["fp32"], bare / made["fp32"].name)  # a package exported before its program was kept
    adapter = _loaded(bare / made["fp32"].name, "fp32")
    with pytest.raises(ProfileUnavailable, match="export it again"):
        adapter.profile(adapter.prepare(np.zeros((1, 3, 96, 96), np.float32)), 2)
