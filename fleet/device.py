"""What the workstation sends a device and gets back, and the task a device's Dask worker runs.

The task does not time anything in the worker's process (Dask runs tasks in a worker thread): it runs the
ordinary harness, `python -m edgebench.bench`, as a child process on the device, which isolates each row in its own
processes as on any machine. The device's run folder is resumable like any run, so the workstation resumes
a device by sending the rows it already has. Rows go back to the workstation as each is written, through a
Dask queue named after the run; the task's result is the device's whole run, for the record.
"""

from __future__ import annotations

import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from edgebench.bench.isolation import PROJECT_ROOT, project_env

DEVICE_RESOURCE = "device-{}"  # the Dask worker resource that names a device: one measurement at a time


@dataclass(frozen=True)
class DeviceJob:
    """One device's share of a fleet run: the run's arguments, the files they name, the rows already done."""

    device: str
    run_id: str  # names the queue the rows travel on
    argv: tuple[str, ...]  # edgebench arguments, model, weights and data paths rewritten to `@file:<name>`
    files: dict[str, bytes] = field(default_factory=dict)  # relative path -> content: model file, weights, data
    finished_rows: tuple[str, ...] = ()  # rows.jsonl lines already at the workstation (resuming)


@dataclass(frozen=True)
class DeviceResult:
    """What came back: every row line, the device's environment, who ran it, and how the harness ended."""

    device: str
    worker: str
    hostname: str
    rows: tuple[str, ...]
    samples: tuple[str, ...]  # samples.jsonl lines of the rows measured this time
    environment: str
    returncode: int
    stderr_tail: str
    started: float  # when the harness started on the device (after waiting for its machine), and ended
    ended: float


def _end_with_the_worker() -> None:
    """In the harness's process before it starts (Linux): SIGINT when the worker that started it dies, so a
    worker killed outright does not leave a harness timing on its device; SIGINT ends it as Ctrl-C does.
    (The signal follows the thread that started the harness, which waits for it until it ends.)"""
    import ctypes

    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGINT)  # 1: PR_SET_PDEATHSIG
    except OSError:  # not glibc Linux (macOS): the stop event is then the only way
        return


def stop_event(run_id: str) -> str:
    """The name of the Dask event that tells a run's device tasks to stop."""
    return f"{run_id}-stop"


def _rewrite(argv: tuple[str, ...], folder: Path, files: dict[str, bytes]) -> list[str]:
    """Write the files that came with the job under `folder` and point `@file:` arguments at them."""
    root = folder.resolve()
    for name, content in files.items():
        path = (root / name).resolve()
        if not path.is_relative_to(root):  # names come from the workstation: none may leave the job's folder
            raise ValueError(f"refusing to write {name!r} outside the job's folder")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    return [f"{root}/{part.removeprefix('@file:')}" if part.startswith("@file:") else part for part in argv]


def _lines(path: Path) -> list[str]:
    if not path.exists():
        return []
    return [line for line in path.read_text().splitlines() if line.strip()]


def measure_on_device(job: DeviceJob) -> DeviceResult:
    """Run the harness on this device for `job`, sending each row to the workstation as it is written."""
    from distributed import Event, Lock, Queue, get_worker

    worker = get_worker()
    rows_out = Queue(job.run_id)
    stop = Event(stop_event(job.run_id))  # set by the workstation when its run ends early (Ctrl-C, an error)
    with tempfile.TemporaryDirectory(prefix=f"edgebench-{job.device}-") as temporary:
        folder = Path(temporary)
        argv = _rewrite(job.argv, folder, job.files)
        run_dir = folder / "run"
        run_dir.mkdir()
        from edgebench.bench.resume import save_command

        save_command(run_dir, argv)
        if job.finished_rows:
            (run_dir / "rows.jsonl").write_text("".join(line + "\n" for line in job.finished_rows))
        # Devices sharing one machine (FLEET=local, or two workers on one board) take turns: timings on a
        # shared CPU would be each other's noise.
        with Lock(f"edgebench-machine-{socket.gethostname()}"):
            if stop.is_set():  # the run was given up while this device waited for its machine
                return DeviceResult(device=job.device, worker=str(worker.name), hostname=platform.node(), rows=(),
                                    samples=(), environment="", returncode=130,
                                    stderr_tail="stopped by the workstation",
                                    started=time.time(), ended=time.time())
            started = time.time()  # the harness's start: after any wait for the machine
            log = folder / "harness.log"  # its progress lines: a file, so a full pipe never stalls it
            with open(log, "w") as output:
                process = subprocess.Popen([sys.executable, "-m", "edgebench.bench", "--resume", str(run_dir)],
                                           cwd=PROJECT_ROOT, env=project_env(), stdout=output, stderr=subprocess.STDOUT,
                                           preexec_fn=_end_with_the_worker if sys.platform == "linux" else None)
                sent = len(job.finished_rows)
                while True:
                    ended = process.poll() is not None
                    lines = _lines(run_dir / "rows.jsonl")
                    for line in lines[sent:]:
                        rows_out.put({"device": job.device, "row": line})
                    sent = max(sent, len(lines))
                    if ended:
                        break
                    if stop.is_set():  # as Ctrl-C would: the harness ends its own children and keeps its rows
                        process.send_signal(signal.SIGINT)
                    time.sleep(0.5)
            ended = time.time()  # before the machine is handed to the next device
            stderr = log.read_text(errors="replace")
        environment = (run_dir / "environment.json").read_text() if (run_dir / "environment.json").exists() else ""
        return DeviceResult(device=job.device, worker=str(worker.name), hostname=platform.node(),
                            rows=tuple(_lines(run_dir / "rows.jsonl")),
                            samples=tuple(_lines(run_dir / "samples.jsonl")), environment=environment,
                            returncode=process.returncode, stderr_tail="\n".join(stderr.splitlines()[-5:]),
                            started=started, ended=ended)

