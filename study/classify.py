"""`make study` (TASK=classify): the compression survey's seven tables (Embedded Vision Summit 2023), measured.

Two runs, so every comparison in a table comes from one run: the MNIST ResNet family at fp32 in each runtime
(tables 1 and 6), and every compression method on the middle model, int8 included (tables 2-5, 7). A third,
short run measures PyTorch's newer deployment runtimes (ExecuTorch, AOTInductor) on the middle model at fp32
and post-training int8, for the frameworks and quantization tables and table 7's int8 row: every compression
variant in each of them too would take the study past 15 minutes. The tables
are pure functions over the stored rows, so `--tables-only` rewrites STUDY.md from them. Accuracy differences
are paired (McNemar's exact test on the same test images, Holm-adjusted per table) against the right control,
and within noise they are marked `~`.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edgebench.bench.config import BenchConfig, TimingConfig
from edgebench.bench.measure.paired import ALPHA, detectable_difference, holm
from edgebench.bench.report import accuracy_cell, fmt, markdown_grid, ratio_cell, within_noise
from edgebench.bench.results import ResultRow, control_spec

FAMILY = ("mnist_resnet_s", "mnist_resnet_m", "mnist_resnet_l")
MODEL = "mnist_resnet_m"
RUNTIMES = ("pytorch", "pytorch-compiled", "onnxruntime", "openvino", "tflite")
# The deployment run: these at fp32 and int8, beside eager PyTorch (every row's speed-up baseline).
DEPLOYMENT_RUNTIMES = ("pytorch", "executorch", "aoti")
# Clustering is the survey's grid, clusters x scope ({16, 32} x {every layer, the last 3}), so neither is
# confounded with the other; chains get their own control (`finetune:4`), added by the run.
COMPRESS = ("prune-unstructured:0.5", "prune-unstructured:0.75", "prune-unstructured:0.9", "prune-channels:0.3",
            "prune-channels:0.5", "cluster:16", "cluster:32", "cluster:16@last3", "cluster:32@last3",
            f"distill:{FAMILY[0]}", "qat")
# Short timing: these models run in a millisecond or less, so 0.1 s gives a hundred samples or more per round, and
# the default 10 rounds fit where 3 rounds of 0.3 s did.
TIMING = TimingConfig(warmup_iters=5, warmup_s=0.2, min_iters=20, min_s=0.1, max_s=5.0)
# Two rows export (or load) at once: these models' exports are mostly single-threaded graph work, so two at once
# cut a 3-variant run from 198 s to 157 s on the 2-core AVX-512 host; no timing overlaps them.
EXPORT_JOBS = 2


def study_configs(out: Path, threads: int | None = None, seed: int = 0, repeats: int | None = None
                  ) -> list[BenchConfig]:
    from edgebench.study import cycles

    common = dict(runtimes=RUNTIMES, timing=TIMING, seed=seed, targets=("cpu",), export_jobs=EXPORT_JOBS)
    if threads:
        common["threads"] = threads
    common.update(cycles(repeats))
    return [BenchConfig(model=",".join(FAMILY), out=out / "family", **common),
            BenchConfig(model=MODEL, compress=COMPRESS, out=out / "compression", **common),
            BenchConfig(model=MODEL, out=out / "deployment", **{**common, "runtimes": DEPLOYMENT_RUNTIMES,
                                                                  "precisions": ("fp32", "int8")})]



def main(argv: Sequence[str] | None = None) -> int:
    from edgebench.bench.results import read_rows
    from edgebench.study import run_configs, study_arguments

    parsed = study_arguments(argv, "edgebench-study", __doc__.splitlines()[0], "study")
    if isinstance(parsed, int):
        return parsed
    out = parsed.out
    configs = study_configs(out, repeats=parsed.repeats)
    if parsed.tables_only:
        # the deployment run may be missing: a study stored before it had two runs, and renders without it
        missing = [str(c.out) for c in configs[:2] if not read_rows(c.out)]
        if missing:
            print(f"edgebench-study: error: no rows in {', '.join(missing)}: expected a folder `make study` wrote",
                  file=sys.stderr)
            return 2
        return write_study(out, configs)
    stopped = run_configs(configs, out)
    return stopped if stopped is not None else write_study(out, configs)


def write_study(out: Path, configs: list[BenchConfig]) -> int:
    from edgebench.bench.results import read_rows
    from edgebench.reports.runs import load_run

    family, compression = (read_rows(c.out) for c in configs[:2])
    deployment = read_rows(configs[2].out) if (configs[2].out / "rows.jsonl").is_file() else []
    floor = load_run(configs[1].out).floor
    third = f", `{configs[2].out.name}` (tables 1, 3, 7: ExecuTorch, AOTInductor)" if deployment else ""
    header = (f"# Compression study: {MODEL} on MNIST, measured on this machine\n\n"
              f"Runs: `{configs[0].out.name}` (tables 1, 6) and `{configs[1].out.name}` (tables 2-5, 7){third} in "
              f"{out}; machine, software and method in each run's table.md and environment.json.\n\n")
    (out / "STUDY.md").write_text(study_markdown(family, compression, MODEL, header, floor, deployment))
    print((out / "STUDY.md").read_text())
    print(f"Study: {out / 'STUDY.md'}")
    return 0


# -- the seven tables, from stored rows ----------------------------------------------------------------------
RUNTIME_ORDER = ("pytorch", "pytorch-compiled", "aoti", "torchscript", "executorch", "onnxruntime", "openvino",
                 "tflite", "tensorrt", "coreml")
REFERENCE_RUNTIME = "onnxruntime"  # sizes and ratios in the summary are read from this runtime's files


def _ok(rows: Sequence[ResultRow]) -> list[ResultRow]:
    return [r for r in rows if r.status == "ok"]


def _find(rows: Sequence[ResultRow], **match) -> ResultRow | None:
    for row in rows:
        if all(getattr(row, k) == v for k, v in match.items()):
            return row
    return None


def significant(row: ResultRow, control: ResultRow | None) -> bool | None:
    """Whether row's accuracy differs from the control's beyond noise, alone (no multiplicity adjustment):
    McNemar's exact test where both rows carry per-image results, else an unpaired two-proportion z-test;
    None when either has no accuracy."""
    found = row.accuracy_test(control) if control is not None else None
    return None if found is None else found[1] <= ALPHA


def control_of(row: ResultRow, rows: Sequence[ResultRow]) -> ResultRow | None:
    """The measured control of `row` (same model, runtime, target and batch); None when it was not measured:
    a variant is then shown without a comparison, never against another control."""
    wanted = control_spec(row)
    if wanted is None:
        return None
    compression, precision = wanted
    return _find(_ok(rows), compression=compression, precision=precision, model=row.model, runtime=row.runtime,
                 target=row.target, batch=row.batch)


class AccuracyComparisons:
    """One table's accuracy comparisons with their controls, tested together.

    Paired (McNemar's exact test) where both rows carry per-image results, Holm-adjusted across the table so
    that the family-wise error is 5%; a row without per-image results falls back to the unpaired z-test and
    says so. Each cell gives the change, the adjusted p, and `~` when it is within noise.
    """

    def __init__(self, chosen: Sequence[ResultRow], rows: Sequence[ResultRow]) -> None:
        self.controls = {id(r): control_of(r, rows) for r in chosen}
        self.paired = {id(r): r.paired_with(self.controls[id(r)]) for r in chosen}
        tested = [key for key, pair in self.paired.items() if pair is not None]
        self.adjusted = dict(zip(tested, holm([self.paired[k].p_value for k in tested]), strict=True))

    def cell(self, row: ResultRow) -> str:
        cell = accuracy_cell(row)
        wanted = control_spec(row)
        control = self.controls.get(id(row))
        if row.accuracy is None or wanted is None:
            return cell
        if control is None or control.accuracy is None:
            return f"{cell} [no comparison: its control {wanted[0]} {wanted[1]} was not measured]"
        delta = (row.accuracy - control.accuracy) * 100
        adjusted = self.adjusted.get(id(row))
        if adjusted is None:
            mark = "" if significant(row, control) else " ~"
            return f"{cell} [{delta:+.1f} vs {control.compression}, unpaired{mark}]"
        return f"{cell} [{delta:+.1f} vs {control.compression}, p={adjusted:.2g}{'' if adjusted <= ALPHA else ' ~'}]"

    def note(self) -> str:
        """What the table's accuracy marks mean and how small a change its test set resolves."""
        pairs = [p for p in self.paired.values() if p is not None]
        if not pairs:
            return ""
        discordance = float(np.median([p.discordant / p.images for p in pairs]))
        resolves = detectable_difference(pairs[0].images, discordance) * 100
        return (f"\nAccuracy changes: McNemar's exact test on the {pairs[0].images} test images each variant shares "
                f"with its control, p Holm-adjusted across this table's {len(pairs)} comparison"
                f"{'s' if len(pairs) != 1 else ''} (family-wise 5%); "
                f"`~`: within noise. With the median disagreement here ({discordance:.1%} of images), this test set "
                f"resolves about {resolves:.1f} points (95%, 80% power): a smaller change would go unseen.\n")


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


def latency_cell(row: ResultRow | None, floor: float = 0.0) -> str:
    """A row's p50 and, for a variant, its paired speed-up over the same runtime's uncompressed fp32 model
    (`0.150 (x1.01 ~)`). Each variant is timed in its own round-robin, minutes from the others, beside the
    uncompressed model kept loaded: two p50s of a column can differ with the machine's speed in between (on the
    stored study's host, the same uncompressed eager model ran 0.73 or 1.6 ms a round), so the bracket, from
    the variant's own cycles, is what compares it."""
    if row is None or row.status != "ok" or row.p50_ms is None:
        return "-"
    cell = fmt(row.p50_ms, 3)
    if (row.compression, row.precision) == ("none", "fp32") or row.compression_speedup is None:
        return cell
    same = " ~" if within_noise(row.compression_speedup, row.compression_speedup_ci_low,
                                row.compression_speedup_ci_high, floor) else ""
    return f"{cell} (x{row.compression_speedup:.2f}{same})"


def _per_runtime_latency(variant_rows: Sequence[ResultRow], runtimes: list[str], floor: float) -> list[str]:
    return [latency_cell(next((r for r in variant_rows if r.runtime == rt and r.status == "ok"), None), floor)
            for rt in runtimes]


def _variant_table(rows: Sequence[ResultRow], model: str, prefixes: tuple[str, ...], extra: list[str],
                   extra_cells, floor: float = 0.0) -> str:
    chosen = [r for r in rows if r.model == model and r.precision == "fp32"
              and (r.compression == "none" or r.compression.startswith(prefixes))]
    runtimes = _runtimes(chosen)
    labels = _labels(chosen)
    refs = {}
    for spec in dict.fromkeys(r.compression for r in chosen):
        variant_rows = [r for r in chosen if r.compression == spec]
        refs[spec] = next((r for r in variant_rows if r.runtime == REFERENCE_RUNTIME and r.status == "ok"),
                          next((r for r in variant_rows if r.status == "ok"), variant_rows[0]))
    accuracy = AccuracyComparisons(list(refs.values()), rows)
    body = [[spec, *extra_cells(ref), accuracy.cell(ref),
             *_per_runtime_latency([r for r in chosen if r.compression == spec], runtimes, floor)]
            for spec, ref in refs.items()]
    first = next(iter(refs.values()), None)
    headers = ["Variant", *extra, f"Accuracy % ({labels.get(first.runtime, first.runtime)})" if first else "Accuracy %",
               *(f"{labels[rt]} ms" for rt in runtimes)]
    return markdown_grid(headers, body) + accuracy.note()


def pruning_table(rows: Sequence[ResultRow], model: str, floor: float = 0.0) -> str:
    """2. Pruning: sparsity vs non-zero parameters vs accuracy, with zipped size and latency per runtime."""
    def cells(r: ResultRow) -> list[str]:
        nonzero = round(r.params * (1 - r.sparsity)) if r.params is not None and r.sparsity is not None else None
        return [f"{r.pruned_fraction:.1%}" if r.pruned_fraction is not None else "-",
                f"{r.sparsity:.0%}" if r.sparsity is not None else "-", f"{r.params:,}" if r.params else "-",
                f"{nonzero:,}" if nonzero is not None else "-", fmt(r.size_mb, 3), fmt(r.zip_mb, 3)]
    return _variant_table(rows, model, ("finetune:", "prune-"),
                          ["Channels removed", "Sparsity", "Params", "Non-zero params", "File (MB)", "Zipped (MB)"],
                          cells, floor)


def clustering_table(rows: Sequence[ResultRow], model: str, floor: float = 0.0) -> str:
    """4. Weight clustering: clusters x scope vs size (file, zipped, bit-packed) and accuracy."""
    def cells(r: ResultRow) -> list[str]:
        return [fmt(r.size_mb, 3), fmt(r.zip_mb, 3), fmt(r.packed_mb, 3)]
    return _variant_table(rows, model, ("finetune:", "cluster:"), ["File (MB)", "Zipped (MB)", "Packed (MB)"], cells,
                          floor)


def quantization_table(rows: Sequence[ResultRow], model: str, floor: float = 0.0) -> str:
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
                cells += [fmt(row.size_mb, 3), latency_cell(row, floor), accuracy_cell(row)]
        body.append(cells)
    headers = ["Runtime"] + [f"{what} {col}" for what in ("fp32", "PTQ int8", "QAT int8")
                             for col in ("MB", "ms", "acc %")]
    return markdown_grid(headers, body)


def distillation_table(rows: Sequence[ResultRow], model: str) -> str:
    """5. Knowledge distillation: teacher, student with distillation, the same student alone."""
    chosen = [r for r in _ok(rows) if r.model == model and r.precision == "fp32" and r.runtime == REFERENCE_RUNTIME]
    accuracy = AccuracyComparisons([r for r in chosen if r.compression.startswith(("distill:", "student:"))], rows)
    body = []
    for row in chosen:
        if row.compression == "none":
            body.append([f"teacher ({model})", f"{row.params:,}" if row.params else "-", accuracy_cell(row)])
        elif row.compression.startswith(("distill:", "student:")):
            what = "with distillation" if row.compression.startswith("distill:") else "alone (control)"
            student = row.compression.split(":", 1)[1]
            body.append([f"student {student}, {what}", f"{row.params:,}" if row.params else "-",
                         accuracy.cell(row)])
    return markdown_grid(["Model", "Params", "Accuracy %"], body) + accuracy.note()


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


def summary_table(rows: Sequence[ResultRow], model: str, floor: float = 0.0) -> str:
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
    refs = {}
    for spec, precision in variants:
        variant_rows = [r for r in chosen if r.compression == spec and r.precision == precision]
        refs[spec, precision] = next((r for r in variant_rows if r.runtime == REFERENCE_RUNTIME), variant_rows[0])
    accuracy = AccuracyComparisons(list(refs.values()), rows)
    for (spec, precision), ref in refs.items():
        variant_rows = [r for r in chosen if r.compression == spec and r.precision == precision]
        base = _find(chosen, compression="none", precision="fp32", runtime=ref.runtime, target=ref.target,
                     batch=ref.batch)
        sizes = zips = "-"
        if base is not None and ref.size_mb and ref.zip_mb and base.size_mb and base.zip_mb:
            sizes, zips = f"x{base.size_mb / ref.size_mb:.2f}", f"x{base.zip_mb / ref.zip_mb:.2f}"
        speedups = []
        for runtime in runtimes:
            row = next((r for r in variant_rows if r.runtime == runtime), None)
            speedups.append("-" if row is None else ratio_cell(
                row.compression_speedup, row.compression_speedup_ci_low, row.compression_speedup_ci_high, floor))
        name = spec if precision == "fp32" else (f"{spec} {precision}" if spec != "none" else f"PTQ {precision}")
        body.append([name, sizes, zips, *speedups, accuracy.cell(ref)])
    return markdown_grid(["Technique", "Size decrease (file)", "Size decrease (zipped)",
                          *(f"{labels[rt]} speed-up (95% CI)" for rt in runtimes), "Accuracy %"], body) \
        + accuracy.note()


def study_markdown(family_rows: Sequence[ResultRow], rows: Sequence[ResultRow], model: str,
                   header: str = "", floor: float = 0.0, deployment_rows: Sequence[ResultRow] = ()) -> str:
    """All seven tables, in the talk's order: 1 and 6 from the family run, the others from the compression run
    of `model`, so that every comparison inside a table comes from one run. The deployment run's runtimes (the
    ones neither other run measured) join tables 1, 3 and 7 as rows or columns of their own: what is compared
    within them (int8 against the same runtime's fp32) was timed in that run."""
    known = {r.runtime for r in (*family_rows, *rows)}
    extra = [r for r in deployment_rows if r.runtime not in known]
    sections = [
        ("1. Inference frameworks", frameworks_table([*family_rows, *extra], model)),
        ("2. Pruning", pruning_table(rows, model, floor)),
        ("3. Quantization", quantization_table([*rows, *extra], model, floor)),
        ("4. Weight clustering", clustering_table(rows, model, floor)),
        ("5. Knowledge distillation", distillation_table(rows, model)),
        ("6. Architecture family", family_table(family_rows)),
        ("7. Summary: measured ratios to the uncompressed fp32 model", summary_table([*rows, *extra], model, floor)),
    ]
    text = header
    for title, table in sections:
        text += f"## {title}\n\n{table}\n"
    text += ("Accuracy: top-1 % on the task's test split, scored in each runtime, with its 95% Wilson interval; "
             "[+d vs X, p=...] is the change in points against the variant's control (the baseline fine-tuned as "
             "long as the whole chain trained, or the student trained alone), tested image by image (McNemar's "
             "exact test, Holm-adjusted within each table); `~` marks a change within noise, and each table says "
             "how small a change its test set could have seen.\n"
             f"Speed-ups (table 7): the median over paired cycles of the per-cycle ratio, with its sign-test "
             f"interval widened by the machine's A/A floor (±{floor:.1%}, `make calibrate`); `~` marks one whose "
             "interval holds x1 or that lies within the floor.\n"
             "ms (tables 2-4): each row's p50 as timed; in brackets, a variant's paired speed-up over the same "
             "runtime's uncompressed fp32 model (table 7's figure, `~` as there). Each variant was timed in its own "
             "round-robin, minutes from the others, beside the uncompressed model kept loaded, so two p50s of one "
             "column can differ with the machine's speed in between; the bracket, from the variant's own cycles, is "
             "what compares it. Table 6's models were timed one after another likewise, with no pairing between "
             "them: within a row the runtimes shared their cycles, across rows only the machine's steadiness "
             "links them.\n")
    return text
