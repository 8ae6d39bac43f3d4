"""bench.steps: the GPU check's step runner, tried with fake steps on the CPU so its first real run does not fail
on its own logic: order, per-step limits, a report written as each step ends, and resuming in the same folder."""

from __future__ import annotations

import json
import sys

import pytest

from edgebench.bench.steps import REPORT, Step, Verdict, read_verdict, run_steps, verdict_path


def fake(name: str, out, status: str = "proven", sleep_s: float = 0.0, write: bool = True, exit_code: int = 0) -> Step:
    """A step whose process sleeps, writes the given verdict (or none), and exits with the given code."""
    code = (f"import time, sys; time.sleep({sleep_s}); "
            "from bench.steps import Verdict, write_verdict; from pathlib import Path; "
            + (f"write_verdict(Path({str(out)!r}), {name!r}, Verdict({status!r}, 'did {name}', body='| a |')); "
               if write else "print('something went wrong'); ")
            + f"sys.exit({exit_code})")
    return Step(name, (sys.executable, "-c", code), limit_s=30)


def test_steps_run_in_order_each_verdict_reaching_the_report_as_it_ends(tmp_path):
    lines = []
    steps = [fake("environment", tmp_path), fake("tests", tmp_path, "failed"), fake("tensorrt", tmp_path,
                                                                                    "not available")]
    results = run_steps(steps, tmp_path, "GPU check", say=lines.append)
    assert [(s.name, v.status) for s, v in results] == [("environment", "proven"), ("tests", "failed"),
                                                          ("tensorrt", "not available")]
    assert [line.split()[0] for line in lines] == ["PROVEN", "FAILED", "NOT"]
    report = (tmp_path / REPORT).read_text()
    assert report.index("## environment: proven") < report.index("## tests: failed") \
        < report.index("## tensorrt: not available")
    assert "did tests" in report and "| a |" in report


def test_a_step_over_its_limit_is_stopped_failed_and_the_next_step_still_runs(tmp_path):
    slow = fake("slow", tmp_path, sleep_s=30)
    slow = Step(slow.name, slow.command, limit_s=1)
    results = run_steps([slow, fake("next", tmp_path)], tmp_path, "t", say=lambda line: None)
    (_, stopped), (_, after) = results
    assert stopped.status == "failed" and stopped.detail == "stopped at its limit of 1 s" and stopped.seconds < 10
    assert after.status == "proven"


def test_a_step_that_ends_without_a_verdict_is_failed_with_its_last_line(tmp_path):
    results = run_steps([fake("crash", tmp_path, write=False, exit_code=3)], tmp_path, "t", say=lambda line: None)
    verdict = results[0][1]
    assert verdict.status == "failed"
    assert verdict.detail == "exited with code 3 without a verdict: something went wrong"


def test_a_second_try_in_the_same_folder_keeps_settled_steps_and_reruns_the_rest(tmp_path):
    """The first try was killed after two steps (one proven, one failed): the second does not redo the proven
    one, runs the failed one again, then the one never reached, and appends to the same report."""
    run_steps([fake("a", tmp_path), fake("b", tmp_path, "failed")], tmp_path, "t", say=lambda line: None)
    first_a = json.loads(verdict_path(tmp_path, "a").read_text())
    lines = []
    results = run_steps([fake("a", tmp_path, "failed"), fake("b", tmp_path), fake("c", tmp_path)], tmp_path, "t",
                        say=lines.append)
    assert [v.status for _, v in results] == ["proven", "proven", "proven"]  # a kept, b and c run now
    assert lines[0].endswith("[from an earlier try]") and json.loads(verdict_path(tmp_path, "a").read_text()) == first_a
    report = (tmp_path / REPORT).read_text()
    assert report.count("## b:") == 2 and report.count("## a:") == 1 and report.count("# t\n") == 1


def test_a_verdict_is_one_of_three_words():
    with pytest.raises(ValueError, match="unknown verdict 'passed'"):
        Verdict("passed", "x")
    assert read_verdict(__import__("pathlib").Path("/nonexistent"), "x") is None


def test_the_gpu_check_plan_fits_the_lent_machines_command_limit():
    """One call on the lent machine may run 10 minutes; the check must leave time for a retry in the same call
    budget: its steps' limits add up to under 5 minutes, in the order the issue values them."""
    from pathlib import Path

    from edgebench.bench.gpu_check import STEPS, plan

    steps = plan(Path("out"))
    assert sum(s.limit_s for s in steps) < 300
    assert [s.name for s in steps] == ["environment", "GPU tests", "TF32 control", "resnet18 on CUDA", "TensorRT"]
    assert all(s.name in STEPS and s.command[-3:] == ("--step", s.name, "out") for s in steps)
