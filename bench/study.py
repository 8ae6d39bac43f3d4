"""The seven tables of the compression survey (Embedded Vision Summit 2023), regenerated from measured rows.

Pure functions over stored rows: `make study` measures, then writes STUDY.md from the runs' rows.jsonl.
Accuracy differences within noise (a two-proportion z-test at 95% against the right control) are marked `~`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from bench.measure.stats import accuracies_differ
from bench.report import accuracy_cell, fmt, markdown_grid, ratio_cell
from bench.results import ResultRow

RUNTIME_ORDER = ("pytorch", "torchscript", "onnxruntime", "openvino", "tflite", "tensorrt", "coreml")
REFERENCE_RUNTIME = "onnxruntime"  # sizes and ratios in the summary are read from this runtime's files


def _ok(rows: Sequence[ResultRow]) -> list[ResultRow]:
    return [r for r in rows if r.status == "ok"]


def _find(rows: Sequence[ResultRow], **match) -> ResultRow | None:
    for row in rows:
        if all(getattr(row, k) == v for k, v in match.items()):
            return row
    return None


def _test_images(row: ResultRow) -> int | None:
    found = re.search(r"\((\d+) test images\)", row.dataset)
    return int(found.group(1)) if found else None


def significant(row: ResultRow, control: ResultRow | None) -> bool | None:
    """Whether row's accuracy differs from the control's beyond noise; None when either has no accuracy."""
    if control is None or row.accuracy is None or control.accuracy is None:
        return None
    n, m = _test_images(row), _test_images(control)
    if not n or not m:
        return None
    return accuracies_differ((round(row.accuracy * n), n), (round(control.accuracy * m), m))


def control_of(row: ResultRow, rows: Sequence[ResultRow]) -> ResultRow | None:
    """What a variant's accuracy is compared with: the baseline fine-tuned as long, the student alone, or none."""
    spec = row.compression
    match = dict(model=row.model, runtime=row.runtime, precision=row.precision, target=row.target, batch=row.batch)
    if spec.startswith("distill:"):
        return _find(_ok(rows), compression="student:" + spec.split("+")[0].split(":", 1)[1], **match)
    if row.finetune_epochs:
        control = _find(_ok(rows), compression=f"finetune:{row.finetune_epochs}", **match)
        if control is not None and control is not row:
            return control
    return _find(_ok(rows), compression="none", **{**match, "precision": "fp32"})


def accuracy_vs_control(row: ResultRow, rows: Sequence[ResultRow]) -> str:
    cell = accuracy_cell(row)
    control = control_of(row, rows)
    if control is None or control is row or row.accuracy is None or control.accuracy is None:
        return cell
    delta = (row.accuracy - control.accuracy) * 100
    mark = "" if significant(row, control) else " ~"
    return f"{cell} [{delta:+.1f} vs {control.compression}{mark}]"


def _runtimes(rows: Sequence[ResultRow]) -> list[str]:
    present = {r.runtime for r in rows}
    return [r for r in RUNTIME_ORDER if r in present] + sorted(present - set(RUNTIME_ORDER))


def _labels(rows: Sequence[ResultRow]) -> dict[str, str]:
    return {r.runtime: r.format for r in rows}


def frameworks_table(rows: Sequence[ResultRow], model: str) -> str:
    """1. Inference frameworks: format, size, CPU ms (GPU ms when measured), accuracy; the YOLOv5 export layout."""
    base = [r for r in rows if r.model == model and r.compression == "none" and r.precision == "fp32"]
    targets = list(dict.fromkeys(r.target for r in base))
    body = []
    for runtime in _runtimes(base):
        by_target = {r.target: r for r in base if r.runtime == runtime}
        any_row = next(iter(by_target.values()))
        sizes = [r.size_mb for r in by_target.values() if r.size_mb is not None]
        cells = [any_row.format, fmt(sizes[0], 2) if sizes else "-"]
        for target in targets:
            row = by_target.get(target)
            cells.append(fmt(row.p50_ms, 3) if row is not None and row.status == "ok" else "N/A")
        scored = [r for r in by_target.values() if r.accuracy is not None]
        cells.append(accuracy_cell(scored[0]) if scored else "-")
        body.append(cells)
    return markdown_grid(["Format", "Size (MB)", *(f"{t.upper()} ms" for t in targets), "Accuracy %"], body)


def _per_runtime_latency(variant_rows: Sequence[ResultRow], runtimes: list[str]) -> list[str]:
    return [fmt(next((r.p50_ms for r in variant_rows if r.runtime == rt and r.status == "ok"), None), 3)
            for rt in runtimes]


def _variant_table(rows: Sequence[ResultRow], model: str, prefixes: tuple[str, ...], extra: list[str],
                   extra_cells) -> str:
    chosen = [r for r in rows if r.model == model and r.precision == "fp32"
              and (r.compression == "none" or r.compression.startswith(prefixes))]
    runtimes = _runtimes(chosen)
    labels = _labels(chosen)
    body = []
    for spec in dict.fromkeys(r.compression for r in chosen):
        variant_rows = [r for r in chosen if r.compression == spec]
        ref = next((r for r in variant_rows if r.runtime == REFERENCE_RUNTIME and r.status == "ok"),
                   next((r for r in variant_rows if r.status == "ok"), variant_rows[0]))
        body.append([spec, *extra_cells(ref), accuracy_vs_control(ref, rows),
                     *_per_runtime_latency(variant_rows, runtimes)])
    headers = ["Variant", *extra, f"Accuracy % ({labels.get(ref.runtime, ref.runtime)})" if body else "Accuracy %",
               *(f"{labels[rt]} ms" for rt in runtimes)]
    return markdown_grid(headers, body)


def pruning_table(rows: Sequence[ResultRow], model: str) -> str:
    """2. Pruning: sparsity vs non-zero parameters vs accuracy, with zipped size and latency per runtime."""
    def cells(r: ResultRow) -> list[str]:
        nonzero = round(r.params * (1 - r.sparsity)) if r.params is not None and r.sparsity is not None else None
        return [f"{r.sparsity:.0%}" if r.sparsity is not None else "-", f"{r.params:,}" if r.params else "-",
                f"{nonzero:,}" if nonzero is not None else "-", fmt(r.size_mb, 3), fmt(r.zip_mb, 3)]
    return _variant_table(rows, model, ("finetune:", "prune-"),
                          ["Sparsity", "Params", "Non-zero params", "File (MB)", "Zipped (MB)"], cells)


def clustering_table(rows: Sequence[ResultRow], model: str) -> str:
    """4. Weight clustering: clusters x scope vs size (file, zipped, bit-packed) and accuracy."""
    def cells(r: ResultRow) -> list[str]:
        return [fmt(r.size_mb, 3), fmt(r.zip_mb, 3), fmt(r.packed_mb, 3)]
    return _variant_table(rows, model, ("finetune:", "cluster:"), ["File (MB)", "Zipped (MB)", "Packed (MB)"], cells)


def quantization_table(rows: Sequence[ResultRow], model: str) -> str:
    """3. Quantization per runtime: original fp32, post-training int8 (each runtime's own toolchain), QAT."""
    chosen = [r for r in rows if r.model == model]
    body = []
    for runtime in _runtimes(chosen):
        cells = [_labels(chosen)[runtime]]
        for spec, precision in (("none", "fp32"), ("none", "int8"), ("qat", "int8")):
            row = _find(chosen, runtime=runtime, compression=spec, precision=precision)
            if row is None:
                cells += ["not measured", "-", "-"]
            elif row.status != "ok":
                cells += [row.status, "-", "-"]
            else:
                cells += [fmt(row.size_mb, 3), fmt(row.p50_ms, 3), accuracy_cell(row)]
        body.append(cells)
    headers = ["Runtime"] + [f"{what} {col}" for what in ("fp32", "PTQ int8", "QAT int8")
                             for col in ("MB", "ms", "acc %")]
    return markdown_grid(headers, body)


def distillation_table(rows: Sequence[ResultRow], model: str) -> str:
    """5. Knowledge distillation: teacher, student with distillation, the same student alone."""
    chosen = [r for r in _ok(rows) if r.model == model and r.precision == "fp32" and r.runtime == REFERENCE_RUNTIME]
    body = []
    for row in chosen:
        if row.compression == "none":
            body.append([f"teacher ({model})", f"{row.params:,}" if row.params else "-", accuracy_cell(row)])
        elif row.compression.startswith(("distill:", "student:")):
            what = "with distillation" if row.compression.startswith("distill:") else "alone (control)"
            student = row.compression.split(":", 1)[1]
            body.append([f"student {student}, {what}", f"{row.params:,}" if row.params else "-",
                         accuracy_vs_control(row, rows)])
    return markdown_grid(["Model", "Params", "Accuracy %"], body)


def family_table(rows: Sequence[ResultRow]) -> str:
    """6. Architecture family: size, parameters, accuracy, CPU ms per runtime (GPU ms when measured)."""
    chosen = [r for r in rows if r.compression == "none" and r.precision == "fp32"]
    runtimes = _runtimes(chosen)
    labels = _labels(chosen)
    targets = list(dict.fromkeys(r.target for r in chosen))
    body = []
    for model in dict.fromkeys(r.model for r in chosen):
        model_rows = [r for r in chosen if r.model == model]
        ref = next((r for r in model_rows if r.runtime == REFERENCE_RUNTIME and r.status == "ok"), model_rows[0])
        cells = [model, fmt(ref.size_mb, 3), f"{ref.params:,}" if ref.params else "-", accuracy_cell(ref)]
        for target in targets:
            cells += [fmt(next((r.p50_ms for r in model_rows if r.runtime == rt and r.target == target
                                and r.status == "ok"), None), 3) for rt in runtimes]
        body.append(cells)
    headers = ["Model", "Size (MB)", "Params", "Accuracy %"] + [
        f"{labels[rt]} {t.upper()} ms" for t in targets for rt in runtimes]
    return markdown_grid(headers, body)


def summary_table(rows: Sequence[ResultRow], model: str) -> str:
    """7. Per technique: size decrease and speed-up as measured ratios to the baseline, and the accuracy change.

    Size is the reference runtime's file and its zipped file. Speed-up is per runtime, p50 of that runtime's
    uncompressed fp32 over the variant's, with its 95% interval: both were timed in the same round-robin
    cycles (the run keeps the baseline loaded beside every variant), so a slow minute on a shared machine
    hits both sides of the ratio. `~` marks an interval that holds x1.
    """
    chosen = [r for r in _ok(rows) if r.model == model]
    runtimes = _runtimes(chosen)
    labels = _labels(chosen)
    body = []
    variants = [(spec, prec) for spec, prec in dict.fromkeys((r.compression, r.precision) for r in chosen)
                if (spec, prec) != ("none", "fp32")]
    for spec, precision in variants:
        variant_rows = [r for r in chosen if r.compression == spec and r.precision == precision]
        ref = next((r for r in variant_rows if r.runtime == REFERENCE_RUNTIME), variant_rows[0])
        base = _find(chosen, compression="none", precision="fp32", runtime=ref.runtime, target=ref.target,
                     batch=ref.batch)
        sizes = zips = "-"
        if base is not None and ref.size_mb and ref.zip_mb and base.size_mb and base.zip_mb:
            sizes, zips = f"x{base.size_mb / ref.size_mb:.2f}", f"x{base.zip_mb / ref.zip_mb:.2f}"
        speedups = []
        for runtime in runtimes:
            row = next((r for r in variant_rows if r.runtime == runtime), None)
            speedups.append("-" if row is None else ratio_cell(
                row.compression_speedup, row.compression_speedup_ci_low, row.compression_speedup_ci_high))
        name = spec if precision == "fp32" else (f"{spec} {precision}" if spec != "none" else f"PTQ {precision}")
        body.append([name, sizes, zips, *speedups, accuracy_vs_control(ref, rows)])
    return markdown_grid(["Technique", "Size decrease (file)", "Size decrease (zipped)",
                          *(f"{labels[rt]} speed-up (95% CI)" for rt in runtimes), "Accuracy %"], body)


def study_markdown(family_rows: Sequence[ResultRow], rows: Sequence[ResultRow], model: str,
                   header: str = "") -> str:
    """All seven tables, in the talk's order: 1 and 6 from the family run, the others from the compression run
    of `model`, so that every comparison inside a table comes from one run."""
    sections = [
        ("1. Inference frameworks", frameworks_table(family_rows, model)),
        ("2. Pruning", pruning_table(rows, model)),
        ("3. Quantization", quantization_table(rows, model)),
        ("4. Weight clustering", clustering_table(rows, model)),
        ("5. Knowledge distillation", distillation_table(rows, model)),
        ("6. Architecture family", family_table(family_rows)),
        ("7. Summary: measured ratios to the uncompressed fp32 model", summary_table(rows, model)),
    ]
    text = header
    for title, table in sections:
        text += f"## {title}\n\n{table}\n"
    text += ("Accuracy: top-1 % on the task's test split, scored in each runtime, with its 95% Wilson interval; "
             "[+d vs X] is the change against the variant's control (the baseline fine-tuned as long, or the "
             "student trained alone), and `~` marks a change within noise (two-proportion z-test, 95%).\n")
    return text
