"""Process isolation: exact peak memory per child, timeouts that leave nothing behind, exits described."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from bench.isolation import _describe_exit, child_env
from bench.peakrss import run_measured, write_report

ALLOCATE = "import numpy as np; a = np.ones({mb} * 2**20 // 8); a[:] = 2"


def peak_of(tmp_path, code: str) -> float:
    report = tmp_path / "rusage.json"
    subprocess.run([sys.executable, "-m", "bench.peakrss", str(report), "60", "--", sys.executable, "-c", code],
                   check=True)
    return json.loads(report.read_text())["maxrss_kb"] / 1024


def test_peak_rss_is_the_childs_own_not_the_parents(tmp_path):
    ballast = np.ones(400 * 2**20 // 8)  # this test process now holds 400 MB more
    ballast[:] = 1
    small = peak_of(tmp_path, ALLOCATE.format(mb=1))
    large = peak_of(tmp_path, ALLOCATE.format(mb=300))
    assert small < 200, small  # would be > 400 if the parent's high-water mark leaked in
    assert 300 <= large < 300 + small + 50, (small, large)


def test_run_measured_reports_status_and_peak():
    done = run_measured([sys.executable, "-c", ALLOCATE.format(mb=100) + "; raise SystemExit(3)"], 60, poll_s=0.01)
    assert os.waitstatus_to_exitcode(done["status"]) == 3 and done["timed_out"] is False
    # Only a lower bound here: forked from this large test process, the child inherits its high-water mark,
    # which is why the harness forks through the small bench.peakrss process (the test above).
    assert done["maxrss_kb"] / 1024 >= 100


def test_run_measured_kills_at_the_timeout():
    t0 = time.monotonic()
    done = run_measured([sys.executable, "-c", "import time; time.sleep(60)"], 0.5, poll_s=0.01)
    assert done["timed_out"] is True and time.monotonic() - t0 < 30
    assert os.WIFSIGNALED(done["status"]) and os.WTERMSIG(done["status"]) == signal.SIGKILL


def test_report_is_written_whole(tmp_path):
    path = tmp_path / "r.json"
    write_report(str(path), {"status": 0, "maxrss_kb": 5, "timed_out": False})
    assert json.loads(path.read_text()) == {"status": 0, "maxrss_kb": 5, "timed_out": False}
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
def test_timeout_kills_the_child_and_everything_it_started(tmp_path):
    """A hung export that started helpers (compile workers, servers) leaves none of them running."""
    report, pid_file = tmp_path / "rusage.json", tmp_path / "grandchild.pid"
    code = ("import subprocess, sys, time;"
            "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)']);"
            f"open({str(pid_file)!r}, 'w').write(str(p.pid)); time.sleep(120)")
    wrapper = subprocess.run([sys.executable, "-m", "bench.peakrss", str(report), "2", "--", sys.executable, "-c",
                              code], timeout=60, start_new_session=True)
    assert wrapper.returncode == -signal.SIGKILL  # the wrapper's clean-up takes its whole group, itself included
    assert json.loads(report.read_text())["timed_out"] is True
    grandchild = int(pid_file.read_text())
    deadline = time.monotonic() + 5  # SIGKILL is delivered at once; allow the reaper a moment
    while _alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(grandchild), f"grandchild {grandchild} outlived the timeout"


def test_exits_are_described_with_the_phase(tmp_path):
    log = tmp_path / "measure.log"
    log.write_text("loading\\nTraceback (most recent call last):\n  ...\nValueError: bad graph\n\n")
    assert _describe_exit(3 << 8, "loading", log) == "process exited with code 3 while loading: ValueError: bad graph"
    assert _describe_exit(3 << 8, "loading", tmp_path / "none.log") == "process exited with code 3 while loading"
    assert _describe_exit(signal.SIGSEGV, "timing", log) == "process killed by SIGSEGV while timing"
    assert _describe_exit(signal.SIGKILL, "exporting", log) == \
        "process killed by SIGKILL (out of memory?) while exporting"


def test_children_get_the_thread_count_and_no_telemetry():
    env = child_env(3)
    assert all(env[v] == "3" for v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                       "TBB_NUM_THREADS"))
    assert env["HF_HUB_OFFLINE"] == "1" and env["DO_NOT_TRACK"] == "1" and env["HF_HUB_DISABLE_TELEMETRY"] == "1"
    assert env["PYTHONPATH"].split(os.pathsep)[0] == str(Path(__file__).resolve().parent.parent)
