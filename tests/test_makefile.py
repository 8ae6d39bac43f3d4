"""Every Makefile variable reaches the CLI as a flag it accepts."""

import os
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from edgebench.bench.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent

VARIABLES = {"MODEL": "mobilenet_v2", "WEIGHTS": "w.pt", "RUNTIMES": "onnxruntime,openvino", "PRECISION": "fp32",
             "BATCH": "1,8", "THREADS": "2", "TARGET": "cpu", "OUT": "results/x", "WARMUP": "3", "ITERS": "20",
             "DURATION": "1", "MAX_DURATION": "9", "TIMEOUT": "60", "SEED": "4", "WARM_EXPORTS": "off",
             "LOAD_JOBS": "1"}


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_variables_become_cli_flags():
    args = [f"{k}={v}" for k, v in VARIABLES.items()]
    dry = subprocess.run(["make", "-n", "bench", *args], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout
    line = next(line for line in dry.splitlines() if "-m edgebench.bench" in line)
    argv = shlex.split(line.split("-m edgebench.bench", 1)[1])
    parsed = build_parser().parse_args(argv)
    assert parsed.model == "mobilenet_v2" and parsed.weights == "w.pt"
    assert parsed.runtimes == ("onnxruntime", "openvino") and parsed.batch == (1, 8)
    assert (parsed.threads, parsed.warmup, parsed.iters, parsed.seed) == (2, 3, 20, 4)
    assert (parsed.duration, parsed.max_duration, parsed.timeout) == (1.0, 9.0, 60.0)
    assert parsed.target == ("cpu",) and parsed.precision == ("fp32",) and str(parsed.out) == "results/x"
    assert parsed.fresh_exports and parsed.load_jobs == 1


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
    assert not [name for name in gpu if name.startswith("tensorrt")]  # stubs on PyPI: its own optional step
    tensorrt = extras["tensorrt"]["tensorrt-cu13"].specifier
    assert tensorrt.contains("10.16.1") and not tensorrt.contains("11.0.0")
    from edgebench.runtimes._onnx import TENSORRT_PIN  # what the unavailable rows tell a user to install

    assert _requirements([TENSORRT_PIN.strip("'")]) == extras["tensorrt"]


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
@pytest.mark.parametrize("flavour,other", [("gpu", "cpu"), ("cpu", "gpu")])
def test_install_targets_remove_both_onnx_runtimes_then_install_one_and_check(flavour, other):
    dry = subprocess.run(["make", "-n", f"install-{flavour}"], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout
    uninstall = dry.index("pip uninstall -y onnxruntime onnxruntime-gpu")
    install = dry.index(f"-e '.[dev,yolo,{flavour}]'")
    assert uninstall < install < dry.index("-m edgebench.runtimes.onnxrt --check-one")
    assert f"echo \"dev,yolo,{flavour}\" > .venv/extras" in dry
    if flavour == "cpu":
        assert f",{other}]" not in dry
    else:  # the CPU build comes back only when the GPU install failed (tested for real below)
        assert dry.index("the GPU install failed") < dry.index(f",{other}]")


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


def _fake_venv(tmp_path, fails_on: str, extras: str | None = None):
    """The Makefile and pyproject in a folder whose .venv python records each call and fails those whose
    arguments contain `fails_on`: the install recipes' logic, run for real, without installing anything."""
    shutil.copy(ROOT / "Makefile", tmp_path)
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    python = tmp_path / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(f'#!/bin/sh\necho "$*" >> {tmp_path}/calls.log\n'
                      f'case "$*" in *"{fails_on}"*) echo "ERROR: no such package"; exit 1;; esac\nexit 0\n')
    python.chmod(0o755)
    if extras is not None:
        (tmp_path / ".venv" / "extras").write_text(extras + "\n")
    return tmp_path


def _make(folder, *targets):
    outer_make = ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")  # under `make test`, make would add "Leaving directory"
    env = {k: v for k, v in os.environ.items() if k not in outer_make}
    return subprocess.run(["make", "--no-print-directory", *targets], cwd=folder, capture_output=True, text=True,
                          env=env)


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_a_failed_gpu_install_puts_the_cpu_onnx_runtime_back(tmp_path):
    """onnxruntime was uninstalled before the GPU install failed: the venv must not be left with no ONNX Runtime
    and a record saying `gpu`."""
    folder = _fake_venv(tmp_path, "[dev,yolo,gpu]", extras="dev,yolo,cpu")
    done = _make(folder, "install-gpu")
    assert done.returncode != 0 and done.stdout.splitlines()[-1] == "install failed: see .venv/install.log"
    calls = (folder / "calls.log").read_text().splitlines()
    assert calls.index("-m pip install -e .[dev,yolo,gpu]") < calls.index("-m pip install -e .[dev,yolo,cpu]")
    assert (folder / ".venv" / "extras").read_text().strip() == "dev,yolo,cpu"
    assert not (folder / ".venv" / ".installed-stamp").exists()


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_tensorrt_is_an_optional_last_step_whose_failure_leaves_the_gpu_install(tmp_path):
    """PyPI's tensorrt packages are stubs that fetch from NVIDIA's index: where it is unreachable, the GPU install
    still succeeds, says TensorRT was not installed, and the TensorRT rows say what to install."""
    folder = _fake_venv(tmp_path, "[tensorrt]")
    done = _make(folder, "install-gpu")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "TensorRT was not installed" in done.stdout and "Error" not in done.stdout + done.stderr
    alone = _make(folder, "install-tensorrt")  # asked for by itself, its failure is the command's
    assert alone.returncode != 0 and "TensorRT was not installed" in alone.stdout
    calls = (folder / "calls.log").read_text().splitlines()
    assert "-m pip install -e .[dev,yolo,gpu]" in calls and not any("tensorrt" in c for c in calls[:calls.index(
        "-m pip install -e .[dev,yolo,gpu]") + 1])
    assert calls[-1] == "-m pip install --extra-index-url https://pypi.nvidia.com -e .[tensorrt]"
    assert (folder / ".venv" / "extras").read_text().strip() == "dev,yolo,gpu"
    assert (folder / ".venv" / ".installed-stamp").exists()


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_a_lean_gpu_venv_reinstalls_leanly_when_pyproject_changes(tmp_path):
    """A venv made by `install-gpu-lean` beside a system CUDA torch: a pyproject.toml change reinstalls the project
    without dependencies and the `gpu-lean` list, never `.[extras]` (which would pull a second torch)."""
    folder = _fake_venv(tmp_path, "never", extras="gpu-lean")
    done = _make(folder, ".venv/.installed-stamp")
    assert done.returncode == 0, done.stdout + done.stderr
    calls = (folder / "calls.log").read_text().splitlines()
    assert "-m pip install --no-deps -e ." in calls and "-m pip install -r .venv/gpu-lean.txt" in calls
    assert not [c for c in calls if "-e .[" in c]


def test_the_lean_gpu_list_has_no_torch_and_pins_what_the_full_gpu_extra_pins():
    import tomllib

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    lean, gpu = _requirements(extras["gpu-lean"]), _requirements(extras["gpu"])
    assert not {"torch", "torchvision", "onnxruntime", "openvino"} & set(lean)
    assert all(str(lean[name]) == str(requirement) for name, requirement in gpu.items())


def _readme_make_commands() -> list[str]:
    """Every `make ...` command the README shows: in code blocks (comments dropped) and in inline code."""
    import re

    text = (ROOT / "README.md").read_text()
    found = [line.split("#")[0].strip() for block in re.findall(r"```[a-z]*\n(.*?)```", text, re.S)
             for line in block.splitlines()]
    found += re.findall(r"`(make [^`]+)`", text)
    return sorted({cmd for cmd in found if cmd.startswith("make ")})


MAKEFILE = (ROOT / "Makefile").read_text() if (ROOT / "Makefile").exists() else ""
PARSED_TARGETS = {"bench": "-m edgebench.bench", "report": "-m edgebench.reports", "compare": "-m edgebench.reports",
                  "recommend": "-m edgebench.reports"}


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
@pytest.mark.parametrize("command", _readme_make_commands())
def test_every_make_command_in_the_readme_names_a_target_and_variables_the_makefile_reads(command):
    """A README example with a variable the Makefile never reads would run with it silently ignored; one whose
    flags the CLI refuses would fail for the user who copies it."""
    import re

    from edgebench.reports.__main__ import build_parser as reports_parser

    words = shlex.split(command.replace("<", "").replace(">", ""))[1:]
    targets = [w for w in words if "=" not in w] or ["bench"]
    for target in targets:  # a rule may make several targets (`install-gpu install-cpu:`)
        assert re.search(rf"^(?:[\w.-]+ )*{re.escape(target)}(?: [\w.-]+)*:", MAKEFILE, re.M), \
            f"{command}: no target {target!r}"
    for name in (w.split("=", 1)[0] for w in words if "=" in w):
        assert f"$({name})" in MAKEFILE, f"{command}: the Makefile does not read {name}"
    if targets[0] in PARSED_TARGETS and (targets[0] == "bench" or len(words) > 1):  # an example, not a mention
        dry = subprocess.run(["make", "-n", *words], cwd=ROOT, capture_output=True, text=True, check=True).stdout
        dry = dry.replace("\\\n", " ")
        line = next(line for line in dry.splitlines() if PARSED_TARGETS[targets[0]] in line)
        argv = shlex.split(line.split(PARSED_TARGETS[targets[0]], 1)[1])
        parser = build_parser() if targets[0] == "bench" else reports_parser()
        try:
            parser.parse_args(argv)
        except (SystemExit, Exception) as exc:  # noqa: BLE001 (what the user would have seen)
            pytest.fail(f"{command}: the CLI refuses {argv}: {exc}")
