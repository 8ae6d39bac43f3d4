"""Runs one export or measurement in its own process, with a timeout and the OS's exact peak memory.

A crash, hang or out-of-memory kill in one backend becomes an error message; the run goes on.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgebench.bench.job import CompressJob, MeasureJob, save_job
from edgebench.bench.worker import (
    LOADED_FILE,
    NOTIFY_ENV,
    PARENT_ENV,
    READY_FILE,
    RESULT_FILE,
    SCORED_FILE,
    STATUS_FILE,
)
from edgebench.runtimes.base import ieee_fp32_environment

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# Same thread count for every library, quiet logs, and no phoning home.
YOLO_CONFIG_DIR = PROJECT_ROOT / "models" / ".cache" / "ultralytics"  # Ultralytics' settings stay in the project
# NNCF's torch backend compiles a C++ extension at first use (about 20 s): once, kept in the project.
TORCH_EXTENSIONS_DIR = PROJECT_ROOT / "models" / ".cache" / "torch_extensions"

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
    peak_rss_mb: float | None  # None for a child forked from a warm process: its peak leaves out the libraries
    # loaded before the fork (their pages are shared, not counted), so it is not what a fresh process needs
    wall_s: float
    forked: bool = False  # forked from a warm process (bench.forkserver) rather than a fresh interpreter


def project_env() -> dict[str, str]:
    """This environment with the project first on PYTHONPATH: for any `python -m edgebench...` started from here."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(PROJECT_ROOT), os.environ.get("PYTHONPATH", ""))
                                                        if p)}


def child_env(threads: int) -> dict[str, str]:
    env = project_env()
    env.update(QUIET_ENV)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "TBB_NUM_THREADS"):
        env[var] = str(threads)
    env.setdefault("YOLO_CONFIG_DIR", str(YOLO_CONFIG_DIR))
    env.setdefault("TORCH_EXTENSIONS_DIR", str(TORCH_EXTENSIONS_DIR))
    env.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")  # CUDA numbers GPUs as NVML does: energy reads the right one
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


def _prepare(mode: str, job: CompressJob | MeasureJob, job_dir: Path) -> tuple[Path, Path, Path]:
    """The job's folder cleared of an earlier try's answers, and its job file written; (job, report, log)."""
    job_dir.mkdir(parents=True, exist_ok=True)
    report = job_dir / f"{mode}.rusage.json"
    for stale in (RESULT_FILE, STATUS_FILE, LOADED_FILE, READY_FILE, SCORED_FILE, report.name):
        (job_dir / stale).unlink(missing_ok=True)
    for stale in job_dir.glob("round_*.json"):
        stale.unlink()
    job_path = job_dir / f"{mode}.json"
    save_job(job, job_path)
    return job_path, report, job_dir / f"{mode}.log"


def _job_env(job: CompressJob | MeasureJob, threads: int) -> dict[str, str]:
    env = child_env(threads)
    if isinstance(job, MeasureJob):  # set before any NVIDIA library loads in the child, which reads it once
        env.update(ieee_fp32_environment(job.options.target, job.options.precision))
    env[PARENT_ENV] = str(os.getpid())  # the child dies with us (bench.measure.peakrss)
    return env


def _spawn(mode: str, job: CompressJob | MeasureJob, job_dir: Path, threads: int, timeout_s: float,
           stdin: int, notify_fd: int | None = None) -> tuple[subprocess.Popen, Path, Path]:
    """Start `bench.worker` under the peak-RSS wrapper, in its own process group; (process, report, log).
    `notify_fd`, a pipe's write end, is handed down to the worker, which writes a byte there after each answer."""
    job_path, report, log_path = _prepare(mode, job, job_dir)
    command = [sys.executable, "-m", "edgebench.bench.measure.peakrss", str(report), str(timeout_s), "--",
               sys.executable, "-m", "edgebench.bench.worker", mode, str(job_path)]
    env = _job_env(job, threads)
    if notify_fd is not None:
        env[NOTIFY_ENV] = str(notify_fd)
    with open(log_path, "w") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=stdin, cwd=PROJECT_ROOT,
                                env=env, start_new_session=True, pass_fds=() if notify_fd is None else (notify_fd,))
    return proc, report, log_path


def _outcome(job_dir: Path, report: Path, log_path: Path, phase: str, timeout_s: float, wall_s: float,
             timed_out: bool = False) -> ChildOutcome:
    """What an ended child came to: its result, or one line saying how and where it failed."""
    usage = _read_json(report)
    peak_rss_mb = usage["maxrss_kb"] / 1024.0 if usage else None  # Linux reports KiB
    if timed_out or (usage and usage["timed_out"]):
        return ChildOutcome(None, f"timed out after {timeout_s:g} s while {phase}", peak_rss_mb, wall_s)
    if usage is None:
        return ChildOutcome(None, f"measurement process lost while {phase} (see run.log)", None, wall_s)
    status = usage["status"]
    result = _read_json(job_dir / RESULT_FILE)
    if result is not None and "error" in result:
        return ChildOutcome(None, f"{result['error']} (while {phase})", peak_rss_mb, wall_s)
    if result is None or status != 0:
        return ChildOutcome(None, _describe_exit(status, phase, log_path), peak_rss_mb, wall_s)
    return ChildOutcome(result, None, peak_rss_mb, wall_s)


def run_child(mode: str, job: CompressJob | MeasureJob, job_dir: Path, threads: int, timeout_s: float,
              on_phase: Callable[[str], None] = lambda phase: None, poll_s: float = 0.1,
              warm: WarmPool | None = None) -> ChildOutcome:
    """Run `bench.worker` on `job` in a fresh interpreter, or forked from a warm one of `warm` when it has one
    for this kind of job (`bench.forkserver`); never raises for what happens inside it."""
    start = time.monotonic()
    phase = "starting"
    forked = warm.fork(mode, job, job_dir, timeout_s) if warm is not None else None
    proc, report, log_path = forked or _spawn(mode, job, job_dir, threads, timeout_s, subprocess.DEVNULL)
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
    final = _read_phase(job_dir) or phase
    if final != phase:  # a child that dies within one poll still shows where it got to
        on_phase(final)
    outcome = _outcome(job_dir, report, log_path, final, timeout_s, time.monotonic() - start)
    if forked:
        outcome.peak_rss_mb, outcome.forked = None, True
    return outcome


# A child is started with PR_SET_PDEATHSIG (bench.measure.peakrss), which fires when the *thread* that started it
# ends, not the process: a session started from a pool's thread would die with that thread. Sessions are started
# from this one thread instead, which lives as long as the process.
_LAUNCHER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="edgebench-launcher")


class ChildSession:
    """A measuring child that stays loaded between its rounds: started once, asked for rounds, then finished.

    Loading a runtime (compiling a graph, building an engine) happens once; each round then costs only its
    timing, so rounds can be interleaved across runtimes. Commands go to the child's stdin, one line each
    (`first`, `round N`, `score`, `finish`); it answers with files in its job folder (`bench.worker`). Each
    wait has the run's per-step timeout: a child that overruns one is killed, and its row says where it stopped.
    """

    def __init__(self, job: MeasureJob, job_dir: Path, threads: int, timeout_s: float,
                 on_phase: Callable[[str], None] = lambda phase: None, poll_s: float = 0.02) -> None:
        self.job_dir, self.timeout_s, self.on_phase, self.poll_s = job_dir, timeout_s, on_phase, poll_s
        self.start = time.monotonic()
        self.phase = "starting"
        self.timed_out = False
        self.finish_s: float | None = None
        self.score_s: float | None = None  # how long scoring accuracy took, when asked apart (score())
        self.loaded_s: float | None = None  # from the start until loaded (loaded()), once asked
        self._loaded: dict[str, Any] | None = None
        # The child writes a byte to this pipe after each answer, so a wait ends when the answer is written
        # rather than at the next poll (polling every 20 ms added 10 ms to each 0.1 s round on average).
        self._notify, notify_w = os.pipe()
        # The wrapper's own limit is only a last resort: this parent enforces the per-step timeout.
        try:
            self.proc, self.report, self.log_path = _LAUNCHER.submit(_spawn, "measure", job, job_dir, threads,
                                                                     timeout_s * 1000, subprocess.PIPE,
                                                                     notify_w).result()
        finally:
            os.close(notify_w)  # the child holds its own copy; at its end the pipe reads as closed

    def _await(self, answer: Path) -> dict[str, Any] | None:
        """The answer file's content once written; None when the child ended or overran the timeout first."""
        deadline = time.monotonic() + self.timeout_s
        try:
            while True:
                data = _read_json(answer) if answer.exists() else None
                if data is not None:
                    return data
                if self.proc.poll() is not None:
                    return None
                current = _read_phase(self.job_dir)
                if current and current != self.phase:
                    self.phase = current
                    self.on_phase(current)
                if time.monotonic() > deadline:
                    self.timed_out = True
                    self.kill()
                    return None
                self._wait_for_word()
        except BaseException:  # Ctrl-C: leave no orphan behind
            self.kill()
            raise

    def _wait_for_word(self) -> None:
        """Sleep until the child says it wrote an answer, or `poll_s` at most (phases and timeouts are checked
        between waits); once its end of the pipe has closed, plain sleeps."""
        if self._notify is None:
            time.sleep(self.poll_s)
            return
        readable, _, _ = select.select([self._notify], [], [], self.poll_s)
        if readable and not os.read(self._notify, 4096):
            self._close_notify()

    def _close_notify(self) -> None:
        if self._notify is not None:
            os.close(self._notify)
            self._notify = None

    def _send(self, line: str) -> bool:
        try:
            self.proc.stdin.write(f"{line}\n".encode())
            self.proc.stdin.flush()
            return True
        except (BrokenPipeError, OSError, ValueError):  # it has already ended (and was killed: stdin closed)
            return False

    def loaded(self) -> dict[str, Any] | None:
        """Wait until the child has loaded its artifact ({"load_s": ...}), or None if it ended (asked again, the
        same answer). Loads may overlap (bench.readying); the child then waits for `ready()` to infer."""
        if self.loaded_s is None:
            self._loaded = self._await(self.job_dir / LOADED_FILE)
            self.loaded_s = time.monotonic() - self.start  # process start + imports + load
        return self._loaded

    def ready(self) -> dict[str, Any] | None:
        """Run the first inference now and check fidelity: the row's first figures, or None if the child ended.
        Call it while nothing else computes: `first_ms` is a cold inference's latency."""
        if self.loaded() is None:
            return None
        return self._await(self.job_dir / READY_FILE) if self._send("first") else None

    def round(self, index: int) -> dict[str, Any] | None:
        """Time one round now; None when the child ended (finish() then says why)."""
        answer = self.job_dir / f"round_{index}.json"
        answer.unlink(missing_ok=True)
        if not self._send(f"round {index}"):
            return None
        return self._await(answer)

    def score(self) -> bool:
        """Score accuracy now, while no other child computes; False when the child ended (finish() says why).
        A child not asked scores when it finishes."""
        t0 = time.monotonic()
        scored = self.proc.poll() is None and not self.timed_out and self._send("score") \
            and self._await(self.job_dir / SCORED_FILE) is not None
        self.score_s = time.monotonic() - t0
        return scored

    def finish(self) -> ChildOutcome:
        """Ask for the closing figures (accuracy, details), let the child exit, and report what it came to.
        Asked again, it reports the same (the child has gone; its files say what it came to)."""
        t0 = time.monotonic()
        if self.proc.poll() is None and not self.timed_out and self._send("finish"):
            self._await(self.job_dir / RESULT_FILE)
            try:
                self.proc.wait(timeout=self.timeout_s)
            except subprocess.TimeoutExpired:
                self.timed_out = True
                self.kill()
        else:
            self.kill()
        self._close_stdin()
        self._close_notify()
        final = _read_phase(self.job_dir) or self.phase
        if self.finish_s is None:  # the first time: how long closing (and scoring, if not asked apart) took
            self.finish_s = time.monotonic() - t0
        return _outcome(self.job_dir, self.report, self.log_path, final, self.timeout_s,
                        time.monotonic() - self.start, self.timed_out)

    def kill(self) -> None:
        if self.proc.poll() is None:
            _kill_group(self.proc.pid)
            self.proc.wait()
        self._close_stdin()
        self._close_notify()

    def _close_stdin(self) -> None:
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            try:
                self.proc.stdin.close()
            except OSError:  # a pipe whose reader has gone
                pass


class WarmProcess:
    """One warm process (`bench.forkserver`) and the children it forks for this harness."""

    def __init__(self, modules: tuple[str, ...], env: dict[str, str], log_path: Path, start_s: float) -> None:
        self.lock = threading.Lock()  # one request and its answer at a time
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "w") as log:
            self.proc = _LAUNCHER.submit(subprocess.Popen, [sys.executable, "-m", "edgebench.bench.forkserver",
                                                            *modules],
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
                                         cwd=PROJECT_ROOT, env=env, start_new_session=True).result()
        self.ok = self._answer(start_s) == "ready"
        if not self.ok:  # an import failed or hung: the jobs go to fresh processes, which say what is wrong
            self.close()

    def _answer(self, timeout_s: float) -> str:
        if not select.select([self.proc.stdout], [], [], timeout_s)[0]:
            return ""
        return self.proc.stdout.readline().decode(errors="replace").strip()

    def fork(self, mode: str, job: CompressJob | MeasureJob, job_dir: Path,
             timeout_s: float) -> tuple[ForkedChild, Path, Path] | None:
        """A child forked for `job` (process-like handle, report, log); None when this process has gone."""
        job_path, report, log_path = _prepare(mode, job, job_dir)
        request = {"mode": mode, "job": str(job_path), "log": str(log_path), "report": str(report),
                   "timeout_s": timeout_s}
        with self.lock:
            if not self.ok or self.proc.poll() is not None:
                return None
            try:
                self.proc.stdin.write(f"{json.dumps(request)}\n".encode())
                self.proc.stdin.flush()
            except OSError:
                return None
            answer = self._answer(30.0)
        if not answer.isdigit():
            return None
        return ForkedChild(int(answer), report, self), report, log_path

    def retire(self) -> None:
        """No more jobs: the process ends once its children have (they die with it, so it is not killed)."""
        with self.lock:
            self.ok = False
            with contextlib.suppress(OSError):
                self.proc.stdin.close()

    def close(self) -> None:
        """The run is over: the process ends once its children have; killed if it does not within seconds."""
        self.retire()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            _kill_group(self.proc.pid)
            self.proc.wait()
        with contextlib.suppress(OSError):
            self.proc.stdout.close()


class ForkedChild:
    """What `run_child` needs of a `subprocess.Popen`, for a child of a warm process: it has ended once the warm
    process has reaped it and written its report."""

    def __init__(self, pid: int, report: Path, server: WarmProcess) -> None:
        self.pid, self.report, self.server = pid, report, server

    def poll(self) -> int | None:
        if self.report.exists():
            return 0
        return 1 if self.server.proc.poll() is not None else None

    def wait(self) -> int:
        while (code := self.poll()) is None:
            time.sleep(0.02)
        return code


def warm_key(mode: str, adapter: str = "", target: str = "cpu", precision: str = "") -> tuple[str, ...] | None:
    """The kind of warm process a job forks from (`WarmPool`); None for a job that starts fresh: measuring
    processes, GPU exports (CUDA and fork do not mix) and adapters outside this package."""
    if mode == "compress":
        return ("compress",)
    if mode != "export" or target != "cpu" or not adapter.rpartition(":")[0].startswith("edgebench.runtimes."):
        return None
    return ("export", adapter, precision)


class WarmPool:
    """The run's warm processes, one per kind of job (`warm_key`), started on first use (`bench.forkserver`).

    With `uses` (how many jobs of each kind the run plans), a kind planned once starts fresh, since a warm
    process would only add a fork to it (so a plain `make bench` keeps each export's own peak memory), and a
    warm process is retired after its last planned job, so the memory it holds is not kept for the run."""

    def __init__(self, threads: int, log_dir: Path, uses: dict[tuple[str, ...], int] | None = None,
                 start_s: float = 120.0) -> None:
        self.threads, self.log_dir, self.start_s = threads, log_dir, start_s
        self.left = dict(uses) if uses is not None else None
        self.lock = threading.Lock()
        self.servers: dict[tuple[str, ...], Future[WarmProcess]] = {}

    def kind(self, mode: str, job: CompressJob | MeasureJob) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
        """(key, modules to import) for this job's warm process; None when it starts fresh."""
        common = ("numpy", "torch", "edgebench.bench.worker", "edgebench.bench.variants")
        if mode == "compress":
            return warm_key(mode), (*common, "edgebench.compression")
        if not isinstance(job, MeasureJob):
            return None
        key = warm_key(mode, job.adapter, job.options.target, job.options.precision)
        if key is None:
            return None
        from edgebench.runtimes import load_adapter

        extra = load_adapter(job.adapter).export_imports(job.options.precision)
        return key, (*common, "edgebench.bench.measure.contents", job.adapter.rpartition(":")[0], *extra)

    def fork(self, mode: str, job: CompressJob | MeasureJob, job_dir: Path,
             timeout_s: float) -> tuple[ForkedChild, Path, Path] | None:
        kind = self.kind(mode, job)
        if kind is None:
            return None
        key, modules = kind
        with self.lock:
            future = self.servers.get(key)
            retire = False
            if self.left is not None:
                left = self.left.get(key, 0)
                if future is None and left < 2:
                    return None  # planned once (or not planned): a fresh process is as fast
                self.left[key] = left - 1
                retire = left <= 1  # its last planned job
            starting = future is None
            if starting:
                future = self.servers[key] = Future()
        if starting:
            env = _job_env(job, self.threads)
            future.set_result(WarmProcess(modules, env, self.log_dir / f"warm-{'-'.join(key)}.log".replace(":", "_"),
                                          self.start_s))
        server = future.result()
        forked = server.fork(mode, job, job_dir, timeout_s) if server.ok else None
        if retire:
            server.retire()
        return forked

    def close(self) -> None:
        with self.lock:
            servers, self.servers = list(self.servers.values()), {}
        for future in servers:
            if future.done():
                future.result().close()


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
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
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
