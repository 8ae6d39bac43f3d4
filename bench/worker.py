"""The child process: export one runtime's artifact, or load and measure it. Run by `bench.isolation`.

`python -m bench.worker export|measure JOB.json` reads the job, writes `result.json` beside it, and keeps
a one-word phase in `status` so the parent can show progress and say where a crash happened.
"""

from __future__ import annotations

import json
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np

from bench.config import TimingConfig
from runtimes import RuntimeOptions, load_adapter

RESULT_FILE = "result.json"
STATUS_FILE = "status"


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    tmp.replace(path)  # atomic: the parent never reads half a file


def _phase(job_dir: Path, text: str) -> None:
    (job_dir / STATUS_FILE).write_text(text)


def _export(job: dict[str, Any], adapter: Any, job_dir: Path) -> dict[str, Any]:
    import torch

    from models import rebuild_model

    torch.set_num_threads(job["options"]["threads"])
    _phase(job_dir, "building model")
    module, _ = rebuild_model(job["options"]["model"], Path(job["state_dict"]), job["options"]["seed"])
    example = torch.from_numpy(np.load(job["input"]))
    folder = Path(job["artifact_dir"])
    folder.mkdir(parents=True, exist_ok=True)
    _phase(job_dir, "exporting")
    t0 = time.perf_counter()
    artifact = adapter.export(module, example, folder)
    return {"artifact": str(artifact), "export_s": time.perf_counter() - t0}


def _measure(job: dict[str, Any], adapter: Any, job_dir: Path) -> dict[str, Any]:
    from bench.cpuload import ForeignLoadTracker
    from bench.fidelity import compare
    from bench.timing import time_step

    reason = type(adapter).run_unavailable(job["options"]["target"])
    if reason:  # exported (so its size is known) but cannot run here
        return {"unavailable": reason}
    _phase(job_dir, "loading")
    t0 = time.perf_counter()
    adapter.load(Path(job["artifact"]))
    load_s = time.perf_counter() - t0
    mismatch = adapter.precision_mismatch()
    if mismatch:
        return {"unavailable": mismatch}

    x = np.load(job["input"])
    with np.load(job["reference"]) as ref:
        reference = [ref[k] for k in sorted(ref.files, key=lambda k: int(k.split("_")[1]))]

    _phase(job_dir, "first inference")
    t0 = time.perf_counter()
    outputs = adapter.predict(x)
    first_ms = (time.perf_counter() - t0) * 1e3
    fidelity = compare(outputs, reference, job["options"]["precision"])

    _phase(job_dir, "timing")
    prepared = adapter.prepare(x)

    def step() -> None:
        adapter.run(prepared)
        adapter.sync()

    with ForeignLoadTracker() as tracker:
        timed = time_step(step, TimingConfig(**job["timing"]))

    on_device = job["options"]["target"] != "cpu"
    transfers = _transfer_times(adapter, x, prepared) if on_device else {"h2d_ms": None, "d2h_ms": None}
    details = adapter.details()
    adapter.close()
    return {
        "load_s": load_s,
        "first_ms": first_ms,
        "samples_ms": list(timed.samples_ms),
        "warmup_iters": timed.warmup_iters,
        "capped": timed.capped,
        "max_abs_diff": fidelity.max_abs_diff,
        "cosine": fidelity.cosine,
        "fidelity_ok": fidelity.within_tolerance,
        "foreign_load": tracker.load.foreign,
        "steal": tracker.load.steal,
        "noisy": tracker.load.noisy,
        "device": adapter.device,
        "details": details,
        **transfers,
    }


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
    job_path = Path(job_path)
    job_dir = job_path.parent
    job = json.loads(job_path.read_text())
    try:
        adapter = load_adapter(job["adapter"])(RuntimeOptions(**job["options"]))
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
    from bench import worker

    sys.exit(worker.main(sys.argv[1:]))
