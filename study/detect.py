"""`make study TASK=detect`: the survey's YOLO tables with mAP, measured on this machine from one command.

On the embedded synthetic shapes set (`models.shapes`), a YOLOv8n and a YOLOv8s are trained once by Ultralytics'
own trainer (cached), then measured from their checkpoints as a user's best.pt would be. Three runs, so each
comparison comes from one run: YOLOv8n at fp32 and int8 in every CPU runtime (frameworks and int8 tables);
YOLOv8n channel-pruned and fine-tuned by Ultralytics' trainer, beside its control (the checkpoint fine-tuned as
long) and the uncompressed model, at fp32 in four runtimes (pruning table); YOLOv8s at fp32 (the family table,
beside YOLOv8n's figures). The summary takes its ratios from the first two.
"""

from __future__ import annotations

import platform
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from edgebench.bench.config import BenchConfig, TimingConfig
from edgebench.bench.report import fmt, map_cell, map_delta_cell, ratio_cell
from edgebench.bench.results import ResultRow

MODEL = "yolov8n"
FAMILY = ("yolov8n", "yolov8s")
SIZE = 128  # the embedded set's images, the models' input
RUNTIMES = ("pytorch", "pytorch-compiled", "torchscript", "onnxruntime", "openvino", "tflite")
FAMILY_RUNTIMES = ("pytorch", "onnxruntime", "openvino", "tflite")
PRUNE = "prune-channels:0.3"
FINETUNE_EPOCHS = 5  # pruned YOLOv8n here: mAP50-95 0.2 untrained, 32.8 after 2 epochs (Ultralytics' validator),
# 56.2 after 5 (its control 60.5; the stored study)
CONTROL = f"finetune:{FINETUNE_EPOCHS}"
# These detectors run in 2-20 ms at 128 px: 0.1 s per round gives tens of samples, and 10 rounds fit.
TIMING = TimingConfig(warmup_iters=5, warmup_s=0.2, min_iters=20, min_s=0.1, max_s=5.0)
EXPORT_JOBS = 2
RUNS = ("frameworks", "pruning", "family")  # the run folders inside the study folder


@dataclass
class Trained:
    """The study's checkpoints and what making them cost."""

    data_yaml: Path
    checkpoints: dict[str, Path]
    train_s: dict[str, float]


def prepare(seed: int = 0) -> Trained:
    """The shapes set and each family member's checkpoint, made once (models/.cache)."""
    from edgebench.models.shapes import ShapesSpec, write_shapes
    from edgebench.models.yolo_training import YoloRecipe, trained_yolo
    from edgebench.models.zoo import CACHE_DIR

    spec = ShapesSpec(seed=seed)
    data = write_shapes(CACHE_DIR / spec.key, spec)
    made = {name: trained_yolo(name, data, SIZE, YoloRecipe(seed=seed)) for name in FAMILY}
    return Trained(data, {n: m.checkpoint for n, m in made.items()}, {n: m.train_s for n, m in made.items()})


def study_configs(out: Path, trained: Trained, threads: int | None = None, seed: int = 0,
                  repeats: int | None = None) -> list[BenchConfig]:
    from edgebench.study import cycles

    common = dict(data=str(trained.data_yaml), timing=TIMING, seed=seed, targets=("cpu",), export_jobs=EXPORT_JOBS)
    if threads:
        common["threads"] = threads
    common.update(cycles(repeats))
    return [BenchConfig(model=MODEL, weights=str(trained.checkpoints[MODEL]), runtimes=RUNTIMES,
                        precisions=("fp32", "int8"), out=out / RUNS[0], **common),
            BenchConfig(model=MODEL, weights=str(trained.checkpoints[MODEL]), runtimes=FAMILY_RUNTIMES,
                        compress=(PRUNE,), finetune_epochs=FINETUNE_EPOCHS, out=out / RUNS[1], **common),
            BenchConfig(model=FAMILY[1], weights=str(trained.checkpoints[FAMILY[1]]), runtimes=FAMILY_RUNTIMES,
                        out=out / RUNS[2], **common)]


# --- Tables, from stored rows ----------------------------------------------------------------------------------

def _row(rows: Sequence[ResultRow], runtime: str, precision: str = "fp32", compression: str = "none",
         model: str | None = None) -> ResultRow | None:
    return next((r for r in rows if r.runtime == runtime and r.precision == precision
                 and r.compression == compression and (model is None or r.model == model)), None)


def _not_ok(row: ResultRow | None) -> str | None:
    """What a table prints instead of figures for a row that was not measured."""
    if row is None:
        return "not run"
    if row.status != "ok":
        return f"{row.status}: {' '.join((row.error or '').split())[:90]}"
    return None


def _table(headers: list[str], body: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    return "\n".join(lines + ["| " + " | ".join(cells) + " |" for cells in body]) + "\n"


def frameworks_table(rows: Sequence[ResultRow]) -> str:
    """The YOLOv5 export table with accuracy: each runtime's fp32 file of the same checkpoint."""
    body = []
    for runtime in RUNTIMES:
        row = _row(rows, runtime)
        if row is None:
            continue
        problem = _not_ok(row)
        body.append([row.format, fmt(row.size_mb, 1)] + ([problem, "-", "-", "-"] if problem else [
            map_cell(row), fmt(row.map50 * 100 if row.map50 is not None else None, 1), fmt(row.p50_ms),
            "-"]))  # GPU ms: no GPU in this study's run (make bench TARGET=cpu,gpu on a CUDA machine)
    return _table(["Format", "Size (MB)", "mAP50-95 % (95% CI)", "mAP50 %", "CPU ms (p50)", "GPU ms"], body)


def family_table(rows: Sequence[ResultRow], family: Sequence[ResultRow]) -> str:
    """n and s: size (the ONNX file), parameters, mAP and each runtime's p50, all at fp32."""
    body = []
    for model, source in ((FAMILY[0], rows), (FAMILY[1], family)):
        onnx = _row(source, "onnxruntime", model=model)
        anchor = onnx or next((r for r in source if r.model == model), None)
        if anchor is None:
            continue
        cells = [model, fmt(onnx.size_mb if onnx else None, 1),
                 f"{anchor.params:,}" if anchor.params else "-", map_cell(anchor)]
        for runtime in FAMILY_RUNTIMES:
            row = _row(source, runtime, model=model)
            cells.append(fmt(row.p50_ms) if row is not None and row.status == "ok" else "-")
        body.append(cells)
    return _table(["Model", "Size (MB)", "Params", "mAP50-95 % (95% CI)",
                   *(f"{r} CPU ms" for r in FAMILY_RUNTIMES)], body)


def change_table(rows: Sequence[ResultRow], precision: str, compression: str) -> str:
    """A method against the same runtime's fp32 uncompressed row, every figure paired: mAP over the same images,
    speed over the same rounds."""
    body = []
    for runtime in RUNTIMES:
        base, row = _row(rows, runtime), _row(rows, runtime, precision, compression)
        if row is None or base is None or base.status != "ok":
            continue
        problem = _not_ok(row)
        size = f"{fmt(base.size_mb, 1)} -> {fmt(row.size_mb, 1)}" if row.size_mb is not None else "-"
        if problem:
            body.append([row.format, map_cell(base), problem, "-", "-", size])
            continue
        body.append([row.format, map_cell(base), map_cell(row), map_delta_cell(row),
                     ratio_cell(row.compression_speedup, row.compression_speedup_ci_low,
                                row.compression_speedup_ci_high), size])
    return _table(["Runtime", "fp32 mAP50-95 %", f"{precision} {compression} mAP50-95 %".replace(" none", ""),
                   "mAP change, points (paired 95% CI)", "Speed-up (paired 95% CI)", "Size (MB)"], body)


def pruning_table(pruning: Sequence[ResultRow]) -> str:
    """Channel pruning fine-tuned, beside its control (the checkpoint fine-tuned as long) and the uncompressed model:
    the mAP change is paired against the control, the speed-up against the uncompressed row of the same runtime."""
    body = []
    for runtime in FAMILY_RUNTIMES:
        base, control, row = (_row(pruning, runtime, compression=c) for c in ("none", CONTROL, PRUNE))
        if row is None or base is None:
            continue
        problem = _not_ok(row) or _not_ok(base)
        size = f"{fmt(base.size_mb, 1)} -> {fmt(row.size_mb, 1)}" if row.size_mb is not None else "-"
        if problem:
            body.append([row.format, map_cell(base), "-", problem, "-", "-", size])
            continue
        body.append([row.format, map_cell(base), map_cell(control) if control is not None else "not run",
                     map_cell(row), map_delta_cell(row),
                     ratio_cell(row.compression_speedup, row.compression_speedup_ci_low,
                                row.compression_speedup_ci_high), size])
    return _table(["Runtime", "fp32 mAP50-95 %", f"{CONTROL} (control) mAP50-95 %", "pruned + fine-tuned mAP50-95 %",
                   "mAP change vs control, points (paired 95% CI)", "Speed-up vs uncompressed (paired 95% CI)",
                   "Size (MB)"], body)


def summary_table(rows: Sequence[ResultRow], pruning: Sequence[ResultRow]) -> str:
    """Every method as ratios against its runtime's fp32 uncompressed row of the same run, its mAP change against
    its control: the survey's summary."""
    body = []
    for source, precision, compression, name in (
            (rows, "int8", "none", "int8 (post-training)"),
            (pruning, "fp32", PRUNE, f"channel pruning 30% + {FINETUNE_EPOCHS}-epoch fine-tune")):
        for runtime in RUNTIMES:
            base, row = _row(source, runtime), _row(source, runtime, precision, compression)
            if row is None or base is None or row.status != "ok" or base.status != "ok":
                continue
            shrink = base.size_mb / row.size_mb if base.size_mb and row.size_mb else None
            body.append([name, row.format, f"x{shrink:.2f}" if shrink else "-",
                         ratio_cell(row.compression_speedup, row.compression_speedup_ci_low,
                                    row.compression_speedup_ci_high), map_delta_cell(row)])
    return _table(["Method", "Runtime", "Size decrease", "Speed-up (95% CI)",
                   "mAP50-95 change vs its control (95% CI)"], body)


def study_markdown(rows: Sequence[ResultRow], pruning: Sequence[ResultRow], family: Sequence[ResultRow],
                   header: str) -> str:
    return "".join([
        header,
        "## 1. Frameworks (YOLOv8n, fp32)\n\n", frameworks_table(rows), "\n",
        "## 2. Family (fp32)\n\n", family_table(rows, family), "\n",
        f"{FAMILY[0]}'s row is the `frameworks` run's, {FAMILY[1]}'s the `family` run's: within a row the runtimes "
        "were timed in the same cycles, but the two rows were timed apart, so a ratio between them holds only as "
        "far as the machine kept its speed (it has no interval).\n\n",
        "## 3. int8 in each runtime (against its fp32)\n\n", change_table(rows, "int8", "none"), "\n",
        f"## 4. Channel pruning ({PRUNE}, the Detect head whole, fine-tuned {FINETUNE_EPOCHS} epochs by "
        "Ultralytics' trainer)\n\n", pruning_table(pruning), "\n",
        "## 5. Summary\n\n", summary_table(rows, pruning), "\n",
        "Not measured here: quantization-aware training, distillation and weight clustering, which edgebench applies "
        "to classifiers only (their rows say so on a detector); TFLite int8 where LiteRT refuses the model (its row "
        "says why).\n"])


def _machine(run: Path) -> str:
    """The CPU and its vector extensions, as the run recorded them."""
    import json

    try:
        environment = json.loads((run / "environment.json").read_text())
    except (OSError, ValueError):
        return platform.machine()
    flags = set(environment.get("cpu_flags", []))
    extensions = [name for flag, name in (("avx2", "AVX2"), ("avx512f", "AVX-512"), ("avx512_vnni", "VNNI"),
                                          ("amx_tile", "AMX")) if flag in flags]
    return (f"{environment.get('cpu', platform.machine())} ({', '.join(extensions) or 'no AVX2'}), "
            f"{environment.get('cpu_logical_cores', '?')} cores, {environment.get('threads', '?')} threads")


def _header(out: Path, trained: Trained) -> str:
    import ultralytics

    train = ", ".join(f"{name} {seconds:.0f} s" for name, seconds in trained.train_s.items()) or "see models/.cache"
    return (f"# Detection study: YOLOv8 on the synthetic shapes set, measured on this machine\n\n"
            f"- Machine: {_machine(out / RUNS[0])}; each run's table.md names the CPU's flags and the software."
            f" Runs `{RUNS[0]}` (tables 1, 3, 5), `{RUNS[1]}` (tables 4, 5) and `{RUNS[2]}` (table 2) in {out}.\n"
            f"- Data: the shapes set (synthetic: three classes of shapes on textured "
            f"backgrounds, {SIZE}x{SIZE}); models trained by Ultralytics {ultralytics.__version__}'s own trainer "
            f"(15 epochs, batch 32, when first made: {train}; cached after); the pruned model and its control "
            f"fine-tuned {FINETUNE_EPOCHS} epochs by the same trainer (no warm-up, its defaults otherwise).\n"
            "- mAP: COCO mAP50-95 by pycocotools on the 200 validation images after Ultralytics' validation "
            "post-processing, 95% bootstrap over images; changes are paired (the same images resampled on both "
            "sides) against the row's control: the runtime's fp32 row for int8, the checkpoint fine-tuned as long "
            f"({CONTROL}) for the fine-tuned pruning; speed-ups are paired over interleaved rounds against the "
            "same runtime's fp32 uncompressed row of the same run.\n\n")


def main(argv: Sequence[str] | None = None) -> int:
    import importlib.util
    import os

    from edgebench.bench.results import read_rows
    from edgebench.models.yolo import yolo_env
    from edgebench.study import run_configs, study_arguments

    parsed = study_arguments(argv, "edgebench-study --task detect", __doc__.splitlines()[0], "study-detect")
    if isinstance(parsed, int):
        return parsed
    out, tables_only = parsed.out, parsed.tables_only
    for name, value in yolo_env().items():  # before Ultralytics is first imported: quiet, offline
        os.environ.setdefault(name, value)
    if importlib.util.find_spec("ultralytics") is None:  # not imported here: its settings come first (yolo_env)
        print("edgebench-study: error: TASK=detect needs the yolo extra: .venv/bin/pip install -e '.[yolo]'",
              file=sys.stderr)
        return 2
    if tables_only:
        missing = [str(out / name) for name in RUNS if not read_rows(out / name)]
        if missing:
            print(f"edgebench-study: error: no rows in {', '.join(missing)}: expected a folder `make study "
                  "TASK=detect` wrote", file=sys.stderr)
            return 2
        trained = Trained(out, {}, {})  # nothing trained or looked up: the tables come from the rows
    else:
        print("Training the study's detectors once (cached in models/.cache; minutes the first time)",
              file=sys.stderr)
        trained = prepare()
        stopped = run_configs(study_configs(out, trained, repeats=parsed.repeats), out)
        if stopped is not None:
            return stopped
    rows, pruning, family = (read_rows(out / name) for name in RUNS)
    (out / "STUDY.md").write_text(study_markdown(rows, pruning, family, _header(out, trained)))
    print((out / "STUDY.md").read_text())
    print(f"Study: {out / 'STUDY.md'}")
    return 0
