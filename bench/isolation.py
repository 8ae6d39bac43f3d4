"""Runs one export or measurement in its own process, with a timeout and the OS's exact peak memory.

A crash, hang or out-of-memory kill in one backend becomes an error message; the run goes on.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.job import CompressJob, MeasureJob, save_job
from bench.worker import RESULT_FILE, STATUS_FILE

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# Same thread count for every library, quiet logs, and no phoning home.
YOLO_CONFIG_DIR = PROJECT_ROOT / "models" / ".cache" / "ultralytics"  # Ultralytics' settings stay in the project

QUIET_ENV = {
    "TF_CPP_MIN_LOG_LEVEL": "3",
    "TORCH_CPP_LOG_LEVEL": "ERROR",
    "PYTHONWARNINGS": "default",  # warnings are shown, but only into the child's log file
    "HF_HUB_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "DO_NOT_TRACK": "1",
    "NNCF_CI": "1",  # NNCF sends no telemetry when it believes it runs in CI
    "YOLO_OFFLINE": "1",  # Ultralytics: no network, no package installs, no chatter
    "YOLO_AUTOINSTALL": "False",
    "YOLO_VERBOSE": "False",
}


@dataclass
class ChildOutcome:
    result: dict[str, Any] | None  # the worker's result when it finished cleanly
    error: str | None  # one line when it did not
    peak_rss_mb: float | None
    wall_s: float


def child_env(threads: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update(QUIET_ENV)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "TBB_NUM_THREADS"):
        env[var] = str(threads)
    env.setdefault("YOLO_CONFIG_DIR", str(YOLO_CONFIG_DIR))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH", "")) if p)
    return env


def _describe_exit(status: int, phase: str, log_path: Path) -> str:
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
        hint = " (out of memory?)" if sig == signal.SIGKILL else ""
        return f"process killed by {name}{hint} while {phase}"
    last = ""
    try:
        lines = [line.strip() for line in log_path.read_text(errors="replace").splitlines() if line.strip()]
        last = lines[-1][:300] if lines else ""
    except OSError:
        pass
    return f"process exited with code {os.WEXITSTATUS(status)} while {phase}" + (f": {last}" if last else "")


def run_child(mode: str, job: CompressJob | MeasureJob, job_dir: Path, threads: int, timeout_s: float,
              on_phase: Callable[[str], None] = lambda phase: None, poll_s: float = 0.1) -> ChildOutcome:
    """Run `bench.worker` on `job` in a fresh interpreter; never raises for what happens inside it."""
    job_dir.mkdir(parents=True, exist_ok=True)
    report = job_dir / f"{mode}.rusage.json"
    for stale in (RESULT_FILE, STATUS_FILE, report.name):
        (job_dir / stale).unlink(missing_ok=True)
    job_path = job_dir / f"{mode}.json"
    save_job(job, job_path)
    log_path = job_dir / f"{mode}.log"
    command = [sys.executable, "-m", "bench.peakrss", str(report), str(timeout_s), "--",
               sys.executable, "-m", "bench.worker", mode, str(job_path)]
    start = time.monotonic()
    phase = "starting"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                cwd=PROJECT_ROOT, env=child_env(threads), start_new_session=True)
        try:
            while proc.poll() is None:
                current = _read_phase(job_dir)
                if current and current != phase:
                    phase = current
                    on_phase(phase)
                if time.monotonic() - start > timeout_s + 60:  # the wrapper itself is stuck: a last resort
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
                    break
                time.sleep(poll_s)
        except BaseException:  # Ctrl-C or an error here: leave no orphan behind
            _kill_group(proc.pid)
            proc.wait()
            raise
    wall_s = time.monotonic() - start
    final = _read_phase(job_dir) or phase
    if final != phase:  # a child that dies within one poll still shows where it got to
        on_phase(final)
    phase = final
    usage = _read_json(report)
    if usage is None:
        return ChildOutcome(None, f"measurement process lost while {phase} (see run.log)", None, wall_s)
    peak_rss_mb = usage["maxrss_kb"] / 1024.0  # Linux reports KiB
    if usage["timed_out"]:
        return ChildOutcome(None, f"timed out after {timeout_s:g} s while {phase}", peak_rss_mb, wall_s)
    status = usage["status"]
    result = _read_json(job_dir / RESULT_FILE)
    if result is not None and "error" in result:
        return ChildOutcome(None, f"{result['error']} (while {phase})", peak_rss_mb, wall_s)
    if result is None or status != 0:
        return ChildOutcome(None, _describe_exit(status, phase, log_path), peak_rss_mb, wall_s)
    return ChildOutcome(result, None, peak_rss_mb, wall_s)


def _kill_group(pgid: int, settle_s: float = 2.0) -> None:
    """SIGKILL the child's whole process group, then wait (briefly) until its members are really gone.

    A killed process keeps running until the scheduler gives it a turn to die; on a busy machine that
    can outlast our own exit, so the harness waits for the group to empty rather than trusting the kill.
    """
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + settle_s
    while time.monotonic() < deadline:
        if not _group_alive(pgid):
            return
        time.sleep(0.01)


def _group_alive(pgid: int) -> bool:
    """Whether any process of the group still runs (zombies waiting for their parent do not count)."""
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else ():
        if not entry.isdigit():
            continue
        try:
            fields = open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            return True
    return False


def _read_phase(job_dir: Path) -> str:
    try:
        return (job_dir / STATUS_FILE).read_text().strip()
    except OSError:
        return ""


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
