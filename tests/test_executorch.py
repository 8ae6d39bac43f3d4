"""ExecuTorch with XNNPACK: a real `.pte`, run by ExecuTorch's runtime, its int8 stored as integers, and a model
with an operator XNNPACK does not take still an honest row."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from edgebench.bench.measure.fidelity import compare
from edgebench.models import load_model
from edgebench.runtimes import RuntimeOptions, get_runtime

from tests_paths import ASSETS

BIG_CONV = f"{ASSETS / 'one_big_conv.py'}:build"
CUMPROD = f"{ASSETS / 'with_cumprod.py'}:build"
ExecuTorch = get_runtime("executorch")
pytestmark = pytest.mark.skipif(ExecuTorch.export_unavailable("cpu", "fp32") is not None,
                                reason=f"{ExecuTorch.export_unavailable('cpu', 'fp32')}")


def _exported(module: nn.Module, example: torch.Tensor, precision: str, folder, threads: int = 1):
    adapter = ExecuTorch(RuntimeOptions(target="cpu", precision=precision, threads=threads))
    adapter.calibration = np.random.default_rng(0).standard_normal((8, *example.shape[1:])).astype(np.float32)
    folder.mkdir()
    artifact = adapter.export(module, example, folder)
    adapter.load(artifact)
    return adapter, artifact


def test_int8_is_stored_as_integers_and_stays_within_int8s_tolerance(tmp_path):
    """The int8 `.pte` holds a byte per weight: a quarter of the fp32 file's weight bytes (25,088 weights here)."""
    model = load_model(BIG_CONV)
    with torch.inference_mode():
        reference = model.module(model.example).numpy()
    fp32, fp32_file = _exported(model.module, model.example, "fp32", tmp_path / "fp32")
    int8, int8_file = _exported(model.module, model.example, "int8", tmp_path / "int8")
    weights = sum(p.numel() for p in model.module.parameters() if p.dim() > 1)
    saved = fp32_file.stat().st_size - int8_file.stat().st_size
    assert saved > 0.7 * 3 * weights, (fp32_file.stat().st_size, int8_file.stat().st_size, weights)
    assert compare(fp32.predict(model.example.numpy()), [reference], "fp32").within_tolerance
    assert compare(int8.predict(model.example.numpy()), [reference], "int8").within_tolerance
    assert int8.details().startswith("XNNPACK delegate calls 1; portable kernel calls 0")
    # ExecuTorch's event tracer: XNNPACK ran the convolutions in integer kernels (QC8 in the operator's name).
    from edgebench.bench.measure.profile import summarise

    profile = summarise(int8.profile(int8.prepare(model.example.numpy()), 5))
    convolutions = [line for line in profile.lines if line.category == "convolution"]
    assert convolutions and all(line.executed == "int8" for line in convolutions), convolutions
    assert profile.integer_share() > 0.9
    # the program's multiply-adds, noted at export, on XNNPACK's matching operators: all three ran in integer
    assert sorted(line.macs for line in profile.lines if line.macs) == [640, 96 * 96 * 8 * 3, 96 * 96 * 64 * 8 * 49]
    assert profile.integer_mac_share() == 1.0
    fp32_profile = summarise(fp32.profile(fp32.prepare(model.example.numpy()), 5))
    assert fp32_profile.integer_share() == 0 and fp32_profile.integer_mac_share() == 0
    assert profile.top(1)[0].macs == 96 * 96 * 64 * 8 * 49  # the 7x7 convolution leads, with its own count


class WithCumsum(nn.Module):
    """A convolution XNNPACK takes, then a cumulative sum it does not."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cumsum(self.conv(x).flatten(1), dim=1)


def test_an_operator_xnnpack_does_not_take_runs_in_portable_kernels_and_the_row_says_so(tmp_path):
    torch.manual_seed(0)
    module, example = WithCumsum().eval(), torch.randn(1, 3, 16, 16)
    with torch.inference_mode():
        reference = module(example).numpy()
    adapter, _ = _exported(module, example, "fp32", tmp_path / "m", threads=1)
    assert compare(adapter.predict(example.numpy()), [reference], "fp32").within_tolerance
    details = adapter.details()
    assert details.startswith("XNNPACK delegate calls 1; portable kernel calls ") and "cumsum" in details, details
    profiled = {line.operator for line in summarise_profile(adapter, example)}
    assert "native_call_cumsum.out" in profiled  # the portable kernel's own event, beside XNNPACK's
    assert details.endswith("XNNPACK threads 1")  # the row's threads (this machine has 2), read back from XNNPACK


def summarise_profile(adapter, example):
    from edgebench.bench.measure.profile import summarise

    return summarise(adapter.profile(adapter.prepare(example.numpy()), 3)).lines


def test_the_measuring_process_loads_the_runtime_without_the_compiler(tmp_path):
    """ExecuTorch's runtime import pulled in its compiler (`executorch.exir`, Dynamo): 3.4 s of every row's load
    (and reading the `.pte` for the details, 4 s of its close). A fresh process loads, runs and reads the `.pte`
    without them, and the real compiler still imports after."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    torch.manual_seed(0)
    module, example = WithCumsum().eval(), torch.randn(1, 3, 16, 16)
    _, artifact = _exported(module, example, "fp32", tmp_path / "m")
    probe = ("import sys, numpy as np\n"
             "from edgebench.runtimes import RuntimeOptions, get_runtime\n"
             "a = get_runtime('executorch')(RuntimeOptions(precision='fp32', threads=1))\n"
             f"a.load(__import__('pathlib').Path({str(artifact)!r}))\n"
             "out = a.predict(np.zeros((1, 3, 16, 16), np.float32))\n"
             "a.details()\n"  # reads the .pte back, after the timed rounds
             "print(out[0].shape, sorted(m for m in ('torch._dynamo', 'executorch.exir') if m in sys.modules))\n"
             "from executorch.exir import to_edge_transform_and_lower\n"
             "from executorch.devtools import Inspector\n"
             "print('compiler importable')\n")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300,
                         cwd=Path(__file__).resolve().parents[1], env=dict(os.environ))
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split("\n")[:2] == ["(1, 1568) []", "compiler importable"], out.stdout


def test_an_operator_executorch_cannot_lower_is_named_and_the_row_is_unavailable(tmp_path, fast_timing):
    """torch.cumprod exports, but the edge dialect's verifier refuses it: no ExecuTorch kernel. The adapter says
    which operator (ExportUnavailable), and a run's row is `unavailable` with that reason, not an `error`;
    PyTorch measures the same model beside it."""
    from test_runner import run

    from edgebench.bench.config import BenchConfig
    from edgebench.runtimes.base import ExportUnavailable

    model = load_model(CUMPROD)
    adapter = ExecuTorch(RuntimeOptions(target="cpu", precision="fp32", threads=1))
    with pytest.raises(ExportUnavailable, match=r"^ExecuTorch cannot lower aten\.cumprod\.default: not in the Core"):
        adapter.export(model.module, model.example, tmp_path)
    summary = run(BenchConfig(model=CUMPROD, runtimes=("pytorch", "executorch"), threads=1, timing=fast_timing,
                              repeats=1, out=tmp_path / "run", cache=False))
    rows = {row.runtime: row for row in summary.rows}
    assert rows["pytorch"].status == "ok"
    assert rows["executorch"].status == "unavailable", rows["executorch"].error
    assert "aten.cumprod.default" in rows["executorch"].error


def test_the_verifiers_two_refusals_name_their_operator_and_other_failures_stay_errors():
    """The edge verifier's messages as executorch 1.5 words them (from torch.linalg.inv and from abs() of an FFT's
    complex output); any other exception is not read as 'cannot lower' (the row stays an error)."""
    from edgebench.runtimes.executorch_xnnpack import unlowerable

    outside = ("\nOperator torch._ops.aten.linalg_inv_ex.default is not in Core ATen opset (https://pytorch.org/docs/"
               "stable/torch.compiler_ir.html#core-aten-ir).\"\nThere are a few things to try:")
    assert unlowerable(outside).startswith("ExecuTorch cannot lower aten.linalg_inv_ex.default: not in the Core ATen")
    dtypes = ("These operators are taking Tensor inputs with mismatched dtypes:\n\nOperator: <EdgeOpOverload: "
              "aten.abs.default>: schema = aten::abs(Tensor self) -> Tensor with args: {'self': torch.complex64, "
              "'__ret_0': torch.float32}\nstack trace: File")
    assert unlowerable(dtypes) == ("ExecuTorch cannot lower aten.abs.default for these dtypes: {'self': "
                                   "torch.complex64, '__ret_0': torch.float32}")
    assert unlowerable("RuntimeError: out of memory") == ""


def test_the_programs_multiply_adds_are_counted_in_order_or_not_at_all():
    """Noted at export for the profile: each convolution and linear layer in the order the program runs them,
    with the XNNPACK operators it may run as; none for a program with a product this count does not cover."""
    from edgebench.runtimes._torch import program_macs
    from edgebench.runtimes._xnnpack import runs_as

    model = nn.Sequential(nn.Conv2d(3, 8, 1), nn.Conv2d(8, 8, 3, groups=8, padding=1), nn.Flatten(),
                          nn.Linear(8 * 16, 4)).eval()
    program = torch.export.export(model, (torch.randn(1, 3, 4, 4),))
    counted = program_macs(program)
    assert [op["macs"] for op in counted] == [16 * 8 * 3, 16 * 8 * 9, 4 * 128]
    assert [runs_as(op["kind"], op["one_by_one"]) for op in counted] == [
        ("Convolution", "Fully Connected"), ("Convolution",), ("Fully Connected",)]

    class Attention(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x @ x.transpose(-1, -2)

    assert program_macs(torch.export.export(Attention(), (torch.randn(1, 4, 4),))) is None
