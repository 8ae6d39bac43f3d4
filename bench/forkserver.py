"""Warm processes that fork the export and compress children: imports paid once per run, not once per row.

A fresh interpreter spends 2-5 s importing torch and a converter before an export starts (torch 1.6 s,
litert-torch 3.4 s more, onnxscript 1.2 s), and the compression study exports about 70 artifacts. A warm
process per kind of job (runtime, target, precision; or compression) imports what that job imports, once,
then forks one child per job. The warm process never runs a model or a kernel, so a child inherits the
imported modules and nothing else: no thread pool, no compiled cache, no state of an earlier export.

A child ends as a fresh export process ends: its exit status (exit handlers run) goes to the same report file
`bench.measure.peakrss` writes, and its result and log to its job folder. Its `wait4` peak RSS is written
too, but the harness leaves the row's export peak empty: fork copies anonymous pages into the child's RSS, not
the shared libraries' file pages, so a PyTorch export measured 316 MB forked against 651 MB fresh. The child
has its own session (the warm process kills its group at the timeout) and dies with the warm process, which
dies with the harness.

Usage (by `bench.isolation`): python -m edgebench.bench.forkserver MODULE... ; then one JSON line per job
on stdin ({"mode", "job", "log", "report", "timeout_s"}), answered by the child's pid on stdout.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import select
import signal
import sys
import time
import traceback
from typing import Any

from edgebench.bench.measure.peakrss import PARENT_ENV, die_with_parent, exit_now, write_report


def _child(command: dict[str, Any]) -> None:
    """In the forked child: its own session, its own log, then the worker; never returns."""
    code = 1
    try:
        os.setsid()
        os.environ[PARENT_ENV] = str(os.getppid())  # the worker dies with this warm process (die_with_parent)
        log = os.open(command["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        from edgebench.bench import worker

        code = worker.main([command["mode"], command["job"]])
    except BaseException:  # noqa: BLE001  (whatever happens, this copy of the server must not go on serving)
        traceback.print_exc()
    finally:
        exit_now(code)  # as at a fresh interpreter's exit: a library's exit handler may still fail it


def serve(modules: list[str], poll_s: float = 0.02) -> int:
    die_with_parent(os.environ.get(PARENT_ENV))
    for name in modules:
        importlib.import_module(name)
    out = sys.stdout
    out.write("ready\n")
    out.flush()
    children: dict[int, dict[str, Any]] = {}  # pid -> its command, deadline and fate
    pending = b""
    open_input = True
    while open_input or children:
        if open_input and select.select([0], [], [], poll_s)[0]:
            data = os.read(0, 65536)
            if not data:  # the harness is done with us: let running children finish, then leave
                open_input = False
            pending += data
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                command = json.loads(line)
                out.flush()
                sys.stderr.flush()
                pid = os.fork()
                if pid == 0:
                    _child(command)
                children[pid] = {**command, "deadline": time.monotonic() + command["timeout_s"], "timed_out": False}
                out.write(f"{pid}\n")
                out.flush()
        elif not open_input:
            time.sleep(poll_s)
        while children:
            pid, status, usage = os.wait4(-1, os.WNOHANG)
            if not pid:
                break
            done = children.pop(pid, None)
            if done is not None:
                write_report(done["report"], {"status": status, "maxrss_kb": usage.ru_maxrss,
                                              "timed_out": done["timed_out"]})
        now = time.monotonic()
        for pid, child in children.items():
            if now > child["deadline"] and not child["timed_out"]:
                child["timed_out"] = True
                for kill in (os.killpg, os.kill):  # the child's group (compile workers), and the child itself
                    with contextlib.suppress(ProcessLookupError):
                        kill(pid, signal.SIGKILL)
    return 0


if __name__ == "__main__":
    # Run the importable module's serve rather than this __main__ copy's (as bench.worker does).
    from edgebench.bench import forkserver

    sys.exit(forkserver.serve(sys.argv[1:]))
