"""Every Makefile variable reaches the CLI as a flag it accepts."""

import os
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from bench.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent

VARIABLES = {"MODEL": "mobilenet_v2", "WEIGHTS": "w.pt", "RUNTIMES": "onnxruntime,openvino", "PRECISION": "fp32",
             "BATCH": "1,8", "THREADS": "2", "TARGET": "cpu", "OUT": "results/x", "WARMUP": "3", "ITERS": "20",
             "DURATION": "1", "MAX_DURATION": "9", "TIMEOUT": "60", "SEED": "4"}


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_variables_become_cli_flags():
    args = [f"{k}={v}" for k, v in VARIABLES.items()]
    dry = subprocess.run(["make", "-n", "bench", *args], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout
    line = next(line for line in dry.splitlines() if "-m bench" in line)
    argv = shlex.split(line.split("-m bench", 1)[1])
    parsed = build_parser().parse_args(argv)
    assert parsed.model == "mobilenet_v2" and parsed.weights == "w.pt"
    assert parsed.runtimes == ("onnxruntime", "openvino") and parsed.batch == (1, 8)
    assert (parsed.threads, parsed.warmup, parsed.iters, parsed.seed) == (2, 3, 20, 4)
    assert (parsed.duration, parsed.max_duration, parsed.timeout) == (1.0, 9.0, 60.0)
    assert parsed.target == ("cpu",) and parsed.precision == ("fp32",) and str(parsed.out) == "results/x"


def _requirements(items):
    from packaging.requirements import Requirement

    return {Requirement(item).name: Requirement(item) for item in items}


def test_each_install_flavour_holds_exactly_one_onnx_runtime():
    """onnxruntime and onnxruntime-gpu write the same package folder: no extra set may bring both, and the
    TensorRT pin is the major onnxruntime-gpu's TensorRT EP was built against (10 for 1.31: libnvinfer.so.10)."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = _requirements(project["dependencies"])
    extras = {name: _requirements(items) for name, items in project["optional-dependencies"].items()}
    flavours = {name: {**core, **extras["dev"], **extras["yolo"], **extras[name]} for name in ("cpu", "gpu")}
    ort = {name: [d for d in deps if d.startswith("onnxruntime")] for name, deps in flavours.items()}
    assert ort == {"cpu": ["onnxruntime"], "gpu": ["onnxruntime-gpu"]}
    gpu = extras["gpu"]
    ort_gpu = gpu["onnxruntime-gpu"].specifier
    assert ort_gpu.contains("1.31.1") and not ort_gpu.contains("1.32.0")
    tensorrt = gpu["tensorrt-cu13"].specifier
    assert tensorrt.contains("10.16.1") and not tensorrt.contains("11.0.0")


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
@pytest.mark.parametrize("flavour,other", [("gpu", "cpu"), ("cpu", "gpu")])
def test_install_targets_remove_both_onnx_runtimes_then_install_one_and_check(flavour, other):
    dry = subprocess.run(["make", "-n", f"install-{flavour}"], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout
    uninstall = dry.index("pip uninstall -y onnxruntime onnxruntime-gpu")
    install = dry.index(f"-e '.[dev,yolo,{flavour}]'")
    assert uninstall < install < dry.index("-m runtimes.onnxrt --check-one")
    assert f",{other}]" not in dry and f"echo \"dev,yolo,{flavour}\" > .venv/extras" in dry


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
@pytest.mark.parametrize("error,says", [
    ("OSError: [Errno 28] No space left on device", "install failed: no space left on device ("),
    ("ERROR: No matching distribution found for torch", "install failed: see .venv/install.log"),
])
def test_a_failed_install_says_why_in_one_line(tmp_path, error, says):
    """A full disk is the commonest install failure on a fresh machine (torch's CUDA build is several GB):
    it is named with the free space, not left in the middle of pip's log."""
    shutil.copy(ROOT / "Makefile", tmp_path)
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    python = tmp_path / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(f"#!/bin/sh\necho '{error}'\nexit 1\n")
    python.chmod(0o755)
    outer_make = ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")  # under `make test`, make would add "Leaving directory"
    env = {k: v for k, v in os.environ.items() if k not in outer_make}
    done = subprocess.run(["make", "--no-print-directory", "test"], cwd=tmp_path, capture_output=True, text=True,
                          env=env)
    assert done.returncode != 0
    assert says in done.stdout.splitlines()[-1]
    assert not (tmp_path / ".venv" / ".installed-stamp").exists()
