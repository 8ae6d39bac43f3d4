"""Proof of the GPU paths on a machine with an NVIDIA GPU: `python3 -m edgebench.bench.gpu_check OUT_DIR`.

Made for a short loan of a GPU machine (minutes, 10 a command) that has its own Python with a CUDA torch: it runs
from the source tree (`PYTHONPATH=. python3 -m edgebench.bench.gpu_check OUT_DIR`, or `make gpu-check OUT=...` in a
venv, `make install-gpu-lean` for one beside the machine's torch) and needs only what the PyTorch, TorchScript
and ONNX Runtime rows need. Steps, ordered by what they prove, each its own process with its own time limit
(`bench.steps`; under 5 minutes in all):

1. environment: torch, CUDA, the GPU, what is installed (ONNX Runtime's providers, NVML, TensorRT);
2. the GPU tests (`pytest -m gpu`, through the harness's real child processes);
3. the TF32 control: resnet18 on the GPU with TF32 allowed must fail the fp32 tolerance, IEEE fp32 pass it,
   and TF32's error be at least 10x IEEE fp32's;
4. resnet18 with `--target gpu --runtimes pytorch,torchscript,onnxruntime --precision fp32,tf32,fp16 --profile`,
   each GPU row checked: within its precision's tolerance, h2d/d2h copies, energy and GPU memory or their reasons;
   ONNX Runtime's rows measured where onnxruntime-gpu is installed, `unavailable` with the reason where not; and
   the CUDA kernel profile of each PyTorch and TorchScript row: its slowest convolution kernel in the row's
   precision, no TF32, fp16 or bf16 kernel in an fp32 row, and its slowest kernels listed by their full names;
5. TensorRT and ONNX Runtime's TensorRT EP on resnet18, where `tensorrt` is installed.

Each step's verdict (proven, failed with the reason, not available with the reason) is printed and appended to
OUT_DIR/report.md as soon as the step ends, so a kill leaves what was done; run it again in the same folder to
do only the steps not yet proven. Exits 1 when a step failed, 2 when there is no CUDA device.
"""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edgebench.bench.isolation import PROJECT_ROOT as ROOT
from edgebench.bench.isolation import project_env
from edgebench.bench.steps import Step, Verdict, run_steps, write_verdict

# GPU rows only (the CPU is not what is proven here), batch 1, the default 10 cycles, short rounds.
BENCH_ARGS = ["--target", "gpu", "--precision", "fp32,tf32,fp16", "--batch", "1", "--duration", "0.1",
              "--timeout", "60"]


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
    for module in ("onnxruntime", "pynvml", "pytest", "tensorrt"):
        lines.append(f"{module}: {'present' if importlib.util.find_spec(module) else 'absent'}")
    if importlib.util.find_spec("onnxruntime"):
        import onnxruntime as ort

        lines.append(f"onnxruntime {ort.__version__} providers: {', '.join(ort.get_available_providers())}")
    return lines


def run_gpu_tests() -> Check:
    """`pytest -m gpu` (the step checks that pytest is installed first)."""
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider", "tests"],
                          cwd=ROOT, env=project_env(), capture_output=True, text=True)
    summary = (done.stdout.strip().splitlines() or ["no output"])[-1]
    return Check("GPU tests (pytest -m gpu)", done.returncode == 0, summary)


def tf32_control() -> Check:
    """The fp32 tolerance must be able to see TF32, or passing it proves nothing: resnet18 with TF32 allowed."""
    import torch

    from edgebench.bench.measure.fidelity import compare
    from edgebench.models import load_model, make_input

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
    return tf32_verdict(with_tf32.max_abs_diff, with_tf32.within_tolerance, without.max_abs_diff,
                        without.within_tolerance)


TF32_SEPARATION = 10.0  # TF32's error must be this many times IEEE fp32's on the GPU for the check to mean much


def tf32_verdict(tf32_diff: float, tf32_within: bool, ieee_diff: float, ieee_within: bool) -> Check:
    """The fp32 tolerance (1e-3 of the largest output) is about TF32's own error on resnet18 (1.4e-3 in a CPU
    emulation), so TF32 may pass it by luck: the control holds only when TF32 fails it, IEEE fp32 passes it, and
    TF32's error is at least TF32_SEPARATION times IEEE's. The measured pair is what a tighter GPU fp32
    tolerance would be set from."""
    separation = tf32_diff / ieee_diff if ieee_diff > 0 else float("inf")
    held = not tf32_within and ieee_within and separation >= TF32_SEPARATION
    return Check("fp32 tolerance sees TF32", held,
                 f"TF32 max abs diff {tf32_diff:.2e} (within fp32 tolerance: {tf32_within}); IEEE fp32 "
                 f"{ieee_diff:.2e} (within: {ieee_within}); TF32/IEEE {separation:.1f}x (needs >= "
                 f"{TF32_SEPARATION:g}x)")


def run_bench(name: str, model: str, out: Path, runtimes: str, extra: tuple[str, ...] = ()) -> tuple[Check, Path]:
    run_dir = out / name
    done = subprocess.run([sys.executable, "-m", "edgebench.bench",
                           "--model", model, "--runtimes", runtimes, *BENCH_ARGS, *extra,
                           "--out", str(run_dir)], cwd=ROOT, env=project_env(), capture_output=True, text=True)
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
        if r.get("device_memory_mb") is None and not r.get("device_memory_source"):
            problems.append("no GPU memory figure and no reason")
        energy = f"{r['energy_mj']:.1f} mJ" if r.get("energy_mj") is not None else r.get("energy_source")
        memory = f"{r['device_memory_mb']:.0f} MB" if r.get("device_memory_mb") is not None else \
            r.get("device_memory_source")
        detail = (f"p50 {r['p50_ms']:.3f} ms, h2d {r.get('h2d_ms')} ms, d2h {r.get('d2h_ms')} ms, "
                  f"max abs diff {r['max_abs_diff']:.1e}, energy {energy}, GPU memory {memory}")
        checks.append(Check(label, not problems, "; ".join(problems) or detail))
    if not gpu:
        checks.append(Check(f"{name} GPU rows", False, "the run has no GPU rows"))
    return checks


REDUCED = ("tf32", "fp16", "bf16", "int8")  # what an IEEE fp32 row's kernels must never run in


def check_profiles(name: str, run_dir: Path, runtimes: tuple[str, ...]) -> tuple[list[Check], str]:
    """The CUDA kernel profile of each GPU row of `runtimes` (those profiled on a GPU): present, its slowest
    convolution kernel in the row's precision, and for an fp32 row no kernel at all in a reduced precision (the
    profile is where TF32 under an fp32 label would show). With the checks, each row's slowest lines with their
    kernels' full names: a failure says which names the precision rules (`runtimes._torch.CUDA_KERNEL_TYPES`)
    missed."""
    from edgebench.bench.measure.profile import OUTSIDE, PROFILE_FILE, read_profile
    from edgebench.bench.results import row_key

    rows = [json.loads(line) for line in (run_dir / "rows.jsonl").read_text().splitlines() if line.strip()]
    lines = read_profile(run_dir / PROFILE_FILE)
    checks, tables = [], []
    for r in (r for r in rows if r["target"] == "gpu" and r["runtime"] in runtimes):
        label = f"{name} {r['runtime']} {r['precision']} profile"
        key = row_key(r["model"], r["compression"], r["runtime"], r["precision"], r["target"], r["batch"])
        mine = [line for line in lines if line.key == key and line.operator != OUTSIDE]
        if r["status"] != "ok" or not mine:
            why = r.get("error") or r.get("profile_note") or "no lines in profile.csv"
            checks.append(Check(label, False, f"{r['status']}: {why}"))
            continue
        convolutions = [line for line in mine if line.category == "convolution"]
        problems = []
        if not convolutions:
            problems.append("no convolution kernel")
        elif convolutions[0].executed != r["precision"]:
            problems.append(f"slowest convolution kernel ran {convolutions[0].executed or 'unknown'}: "
                            f"{convolutions[0].kernel}")
        reduced = [line for line in mine if line.executed in REDUCED]
        if r["precision"] == "fp32" and reduced:
            problems.append(f"an fp32 row ran {reduced[0].executed} kernels: {reduced[0].kernel}")
        unknown = sum(line.share for line in mine if not line.executed)
        checks.append(Check(label, not problems, "; ".join(problems) or
                            f"profiled {r['profile_ms']:.3f} ms (p50 {r['p50_ms']:.3f}), {len(mine)} kernel lines, "
                            f"slowest convolution {convolutions[0].executed}, {unknown:.0%} of time in kernels "
                            "of unknown precision"))
        tables.append(f"{label}:\n" + "\n".join(f"- {line.share:.1%} {line.executed or '?'} {line.kind}: "
                                                 f"{line.kernel[:160]}" for line in mine[:6]))
    if not checks:
        checks.append(Check(f"{name} profiles", False, f"the run has no GPU rows of {', '.join(runtimes)}"))
    return checks, "\n\n".join(tables)


STEP_FLAG = "--step"


def plan(out: Path) -> list[Step]:
    """The steps in order of value, with limits that keep the whole under 5 minutes on the lent H200."""
    def step(name: str, limit_s: float) -> Step:
        return Step(name, (sys.executable, "-m", "edgebench.bench.gpu_check", STEP_FLAG, name, str(out)), limit_s)

    return [step("environment", 20), step("GPU tests", 90), step("TF32 control", 30), step("resnet18 on CUDA", 90),
            step("TensorRT", 45)]


def step_environment(out: Path) -> Verdict:
    lines = _environment()
    return Verdict("proven", lines[1] if len(lines) > 1 else lines[0], "\n".join(f"- {line}" for line in lines))


def _verdict(check: Check) -> Verdict:
    return Verdict("proven" if check.passed else "failed", check.detail)


def step_gpu_tests(out: Path) -> Verdict:
    if importlib.util.find_spec("pytest") is None:
        return Verdict("not available", "pytest is not installed: the tests were not run")
    return _verdict(run_gpu_tests())


def step_tf32(out: Path) -> Verdict:
    return _verdict(tf32_control())


def _bench_step(out: Path, name: str, runtimes: str, cuda_ep: bool, profiled: tuple[str, ...] = ()) -> Verdict:
    """resnet18 on the GPU in `runtimes`, its rows checked; with `profiled` runtimes, profiled too (`--profile`)
    and their rows' kernel profiles checked (`check_profiles`)."""
    run_dir = out / name
    shutil.rmtree(run_dir, ignore_errors=True)  # a retry starts the run afresh
    ran, run_dir = run_bench(name, "resnet18", out, runtimes, ("--profile", "yes") if profiled else ())
    checks, kernels = [ran], ""
    if (run_dir / "rows.jsonl").exists():
        checks += check_rows(name, run_dir, cuda_ep)
        if profiled:
            found, kernels = check_profiles(name, run_dir, profiled)
            checks += found
    table = (run_dir / "table.md").read_text() if (run_dir / "table.md").exists() else ""
    body = "\n".join(f"- {c.line()}" for c in checks) + "".join(f"\n\n{part}" for part in (table, kernels) if part)
    failed = [c for c in checks if not c.passed]
    detail = f"{len(checks) - len(failed)} of {len(checks)} checks passed" + \
        (f"; first failure: {failed[0].name}: {failed[0].detail}" if failed else "")
    return Verdict("failed" if failed else "proven", detail, body)


def step_resnet18(out: Path) -> Verdict:
    return _bench_step(out, "resnet18-cuda", "pytorch,torchscript,onnxruntime", _cuda_ep(),
                       profiled=("pytorch", "torchscript"))


def step_tensorrt(out: Path) -> Verdict:
    if importlib.util.find_spec("tensorrt") is None:
        return Verdict("not available", "tensorrt is not installed (make install-tensorrt, or pip install "
                       "'tensorrt-cu13>=10.13,<11' from https://pypi.nvidia.com)")
    return _bench_step(out, "resnet18-tensorrt", "tensorrt,onnxruntime-trt", True, profiled=("tensorrt",))


STEPS: dict[str, Callable[[Path], Verdict]] = {
    "environment": step_environment, "GPU tests": step_gpu_tests, "TF32 control": step_tf32,
    "resnet18 on CUDA": step_resnet18, "TensorRT": step_tensorrt,
}


def _cuda_ep() -> bool:
    if importlib.util.find_spec("onnxruntime") is None:
        return False
    import onnxruntime as ort

    return "CUDAExecutionProvider" in ort.get_available_providers()


def run_step(name: str, out: Path) -> int:
    """One step, in its own process: its verdict on disk, whatever happens inside it."""
    try:
        verdict = STEPS[name](out)
    except Exception as exc:  # a step's own failure is its verdict, with the reason
        verdict = Verdict("failed", f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
    write_verdict(out, name, verdict)
    return 0


def main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[0] == STEP_FLAG and argv[1] in STEPS:
        return run_step(argv[1], Path(argv[2]))
    if len(argv) != 1 or argv[0].startswith("-"):
        print(f"usage: python3 -m edgebench.bench.gpu_check OUT_DIR (steps: {', '.join(STEPS)})", file=sys.stderr)
        return 2
    import torch

    if not torch.cuda.is_available():
        print(f"no CUDA device visible to torch {torch.__version__}: nothing to check here", file=sys.stderr)
        return 2
    out = Path(argv[0])
    results = run_steps(plan(out), out, "GPU check")
    failed = [step.name for step, verdict in results if verdict.status == "failed"]
    print(f"{len(results) - len(failed)} of {len(results)} steps proven or not available here"
          + (f"; failed: {', '.join(failed)}" if failed else "") + f"; report: {out / 'report.md'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
