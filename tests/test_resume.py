"""Resuming an interrupted run in its folder: rows kept, the rest measured, the same rows as an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict

import pytest

from edgebench.bench.cli import main
from edgebench.bench.results import ResultRow
from edgebench.bench.resume import keep_finished_variants, load_command, save_command, without_options

from live_processes import processes_mentioning
from tests_paths import TINY_MODEL

FAST = ["--threads", "1", "--warmup", "1", "--iters", "5", "--duration", "0", "--repeats", "2"]


def _row(compression: str, runtime: str, status: str = "ok") -> ResultRow:
    return ResultRow(model="m", weights="random", compression=compression, runtime=runtime, format=runtime,
                     precision="fp32", target="cpu", device="cpu", batch=1, threads=1, status=status)


def test_only_variants_with_every_row_written_are_kept_and_the_files_say_so(tmp_path):
    rows = [_row("none", "pytorch"), _row("none", "onnxruntime", "unavailable"), _row("prune:0.5", "pytorch")]
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(asdict(r)) + "\n" for r in rows) + '{"model": "m", "com')
    (tmp_path / "samples.jsonl").write_text("".join(json.dumps({"key": r.key, "latency_ms": [1.0], "rounds": [1]})
                                                    + "\n" for r in rows))
    planned = {("m", "none"): {rows[0].key, rows[1].key},
               ("m", "prune:0.5"): {rows[2].key, _row("prune:0.5", "onnxruntime").key}}
    kept = keep_finished_variants(tmp_path, planned)
    assert [r.key for r in kept] == [rows[0].key, rows[1].key]  # prune:0.5 lacks a row: measured again whole
    assert [json.loads(line)["key"] for line in (tmp_path / "samples.jsonl").read_text().splitlines()] == \
        [rows[0].key, rows[1].key]
    assert (tmp_path / "rows.jsonl").read_text().count("\n") == 2  # the half-written last line is gone too


def test_the_stored_command_round_trips_without_its_out_folder(tmp_path):
    assert without_options(["--model", "x", "--out", "a", "--out=b", "--batch", "1"], ("--out",)) == \
        ["--model", "x", "--batch", "1"]
    save_command(tmp_path, ["--model", "x"])
    assert load_command(tmp_path) == ["--model", "x"]


@pytest.mark.parametrize("make,args,message", [
    (None, ["--resume", "{dir}/nowhere"], "no such run folder"),
    ("folder", ["--resume", "{dir}"], "not a run edgebench can resume (no command.json"),
    ("command", ["--resume", "{dir}", "--batch", "8"], "--resume reuses the run's own settings: drop --batch"),
    ("damaged", ["--resume", "{dir}"], "command.json is damaged"),
])
def test_bad_resume_is_one_line_and_exit_2(tmp_path, capsys, make, args, message):
    if make:
        tmp_path.mkdir(exist_ok=True)
    if make == "command":
        save_command(tmp_path, ["--model", TINY_MODEL])
    if make == "damaged":
        (tmp_path / "command.json").write_text("{")
    assert main([a.format(dir=tmp_path) for a in args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def _keys_and_statuses(run_dir):
    return [(r["model"], r["compression"], r["runtime"], r["precision"], r["target"], r["batch"], r["status"])
            for r in map(json.loads, (run_dir / "rows.jsonl").read_text().splitlines())]


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
def test_kill_9_then_resume_gives_the_rows_of_an_uninterrupted_run(tmp_path):
    args = [sys.executable, "-m", "edgebench.bench", "--model", TINY_MODEL, "--runtimes", "pytorch,onnxruntime",
            "--compress", "prune-unstructured:0.5,prune-unstructured:0.8", *FAST]
    cut = tmp_path / "cut"
    proc = subprocess.Popen([*args, "--out", str(cut)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    rows = cut / "rows.jsonl"
    deadline = time.monotonic() + 300
    while not (rows.exists() and rows.read_text().count("\n") >= 2) and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1.0)  # inside the second variant: its rows are not written yet
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    for pid in processes_mentioning(str(cut)):  # orphaned measuring children: a killed parent cannot end them
        os.kill(pid, signal.SIGKILL)
    written = rows.read_text().count("\n")
    assert 2 <= written < 6, "the kill did not land inside the run"
    done = subprocess.run([sys.executable, "-m", "edgebench.bench",
                           "--resume", str(cut)], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    # What the uninterrupted run writes (every variant in each runtime, in order, all ok): one run less to wait for
    model = _keys_and_statuses(cut)[0][0]
    assert _keys_and_statuses(cut) == [(model, c, rt, "fp32", "cpu", 1, "ok")
                                       for c in ("none", "prune-unstructured:0.5", "prune-unstructured:0.8")
                                       for rt in ("pytorch", "onnxruntime")]
    resumed = [json.loads(line) for line in rows.read_text().splitlines()][written:]
    # Paired with the uncompressed rows' processes, restarted for the resumed variants as in an unbroken run.
    assert all(r["compression_speedup"] is not None for r in resumed if r["status"] == "ok")
    environment = json.loads((cut / "environment.json").read_text())
    assert len(environment["resumes"]) == 1
    assert "resuming" in (cut / "run.log").read_text()
    table = (cut / "table.md").read_text()
    assert table.count("| prune-unstructured:0.8 | fp32 | 1 | ok") == 2  # one row per runtime, none twice
