"""Bad input: one line naming the bad value and the choices, exit 2, no traceback, earlier results untouched."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from edgebench.bench.cli import main

from image_folders import image_folder
from live_processes import processes_mentioning
from tests_paths import ASSETS, TINY_MODEL

FAST = ["--warmup", "1", "--warmup-s", "0", "--iters", "3", "--duration", "0", "--threads", "1"]


def run_main(capsys, *args: str) -> tuple[int, str, str]:
    try:
        code = main(list(args))
    except SystemExit as exc:  # argparse errors
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("args,message", [
    (["--model", "resnet19"], "unknown model 'resnet19': choose one of resnet18, mobilenet_v2"),
    (["--runtimes", "pytorch,onnx"],
     "unknown runtime 'onnx': choose from pytorch, pytorch-compiled, aoti, torchscript, executorch, onnxruntime"),
    (["--target", "tpu"], "unknown target 'tpu': choose one of cpu, gpu, npu"),
    (["--precision", "fp8"], "unknown precision 'fp8': choose from fp32, tf32, fp16, bf16"),
    (["--batch", "0"], "bad batch size '0'"),
    (["--batch", "1,x"], "bad batch size 'x' in '1,x'"),
    (["--threads", "0"], "bad thread count '0'"),
    (["--threads", "4096"], "bad thread count 4096: expected a whole number from 1 to"),
    (["--iters", "-3"], "bad iteration count '-3'"),
    (["--duration", "soon"], "bad duration 'soon'"),
    (["--model", "no/such/file.py:build"], "model file 'no/such/file.py' does not exist"),
    (["--model", f"{ASSETS}/tiny_cnn.py:nope"], "defines no function 'nope'"),
    (["--model", TINY_MODEL, "--weights", "missing.pt"], "weights file 'missing.pt' does not exist"),
    (["--compress", "prune-everything:0.5"], "unknown compression method 'prune-everything' in 'prune-everything:0.5':"
                                             " choose from cluster:N[@lastK], distill:STUDENT"),
    (["--compress", "prune-unstructured:1.2"], "bad prune-unstructured amount '1.2': expected a fraction between 0"),
    (["--compress", "cluster:1"], "bad cluster count '1' in cluster:1: expected a whole number >= 2"),
    (["--compress", "distill:resnet99"], "unknown student 'resnet99' in distill:resnet99"),
    (["--compress", "qat+prune-channels:0.3"], "impossible order 'qat+prune-channels:0.3': qat quantizes the model"),
    (["--model", TINY_MODEL, "--compress", "qat"], "qat trains, so it needs labelled data: tiny_cnn:build has none"),
    (["--model", "digits_cnn", "--data", "no/such/folder"], "DATA folder 'no/such/folder' does not exist"),
    (["--model", "digits_cnn", "--data", "imagenet"], "unknown DATA 'imagenet': choose mnist, digits, or a folder"),
    (["--finetune-epochs", "-1"], "bad fine-tune epochs '-1'"),
    (["--repeats", "0"], "bad repeats '0'"),
    (["--mode", "fast"], "unknown mode 'fast': choose from latency, throughput"),
    (["--target-ci", "2"], "bad target interval 2.0: expected a fraction between 0 and 1"),
    (["--export-jobs", "0"], "bad export jobs '0'"),
    (["--load-jobs", "0"], "bad load jobs '0'"),
    (["--repeats", "8", "--max-repeats", "5"], "MAX_REPEATS=5 (--max-repeats) is below REPEATS=8 (--repeats)"),
    (["--duration", "2", "--max-duration", "1"], "MAX_DURATION=1 (--max-duration) is below DURATION=2 (--duration)"),
    (["--cache", "maybe"], "bad cache 'maybe': expected yes or no (also on/off, true/false, 1/0)"),
])
def test_bad_input_is_one_line_and_exit_2(capsys, args, message):
    code, out, err = run_main(capsys, *args)
    assert code == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err + out


@pytest.mark.parametrize("splits,classes,message", [
    (("train",), 10, "has no val/ folder: expected train/<class>/*.jpg and val/<class>/*.jpg"),
    (("train", "val"), 3, "has 3 classes (class0, class1, class2), but digits_cnn has 10 outputs"),
])
def test_a_data_folder_that_does_not_fit_is_refused_before_anything_is_written(capsys, tmp_path, splits, classes,
                                                                                 message):
    data = image_folder(tmp_path / "data", classes, splits)
    out = tmp_path / "run"
    code, _, err = run_main(capsys, "--model", "digits_cnn", "--data", str(data), "--out", str(out))
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists()


def test_a_data_folder_that_fits_becomes_the_task(tmp_path):
    from edgebench.models.tasks import load_task

    task = load_task(str(image_folder(tmp_path / "data", 10)), (1, 8, 8))
    assert task.x_train.shape == (20, 1, 8, 8) and task.x_test.shape == (20, 1, 8, 8)
    assert task.classes == tuple(f"class{c}" for c in range(10)) and list(task.y_test[:2]) == [0, 0]
    assert task.label == "data (20 test images)"


def test_absent_gpu_and_npu_name_what_was_checked(capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    code, _, err = run_main(capsys, "--target", "gpu")
    assert code == 2 and "no CUDA device found for TARGET=gpu" in err and "nvidia-smi" in err
    code, _, err = run_main(capsys, "--target", "npu")
    if code == 0:
        pytest.skip("an NPU is present")
    assert code == 2 and "no NPU found for TARGET=npu" in err and "OpenVINO NPU" in err


def test_out_folder_with_a_run_is_left_untouched(capsys, tmp_path):
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"earlier": "result"}\n')
    code, _, err = run_main(capsys, "--model", TINY_MODEL, "--out", str(tmp_path))
    assert code == 2 and "already holds a run" in err
    assert rows.read_text() == '{"earlier": "result"}\n'


@pytest.mark.slow
def test_real_process_prints_table_and_keeps_warnings_off_the_terminal(tmp_path):
    """The real entry point, in its own process: exit code, table, results path, quiet stderr.

    Run from another folder with a relative model path, as a user with the console script would.
    """
    proc = subprocess.run([sys.executable, "-m", "edgebench.bench",
                           "--model", "tiny_cnn.py:build", "--runtimes", "torchscript",
                           "--out", str(tmp_path / "run"), *FAST], capture_output=True, text=True, timeout=300,
                          cwd=ASSETS)
    assert proc.returncode == 0, proc.stderr
    assert "TorchScript" in proc.stdout and "Results:" in proc.stdout
    assert "Warning" not in proc.stderr and "Traceback" not in proc.stderr
    assert "deprecated" in (tmp_path / "run" / "run.log").read_text()  # TorchScript's warnings went here


def test_bad_input_in_a_real_process_has_no_traceback():
    proc = subprocess.run([sys.executable, "-m", "edgebench.bench", "--model", "nope"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("edgebench: error: unknown model 'nope'")
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
def interruptible() -> None:
    """In the child before exec: Ctrl-C's default action back. A suite started in the background by a shell
    without job control (`make test &`) inherits SIGINT ignored, and Python then never raises KeyboardInterrupt:
    measured, both Ctrl-C tests failed that way, and passed in the foreground."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_keeps_finished_rows_and_leaves_no_children(tmp_path):
    import signal
    import time

    out = tmp_path / "run"
    # Rows are written per variant as each finishes its rounds; the second variant's compress and export
    # steps (seconds of process start-up) are then certainly in flight when the interrupt comes.
    proc = subprocess.Popen([sys.executable, "-m", "edgebench.bench", "--model", TINY_MODEL, "--runtimes",
                             "pytorch,onnxruntime", "--compress", "prune-unstructured:0.5",
                             "--out", str(out), "--no-cache", *FAST],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=interruptible)
    rows = out / "rows.jsonl"
    deadline = time.monotonic() + 240
    while not (rows.exists() and rows.read_text().count("\n") >= 2) and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)  # now inside the next variant's compression or export
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted; rows finished so far are in" in err and "Traceback" not in err
    assert rows.read_text().count("\n") >= 1 and (out / "table.md").exists()
    time.sleep(0.5)
    assert processes_mentioning(str(out)) == []  # the export/measure children were killed too


def _job_phases(run_dir) -> list[str]:
    return [p.read_text() for p in run_dir.glob("jobs/*/*/*/status")]  # jobs/<model>/<compression>/<row>


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
def test_ctrl_c_kills_the_child_in_flight_at_once(tmp_path):
    """A measurement that would run for minutes is certainly in flight; right after exit, nothing of it is left."""
    import os
    import signal
    import time

    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "edgebench.bench",
                             "--model", TINY_MODEL, "--runtimes", "onnxruntime",
                             "--out", str(out), "--keep-artifacts", "--threads", "1", "--warmup", "1",
                             "--iters", "100000000", "--duration", "300", "--max-duration", "300"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=interruptible)
    deadline = time.monotonic() + 240
    while "timing" not in _job_phases(out) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert _job_phases(out) == ["timing"], "the measurement never started"
    assert len(processes_mentioning(str(out))) >= 2  # the peak-RSS wrapper and the measuring worker
    proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=60)
        left = processes_mentioning(str(out))  # looked at once: no grace period for orphans to die
    finally:  # a broken harness may be waiting on its child: leave nothing running either way
        proc.kill()
        for pid in processes_mentioning(str(out)):
            os.kill(pid, signal.SIGKILL)
    assert proc.returncode == 130, err
    assert left == []
    assert "interrupted; rows finished so far are in" in err and "Traceback" not in err


def test_list_shows_models_runtimes_and_availability(capsys):
    code, out, _ = run_main(capsys, "--list")
    assert code == 0
    assert "resnet18 (224x224)" in out and "inception_v3 (299x299)" in out
    for name in ("pytorch", "onnxruntime", "openvino", "tensorrt", "tflite", "coreml"):
        assert name in out
    assert "TensorRT does not run on cpu" in out
    if platform.system() != "Darwin":  # CoreML converts here but cannot run: not "yes"
        assert "no, conversion only" in out and "CoreML inference runs only on macOS" in out
    assert "mnist_resnet_m (mnist)" in out and "digits_cnn (digits)" in out
    for spec in ("prune-unstructured:SPARSITY", "prune-channels:RATIO", "cluster:N[@lastK]", "distill:STUDENT", "qat"):
        assert spec in out


def test_cli_flags_reach_the_config():
    from edgebench.bench.cli import build_parser, config_from_args

    config = config_from_args(build_parser().parse_args([
        "--warmup", "3", "--warmup-s", "0.25", "--iters", "7", "--duration", "4", "--max-duration", "6",
        "--timeout", "30", "--seed", "5", "--keep-artifacts", "--threads", "1", "--batch", "1,4",
        "--compress", "prune-channels:0.3,cluster:16@last2", "--data", "digits", "--finetune-epochs", "3"]))
    assert [v.spec for v in config.variants] == ["none", "prune-channels:0.3", "cluster:16@last2"]
    assert (config.data, config.finetune_epochs) == ("digits", 3)
    t = config.timing
    assert (t.warmup_iters, t.warmup_s, t.min_iters, t.min_s) == (3, 0.25, 7, 4.0)
    assert t.max_s == 6.0  # (one below the minimum duration is refused: test_bad_input_is_one_line_and_exit_2)
    assert (config.timeout_s, config.seed, config.keep_artifacts, config.batches) == (30.0, 5, True, (1, 4))
    assert config.warm_exports  # forked from warm processes unless asked otherwise
    assert not config_from_args(build_parser().parse_args(["--fresh-exports"])).warm_exports
    assert config.load_jobs == 2 and config_from_args(build_parser().parse_args(["--load-jobs", "1"])).load_jobs == 1


@pytest.mark.parametrize("loads", [0, 17, 1.5, True])
def test_a_config_refuses_load_jobs_outside_1_to_16(loads):
    """The config checks what a caller other than the CLI (the study, the fleet) gives it, as the CLI does."""
    from edgebench.bench.config import BenchConfig
    from edgebench.bench.errors import UsageError

    with pytest.raises(UsageError, match=f"bad load jobs {loads!r}: expected a whole number of rows loading"):
        BenchConfig(load_jobs=loads)


@pytest.mark.parametrize("argv, cache, repeats, max_repeats, max_s", [
    ([], True, 10, 20, 60.0),
    (["--cache", "false"], False, 10, 20, 60.0),  # CACHE=false was ignored: only 0/no/off were read
    (["--cache", "OFF"], False, 10, 20, 60.0),
    (["--cache", "yes", "--no-cache"], False, 10, 20, 60.0),
    (["--repeats", "30"], True, 30, 30, 60.0),  # the default limit raised to what was asked, not refused
    (["--repeats", "4", "--max-repeats", "4", "--duration", "90"], True, 4, 4, 90.0),
])
def test_settings_are_used_as_given_or_raised_only_where_the_user_gave_no_limit(argv, cache, repeats, max_repeats,
                                                                                max_s):
    from edgebench.bench.cli import build_parser, config_from_args

    config = config_from_args(build_parser().parse_args(argv))
    assert (config.cache, config.repeats, config.max_repeats, config.timing.max_s) == (cache, repeats, max_repeats,
                                                                                        max_s)


@pytest.mark.parametrize("args, env, message", [
    (["--fleet", "bogus", "--devices", "d"], {}, "bad FLEET 'bogus': expected local (a loopback fleet on this "
                                                 "machine), or a scheduler address tcp://host:port"),
    (["--fleet", "tcp://10.0.0.1:99999", "--devices", "d"], {}, "bad FLEET 'tcp://10.0.0.1:99999'"),
    (["--fleet", "local", "--devices", "d1"], {"EDGEBENCH_FLEET_WAIT_S": "abc"},
     "bad EDGEBENCH_FLEET_WAIT_S 'abc': expected a number of seconds >= 0"),
    (["worker", "bogus", "--name", "x"], {}, "bad scheduler address 'bogus': expected a scheduler address tcp://"),
    (["--fleet", "tls://127.0.0.1:1", "--devices", "d"], {}, "cannot reach the fleet's scheduler at "
                                                             "tls://127.0.0.1:1: it speaks TLS"),
])
def test_fleet_entry_points_refuse_bad_input_in_one_line_before_writing_anything(capsys, monkeypatch, tmp_path, args,
                                                                                 env, message):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    out_dir = tmp_path / "run"
    extra = [] if args[0] == "worker" else ["--model", TINY_MODEL, "--out", str(out_dir)]
    code, out, err = run_main(capsys, *args, *extra)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err + out and not out_dir.exists()


def test_a_weights_file_that_pickles_a_model_says_what_it_is_and_never_advises_unpickling(capsys, tmp_path):
    import torch

    whole = tmp_path / "whole.pt"
    torch.save(torch.nn.Sequential(torch.nn.Linear(2, 2)), whole)  # a whole model, not a state_dict
    code, out, err = run_main(capsys, "--model", TINY_MODEL, "--weights", str(whole), "--out", str(tmp_path / "run"))
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "pickles a torch.nn.modules.container.Sequential object" in err and "state_dict" in err
    assert "weights_only" not in err and "\x1b[" not in err and not (tmp_path / "run").exists()
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a torch file")
    code, out, err = run_main(capsys, "--model", TINY_MODEL, "--weights", str(garbage))
    assert code == 2 and "is not a PyTorch state_dict file" in err and len(err.strip().splitlines()) == 1


def test_error_lines_carry_no_terminal_codes():
    """A library's message quoted in an error (torch's bold advice) reaches every command's output clean."""
    from edgebench.bench.errors import UsageError

    assert str(UsageError("weights file: \x1b[1mdo those steps\x1b[0m only \x1b[31;1mif\x1b[0m")) == \
        "weights file: do those steps only if"


def test_a_narrow_terminal_folds_long_cells_instead_of_cutting_them():
    """At 80 columns the table printed "ok (fidelit..." and intervals cut mid-number."""
    import io

    from rich.console import Console

    from edgebench.bench.cli import print_table
    from edgebench.bench.results import ResultRow

    row = ResultRow(model="m", weights="w", compression="none", runtime="onnxruntime", format="ONNX Runtime",
                    precision="int8", target="cpu", device="cpu", batch=1, threads=2, status="ok", size_mb=4.0,
                    p50_ms=2.756, p50_ci_low_ms=2.541, p50_ci_high_ms=3.061, p90_ms=3.66, max_abs_diff=0.14,
                    fidelity_ok=False, speedup=9.16, speedup_ci_low=7.59, speedup_ci_high=10.9)
    out = io.StringIO()
    print_table(Console(file=out, width=80), [row])
    text = out.getvalue()
    assert "…" not in text
    body = [line.split("│")[1:-1] for line in text.splitlines() if line.startswith("│")]  # the row's lines
    cells = ["".join(line[i].strip() for line in body) for i in range(len(body[0]))]  # each cell, unfolded
    assert "ok(fidelity!)" in cells and "2.76(2.54-3.06)" in cells and "x9.16(7.59-10.90)" in cells
