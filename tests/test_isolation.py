"""Process isolation: exact peak memory per child, even when the parent is large."""

import json
import subprocess
import sys

import numpy as np

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


def test_timeout_kills_and_reports(tmp_path):
    report = tmp_path / "rusage.json"
    subprocess.run([sys.executable, "-m", "bench.peakrss", str(report), "1", "--",
                    sys.executable, "-c", "import time; time.sleep(60)"], timeout=30)
    assert json.loads(report.read_text())["timed_out"] is True
