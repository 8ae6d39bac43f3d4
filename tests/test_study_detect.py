"""`make study TASK=detect`'s tables, from rows written by hand (the whole study trains two detectors and measures
them: minutes, run by the command itself), and the task dispatch of `make study`."""

from __future__ import annotations

import subprocess
import sys

import pytest

from edgebench.bench.results import ResultRow
from edgebench.study import detect

LABELS = {"pytorch": "PyTorch", "pytorch-compiled": "PyTorch compiled", "torchscript": "TorchScript",
          "onnxruntime": "ONNX Runtime", "openvino": "OpenVINO", "tflite": "TFLite"}


def row(runtime: str, precision: str = "fp32", compression: str = "none", model: str = "yolov8n",
        p50: float = 2.0, size: float = 12.0, map50_95: float = 0.528, delta: float | None = None,
        gain: tuple[float, float, float] | None = None, status: str = "ok", error: str = "",
        control: str = "") -> ResultRow:
    return ResultRow(model=model, weights="checkpoint:last.pt", compression=compression, runtime=runtime,
                     format=LABELS[runtime], precision=precision, target="cpu", device="cpu", batch=1, threads=2,
                     status=status, error=error, size_mb=size, p50_ms=p50, params=3_011_433, map50_95=map50_95,
                     map50=0.738, map_ci_low=map50_95 - 0.02, map_ci_high=map50_95 + 0.03, postprocess_ms=4.5,
                     map_delta=delta, map_control=control if delta is not None else "",
                     map_delta_ci_low=None if delta is None else delta - 0.006,
                     map_delta_ci_high=None if delta is None else delta + 0.005,
                     compression_speedup=gain[0] if gain else None,
                     compression_speedup_ci_low=gain[1] if gain else None,
                     compression_speedup_ci_high=gain[2] if gain else None)


ROWS = [row(r) for r in detect.RUNTIMES] + [
    row("onnxruntime", "int8", size=3.6, p50=1.3, delta=-0.001, gain=(1.61, 1.28, 2.03)),
    row("openvino", "int8", size=4.0, p50=1.2, delta=0.0, gain=(1.57, 1.37, 1.80)),
    row("tflite", "int8", status="error", error="export: RuntimeError: ... (SOFTMAX) failed to prepare."),
]
PRUNING = [row(r) for r in detect.FAMILY_RUNTIMES] + [
    row("onnxruntime", compression=detect.CONTROL, map50_95=0.613, delta=0.085, control="none fp32"),
    row("onnxruntime", compression=detect.PRUNE, size=7.3, p50=1.6, map50_95=0.558, delta=-0.055,
        gain=(1.21, 1.09, 1.3), control=f"{detect.CONTROL} fp32"),
]
FAMILY = [row(r, model="yolov8s", p50=6.0, size=42.7, map50_95=0.61) for r in detect.FAMILY_RUNTIMES]


def test_the_detection_study_has_the_surveys_tables_with_map_and_paired_changes():
    text = detect.study_markdown(ROWS, PRUNING, FAMILY, "# header\n\n")
    for title in ("## 1. Frameworks", "## 2. Family", "## 3. int8", "## 4. Channel pruning", "## 5. Summary"):
        assert title in text
    frameworks = text.split("## 2.")[0]
    assert frameworks.count("| 52.8 (50.8-55.8) |") == len(detect.RUNTIMES)  # every fp32 row, with its interval
    family = text.split("## 2.")[1].split("## 3.")[0]
    assert "| yolov8n | 12.0 | 3,011,433 | 52.8 (50.8-55.8) |" in family and "| yolov8s | 42.7 |" in family
    assert "the two rows were timed apart" in family  # two runs: their p50s are not paired
    int8 = text.split("## 3.")[1].split("## 4.")[0]
    assert "| ONNX Runtime | 52.8 (50.8-55.8) | 52.8 (50.8-55.8) | -0.1 (-0.7 to +0.4) | x1.61 (1.28-2.03) |" in int8
    assert "| TFLite | 52.8 (50.8-55.8) | error: export: RuntimeError" in int8  # said, not dropped
    pruning = text.split("## 4.")[1].split("## 5.")[0]
    # the pruned model against its control (the checkpoint fine-tuned as long), not against the baseline
    assert ("| ONNX Runtime | 52.8 (50.8-55.8) | 61.3 (59.3-64.3) | 55.8 (53.8-58.8) | -5.5 (-6.1 to -5.0) vs "
            f"{detect.CONTROL} | x1.21 (1.09-1.30) | 12.0 -> 7.3 |") in pruning
    assert f"fine-tuned {detect.FINETUNE_EPOCHS} epochs" in text
    summary = text.split("## 5.")[1].split("Not measured here")[0]
    assert "| int8 (post-training) | ONNX Runtime | x3.33 | x1.61 (1.28-2.03) |" in summary
    assert f"| channel pruning 30% + {detect.FINETUNE_EPOCHS}-epoch fine-tune | ONNX Runtime | x1.64 |" in summary
    assert "TFLite" not in summary  # an error row has no ratio to summarise


@pytest.mark.parametrize("argv, message", [(["--task", "segment"], "unknown TASK 'segment': choose classify, detect"),
                                           (["--task"], "--task needs a value")])
def test_a_bad_study_task_is_one_line(argv, message):
    done = subprocess.run([sys.executable, "-m", "edgebench.study", *argv], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr


def test_tables_only_without_rows_is_one_line(tmp_path):
    done = subprocess.run([sys.executable, "-m", "edgebench.study", "--task", "detect", "--tables-only", "--out",
                           str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "no rows in" in done.stderr and "Traceback" not in done.stderr
