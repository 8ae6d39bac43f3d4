"""`make validate`: edgebench's timing against each runtime's own tool, on the very same artifact, interleaved.

Users' most common complaint about benchmark harnesses is "your numbers don't match the vendor's tool".
This exports the model for OpenVINO, ONNX Runtime, TFLite, ExecuTorch and AOTInductor as `make bench` does,
keeps edgebench's measuring processes loaded, and takes rounds round-robin: edgebench's round of a runtime,
then the tool's round of the same file, then the next runtime... The tools: OpenVINO's `benchmark_app` (it ships in the
openvino wheel; given edgebench's exact compile configuration through `-load_config`), LiteRT's
`litert-benchmark` (in the ai-edge-litert wheel), and, for ONNX Runtime (no tool in its wheel) and for
LiteRT's Interpreter, ExecuTorch and AOTInductor, a minimal loop written directly on the Python API
(`bench/validate/bare_loops`).
Each comparison is the median over rounds of edgebench's round median / the tool's (rounds paired: the two
sides of a round run moments apart), with the sign-test interval over rounds widened by the machine's A/A
floor: 1.00 means the same number, above 1 edgebench measured slower.
"""

from __future__ import annotations

import itertools
import json
import re
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgebench.bench.config import TimingConfig
from edgebench.bench.measure.rounds import NoiseGuard, RoundFailed, RoundResult, interleave
from edgebench.bench.measure.stats import ratio_interval

BIN = Path(sys.executable).parent
LOOPS = Path(__file__).parent / "bare_loops"
AGREEMENT = 0.03  # the target: edgebench within 3% of the tool


@dataclass(frozen=True)
class Tool:
    """A way to time an artifact outside edgebench: the command for one round, and how to read its median."""

    runtime: str  # the edgebench runtime whose artifact it times
    name: str
    describe: str  # what the line says about its settings
    command: Callable[[Path, Path, int, float, float, Path], list[str]]  # artifact, input, threads, s, est ms, work
    median_ms: Callable[[str, Path], float]  # stdout, work folder -> median latency in ms


def _benchmark_app(artifact: Path, x: Path, threads: int, seconds: float, estimate_ms: float, work: Path) -> list[str]:
    config = work / "benchmark_app_config.json"  # the compile settings edgebench's adapter uses, exactly
    config.write_text(json.dumps({"CPU": {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": str(threads),
                                          "INFERENCE_PRECISION_HINT": "f32"}}))
    return [str(BIN / "benchmark_app"), "-m", str(artifact), "-d", "CPU", "-load_config", str(config), "-api", "sync",
            "-t", str(max(1, round(seconds)))]


def _benchmark_app_median(stdout: str, work: Path) -> float:
    match = re.search(r"Median:\s+([\d.]+)\s+(ms|us)", stdout)
    if match is None:
        raise RoundFailed(f"benchmark_app printed no median: {stdout.strip().splitlines()[-1:]}")
    return float(match.group(1)) / (1000.0 if match.group(2) == "us" else 1.0)


def _litert_benchmark(artifact: Path, x: Path, threads: int, seconds: float, estimate_ms: float,
                      work: Path) -> list[str]:
    runs = max(20, int(seconds * 1000 / max(estimate_ms, 1e-3)))  # it takes a count, not a duration
    return [str(BIN / "litert-benchmark"), "--model", str(artifact), "--num_threads", str(threads),
            "--num_runs", str(runs), "--warmup_runs", "10", "--result_json", str(work / "litert.json")]


def _litert_median(stdout: str, work: Path) -> float:
    return float(json.loads((work / "litert.json").read_text())["latency"]["median_ms"])


def _loop(script: str) -> Callable[[Path, Path, int, float, float, Path], list[str]]:
    def command(artifact: Path, x: Path, threads: int, seconds: float, estimate_ms: float, work: Path) -> list[str]:
        return [sys.executable, str(LOOPS / script), str(artifact), str(x), str(threads), str(seconds)]
    return command


def _loop_median(stdout: str, work: Path) -> float:
    return float(json.loads(stdout.strip().splitlines()[-1])["median_ms"])


TOOLS = (
    Tool("openvino", "benchmark_app", "OpenVINO's own tool: sync API, LATENCY hint, f32, same threads, "
         "random input", _benchmark_app, _benchmark_app_median),
    Tool("onnxruntime", "bare Python loop", "session.run in a loop on ONNX Runtime's API (the wheel has no tool)",
         _loop("onnxruntime_loop.py"), _loop_median),
    Tool("tflite", "bare Python loop", "Interpreter set_tensor + invoke in a loop", _loop("tflite_loop.py"),
         _loop_median),
    Tool("executorch", "bare Python loop", "executorch.runtime's Method.execute in a loop, XNNPACK's pool at the "
         "same threads (the wheel has no tool)", _loop("executorch_loop.py"), _loop_median),
    Tool("aoti", "bare Python loop", "the package from torch._inductor.aoti_load_package called in a loop "
         "(PyTorch ships no tool)", _loop("aoti_loop.py"), _loop_median),
    Tool("tflite", "litert-benchmark", "LiteRT's own tool (CompiledModel API, CPU accelerator; medians "
         "rounded to 0.01 ms)", _litert_benchmark, _litert_median),
)


def paired_ratio(ours: Sequence[float], theirs: Sequence[float], floor: float = 0.0) -> tuple[float, float, float]:
    """Median over rounds of our round median / theirs, with the sign-test interval over paired rounds.

    Rounds are paired (ours then theirs, moments apart): a slow minute moves both sides of its pair. A tool
    reports one median a round, so each round is one figure here. `floor`: the machine's A/A floor, since
    edgebench's side is one process for the whole run.
    """
    if len(ours) != len(theirs) or not len(ours):
        raise ValueError("paired rounds needed on both sides")
    return ratio_interval([[x] for x in ours], [[x] for x in theirs], paired=True, floor=floor)


def verdict(low: float, high: float) -> str:
    if low >= 1 - AGREEMENT and high <= 1 + AGREEMENT:
        return f"within ±{AGREEMENT:.0%}"
    if high < 1 - AGREEMENT or low > 1 + AGREEMENT:
        return f"outside ±{AGREEMENT:.0%}"
    return f"not resolved to ±{AGREEMENT:.0%} (interval too wide: more REPEATS or a quieter machine)"


def run_tool(tool: Tool, artifact: Path, x: Path, threads: int, seconds: float, estimate_ms: float,
             work: Path, timeout_s: float) -> float:
    from edgebench.bench.isolation import child_env

    work.mkdir(parents=True, exist_ok=True)
    command = tool.command(artifact, x, threads, seconds, estimate_ms, work)
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, env=child_env(threads))
    except subprocess.TimeoutExpired as exc:
        raise RoundFailed(f"{tool.name} timed out after {timeout_s:g} s") from exc
    except OSError as exc:
        raise RoundFailed(f"{tool.name} could not start: {exc}") from exc
    (work / f"{tool.name.replace(' ', '_')}.log").write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        last = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["(no output)"]
        raise RoundFailed(f"{tool.name} exited with code {done.returncode}: {last[0][:300]}")
    return tool.median_ms(done.stdout, work)


def validate(model: str, threads: int, repeats: int, seconds: float, out: Path,
             say: Callable[[str], None] = print) -> list[str]:
    """Export, then interleave edgebench's rounds with each tool's; returns the result lines (also in out)."""
    from edgebench.bench.environment import cpu_info, package_versions
    from edgebench.bench.isolation import ChildSession
    from edgebench.bench.measure.floor import load, machine_key
    from edgebench.bench.runlog import RunLog
    from edgebench.bench.validate.prepare import export_all
    from edgebench.runtimes import get_runtime

    runtimes = tuple(dict.fromkeys(t.runtime for t in TOOLS))
    timing = TimingConfig(warmup_iters=10, warmup_s=0.5, min_iters=20, min_s=seconds, max_s=max(60.0, seconds * 5))
    log = RunLog()
    out.mkdir(parents=True, exist_ok=True)
    log.attach(out / "run.log")
    sessions, artifacts = {}, {}
    try:
        exported = export_all(model, runtimes, threads, timing, repeats, out, log)
        reference, config = exported.reference, exported.config
        floor = load(machine_key(cpu_info(), threads, package_versions()), exported.model)  # as calibrate keeps it
        for name in runtimes:
            if name in exported.errors:
                say(f"{get_runtime(name).label}: cannot validate: {exported.errors[name]}")
                continue
            spec = exported.specs[name]
            session = ChildSession(spec, exported.job_dirs[name], threads, config.timeout_s)
            if session.ready() is None:
                say(f"{get_runtime(name).label}: cannot validate: {session.finish().error}")
                continue
            sessions[name], artifacts[name] = session, Path(spec.artifact)
        keys = [key for name in sessions for key in [("edgebench", name)] +
                [(t.name, name) for t in TOOLS if t.runtime == name]]
        estimates: dict[str, float] = {}
        counter = itertools.count()

        def run_round(key: tuple[str, str], index: int) -> RoundResult:
            who, name = key
            say(f"round {index + 1}/{repeats}: {who} on {get_runtime(name).label}")
            if who == "edgebench":
                answer = sessions[name].round(next(counter))
                if answer is None:
                    raise RoundFailed(sessions[name].finish().error or "edgebench's measuring process ended")
                result = RoundResult(**answer)
                estimates[name] = float(np.median(result.samples_ms))
                return result
            tool = next(t for t in TOOLS if t.name == who and t.runtime == name)
            median = run_tool(tool, artifacts[name], reference.input(1), threads, seconds, estimates.get(name, 1.0),
                              out / "tools" / name, config.timeout_s)
            return RoundResult(samples_ms=[median], warmup_iters=0, capped=False)

        rounds = interleave(keys, repeats, run_round, NoiseGuard(retries=0))
    finally:
        for session in sessions.values():
            session.finish()
        log.close()
    lines = []
    for name in sessions:
        ours = rounds[("edgebench", name)]
        for tool in (t for t in TOOLS if t.runtime == name):
            theirs = rounds[(tool.name, name)]
            label = get_runtime(name).label
            if ours.error or theirs.error:
                lines.append(f"{label} vs {tool.name}: no ratio: {ours.error or theirs.error}")
                continue
            a = [float(np.median(r.samples_ms)) for r in ours.kept]
            b = [r.samples_ms[0] for r in theirs.kept]
            ratio, low, high = paired_ratio(a, b, floor.floor)
            lines.append(f"{label} vs {tool.name}: edgebench p50 {np.median(a):.3f} ms, tool {np.median(b):.3f} ms, "
                         f"ratio {ratio:.3f} (95% CI {low:.3f}-{high:.3f}), {verdict(low, high)}")
    _write_report(out, model, threads, repeats, seconds, lines + [f"A/A floor added to each interval: "
                                                                    f"{floor.describe()}"])
    return lines


def _write_report(out: Path, model: str, threads: int, repeats: int, seconds: float, lines: list[str]) -> None:
    tools = "\n".join(f"- {t.name} ({t.runtime}): {t.describe}" for t in TOOLS)
    (out / "VALIDATE.md").write_text(
        f"# edgebench against each runtime's own tool: {model}, batch 1, {threads} thread(s)\n\n"
        f"{repeats} rounds of {seconds:g} s each, edgebench's round then the tool's, runtime after runtime; "
        "ratio = median over rounds of edgebench's round median / the tool's, 95% sign-test interval over "
        "the paired rounds, widened by the machine's A/A floor.\n\n" + "\n".join(f"- {line}" for line in lines)
        + f"\n\nTools:\n{tools}\n")
