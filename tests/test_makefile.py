"""Every Makefile variable reaches the CLI as a flag it accepts."""

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
