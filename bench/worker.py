"""The child process: compress the model once, export one runtime's artifact, or load and measure it.

`python -m edgebench.bench.worker compress|export|measure JOB.json` reads the job (`bench.job`), writes `result.json`
beside it, and keeps a one-word phase in `status` so the parent can show progress and say where a crash
happened.
"""

from __future__ import annotations

import copy
import json
import os
import statistics
import sys
import time
import traceback
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from edgebench.bench.job import CompressJob, MeasureJob, load_job
from edgebench.bench.measure.peakrss import NOTIFY_ENV, PARENT_ENV, die_with_parent, exit_now
from edgebench.runtimes import load_adapter
from edgebench.runtimes.base import ExportUnavailable

RESULT_FILE = "result.json"
STATUS_FILE = "status"
LOADED_FILE = "loaded.json"  # serve mode: loaded; the first inference waits for the parent's `first`
READY_FILE = "ready.json"  # serve mode: first inference done, fidelity known
PROFILE_TRIES = 3  # a profile taken while other processes used the CPU is taken again, up to this many in all
PROFILE_QUIET_WAIT_S = 1.0  # the pause before it, for the neighbour to finish (as a repeated round's)
PACE_ITERATIONS = 10  # unprofiled inferences timed right after each profile: how fast the host ran then
PACE_WARMUP = 3  # untimed before them
PACE_MIN_S = 0.05  # ... and as many more as make 50 ms (the timing engine's min_s)
SLOW_STRETCH = 1.25  # ... and a profile whose pace was this much above the timed rounds' median is taken again
SCORED_FILE = "scored.json"  # serve mode: accuracy scored on the parent's `score`, before `finish`


def _write_json(path: Path, data: dict[str, Any]) -> None:
    """An answer, written atomically; it wakes the parent at once (`_notify_parent`), so a step's phase is
    written before its answer, never after."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    tmp.replace(path)  # atomic: the parent never reads half a file
    _notify_parent()


def _notify_parent() -> None:
    """A byte on the pipe the parent waits on (`NOTIFY_ENV`), so it reads an answer as soon as it is written."""
    fd = os.environ.get(NOTIFY_ENV)
    if fd:
        try:
            os.write(int(fd), b".")
        except (OSError, ValueError):  # the parent has gone, or closed its end: it polls, or no one reads
            pass


def _phase(job_dir: Path, text: str) -> None:
    (job_dir / STATUS_FILE).write_text(text)


def _compress(job: CompressJob, job_dir: Path) -> dict[str, Any]:
    import torch

    from edgebench.bench.variants import load_module, save_variant
    from edgebench.compression import CompressionContext, parse_variant
    from edgebench.tasks import load_task_file

    torch.set_num_threads(job.threads)
    _phase(job_dir, "loading model")
    baseline = load_module(job.model_file, job.model)
    model = copy.deepcopy(baseline)  # methods change it in place; the baseline stays for the agreement figure
    inputs = {int(batch): Path(path) for batch, path in job.inputs.items()}
    example = torch.from_numpy(np.load(next(iter(inputs.values())))[:1])
    task = load_task_file(job.task) if job.task else None  # what the methods fine-tune on (`task.fine_tune`)
    context = CompressionContext(example=example, task=task, seed=job.seed, finetune_epochs=job.finetune_epochs)
    epochs = 0
    for method in parse_variant(job.chain).methods:
        _phase(job_dir, method.spec)
        epochs += method.finetune_epochs(context)
        model = method.apply(model, context)
    _phase(job_dir, "saving")
    info = save_variant(model, Path(job.out_dir), inputs, epochs, "; ".join(context.notes), baseline, job.seed,
                        context.pruned_fraction)
    return asdict(info)


def _export(job: MeasureJob, adapter: Any, job_dir: Path) -> dict[str, Any]:
    import torch

    from edgebench.bench.measure.contents import layer_macs, read
    from edgebench.bench.variants import load_module

    torch.set_num_threads(job.options.threads)
    _phase(job_dir, "loading model")
    module = load_module(job.model_file, job.options.model)
    example = torch.from_numpy(np.load(job.input))
    if job.calibration:
        adapter.calibration = np.load(job.calibration)
    if job.qat_epochs:
        from edgebench.runtimes._quant import QatPlan

        adapter.qat = QatPlan(job.task, job.qat_epochs, job.options.seed)
    folder = Path(job.artifact_dir)
    folder.mkdir(parents=True, exist_ok=True)
    layers = layer_macs(module, example[:1])  # before export, which may fuse or rewrite the module in place
    _phase(job_dir, "training (QAT)" if job.qat_epochs else "exporting")
    t0 = time.perf_counter()
    try:
        artifact = adapter.export(module, example, folder)
    except ExportUnavailable as exc:  # the runtime cannot express this model: the row says why
        return {"unavailable": " ".join(str(exc).split())}
    result: dict[str, Any] = {"artifact": str(artifact), "export_s": time.perf_counter() - t0}
    _phase(job_dir, "reading the artifact back")
    weights = adapter.stored_weights(artifact)  # here, not in the measuring process: its peak RSS stays its own
    if weights is not None:
        result["contents"] = asdict(read(weights, layers))
    if adapter.trained is not None:  # the artifact should compute what the trained model does, not the float one
        from edgebench.bench.variants import save_outputs
        from edgebench.runtimes._torch import to_host

        with torch.no_grad():
            outputs = to_host(adapter.trained(example))
        result["reference"] = str(job_dir / "qat_outputs.npz")
        save_outputs(result["reference"], outputs)
    return result


def _time_round(step: Any, timing: Any, first: bool, streams: list[Any] | None = None,
                energy: Any = None) -> dict[str, Any]:
    """One round: warm-up (short after the first: the runtime is loaded, only caches went cold), then timing,
    with the CPU time other processes used meanwhile and, where a counter exists (`energy`, a function
    returning joules; None in throughput mode), the energy of the round's inferences, warm-up included."""
    from dataclasses import replace

    from edgebench.bench.measure.cpuload import ForeignLoadTracker
    from edgebench.bench.measure.energy import EnergyMeter
    from edgebench.bench.measure.rounds import RE_WARMUP_ITERS, RoundResult
    from edgebench.bench.measure.timing import time_concurrent, time_step

    config = timing if first else replace(timing, warmup_iters=min(timing.warmup_iters, RE_WARMUP_ITERS),
                                          warmup_s=0.0)
    with ForeignLoadTracker() as tracker, EnergyMeter(energy) as meter:
        if streams is None:
            timed, extra = time_step(step, config), {}
        else:  # throughput mode: every stream kept busy for the window (no per-inference energy)
            timed = time_concurrent(streams, config)
            extra = {"completed": timed.completed, "window_s": timed.window_s}
    return asdict(RoundResult(samples_ms=list(timed.samples_ms), warmup_iters=timed.warmup_iters,
                              capped=timed.capped, foreign_load=tracker.load.foreign, steal=tracker.load.steal,
                              foreign_tick=tracker.load.tick,
                              energy_j=meter.joules, **extra))


def settle(quiet_cpu_s: float = 0.0005, step_s: float = 0.005, limit_s: float = 0.25) -> float:
    """Wait until this process's threads stop using the CPU, and return how long that took.

    ONNX Runtime's idle worker threads spin for about 40 ms after a run (measured on the 2-core host: 20-50 ms
    of CPU within 0.1 s of the last inference; OpenVINO's: none). Answering at once, the next row's round then
    shared the cores with that spin: on 0.1 s rounds it read as 11-23% foreign load, and cost a retry or a
    biased round. A round ends only when its process is quiet (`quiet_cpu_s` of CPU over `step_s`)."""
    start = last = time.monotonic()
    used = time.process_time()
    while last - start < limit_s:
        time.sleep(step_s)
        now_used, last = time.process_time(), time.monotonic()
        if now_used - used < quiet_cpu_s:
            break
        used = now_used
    return last - start


def _commands() -> Any:
    """The parent's commands, one per line on stdin, until `finish` or until the parent goes away."""
    for line in sys.stdin:
        words = line.split()
        if not words or words[0] == "finish":
            return
        yield words


def _measure(job: MeasureJob, adapter: Any, job_dir: Path) -> dict[str, Any]:
    """Load, check fidelity, time rounds (driven by the parent in serve mode), score accuracy, close."""
    from edgebench.bench.measure.fidelity import compare, read_outputs

    reason = type(adapter).run_unavailable(job.options.target)
    if reason:  # exported (so its size is known) but cannot run here
        return {"unavailable": reason}
    _phase(job_dir, "loading")
    t0 = time.perf_counter()
    adapter.load(Path(job.artifact))
    load_s = time.perf_counter() - t0
    mismatch = adapter.label_mismatch()
    if mismatch:
        return {"unavailable": mismatch}

    x = np.load(job.input)
    reference = read_outputs(job.reference)
    if job.serve:  # loads may overlap (bench.readying); the first inference is timed alone, on the parent's word
        _phase(job_dir, "loaded")
        _write_json(job_dir / LOADED_FILE, {"load_s": load_s})
        if sys.stdin.readline().split()[:1] != ["first"]:
            return {"unavailable": "the harness stopped the run before this row's first inference"}

    _phase(job_dir, "first inference")
    t0 = time.perf_counter()
    outputs = adapter.predict(x)
    first_ms = (time.perf_counter() - t0) * 1e3
    fidelity = compare(outputs, reference, job.options.precision)
    ready = {"load_s": load_s, "first_ms": first_ms, "max_abs_diff": fidelity.max_abs_diff,
             "cosine": fidelity.cosine, "fidelity_ok": fidelity.within_tolerance}
    if job.boxes:  # a detector: its boxes are matched to PyTorch's by the harness (NMS needs torch, not here)
        from edgebench.bench.measure.detections import candidates, pack

        np.savez(job.boxes, size=np.int64(x.shape[-1]), **pack(candidates(np.asarray(outputs[0]))))
        ready.update(boxes_file=job.boxes, boxes_reference=job.reference)
    prepared = adapter.prepare(x)

    def step() -> None:
        adapter.run(prepared)
        adapter.sync()

    streams = adapter.throughput_streams(x) if job.options.mode == "throughput" else None
    from edgebench.bench.measure.energy import energy_source

    energy, ready["energy_source"] = energy_source(job.options.target) if streams is None else \
        (None, "not measured in throughput mode")
    rounds = []  # served rounds go to the parent in their own files, not here
    scored: dict[str, Any] | None = None
    if job.serve:
        _phase(job_dir, "ready")
        _write_json(job_dir / READY_FILE, ready)
        first, timed, samples = True, 0, []
        for words in _commands():
            if words[0] == "round":
                _phase(job_dir, "timing")
                result = _time_round(step, job.timing, first, streams, energy)
                result["settle_s"] = settle()
                first, timed = False, timed + 1
                samples += result["samples_ms"]
                _phase(job_dir, "waiting")
                _write_json(job_dir / f"round_{int(words[1])}.json", result)
            elif words[0] == "score":  # the parent scores (and profiles) its rows one at a time: at once they
                # would share the cores (and OpenMP spins on shared cores)
                scored = _score_and_profile(adapter, job, job_dir, x, prepared, timed, step,
                                            _median_latency(samples, streams))
                _phase(job_dir, "waiting")
                _write_json(job_dir / SCORED_FILE, {"scored": True})
    else:
        _phase(job_dir, "timing")
        rounds = [_time_round(step, job.timing, i == 0, streams, energy) for i in range(job.rounds)]
        timed = len(rounds)
        samples = [sample for r in rounds for sample in r["samples_ms"]]

    memory = _device_memory(adapter)  # after the timed rounds, before scoring: what timing the row held
    apart = job.options.target != "cpu" and adapter.copies_apart()  # else no copy figure exists to report
    transfers = _transfer_times(adapter, x, prepared) if apart else {"h2d_ms": None, "d2h_ms": None}
    if scored is None:
        scored = _score_and_profile(adapter, job, job_dir, x, prepared, timed, step,
                                    _median_latency(samples, streams))
    details = adapter.details()
    adapter.close()
    return {
        **ready,
        "rounds": rounds,
        "device": adapter.device,
        "details": details,
        "device_memory_mb": memory[0],
        "device_memory_source": memory[1],
        **transfers,
        **scored,
    }


def _median_latency(samples: list[float], streams: Any) -> float | None:
    """The timed rounds' median inference, against which a profile's pace is judged; None in throughput mode,
    whose samples are not single inferences."""
    return statistics.median(samples) if samples and streams is None else None


def _device_memory(adapter: Any) -> tuple[float | None, str]:
    try:
        return adapter.device_memory()
    except Exception as exc:  # a counter that fails is a missing figure with its reason, not a lost row
        return None, f"no device memory figure: {type(exc).__name__}: {exc}"


def _score(adapter: Any, job: MeasureJob, job_dir: Path, batch: int) -> dict[str, Any]:
    """The row's accuracy figures; none for a model without labelled data."""
    if not job.task:
        return {}
    _phase(job_dir, "scoring accuracy")
    from edgebench.tasks import task_class

    kind = task_class(job.task)
    return {"task_kind": kind.kind, **kind.score(adapter.predict, job.task, batch, job_dir)}


def _score_and_profile(adapter: Any, job: MeasureJob, job_dir: Path, x: np.ndarray, prepared: Any,
                       timed: int, step: Any = None, timed_ms: float | None = None) -> dict[str, Any]:
    """The row's closing figures, in this order: accuracy, then the profile (which must not count in the peak
    memory scoring reached), once the `timed` rounds are done (`timed_ms`: their median inference)."""
    return {**_score(adapter, job, job_dir, len(x)),
            **_profile(adapter, job, job_dir, prepared, timed, step, timed_ms)}


def _profile(adapter: Any, job: MeasureJob, job_dir: Path, prepared: Any, after_rounds: int, step: Any = None,
             timed_ms: float | None = None) -> dict[str, Any]:
    """The row's per-operator profile (`PROFILE=1`), from its runtime's own profiler, after the timed rounds and
    after scoring, so that neither the timed figures nor the peak memory change with it: the profiled session
    a runtime may open is left out of the row's peak RSS (`rss_before_profile_mb`). Like a timed round, a profile
    taken while other processes used the CPU (`cpuload`'s noise floor) is taken again, up to `PROFILE_TRIES`
    times in all. So is one taken in a slow stretch of the host, which no process accounts for (a shared
    virtual machine's): right after each profile, `PACE_ITERATIONS` unprofiled inferences of the timed `step`
    give the host's pace then, and a pace over `SLOW_STRETCH` times the timed rounds' median `timed_ms` means
    the profile's times were not the timed rounds' conditions. The pace is kept: the profiled inference over it
    is the profiler's overhead at that moment. A runtime without a profiler, or whose profiler fails, gives the
    reason instead; the row stays as measured."""
    if not job.profile:
        return {}
    import resource

    from edgebench.bench.measure.cpuload import ForeignLoadTracker
    from edgebench.bench.measure.profile import PROFILE_ITERATIONS, summarise
    from edgebench.runtimes.base import ProfileUnavailable

    before_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux
    _phase(job_dir, "profiling")
    try:
        for tries in range(1, PROFILE_TRIES + 1):  # a profile taken while others computed is taken again
            with ForeignLoadTracker() as tracker:
                profile = summarise(adapter.profile(prepared, PROFILE_ITERATIONS))
                pace_ms = _pace_ms(step) if step is not None else None
            slow = pace_ms is not None and timed_ms is not None and pace_ms > SLOW_STRETCH * timed_ms
            if not (tracker.load.noisy or slow) or tries == PROFILE_TRIES:
                break
            time.sleep(PROFILE_QUIET_WAIT_S)
    except ProfileUnavailable as exc:
        return {"profile": {"unavailable": str(exc)}}
    except Exception as exc:
        traceback.print_exc()
        message = " ".join(str(exc).split())[:200]
        return {"profile": {"unavailable": f"its profiler failed: {type(exc).__name__}: {message}"}}
    return {"profile": {"iterations": profile.iterations, "wall_ms": profile.wall_ms, "after_rounds": after_rounds,
                        "tries": tries, "foreign_load": tracker.load.foreign, "pace_ms": pace_ms,
                        "timed_ms": timed_ms,
                        "lines": [asdict(line) for line in profile.lines]}, "rss_before_profile_mb": before_mb}


def _pace_ms(step: Any) -> float:
    """The median of at least `PACE_ITERATIONS` unprofiled inferences lasting `PACE_MIN_S` in all (a 20 us model's
    ten inferences are too short to tell a slow stretch from timer noise), in ms, timed by the timed rounds' own
    engine after a few untimed ones (the profiler's session leaves caches cold: a tiny model's first inferences
    after it ran at twice its pace here)."""
    from edgebench.bench.config import TimingConfig
    from edgebench.bench.measure.timing import time_step

    pace = TimingConfig(warmup_iters=PACE_WARMUP, warmup_s=0.0, min_iters=PACE_ITERATIONS, min_s=PACE_MIN_S)
    return statistics.median(time_step(step, pace).samples_ms)


def _transfer_times(adapter: Any, x: np.ndarray, prepared: Any, repeats: int = 20) -> dict[str, float | None]:
    """Host-to-device and device-to-host medians on an accelerator, timed apart from compute."""
    h2d, d2h = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        adapter.prepare(x)
        adapter.sync()
        h2d.append(time.perf_counter() - t0)
        outputs = adapter.run(prepared)
        adapter.sync()
        t0 = time.perf_counter()
        adapter.fetch(outputs)
        d2h.append(time.perf_counter() - t0)
    return {"h2d_ms": float(np.median(h2d) * 1e3), "d2h_ms": float(np.median(d2h) * 1e3)}


def main(argv: list[str]) -> int:
    mode, job_path = argv
    die_with_parent(os.environ.get(PARENT_ENV))
    job_path = Path(job_path)
    job_dir = job_path.parent
    try:
        job = load_job(mode, job_path)
        if mode == "compress":
            result = _compress(job, job_dir)
        else:
            adapter = load_adapter(job.adapter)(job.options)
            result = _export(job, adapter, job_dir) if mode == "export" else _measure(job, adapter, job_dir)
    except Exception as exc:  # the parent turns this into an error row; the traceback goes to the log
        traceback.print_exc()
        message = " ".join(str(exc).split())[:400] or "(no message)"
        _write_json(job_dir / RESULT_FILE, {"error": f"{type(exc).__name__}: {message}"})
        return 1
    _write_json(job_dir / RESULT_FILE, result)
    return 0


if __name__ == "__main__":
    # Run the importable module's main rather than this __main__ copy's, so that the process holds one
    # definition of everything: what tests patch or mutate (`make mutation`) is what runs here.
    from edgebench.bench import worker

    # Ends without the interpreter's teardown of torch and the runtimes (0.8-1.6 s a process, paid while the
    # harness waited for each export and each row's close).
    exit_now(worker.main(sys.argv[1:]))
