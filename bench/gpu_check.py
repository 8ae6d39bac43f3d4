"""Proof of the GPU paths on a machine with an NVIDIA GPU: `python3 -m bench.gpu_check OUT_DIR`.

Made for a short loan of a GPU machine that has its own Python and no network: it runs from the source tree
(`PYTHONPATH=. python3 -m bench.gpu_check OUT_DIR`, or `make gpu-check OUT=...` in the venv) and needs only
what the PyTorch, TorchScript and ONNX Runtime rows need. In one run of a few minutes it:

1. runs the GPU tests (`pytest -m gpu`, through the harness's real child processes) where pytest is installed;
2. shows that the fp32 check can fail: resnet18 on the GPU with TF32 allowed, against the fp32 tolerance;
3. runs `--target cpu,gpu --runtimes pytorch,torchscript,onnxruntime --precision fp32,tf32,fp16 --batch 1,8` on
   resnet18 and the tiny test model, one run folder each under OUT_DIR;
4. checks every GPU row: measured rows within their precision's tolerance (TF32 would fail fp32's), with
   h2d/d2h copies and energy (or the reason there is none); ONNX Runtime's GPU rows measured where
   onnxruntime-gpu is installed, `unavailable` with the reason where it is not.

It prints one line per check, writes OUT_DIR/gpu_check.md (environment, checks, the CPU ms | GPU ms tables)
and exits 1 when a check fails, 2 when there is no CUDA device. Energy needs `nvidia-ml-py`: on a machine
without it, unpack its wheel (pure Python) into a folder on PYTHONPATH.
"""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from bench.isolation import PROJECT_ROOT as ROOT
from bench.isolation import project_env

TINY_MODEL = f"{ROOT / 'tests' / 'assets' / 'tiny_cnn.py'}:build"
MODELS = {"resnet18": "resnet18", "tiny": TINY_MODEL}
BENCH_ARGS = ["--target", "cpu,gpu", "--runtimes", "pytorch,torchscript,onnxruntime", "--precision", "fp32,tf32,fp16",
              "--batch", "1,8", "--repeats", "3", "--duration", "0.5", "--timeout", "300"]


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    detail: str

    def line(self) -> str:
        return f"{'PASS' if self.passed else 'FAIL'}  {self.name}: {self.detail}"


def _environment() -> list[str]:
    import torch

    lines = [f"Python {platform.python_version()}, torch {torch.__version__} (CUDA {torch.version.cuda})"]
    if torch.cuda.is_available():
        lines.append(f"GPU: {torch.cuda.get_device_name(0)}; CPU: {platform.processor() or platform.machine()}, "
                     f"{os.cpu_count()} logical CPUs")
    for module in ("onnxruntime", "pynvml", "pytest"):
        lines.append(f"{module}: {'present' if importlib.util.find_spec(module) else 'absent'}")
    if importlib.util.find_spec("onnxruntime"):
        import onnxruntime as ort

        lines.append(f"onnxruntime {ort.__version__} providers: {', '.join(ort.get_available_providers())}")
    return lines


def run_gpu_tests() -> Check:
    if importlib.util.find_spec("pytest") is None:
        return Check("GPU tests", False, "pytest is not installed: the tests were not run")
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider", "tests"],
                          cwd=ROOT, env=project_env(), capture_output=True, text=True)
    summary = (done.stdout.strip().splitlines() or ["no output"])[-1]
    return Check("GPU tests (pytest -m gpu)", done.returncode == 0, summary)


def tf32_control() -> Check:
    """The fp32 tolerance must be able to see TF32, or passing it proves nothing: resnet18 with TF32 allowed."""
    import torch

    from bench.measure.fidelity import compare
    from models import load_model, make_input

    model = load_model("resnet18")  # BatchNorm recalibrated, as every run's: realistic activations
    x = make_input(model.example, 8, seed=0)
    with torch.inference_mode():
        reference = model.module(x).numpy()
        gpu = model.module.cuda()
        legacy = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        tf32 = gpu(x.cuda()).float().cpu().numpy()
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
        ieee = gpu(x.cuda()).float().cpu().numpy()
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = legacy
    with_tf32, without = compare([tf32], [reference], "fp32"), compare([ieee], [reference], "fp32")
    return Check("fp32 tolerance sees TF32", not with_tf32.within_tolerance and without.within_tolerance,
                 f"TF32 max abs diff {with_tf32.max_abs_diff:.2e} (within fp32 tolerance: "
                 f"{with_tf32.within_tolerance}); IEEE fp32 {without.max_abs_diff:.2e} "
                 f"(within: {without.within_tolerance})")


def run_bench(name: str, model: str, out: Path) -> tuple[Check, Path]:
    run_dir = out / name
    done = subprocess.run([sys.executable, "-m", "bench", "--model", model, *BENCH_ARGS, "--out", str(run_dir)],
                          cwd=ROOT, env=project_env(), capture_output=True, text=True)
    tail = (done.stderr.strip() or done.stdout.strip()).splitlines()[-1:] or ["no output"]
    return Check(f"bench {name}", done.returncode == 0, f"exit {done.returncode}: {tail[0]}"), run_dir


def check_rows(name: str, run_dir: Path, cuda_ep: bool) -> list[Check]:
    rows = [json.loads(line) for line in (run_dir / "rows.jsonl").read_text().splitlines() if line.strip()]
    gpu = [r for r in rows if r["target"] == "gpu"]
    checks = []
    for r in gpu:
        label = f"{name} {r['runtime']} {r['precision']} b{r['batch']} gpu"
        if r["runtime"] == "onnxruntime" and not cuda_ep:
            honest = r["status"] == "unavailable" and "CUDAExecutionProvider" in r["error"]
            checks.append(Check(label, honest, f"{r['status']}: {r['error']}"))
            continue
        if r["status"] != "ok":
            checks.append(Check(label, False, f"{r['status']}: {r['error']}"))
            continue
        problems = []
        if not r.get("fidelity_ok"):
            problems.append(f"outside {r['precision']} tolerance (max abs diff {r['max_abs_diff']})")
        if r.get("h2d_ms") is None or r.get("d2h_ms") is None:
            problems.append("no h2d/d2h figure")
        if r.get("energy_mj") is None and not r.get("energy_source"):
            problems.append("no energy figure and no reason")
        energy = f"{r['energy_mj']:.1f} mJ" if r.get("energy_mj") is not None else r.get("energy_source")
        detail = (f"p50 {r['p50_ms']:.3f} ms, h2d {r.get('h2d_ms')} ms, d2h {r.get('d2h_ms')} ms, "
                  f"max abs diff {r['max_abs_diff']:.1e}, energy {energy}")
        checks.append(Check(label, not problems, "; ".join(problems) or detail))
    if not gpu:
        checks.append(Check(f"{name} GPU rows", False, "the run has no GPU rows"))
    return checks


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python3 -m bench.gpu_check OUT_DIR", file=sys.stderr)
        return 2
    import torch

    if not torch.cuda.is_available():
        print(f"no CUDA device visible to torch {torch.__version__}: nothing to check here", file=sys.stderr)
        return 2
    out = Path(argv[0])
    out.mkdir(parents=True, exist_ok=True)
    environment = _environment()
    print("\n".join(environment), flush=True)
    cuda_ep = False
    if importlib.util.find_spec("onnxruntime"):
        import onnxruntime as ort

        cuda_ep = "CUDAExecutionProvider" in ort.get_available_providers()
    checks = [run_gpu_tests(), tf32_control()]
    print(checks[0].line(), checks[1].line(), sep="\n", flush=True)
    tables = []
    for name, model in MODELS.items():
        ran, run_dir = run_bench(name, model, out)
        checks.append(ran)
        print(ran.line(), flush=True)
        if (run_dir / "rows.jsonl").exists():
            for check in check_rows(name, run_dir, cuda_ep):
                checks.append(check)
                print(check.line(), flush=True)
        if (run_dir / "table.md").exists():
            tables.append(f"### {name}\n\n{(run_dir / 'table.md').read_text()}")
    failed = [c for c in checks if not c.passed]
    report = ["# GPU check", "", *[f"- {line}" for line in environment], "", "## Checks", "",
              *[f"- {c.line()}" for c in checks], "", "## Tables", "", *tables]
    (out / "gpu_check.md").write_text("\n".join(report) + "\n")
    print(f"{len(checks) - len(failed)} of {len(checks)} checks passed; report: {out / 'gpu_check.md'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
