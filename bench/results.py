"""Tidy result rows and the run folder they are written to as each row finishes.

A run folder holds rows.jsonl (appended per row), rows.csv and table.md (rewritten per row, so an
interrupted run still leaves complete files), samples.jsonl (every latency sample), environment.json
and run.log (everything third-party libraries printed); with profiles, profile.csv (appended per profiled row)
and profile.parquet (rewritten from it).
"""

from __future__ import annotations

import csv
import json
import os
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgebench.bench.measure.paired import PairedComparison, compare_correct, unpack_correct
from edgebench.bench.measure.profile import (
    PROFILE_FILE,
    PROFILE_PARQUET,
    Profile,
    ProfileLine,
    operators_text,
    read_profile,
    write_profile,
    write_profile_parquet,
)
from edgebench.bench.measure.stats import LatencyStats, median_interval, ratio_interval, two_proportion_p

if TYPE_CHECKING:
    from edgebench.bench.measure.rounds import RowRounds


@dataclass
class ResultRow:
    """One measurement: model x compression x runtime x precision x target x batch."""

    model: str
    weights: str
    compression: str
    runtime: str
    format: str
    precision: str
    target: str
    device: str
    batch: int
    threads: int
    status: str  # ok | error | unavailable
    error: str = ""
    size_mb: float | None = None
    export_s: float | None = None
    load_s: float | None = None
    first_ms: float | None = None
    p50_ms: float | None = None
    p90_ms: float | None = None
    p99_ms: float | None = None
    mean_ms: float | None = None
    std_ms: float | None = None
    min_ms: float | None = None
    max_ms: float | None = None
    throughput: float | None = None  # items/s
    iterations: int | None = None
    warmup_iters: int | None = None
    capped: bool | None = None  # timing hit max_s before min_iters
    h2d_ms: float | None = None
    d2h_ms: float | None = None
    peak_rss_mb: float | None = None  # the measuring process: load + inference
    export_peak_rss_mb: float | None = None  # the exporting process; empty when it was forked (bench.forkserver)
    device_memory_mb: float | None = None  # the measuring process on its accelerator (bench.measure.devicemem)
    device_memory_source: str = ""  # where that figure comes from, or why there is none (empty on the CPU)
    max_abs_diff: float | None = None
    cosine: float | None = None
    fidelity_ok: bool | None = None
    box_match: float | None = None  # a detector's: share of PyTorch's boxes (after NMS, on the timed input) this
    # row found too, same class at IoU >= 0.9
    reference_boxes: int | None = None  # how many boxes that share is of
    foreign_load: float | None = None  # share of machine CPU other processes used while timing
    steal: float | None = None
    noisy: bool | None = None
    details: str = ""
    # Compression and accuracy (issue 7). Accuracy is top-1 on `dataset`'s test split, scored in the row's runtime.
    dataset: str = ""  # e.g. "mnist (1000 test images)"; "" when the model has no labels (fidelity only)
    accuracy: float | None = None
    accuracy_ci_low: float | None = None  # 95% Wilson interval
    accuracy_ci_high: float | None = None
    at_chance: bool | None = None  # accuracy within noise of 1/classes while predictions vary: check the preprocessing
    correct_bits: str = ""  # which test images it got right: bench.measure.paired.pack_correct (paired tests)
    # Detectors (issue 21): boxes after the shared post-processing, scored by pycocotools on `dataset`'s val split.
    map50_95: float | None = None  # COCO mAP@0.5:0.95
    map50: float | None = None  # COCO mAP@0.5
    map_ci_low: float | None = None  # mAP50-95's 95% bootstrap interval over images
    map_ci_high: float | None = None
    postprocess_ms: float | None = None  # median per image: NMS and rescaling, outside the timed inference
    map_delta: float | None = None  # mAP50-95 minus its control's (`control_spec`: same runtime), on the same images
    map_control: str = ""  # that control: "none fp32", or e.g. "finetune:5 fp32" for a fine-tuned variant
    map_delta_ci_low: float | None = None  # 95% paired bootstrap (images resampled jointly)
    map_delta_ci_high: float | None = None
    params: int | None = None  # parameters of the (compressed) PyTorch module
    sparsity: float | None = None  # share of parameters that are exactly zero
    pruned_fraction: float | None = None  # share of prunable channels structured pruning really removed
    zip_mb: float | None = None  # the artifact deflated (what unstructured pruning shrinks)
    packed_mb: float | None = None  # this artifact with each weight tensor of <= 256 values as indices + codebook
    integer_weights: float | None = None  # share of the artifact's weight elements stored as integers
    integer_macs: float | None = None  # share of the model's MACs whose weights the artifact stores as integers
    contents_ok: bool | None = None  # the artifact holds what the label says (int8 weights; N values per cluster)
    finetune_epochs: int | None = None
    calibration_images: int | None = None  # int8: training images (never test images) the quantizer calibrated on
    agreement: float | None = None  # top-1 agreement with the uncompressed model on seeded inputs, in PyTorch
    # Numbers that hold on a shared machine (issue 8): rounds interleaved across the variant's rows.
    mode: str = "latency"  # latency: one request in flight (MLPerf SingleStream); throughput: many (Offline)
    repeats: int | None = None  # timed rounds kept
    rounds_repeated: int | None = None  # rounds measured again because other processes loaded the CPU
    stopped_by: str = ""  # what ended the row's rounds: their number, the target interval, or the limit
    p50_ci_low_ms: float | None = None  # 95% interval of the median (bootstrap over rounds, then samples)
    p50_ci_high_ms: float | None = None
    speedup: float | None = None  # PyTorch fp32 (uncompressed, same model/target/batch) p50 over this p50; in
    # throughput mode this row's items/s over PyTorch's. Paired: from rounds of both timed in the same cycles
    speedup_ci_low: float | None = None
    speedup_ci_high: float | None = None
    compression_speedup: float | None = None  # the same against this runtime's own uncompressed fp32 row
    compression_speedup_ci_low: float | None = None
    compression_speedup_ci_high: float | None = None
    flops: int | None = None  # floating-point operations per inference at this batch (PyTorch's FLOP counter)
    gflops_per_s: float | None = None  # flops / p50
    peak_fraction: float | None = None  # gflops_per_s over the measured dense-kernel peak (bench.measure.peak)
    energy_mj: float | None = None  # millijoules per inference from a hardware counter (RAPL, NVML); else empty
    energy_source: str = ""  # the counter, or why there is none here
    host: str = ""  # the machine measured: this one's name in a local run, the device's name in a fleet run
    # Per-operator profiles (issue 22, `PROFILE=1`): the lines themselves are in the run's profile.csv.
    profile_ms: float | None = None  # median profiled inference, profiler on, after the timed rounds (vs p50_ms)
    profile_pace_ms: float | None = None  # median of unprofiled inferences right after the profile: the host's pace
    # then; profile_ms over it is the profiler's overhead at that moment
    profile_top: str = ""  # the three slowest operators with their shares of the profiled inference
    int8_coverage: float | None = None  # int8 rows: share of the operators' profiled time in integer kernels
    int8_mac_coverage: float | None = None  # int8 rows: share of the multiply-adds run in integer kernels
    float_ops: str = ""  # int8 rows: the slowest operators that did not run in integer kernels, with shares
    profile_note: str = ""  # why a row asked for a profile has none (its runtime has no profiler here)

    def add_profile(self, profile: Profile) -> None:
        """The profile's summary on the row; int8 rows also get their integer coverage and what stayed float."""
        self.profile_ms = profile.wall_ms
        self.profile_top = operators_text(profile.top(3))
        if self.precision == "int8":
            self.int8_coverage = profile.integer_share()
            self.int8_mac_coverage = profile.integer_mac_share()
            self.float_ops = operators_text(profile.float_lines(3))

    def add_latency(self, stats: LatencyStats) -> None:
        self.p50_ms, self.p90_ms, self.p99_ms = stats.p50, stats.p90, stats.p99
        self.mean_ms, self.std_ms, self.min_ms, self.max_ms = stats.mean, stats.std, stats.min, stats.max
        self.throughput = stats.throughput(self.batch)
        self.iterations = stats.count

    @property
    def test_images(self) -> int | None:
        """Images in the test split the accuracy was scored on (from `dataset`: "mnist (1000 test images)")."""
        found = re.search(r"\((\d+) test images\)", self.dataset)
        return int(found.group(1)) if found else None

    def paired_with(self, control: ResultRow | None) -> PairedComparison | None:
        """This row against `control` image by image (McNemar); None unless both kept per-image results of the
        same test split."""
        n = self.test_images
        if control is None or not n or n != control.test_images or not (self.correct_bits and control.correct_bits):
            return None
        return compare_correct(unpack_correct(self.correct_bits, n), unpack_correct(control.correct_bits, n))

    def accuracy_test(self, control: ResultRow) -> tuple[str, float] | None:
        """(how, p) of this row's accuracy against `control`'s: image by image where both kept per-image results
        (McNemar's exact test), else an unpaired two-proportion z-test (blind to changes under about 1.4 points on
        1,000 images); None when either lacks an accuracy or its test set's size."""
        if self.accuracy is None or control.accuracy is None:
            return None
        pair = self.paired_with(control)
        if pair is not None:
            return "McNemar", pair.p_value
        n, m = self.test_images, control.test_images
        if not n or not m:
            return None
        return "unpaired z-test", two_proportion_p((round(self.accuracy * n), n), (round(control.accuracy * m), m))

    @property
    def is_speedup_baseline(self) -> bool:
        """PyTorch at fp32, uncompressed: what every row's speed-up is measured against."""
        return self.runtime == "pytorch" and self.precision == "fp32" and self.compression == "none"

    def add_rounds(self, rounds: RowRounds) -> None:
        """Latency figures from every kept sample of every round, and the interval of their median."""
        self.add_latency(LatencyStats(tuple(rounds.samples_ms)))
        self.p50_ci_low_ms, self.p50_ci_high_ms = median_interval(rounds.per_round_ms)
        self.repeats, self.rounds_repeated, self.stopped_by = len(rounds.kept), rounds.repeated, rounds.stopped_by
        self.warmup_iters = rounds.kept[0].warmup_iters
        self.capped = any(r.capped for r in rounds.kept)
        self.foreign_load, self.steal, self.noisy = rounds.foreign_load, rounds.steal, rounds.noisy
        self.energy_mj = rounds.energy_mj
        items_per_s = rounds.items_per_s(self.batch)
        if items_per_s is not None:  # throughput mode: completions over the window, not 1 / latency
            self.throughput = items_per_s
        if self.flops and self.throughput:  # achieved: work per second, in either mode
            self.gflops_per_s = self.flops / self.batch * self.throughput / 1e9

    @property
    def key(self) -> str:
        return row_key(self.model, self.compression, self.runtime, self.precision, self.target, self.batch)


def row_key(model: str, compression: str, runtime: str, precision: str, target: str, batch: int) -> str:
    """What identifies a row within a run (and across runs compared with each other)."""
    return f"{model}|{compression}|{runtime}|{precision}|{target}|b{batch}"


def split_row_key(key: str) -> tuple[str, str, str, str, str, int]:
    """`row_key`'s parts back: (model, compression, runtime, precision, target, batch)."""
    model, compression, runtime, precision, target, batch = key.split("|")
    return model, compression, runtime, precision, target, int(batch[1:])


COLUMNS = [f.name for f in fields(ResultRow)]


def annotate_ratios(row: ResultRow, rounds: RowRounds, pytorch: RowRounds | None, uncompressed: RowRounds | None,
                    peaks: dict[str, float], floor: float = 0.0) -> None:
    """The row's speed-ups, each from rounds timed in the same cycles as its baseline's (paired), and its share
    of the CPU's measured peak (`peaks`, per precision; CPU rows only).

    `pytorch`: the rounds of PyTorch fp32, uncompressed, of the same model, target and batch; `uncompressed`:
    those of this runtime at fp32, uncompressed. Both were timed in the same round-robin as the row (the
    runner keeps their measuring processes loaded for every variant of the model), so a slow minute on a
    shared machine hits both sides of each ratio. Latency mode: the baseline's p50 over the row's;
    throughput mode: the row's items/s over the baseline's. `floor`: the machine's A/A floor
    (`bench.measure.floor`), added to each interval, since the two sides ran in two processes.
    """
    from edgebench.bench.measure.rounds import paired_rounds

    throughput = row.mode == "throughput"

    def ratio(base: RowRounds | None) -> tuple[float | None, float | None, float | None]:
        if base is None:
            return None, None, None
        base_figures, figures = paired_rounds(base, rounds, throughput)
        if not figures:
            return None, None, None
        if throughput:  # more items per second is faster: the ratio the other way round
            return ratio_interval(figures, base_figures, paired=True, floor=floor)
        return ratio_interval(base_figures, figures, paired=True, floor=floor)

    row.speedup, row.speedup_ci_low, row.speedup_ci_high = ratio(pytorch)
    row.compression_speedup, row.compression_speedup_ci_low, row.compression_speedup_ci_high = ratio(uncompressed)
    if row.target == "cpu":
        row.peak_fraction, note = peak_share(row.gflops_per_s, peaks.get(row.precision), row.precision)
    else:  # `peaks` are the CPU's: a GPU row's share of them would be a figure of nothing
        row.peak_fraction = None
        note = f"no % of peak on {row.target}: the dense-kernel peak is measured on the CPU only" \
            if row.gflops_per_s else ""
    if note:
        row.details = f"{row.details}; {note}" if row.details else note


def peak_share(gflops_per_s: float | None, peak: float | None, precision: str) -> tuple[float | None, str]:
    """(the row's share of the machine's measured peak, or None; why none). A share above 1 is a defect of the
    measured peak (a kernel slower than the row's own), never a figure: it is left empty, and said so."""
    if not gflops_per_s or not peak:
        return None, ""
    if gflops_per_s > peak:
        return None, (f"no % of peak: {gflops_per_s:.1f} GFLOP/s achieved is above the measured {precision} peak "
                      f"({peak:g}), so that peak is not this precision's best kernel here")
    return gflops_per_s / peak, ""


def read_jsonl(path: Path) -> list[dict]:
    """The file's JSON lines; a last line cut short by a killed process is left out."""
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    return records


def read_rows(run_dir: Path) -> list[ResultRow]:
    """The rows a run has written (an interrupted run's too: a last line cut short by a kill is left out)."""
    return [ResultRow(**record) for record in read_jsonl(run_dir / "rows.jsonl")]


class RunWriter:
    """Appends rows as they finish and keeps CSV and Markdown in step with them."""

    def __init__(self, run_dir: Path, table_header: str = "") -> None:
        self.run_dir = run_dir
        self.rows: list[ResultRow] = []
        self.table_header = table_header

    def write_environment(self, environment: dict[str, Any]) -> None:
        (self.run_dir / "environment.json").write_text(json.dumps(environment, indent=2, default=str))

    def append(self, row: ResultRow, rounds: list[list[float]] = (), profile: Sequence[ProfileLine] = ()) -> None:
        """Write the row; its kept samples, per round, go to samples.jsonl (intervals are recomputed from them),
        its operator profile, if any, to profile.csv."""
        from edgebench.bench.report import markdown_report

        self.rows.append(row)
        if profile:  # the CSV appended, the Parquet rewritten from it: both whole after a kill
            write_profile(self.run_dir / PROFILE_FILE, profile)
            write_profile_parquet(self.run_dir / PROFILE_PARQUET, read_profile(self.run_dir / PROFILE_FILE))
        _append_line(self.run_dir / "rows.jsonl", json.dumps(asdict(row)))
        if rounds:
            _append_line(self.run_dir / "samples.jsonl", json.dumps(
                {"key": row.key, "latency_ms": [s for r in rounds for s in r], "rounds": [len(r) for r in rounds]}))
        with open(self.run_dir / "rows.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=COLUMNS)
            writer.writeheader()
            writer.writerows(asdict(r) for r in self.rows)
        (self.run_dir / "table.md").write_text(self.table_header + markdown_report(self.rows))


def _append_line(path: Path, line: str) -> None:
    with open(path, "a") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())


def control_spec(row: ResultRow) -> tuple[str, str] | None:
    """(compression, precision) of the row a variant's accuracy (or mAP) is compared with, same model, runtime,
    target and batch; None for the baseline.

    The student trained alone for a distilled student; the baseline fine-tuned exactly as long as the whole
    chain trained (`prune-channels:0.5+qat` trained 4 epochs: `finetune:4`, quantized like the row); the
    uncompressed fp32 model for what trains nothing (post-training int8, untrained clustering) and for the
    fine-tuning controls themselves.
    """
    spec = row.compression
    if spec.startswith("distill:"):
        return "student:" + spec.split("+")[0].split(":", 1)[1], row.precision
    if row.finetune_epochs and not spec.startswith(("finetune:", "student:")):
        return f"finetune:{row.finetune_epochs}", row.precision
    if spec == "none" and row.precision == "fp32":
        return None
    return "none", "fp32"
