"""Process isolation: exact peak memory per child, timeouts that leave nothing behind, exits described."""

import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from edgebench.bench.isolation import ChildOutcome, _describe_exit, child_env, run_child
from edgebench.bench.job import MeasureJob
from edgebench.bench.measure.peakrss import run_measured, write_report
from edgebench.runtimes import RuntimeOptions

from live_processes import alive, processes_mentioning

ALLOCATE = "import numpy as np; a = np.ones({mb} * 2**20 // 8); a[:] = 2"


def peak_of(tmp_path, code: str) -> float:
    report = tmp_path / "rusage.json"
    subprocess.run([sys.executable, "-m", "edgebench.bench.measure.peakrss",
                    str(report), "60", "--", sys.executable, "-c", code],
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
    # which is why the harness forks through the small bench.measure.peakrss process (the test above).
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


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
def test_timeout_kills_the_child_and_everything_it_started(tmp_path):
    """A hung export that started helpers (compile workers, servers) leaves none of them running."""
    report, pid_file = tmp_path / "rusage.json", tmp_path / "grandchild.pid"
    code = ("import subprocess, sys, time;"
            "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)']);"
            f"open({str(pid_file)!r}, 'w').write(str(p.pid)); time.sleep(120)")
    wrapper = subprocess.run([sys.executable, "-m", "edgebench.bench.measure.peakrss",
                              str(report), "2", "--", sys.executable,
                              "-c", code], timeout=60, start_new_session=True)
    assert wrapper.returncode == -signal.SIGKILL  # the wrapper's clean-up takes its whole group, itself included
    assert json.loads(report.read_text())["timed_out"] is True
    grandchild = int(pid_file.read_text())
    deadline = time.monotonic() + 5  # SIGKILL is delivered at once; allow the reaper a moment
    while alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(grandchild), f"grandchild {grandchild} outlived the timeout"


def test_exits_are_described_with_the_phase(tmp_path):
    log = tmp_path / "measure.log"
    log.write_text("loading\\nTraceback (most recent call last):\n  ...\nValueError: bad graph\n\n")
    assert _describe_exit(3 << 8, "loading", log) == "process exited with code 3 while loading: ValueError: bad graph"
    assert _describe_exit(3 << 8, "loading", tmp_path / "none.log") == "process exited with code 3 while loading"
    assert _describe_exit(signal.SIGSEGV, "timing", log) == "process killed by SIGSEGV while timing"
    assert _describe_exit(signal.SIGKILL, "exporting", log) == \
        "process killed by SIGKILL (out of memory?) while exporting"


def test_exit_descriptions_survive_odd_logs(tmp_path):
    log = tmp_path / "measure.log"
    log.write_bytes(b"\xff\xfe not utf-8 \xc3\n" + b"x" * 400 + b"\n\n   \n")
    text = _describe_exit(1 << 8, "exporting", log)
    assert text == "process exited with code 1 while exporting: " + "x" * 300  # the last line, cut at 300
    log.write_bytes(b"\xff\n")
    assert _describe_exit(2 << 8, "loading", log) == "process exited with code 2 while loading: \ufffd"
    log.write_text("\n  \n")
    assert _describe_exit(1 << 8, "loading", log) == "process exited with code 1 while loading"
    assert _describe_exit(40, "timing", log) == "process killed by 40 while timing"  # a real-time signal


def test_children_get_the_thread_count_and_no_telemetry():
    env = child_env(3)
    assert all(env[v] == "3" for v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                       "TBB_NUM_THREADS"))
    assert env["HF_HUB_OFFLINE"] == "1" and env["DO_NOT_TRACK"] == "1" and env["HF_HUB_DISABLE_TELEMETRY"] == "1"
    assert env["PYTHONPATH"].split(os.pathsep)[0] == str(Path(__file__).resolve().parent.parent)


# run_child in this process, on jobs whose child finishes (or fails) within a second or two: no torch there.


def job_for(adapter: str, tmp_path) -> MeasureJob:
    nothing = str(tmp_path / "none")
    return MeasureJob(adapter=adapter, options=RuntimeOptions(threads=1), model_file=nothing, input=nothing,
                      reference=nothing, artifact_dir=nothing, artifact=nothing)


def misbehaving(name: str) -> str:
    return f"{Path(__file__).parent / 'misbehaving_runtimes.py'}:{name}"


def test_a_worker_exception_is_an_error_with_its_phase(tmp_path):
    outcome = run_child("measure", job_for("edgebench.runtimes.no_such_adapter:Nope", tmp_path), tmp_path / "job",
                        1, 60)
    assert outcome.result is None
    assert outcome.error == ("ModuleNotFoundError: No module named 'edgebench.runtimes.no_such_adapter' "
                             "(while starting)")
    assert 0 < outcome.peak_rss_mb < 500 and outcome.wall_s > 0
    assert "Traceback" in (tmp_path / "job" / "measure.log").read_text()  # the child's output is kept
    job = json.loads((tmp_path / "job" / "measure.json").read_text())
    assert job["adapter"] == "edgebench.runtimes.no_such_adapter:Nope"


def test_a_crash_is_named_with_the_phase_it_happened_in(tmp_path):
    phases = []
    outcome = run_child("measure", job_for(misbehaving("CrashOnLoadRuntime"), tmp_path), tmp_path / "job", 1, 60,
                        on_phase=phases.append, poll_s=0.01)
    assert outcome.error == "process killed by SIGSEGV while loading"
    assert outcome.result is None and outcome.peak_rss_mb > 0
    assert phases == ["loading"]


def test_a_child_that_dies_between_two_polls_still_reports_its_last_phase(tmp_path):
    """The crash comes long before the next poll: the progress callback still hears where the child got to."""
    phases = []
    outcome = run_child("measure", job_for(misbehaving("CrashOnLoadRuntime"), tmp_path), tmp_path / "job", 1, 60,
                        on_phase=phases.append, poll_s=3)
    assert outcome.error == "process killed by SIGSEGV while loading"
    assert phases == ["loading"]


def test_a_hang_is_stopped_at_the_timeout(tmp_path):
    t0 = time.monotonic()
    outcome = run_child("measure", job_for(misbehaving("HangingRuntime"), tmp_path), tmp_path / "job", 1, 3)
    assert outcome.error == "timed out after 3 s while loading"
    assert outcome.result is None and outcome.peak_rss_mb > 0
    assert 3 <= outcome.wall_s < time.monotonic() - t0 + 0.1


def test_a_finished_child_gives_its_result_and_stale_files_are_not_read(tmp_path):
    """A runtime that cannot run here finishes cleanly with that reason; a result left by an earlier run
    in the same folder must not be taken for this one's."""
    job_dir = tmp_path / "job"
    job_dir.mkdir()
    (job_dir / "result.json").write_text('{"stale": true}')
    (job_dir / "status").write_text("timing")
    (job_dir / "measure.rusage.json").write_text('{"status": 0, "maxrss_kb": 1, "timed_out": false}')
    coreml = "edgebench.runtimes.coreml:CoreML"
    from edgebench.runtimes import get_runtime

    reason = get_runtime("coreml").run_unavailable("cpu")
    if reason is None:
        pytest.skip("CoreML runs here")
    outcome = run_child("measure", job_for(coreml, tmp_path), job_dir, 1, 120)
    assert outcome == ChildOutcome({"unavailable": reason}, None, outcome.peak_rss_mb, outcome.wall_s)
    assert 1 < outcome.peak_rss_mb < 1000


def test_the_child_gets_its_environment_and_no_terminal(tmp_path, monkeypatch):
    """Whatever folder and terminal the harness runs from (here: another folder, and a pipe as stdin)."""
    import ast

    from edgebench.bench.isolation import PROJECT_ROOT

    monkeypatch.chdir(tmp_path)
    job = job_for(misbehaving("EnvironmentReportingRuntime"), tmp_path)
    read_end, write_end = os.pipe()
    saved_stdin = os.dup(0)
    os.dup2(read_end, 0)
    try:
        outcome = run_child("measure", job, tmp_path / "deep" / "er" / "job", 3, 60)  # folders made as needed
    finally:
        os.dup2(saved_stdin, 0)
        for fd in (saved_stdin, read_end, write_end):
            os.close(fd)
    facts = ast.literal_eval(outcome.result["unavailable"])
    assert outcome.error is None and outcome.wall_s > 0
    report = json.loads((tmp_path / "deep" / "er" / "job" / "measure.rusage.json").read_text())
    assert outcome.peak_rss_mb == report["maxrss_kb"] / 1024  # Linux reports KiB
    assert facts["OMP_NUM_THREADS"] == facts["MKL_NUM_THREADS"] == "3"
    assert facts["HF_HUB_OFFLINE"] == facts["DO_NOT_TRACK"] == "1"
    assert facts["cwd"] == str(PROJECT_ROOT) and facts["stdin"] == "/dev/null"
    assert facts["sid"] != os.getsid(0)  # its own session: a terminal's Ctrl-C reaches only the harness
    assert facts["NVIDIA_TF32_OVERRIDE"] is None  # a CPU row: NVIDIA's libraries keep their own defaults


@pytest.mark.parametrize("precision,override", [("fp32", "0"), ("tf32", None), ("fp16", None)])
def test_a_gpu_fp32_child_starts_with_tf32_overridden_off(tmp_path, monkeypatch, precision, override):
    """cuBLAS, cuDNN and TensorRT read NVIDIA_TF32_OVERRIDE once, when they load: set in the adapter it came too
    late for a process that had already loaded them, so it is in the child's environment from its start."""
    import ast
    from dataclasses import replace

    monkeypatch.delenv("NVIDIA_TF32_OVERRIDE", raising=False)
    monkeypatch.delenv("CUDA_DEVICE_ORDER", raising=False)
    job = job_for(misbehaving("EnvironmentReportingRuntime"), tmp_path)
    job = replace(job, options=replace(job.options, target="gpu", precision=precision))
    outcome = run_child("measure", job, tmp_path / "job", 1, 60)
    facts = ast.literal_eval(outcome.result["unavailable"])
    assert facts["NVIDIA_TF32_OVERRIDE"] == override
    assert facts["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"  # CUDA numbers GPUs as NVML does (energy, capability)


def test_a_result_from_a_process_that_then_failed_is_not_trusted(tmp_path):
    outcome = run_child("measure", job_for(misbehaving("ExitsBadlyRuntime"), tmp_path), tmp_path / "job", 1, 60)
    assert outcome.result is None and outcome.wall_s > 0
    assert outcome.error.startswith("process exited with code 3 while starting")


def test_pythonpath_puts_the_project_first_and_keeps_the_users(monkeypatch):
    root = str(Path(__file__).resolve().parent.parent)
    monkeypatch.setenv("PYTHONPATH", "/opt/mine")
    assert child_env(1)["PYTHONPATH"] == f"{root}{os.pathsep}/opt/mine"
    monkeypatch.delenv("PYTHONPATH")
    assert child_env(1)["PYTHONPATH"] == root


def test_an_interrupt_while_waiting_kills_the_child_and_propagates(tmp_path):
    """Ctrl-C arrives in the harness while it waits: the child in flight dies with it, the interrupt goes on."""

    def interrupt(phase):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_child("measure", job_for(misbehaving("HangingRuntime"), tmp_path), tmp_path / "job", 1, 600,
                  on_phase=interrupt, poll_s=0.01)
    assert processes_mentioning(str(tmp_path / "job")) == []


def test_a_stuck_wrapper_is_killed_as_a_last_resort(tmp_path, monkeypatch):
    """If the peak-RSS wrapper itself never returns, the harness kills it 60 s after the child's timeout."""
    import edgebench.bench.isolation

    stuck = tmp_path / "stuck-python"
    stuck.write_text("#!/bin/sh\nexec sleep 600\n")
    stuck.chmod(0o755)
    monkeypatch.setattr(edgebench.bench.isolation.sys, "executable", str(stuck))
    t0 = time.monotonic()
    outcome = run_child("measure", job_for("unused:Unused", tmp_path), tmp_path / "job", 1, -59.5, poll_s=0.01)
    assert outcome == ChildOutcome(None, "measurement process lost while starting (see run.log)", None,
                                   outcome.wall_s)
    assert 0.5 <= outcome.wall_s < time.monotonic() - t0 + 0.1
    assert processes_mentioning(str(tmp_path / "job")) == []


def _phase_of(job_dir: Path) -> str:
    try:
        return (job_dir / "status").read_text()
    except OSError:
        return ""


def harness_with_a_hanging_child(tmp_path: Path, job_dir: Path, warm: str = "") -> subprocess.Popen:
    """A harness process running a child that hangs in load(), returned once the child is loading; `warm`: an
    expression for run_child's warm pool, evaluated there (`tmp` is the test's folder)."""
    script = (
        "import sys; sys.path.insert(0, sys.argv[1]); from pathlib import Path; tmp = Path(sys.argv[2]); "
        "from edgebench.bench.isolation import run_child; from test_isolation import job_for, misbehaving; "
        + ("from test_forkserver import AnyJobPool; " if warm else "")
        + "run_child('measure', job_for(misbehaving('HangingRuntime'), tmp), Path(sys.argv[3]), 1, 600, "
        f"warm={warm or None})")
    harness = subprocess.Popen([sys.executable, "-c", script, str(Path(__file__).parent), str(tmp_path), str(job_dir)],
                               cwd=Path(__file__).parent.parent)
    deadline = time.monotonic() + 60
    while _phase_of(job_dir) != "loading":
        assert time.monotonic() < deadline and harness.poll() is None, "the child never started loading"
        time.sleep(0.05)
    return harness


def kill_and_wait_for(harness: subprocess.Popen, pids: list[int], settle_s: float = 10) -> None:
    """`kill -9` the harness, then give its processes `settle_s` to die."""
    harness.kill()
    harness.wait()
    deadline = time.monotonic() + settle_s
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)


def test_children_die_with_a_killed_parent(tmp_path):
    """`kill -9` of the harness leaves no child running on its own (Linux: the kernel's parent-death signal)."""
    job_dir = tmp_path / "job"
    harness = harness_with_a_hanging_child(tmp_path, job_dir)
    children = [pid for pid in processes_mentioning(str(job_dir)) if pid != harness.pid]
    assert len(children) == 2  # the peak-RSS wrapper and the worker, hanging in load()
    kill_and_wait_for(harness, children)
    assert not any(alive(pid) for pid in children)


def test_a_session_that_hangs_while_loading_is_stopped_at_the_timeout(tmp_path):
    from edgebench.bench.isolation import ChildSession

    session = ChildSession(job_for(misbehaving("HangingRuntime"), tmp_path), tmp_path / "job", 1, 3)
    assert session.ready() is None
    outcome = session.finish()
    assert outcome.error == "timed out after 3 s while loading"
    assert processes_mentioning(str(tmp_path / "job")) == []


def test_a_session_stays_loaded_between_rounds_and_then_finishes(tmp_path, tiny_reference):
    """Loaded once, two rounds on command (each its own file and samples), then the closing figures."""
    from edgebench.bench.config import TimingConfig
    from edgebench.bench.isolation import ChildSession
    from edgebench.bench.measure.rounds import RE_WARMUP_ITERS
    from edgebench.runtimes import adapter_ref, get_runtime

    reference, source = tiny_reference
    timing = TimingConfig(warmup_iters=6, warmup_s=0.0, min_iters=5, min_s=0.0, max_s=5.0)
    job = MeasureJob(adapter=adapter_ref(get_runtime("pytorch")), options=RuntimeOptions(threads=1, model=source),
                     model_file=str(reference.model_file), input=str(reference.input(1)),
                     reference=str(reference.outputs(1)), artifact_dir=str(tmp_path / "a"),
                     artifact=str(reference.model_file), timing=timing, serve=True)
    session = ChildSession(job, tmp_path / "job", 1, 60)
    ready = session.ready()
    assert ready["fidelity_ok"] is True and ready["load_s"] > 0
    pid = processes_mentioning(str(tmp_path / "job" / "measure.json"))
    first, second = session.round(0), session.round(1)
    assert len(first["samples_ms"]) >= 5 and len(second["samples_ms"]) >= 5
    assert first["warmup_iters"] == 6 and second["warmup_iters"] == RE_WARMUP_ITERS  # later rounds re-warm briefly
    assert processes_mentioning(str(tmp_path / "job" / "measure.json")) == pid  # the same process throughout
    outcome = session.finish()
    assert outcome.error is None and outcome.result["device"] == "cpu" and outcome.peak_rss_mb > 0
    assert processes_mentioning(str(tmp_path / "job")) == []


def _serving_job(tmp_path, reference, source, task: str = "") -> MeasureJob:
    from edgebench.bench.config import TimingConfig
    from edgebench.runtimes import adapter_ref, get_runtime

    timing = TimingConfig(warmup_iters=2, warmup_s=0.0, min_iters=5, min_s=0.0, max_s=5.0)
    return MeasureJob(adapter=adapter_ref(get_runtime("pytorch")), options=RuntimeOptions(threads=1, model=source),
                      model_file=str(reference.model_file), input=str(reference.input(1)),
                      reference=str(reference.outputs(1)), artifact_dir=str(tmp_path / "a"),
                      artifact=str(reference.model_file), timing=timing, serve=True, task=task)


def test_a_session_started_from_a_pool_thread_outlives_that_thread(tmp_path, tiny_reference):
    """Rows export and load in a pool whose threads end before timing starts: the kernel's parent-death signal
    follows the thread that started a child, so a session must not die with the thread that created it."""
    from concurrent.futures import ThreadPoolExecutor

    from edgebench.bench.isolation import ChildSession

    reference, source = tiny_reference
    with ThreadPoolExecutor(max_workers=1) as pool:
        session = pool.submit(lambda: ChildSession(_serving_job(tmp_path, reference, source), tmp_path / "job",
                                                   1, 60)).result()
        assert pool.submit(session.ready).result() is not None
    time.sleep(0.5)  # the pool's thread has ended
    assert session.round(0) is not None, session.finish().error
    assert session.finish().error is None


def test_a_session_hears_each_answer_when_it_is_written_not_at_its_next_poll(tmp_path, tiny_reference):
    """The child writes a byte to a pipe after each answer, and the parent's wait ends on it: with a 20 s poll,
    loading, the first inference, three rounds and closing take seconds (each wait would take 20 s without)."""
    from edgebench.bench.isolation import ChildSession

    reference, source = tiny_reference
    t0 = time.monotonic()
    session = ChildSession(_serving_job(tmp_path, reference, source), tmp_path / "job", 1, 60, poll_s=20)
    assert session.ready() is not None
    assert _phase_of(tmp_path / "job") == "ready"  # a step's phase is written before the answer that wakes us
    for i in range(10):
        assert session.round(i) is not None
        assert _phase_of(tmp_path / "job") == "waiting"
    assert session.finish().error is None
    assert time.monotonic() - t0 < 20


def test_an_answer_wakes_the_parent_through_the_inherited_pipe(tmp_path, monkeypatch):
    from edgebench.bench import worker

    read, write = os.pipe()
    monkeypatch.setenv(worker.NOTIFY_ENV, str(write))
    worker._write_json(tmp_path / "round_0.json", {"samples_ms": [1.0]})
    assert select.select([read], [], [], 5)[0] and os.read(read, 16) == b"."
    os.close(write)
    worker._write_json(tmp_path / "round_1.json", {"samples_ms": [1.0]})  # a closed pipe is not an error
    os.close(read)
    assert json.loads((tmp_path / "round_1.json").read_text()) == {"samples_ms": [1.0]}


def test_a_session_scores_accuracy_when_asked_before_it_finishes(tmp_path, tiny_reference):
    """The runner scores its rows one at a time (`score`), then closes them all at once: the accuracy comes from
    the scoring it was asked for, and finishing does not score again."""
    import torch

    from edgebench.bench.isolation import ChildSession
    from edgebench.bench.variants import load_module

    reference, source = tiny_reference
    x = np.load(reference.input(1))
    with torch.no_grad():
        classes = load_module(str(reference.model_file), source)(torch.from_numpy(x)).shape[-1]
    task = tmp_path / "task.npz"
    np.savez(task, x_test=np.repeat(x, 7, axis=0), y_test=np.zeros(7, dtype=np.int64),
             classes=np.array([str(i) for i in range(classes)]))
    session = ChildSession(_serving_job(tmp_path, reference, source, str(task)), tmp_path / "job", 1, 60)
    assert session.ready() is not None
    assert session.score() and session.score_s is not None
    assert (tmp_path / "job" / "scored.json").exists()
    assert _phase_of(tmp_path / "job") == "waiting"  # scored, and still loaded
    outcome = session.finish()
    assert outcome.error is None and outcome.result["accuracy"] in (0.0, 1.0)  # 7 copies of one image
    assert outcome.result["correct_bits"]
    assert _phase_of(tmp_path / "job") == "waiting"  # finishing did not score a second time


def test_a_session_that_ended_cannot_score(tmp_path, tiny_reference):
    from edgebench.bench.isolation import ChildSession

    reference, source = tiny_reference
    session = ChildSession(_serving_job(tmp_path, reference, source), tmp_path / "job", 1, 60)
    assert session.ready() is not None
    session.kill()
    assert session.score() is False


def test_a_loaded_session_runs_its_first_inference_only_when_asked(tmp_path, tiny_reference):
    """Rows load side by side (bench.readying), but each first inference runs when the parent says, alone:
    until then the child holds its model loaded and has not inferred."""
    from edgebench.bench.isolation import ChildSession

    reference, source = tiny_reference
    session = ChildSession(_serving_job(tmp_path, reference, source), tmp_path / "job", 1, 60)
    loaded = session.loaded()
    assert loaded["load_s"] > 0 and session.loaded_s >= loaded["load_s"]
    time.sleep(0.3)
    assert _phase_of(tmp_path / "job") == "loaded" and not (tmp_path / "job" / "ready.json").exists()
    ready = session.ready()
    assert ready["fidelity_ok"] is True and ready["first_ms"] > 0
    assert session.finish().error is None


def test_a_session_finished_before_its_first_inference_reports_why(tmp_path, tiny_reference):
    from edgebench.bench.isolation import ChildSession

    reference, source = tiny_reference
    session = ChildSession(_serving_job(tmp_path, reference, source), tmp_path / "job", 1, 60)
    assert session.loaded() is not None
    outcome = session.finish()
    assert outcome.error is None and "before this row's first inference" in outcome.result["unavailable"]


def test_exit_now_runs_exit_handlers_flushes_output_and_keeps_the_code(tmp_path):
    """Measuring and exporting processes end without the interpreter's teardown (0.8-1.6 s after torch), but
    as a normal exit would otherwise: exit handlers (logging's flush among them) run, buffered output is written,
    and the exit status is the worker's."""
    marker = tmp_path / "handler-ran"
    code = ("import atexit, sys; from edgebench.bench.measure.peakrss import exit_now; "
            f"atexit.register(lambda: open({str(marker)!r}, 'w').write('yes')); "
            "sys.stdout.write('buffered, no newline'); exit_now(3)")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # buffered, as a worker's log is
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 3
    assert done.stdout == "buffered, no newline"
    assert marker.read_text() == "yes"
