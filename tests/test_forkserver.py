"""Warm processes (bench.forkserver): children forked from them end as fresh ones do, and leave nothing behind."""

import ast
import os
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
from test_isolation import harness_with_a_hanging_child, job_for, kill_and_wait_for, misbehaving

from edgebench.bench.isolation import WarmPool, run_child
from edgebench.bench.job import CompressJob
from edgebench.bench.worker import settle

from live_processes import alive, children_of


class AnyJobPool(WarmPool):
    """One warm process for every job, importing only numpy: the tests' adapters live outside the package."""

    def __init__(self, tmp_path: Path, modules: tuple[str, ...] = ("numpy", "edgebench.bench.worker")) -> None:
        super().__init__(1, tmp_path / "warm")
        self.modules = modules

    def kind(self, mode, job):
        return ("any",), self.modules


@pytest.fixture
def pool(tmp_path):
    pool = AnyJobPool(tmp_path)
    yield pool
    pool.close()


def server_of(pool: WarmPool):
    (future,) = pool.servers.values()
    return future.result()


def test_a_forked_child_gets_the_environment_a_fresh_one_gets(tmp_path, pool):
    from edgebench.bench.isolation import PROJECT_ROOT

    outcome = run_child("measure", job_for(misbehaving("EnvironmentReportingRuntime"), tmp_path), tmp_path / "job", 1,
                        60, warm=pool)
    facts = ast.literal_eval(outcome.result["unavailable"])
    server = server_of(pool)
    assert server.ok and server.proc.poll() is None  # it was forked, and the warm process serves on
    assert facts["OMP_NUM_THREADS"] == "1" and facts["HF_HUB_OFFLINE"] == "1"
    assert facts["cwd"] == str(PROJECT_ROOT) and facts["stdin"] == "/dev/null"
    assert facts["sid"] not in (os.getsid(0), os.getsid(server.proc.pid))  # its own session: killed as a group
    assert outcome.peak_rss_mb is None  # a forked child's peak leaves out the libraries it inherited


def test_a_forked_childs_failures_read_as_a_fresh_ones(tmp_path, pool):
    crash = run_child("measure", job_for(misbehaving("CrashOnLoadRuntime"), tmp_path), tmp_path / "crash", 1, 60,
                      warm=pool)
    assert crash.error == "process killed by SIGSEGV while loading"
    missing = run_child("measure", job_for("edgebench.runtimes.no_such_adapter:Nope", tmp_path), tmp_path / "missing",
                        1, 60, warm=pool)
    assert missing.error == "ModuleNotFoundError: No module named 'edgebench.runtimes.no_such_adapter' (while starting)"
    assert "Traceback" in (tmp_path / "missing" / "measure.log").read_text()  # the child's output is in its log
    bad_exit = run_child("measure", job_for(misbehaving("ExitsBadlyRuntime"), tmp_path), tmp_path / "bad", 1, 60,
                         warm=pool)
    assert bad_exit.error.startswith("process exited with code 3 while starting")
    assert server_of(pool).proc.poll() is None  # none of them took the warm process down


def test_a_forked_hang_is_stopped_at_the_timeout_and_nothing_is_left(tmp_path, pool):
    t0 = time.monotonic()
    outcome = run_child("measure", job_for(misbehaving("HangingRuntime"), tmp_path), tmp_path / "job", 1, 2,
                        warm=pool)
    assert outcome.error == "timed out after 2 s while loading"
    assert 2 <= time.monotonic() - t0 < 30
    assert children_of(server_of(pool).proc.pid) == []
    done = run_child("measure", job_for(misbehaving("EnvironmentReportingRuntime"), tmp_path), tmp_path / "after", 1,
                     60, warm=pool)
    assert done.error is None  # the warm process serves the next job


def test_a_warm_process_that_cannot_start_leaves_jobs_to_fresh_processes(tmp_path):
    pool = AnyJobPool(tmp_path, modules=("no_such_module_here",))
    try:
        outcome = run_child("measure", job_for(misbehaving("EnvironmentReportingRuntime"), tmp_path), tmp_path / "job",
                            1, 60, warm=pool)
        assert outcome.error is None and outcome.peak_rss_mb > 0  # measured by the fresh process's wrapper
        assert not server_of(pool).ok
        assert "no_such_module_here" in (tmp_path / "warm" / "warm-any.log").read_text()
    finally:
        pool.close()


def test_closing_the_pool_ends_its_processes(tmp_path, pool):
    run_child("measure", job_for(misbehaving("EnvironmentReportingRuntime"), tmp_path), tmp_path / "job", 1, 60,
              warm=pool)
    server = server_of(pool)
    pool.close()
    assert server.proc.poll() is not None and pool.servers == {}


def test_a_kind_planned_once_starts_fresh_and_a_warm_process_retires_after_its_last_job(tmp_path):
    once = AnyJobPool(tmp_path)
    once.left = {("any",): 1}
    fresh = run_child("measure", job_for(misbehaving("EnvironmentReportingRuntime"), tmp_path), tmp_path / "one", 1,
                      60, warm=once)
    assert fresh.error is None and fresh.peak_rss_mb > 0 and once.servers == {}  # no warm process was started
    twice = AnyJobPool(tmp_path)
    twice.left = {("any",): 2}
    try:
        for name in ("a", "b"):
            outcome = run_child("measure", job_for(misbehaving("EnvironmentReportingRuntime"), tmp_path),
                                tmp_path / name, 1, 60, warm=twice)
            assert outcome.forked and outcome.error is None
        server = server_of(twice)
        server.proc.wait(timeout=10)  # retired after its second job: it ends without being asked to close
        third = run_child("measure", job_for(misbehaving("EnvironmentReportingRuntime"), tmp_path), tmp_path / "c",
                          1, 60, warm=twice)
        assert not third.forked and third.error is None  # an unplanned extra job starts fresh
    finally:
        twice.close()


def test_warm_process_kinds(tmp_path):
    """Compression and CPU exports of the package's runtimes fork; GPU exports, a user's adapter and measuring
    processes start fresh; the kind's imports are the runtime's own at that precision."""
    from edgebench.runtimes import adapter_ref, get_runtime

    pool = WarmPool(1, tmp_path)
    tflite = replace(job_for(adapter_ref(get_runtime("tflite")), tmp_path))
    key, modules = pool.kind("export", tflite)
    assert key == ("export", tflite.adapter, "fp32") and "litert_torch" in modules and "torch" in modules
    int8 = replace(tflite, options=replace(tflite.options, precision="int8"))
    assert "torchao.quantization.pt2e" in pool.kind("export", int8)[1]
    assert pool.kind("export", replace(tflite, options=replace(tflite.options, target="gpu"))) is None
    assert pool.kind("measure", tflite) is None  # a measuring process imports only what its runtime needs
    assert pool.kind("export", job_for(misbehaving("HangingRuntime"), tmp_path)) is None
    compress = CompressJob(chain="finetune:2", model_file="m", model="mnist_resnet_m", out_dir="o", inputs={})
    assert pool.kind("compress", compress)[0] == ("compress",)


def test_the_forked_children_die_with_a_killed_harness(tmp_path):
    """`kill -9` of the harness takes the warm process and its child with it (parent-death signals)."""
    harness = harness_with_a_hanging_child(tmp_path, tmp_path / "job", warm="AnyJobPool(tmp)")
    (server,) = children_of(harness.pid)
    (child,) = children_of(server)
    kill_and_wait_for(harness, [server, child])
    assert not alive(server) and not alive(child)


def test_settle_waits_while_the_process_spins_and_not_otherwise():
    """ONNX Runtime's idle threads spin after a run: a round's answer waits until its process is quiet."""
    assert settle() < 0.05
    stop = time.monotonic() + 0.15

    def spin():
        while time.monotonic() < stop:
            pass

    thread = threading.Thread(target=spin)
    thread.start()
    waited = settle()
    thread.join()
    assert waited >= 0.1
    assert settle(limit_s=0.02) <= 0.1  # and never longer than its limit, however busy
