"""Runs one command and reports its exact peak RSS, exit status and whether it timed out.

Why a separate small process: Linux carries the RSS high-water mark of the process that forks into the
child's `ru_maxrss` (measured here: a `true` forked from a 200 MB Python reports 217 MB). The harness
parent holds torch and the model (~800 MB), so it cannot fork the measured process itself; this wrapper
is a fresh interpreter of ~10 MB, and what `os.wait4` gives it is the measured process's own peak.

Usage: python -m edgebench.bench.measure.peakrss REPORT.json TIMEOUT_S -- command...
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from typing import Any

PARENT_ENV = "EDGEBENCH_PARENT_PID"  # the pid a child must die with; each process sets it for its own child
NOTIFY_ENV = "EDGEBENCH_NOTIFY_FD"  # a pipe's write end, inherited: the worker writes a byte after each answer
PR_SET_PDEATHSIG = 1


def die_with_parent(parent: str | None) -> None:
    """Linux: have the kernel SIGKILL this process the moment its parent dies, even by `kill -9`.

    Without it, a child of a killed run went on exporting alone until it finished; one that hangs would
    load the CPU until its timeout and disturb the next run's numbers. If the parent is already gone when
    this runs (it died between starting us and now), exit at once. Elsewhere this does nothing.
    """
    if not sys.platform.startswith("linux") or not parent:
        return
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != int(parent):
        os._exit(1)


def exit_now(code: int) -> None:
    """End this process as a normal exit would, less the interpreter's teardown of what it imported: 0.8 s for
    a process that ran resnet18 in eager PyTorch (3.57 s against 2.92 s, measured), up to 1.6 s after Inductor.
    Exit handlers still run (logging's flush among them; one that fails cannot keep the process alive), and
    standard output and error are flushed; the files a worker writes are closed before it returns."""
    import atexit

    try:
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code)


def run_measured(command: list[str], timeout_s: float, poll_s: float = 0.05) -> dict[str, Any]:
    """Run `command` to its end or until `timeout_s` (then SIGKILL it); its wait status, peak RSS and fate."""
    env = dict(os.environ, **{PARENT_ENV: str(os.getpid())})  # the measured process dies with this wrapper
    notify = os.environ.get(NOTIFY_ENV)  # the harness's wake-up pipe (bench.isolation) goes down to the worker
    passed = (int(notify),) if notify and notify.isdigit() else ()
    proc = subprocess.Popen(command, env=env, pass_fds=passed)  # stays in the caller's process group
    deadline = time.monotonic() + timeout_s
    timed_out = False
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            timed_out = True
            proc.kill()
            _, status, usage = os.wait4(proc.pid, 0)
            break
        time.sleep(poll_s)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return {"status": status, "maxrss_kb": usage.ru_maxrss, "timed_out": timed_out}


def write_report(path: str, report: dict[str, Any]) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(report, f)
    os.replace(tmp, path)  # atomic: the harness never reads half a report


def main(argv: list[str]) -> int:
    report_path, timeout_s, command = argv[0], float(argv[1]), argv[3:]
    die_with_parent(os.environ.get(PARENT_ENV))
    if os.getpgrp() != os.getpid():
        os.setpgid(0, 0)  # our own process group, so the clean-up below never reaches our caller
    report = run_measured(command, timeout_s)
    write_report(report_path, report)
    if report["timed_out"]:  # anything the measured process started (compile workers, servers) goes too, and so do we
        os.killpg(os.getpgrp(), signal.SIGKILL)
    return 0


if __name__ == "__main__":
    # Run the importable module's main rather than this __main__ copy's, so that the process holds one
    # definition of everything: what tests patch or mutate (`make mutation`) is what runs here.
    from edgebench.bench.measure import peakrss

    sys.exit(peakrss.main(sys.argv[1:]))
