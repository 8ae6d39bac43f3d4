"""Runs a benchmark: builds the reference once, then exports and measures each runtime in its own process."""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import os
import platform
import shutil
import time
from collections import Counter
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgebench.bench.cache import ArtifactCache, cache_key
from edgebench.bench.config import BenchConfig
from edgebench.bench.errors import UsageError
from edgebench.bench.isolation import PROJECT_ROOT, ChildSession, WarmPool, run_child, warm_key
from edgebench.bench.job import CompressJob, MeasureJob
from edgebench.bench.measure.contents import Contents, check, clusters_of, packed_file_mb
from edgebench.bench.measure.cpuload import NOISY_FOREIGN_LOAD
from edgebench.bench.measure.floor import DEFAULT as DEFAULT_FLOOR
from edgebench.bench.measure.floor import AAFloor, machine_key
from edgebench.bench.measure.floor import load as load_floor
from edgebench.bench.measure.peak import GEMM_SIZE, TRIES, gemm_peaks
from edgebench.bench.measure.profile import Profile, ProfileLine
from edgebench.bench.measure.rounds import RE_WARMUP_ITERS, RoundFailed, RoundResult, RowRounds, interleave
from edgebench.bench.measure.stats import interval_coverage
from edgebench.bench.progress import Reporter
from edgebench.bench.readying import LoadTimes, ReadyGate
from edgebench.bench.results import ResultRow, RunWriter, annotate_ratios, row_key
from edgebench.bench.resume import keep_finished_variants, resumed_environment, save_command
from edgebench.bench.runlog import RunLog, logger
from edgebench.bench.targets import check_target
from edgebench.bench.variants import MODEL_FILE, VariantInfo, outputs_path, save_variant
from edgebench.compression import NONE, Variant, parse_variant
from edgebench.compression.measures import zipped_bytes
from edgebench.runtimes import Runtime, RuntimeOptions, adapter_ref, artifact_size_bytes, get_runtime
from edgebench.tasks import CALIBRATION_IMAGES, kind_of, kinds
from edgebench.tasks.detect import is_detector

if TYPE_CHECKING:
    from edgebench.tasks import LabelledTask as Task

RESULTS_DIR = PROJECT_ROOT / "results"
IDLE_PHASES = ("loaded", "ready", "waiting")
MODE_METHOD = {
    "latency": "latency mode: one synchronous inference at a time on a prepared input",
    "throughput": "throughput mode: each runtime's concurrent requests kept busy from threads for the window, "
                  "items/s = completed requests x batch / window, latency = each completed request's",
}
BOXES_FILE = "boxes.npz"  # a detector row's first-inference candidates, in its job folder
CHANCE_NOTE = "accuracy at chance: check the preprocessing (PREPROCESS=, or `preprocess` in the model file)"


@dataclass
class Job:
    target: str
    runtime: type[Runtime]
    precision: str
    batch: int
    qat_epochs: int = 0  # quantization-aware training the runtime's int8 export does first (COMPRESS=qat)

    @property
    def label(self) -> str:
        return f"{self.runtime.label} {self.precision} b{self.batch} on {self.target}"

    @property
    def slug(self) -> str:
        return f"{self.target}-{self.runtime.name}-{self.precision}-b{self.batch}"


@dataclass
class Reference:
    """What every child reads for one model: the module, per batch size the input and eager's outputs, the data."""

    folder: Path
    info: VariantInfo | None = None  # the uncompressed module's counts (parameters, sizes)
    detects: bool = False  # a detector: each row's boxes are matched to PyTorch's (`box_match`)

    @property
    def model_file(self) -> Path:
        return self.folder / MODEL_FILE

    def input(self, batch: int) -> Path:
        return self.folder / f"input_b{batch}.npy"

    def outputs(self, batch: int) -> Path:
        return outputs_path(self.folder, batch)

    @property
    def task(self) -> Path:
        return self.folder / "task.npz"

    @property
    def calibration(self) -> Path:
        return self.folder / "calibration.npy"

    @property
    def calibration_images(self) -> int:
        """How many images every int8 toolchain calibrates on (`runtimes._quant.calibration_batches` uses all)."""
        return len(np.load(self.calibration, mmap_mode="r"))

    @property
    def task_for_job(self) -> str:
        """The task file as a job names it: "" when the model has no labelled data."""
        return str(self.task) if self.task.exists() else ""


@dataclass
class RunSummary:
    run_dir: Path
    rows: list[ResultRow]


def plan_jobs(config: BenchConfig, variant: Variant = NONE, quantized_study: bool = False) -> list[Job]:
    """Every row of one variant. A quantization-aware variant is measured at int8 only; when a run has one,
    the baseline and the fine-tuning control are measured at int8 too (post-training int8), as its comparison."""
    precisions = config.precisions
    qat_epochs = 0
    if variant.quantizes:
        precisions, qat_epochs = ("int8",), config.finetune_epochs
    elif quantized_study and all(m.name == "finetune" for m in variant.methods) and "int8" not in precisions:
        precisions = (*precisions, "int8")
    return [Job(target, get_runtime(name), precision, batch, qat_epochs) for target in config.targets
            for name in config.runtimes for precision in precisions for batch in config.batches]


def plan_run(config: BenchConfig) -> tuple[list[Any], list[Task | None], list[list[tuple[Variant, list[Job]]]]]:
    """(models, their tasks, each model's variants with their jobs). Bad models, weights, data or methods fail
    here, before anything is written."""
    from edgebench.models import load_model

    models = [load_model(name, config.weights, config.seed) for name in config.model_names]
    tasks = [resolve_task(config, model) for model in models]
    plans = []
    for model, task in zip(models, tasks, strict=True):
        trainable = task is not None and not task.training_unavailable()  # a COCO folder trains nothing
        variants = with_controls(config.variants, trainable, config.finetune_epochs,
                                 lambda variant, task=task: bool(variant_unavailable(variant, task)))
        for variant in variants:
            for method in variant.methods:
                method.check(model.module, model.example)
            if variant.needs_task and task is None:
                raise UsageError(f"{variant.spec} trains, so it needs labelled data: {model.name} has none; "
                                 "use a zoo model (mnist_resnet_m, digits_cnn) or DATA=mnist|digits|folder")
        quantized_study = any(v.quantizes for v in variants)
        plans.append([(variant, plan_jobs(config, variant, quantized_study)) for variant in variants])
    return models, tasks, plans


def variant_unavailable(variant: Variant, task: Task | None) -> str:
    """Why a variant cannot be made for its model's task ("" when it can): its rows then say so, `unavailable`,
    and the run measures the other variants."""
    if task is None:
        return ""
    for method in variant.methods:
        reason = method.unavailable_for(task)
        if reason:
            return reason
    if variant.needs_task and task.training_unavailable():
        return f"{variant.spec} trains: {task.training_unavailable()}"
    return ""


def planned_keys(models: list[Any], plans: list[list[tuple[Variant, list[Job]]]]) -> dict[tuple[str, str], set[str]]:
    """(model, compression) -> the keys of the rows that variant writes."""
    return {(model.name, variant.spec): {job_key(model.name, variant.spec, job) for job in jobs}
            for model, plan in zip(models, plans, strict=True) for variant, jobs in plan}


def planned_warm_uses(plans: list[list[tuple[Variant, list[Job]]]]) -> Counter:
    """How many compressions and exports of each kind the run plans (`isolation.warm_key`): a kind planned
    more than once forks from a warm process."""
    uses: Counter = Counter()
    for plan in plans:
        for variant, jobs in plan:
            if variant.methods:  # `compress` makes only these
                uses[warm_key("compress")] += 1
            for job in jobs:
                key = warm_key("export", adapter_ref(job.runtime), job.target, job.precision)
                if key is not None:
                    uses[key] += 1
    return uses


def job_key(model: str, compression: str, job: Job) -> str:
    """The key of the row a job writes (`ResultRow.key`), known before it runs."""
    return row_key(model, compression, job.runtime.name, job.precision, job.target, job.batch)


def with_controls(variants: tuple[Variant, ...], has_task: bool, finetune_epochs: int,
                  unmade: Callable[[Variant], bool] = lambda variant: False) -> tuple[Variant, ...]:
    """Add what each fine-tuned variant must be compared with: the baseline fine-tuned as long as the whole
    chain trains (`prune-channels:0.5+qat` trains twice, so its control is `finetune:4`), the student alone.
    A variant that cannot be made for the model's task (`unmade`) gets no control."""
    out = list(variants)
    epochs = set()
    for variant in variants:
        if unmade(variant):
            continue
        if variant.methods and variant.methods[0].name == "distill":  # compared with the student alone
            alone = parse_variant(f"student:{variant.methods[0].arg}")
            if alone.spec not in [v.spec for v in out]:
                out.insert(out.index(variant) + 1, alone)
        elif not all(m.name == "finetune" for m in variant.methods):  # not the baseline nor a control itself
            epochs.add(variant.training_epochs(finetune_epochs, has_task))
    controls = [parse_variant(f"finetune:{e}") for e in sorted(epochs - {0})]
    out[1:1] = [c for c in controls if c.spec not in [v.spec for v in out]]  # right after the baseline
    return tuple(out)


def check_named_runtimes(config: BenchConfig) -> None:
    """A runtime the user named that can run none of the requested combinations is bad input (exit 2).

    Combinations it cannot run while others can (fp16 on one target only, say) stay as `unavailable` rows.
    """
    if not config.runtimes_named:
        return
    for name in config.runtimes:
        cls = get_runtime(name)
        reasons = [cls.export_unavailable(t, p) for t in config.targets for p in config.precisions]
        if all(reasons):
            raise UsageError(f"runtime {name!r} cannot run here: {reasons[0]}")


def make_run_dir(config: BenchConfig, model_name: str) -> Path:
    if config.resume:  # bench.resume.load_command has checked that it is a run folder
        return Path(config.out)
    if config.out is not None:
        run_dir = Path(config.out)
        if (run_dir / "rows.jsonl").exists():
            raise UsageError(f"--out {str(run_dir)!r} already holds a run (rows.jsonl): choose a new folder")
        if run_dir.exists() and not run_dir.is_dir():
            raise UsageError(f"--out {str(run_dir)!r} is a file, not a folder")
    else:
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        safe = _safe(model_name)
        targets = "-".join(config.targets)
        run_dir = RESULTS_DIR / f"{stamp}-{safe}-{targets}"
        n = 2
        while run_dir.exists():
            run_dir = RESULTS_DIR / f"{stamp}-{safe}-{targets}-{n}"
            n += 1
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create results folder {str(run_dir)!r}: {exc.strerror}") from exc
    return run_dir


def save_reference(model: Any, batches: tuple[int, ...], folder: Path, seed: int,
                   task: Task | None = None) -> Reference:
    """Inputs per batch size, the module pickled whole with its eager outputs, and the task's data if any."""
    from edgebench.models import make_input

    folder.mkdir(parents=True, exist_ok=True)
    reference = Reference(folder, detects=is_detector(model))
    for batch in batches:  # real test images where there are some: int8 is calibrated for those, not for noise
        x = make_input(model.example, batch, seed).numpy() if task is None else task.timed_input(batch)
        np.save(reference.input(batch), x)
    reference.info = save_variant(model.module, folder, {b: reference.input(b) for b in batches}, 0, "")
    if task is not None:
        task.save(reference.task)
        np.save(reference.calibration, task.calibration(seed=seed))
    else:  # int8 calibration on seeded inputs shaped like the example: all a model without data offers
        np.save(reference.calibration, make_input(model.example, CALIBRATION_IMAGES, seed + 3).numpy())
    return reference


def resolve_task(config: BenchConfig, model: Any) -> Task | None:
    """The labelled data a model is scored on, by the kind of task that claims it (`edgebench.tasks`)."""
    return kind_of(model).resolve(config, model)


def table_header(config: BenchConfig, models: list[Any], tasks: list[Task | None],
                 environment: dict[str, Any]) -> str:
    t = config.timing
    coverage = interval_coverage(config.repeats)
    packages = ", ".join(f"{k} {v}" for k, v in environment["packages"].items())
    described = "".join(
        f"- Model: {m.name}, input {tuple(m.example.shape[1:])}, weights: {m.weights}"
        f"{task.scored_on() if task is not None else ''}\n"
        for m, task in zip(models, tasks, strict=True))
    if config.export_jobs > 1:
        overlap = (f" ({max(config.export_jobs, config.load_jobs)} exporting or loading at once, so export_s and "
                   "load_s include their contention; each first inference runs alone; timing starts once all are "
                   "loaded)")
    elif config.load_jobs > 1:
        overlap = (f" (rows load {config.load_jobs} at a time, so load_s includes the others' contention; each export "
                   "and each first inference runs alone; timing starts once all are loaded)")
    else:
        overlap = ""
    compression = ""
    if len(config.variants) > 1:
        compression = (f"- Compression: {', '.join(v.spec for v in config.variants)}; fine-tuning "
                       f"{config.finetune_epochs} epochs, compared with the baseline fine-tuned as long\n")
    return (
        f"# edgebench: {', '.join(m.name for m in models)} on {', '.join(config.targets)}\n\n"
        f"{described}{compression}"
        f"- Machine: {environment['cpu']}, {environment['cpu_logical_cores']} logical cores, "
        f"{environment['ram_gib']} GiB RAM, {environment['os']}, Python {environment['python']}\n"
        f"- Software: {packages}; edgebench commit {environment['git_commit']}\n"
        f"- Method: each runtime exported and measured in its own process with {config.threads} thread(s)"
        f"{overlap}, kept loaded while {config.repeats} rounds are timed round-robin across the runtimes of each "
        f"variant; "
        f"per round a warm-up (>= {t.warmup_iters} iterations and >= {t.warmup_s:g} s in the first, "
        f"{min(t.warmup_iters, RE_WARMUP_ITERS)} iterations after), then >= {t.min_iters} timed iterations "
        f"and >= {t.min_s:g} s (at most {t.max_s:g} s); a round during which other processes used over "
        f"{NOISY_FOREIGN_LOAD:.0%} of the CPU, beyond one /proc clock tick, is measured again "
        f"(up to {config.noise_guard.retries} times); "
        f"{MODE_METHOD[config.mode]}; p50 interval: bootstrap over rounds, then "
        f"samples; speed-ups against PyTorch fp32 and against the row's runtime at fp32 uncompressed, both "
        f"timed in the same cycles (the uncompressed rows stay loaded beside every variant): median over cycles "
        f"of the per-cycle ratio, its sign-test interval over the cycles ({coverage:.1%} over {config.repeats}"
        f"{'' if coverage >= 0.95 else ', below 95%: more REPEATS give 95%'}) widened by the machine's A/A "
        f"floor; harness overhead "
        f"{environment['harness_overhead_us']:.2f} us/iteration; dense-kernel peak (GFLOP/s) "
        f"{', '.join(f'{k} {v:g}' for k, v in environment['gemm_peak_gflops'].items())}\n"
        f"- A/A floor (what two processes timing one artifact differ by beyond their cycles' own intervals, 95 "
        f"times in 100; added to every speed-up's interval, and a speed-up within it is within noise, `~`): "
        f"{AAFloor(**environment.get('aa_floor', asdict(DEFAULT_FLOOR))).describe()}\n"
        f"- Date: {environment['date']}\n\n"
    )


class Runner:
    """One run: a reference, a plan of jobs, a writer. Split into steps so tests can drive each."""

    def __init__(self, config: BenchConfig, reporter: Reporter, log: RunLog) -> None:
        # GPUs numbered in PCI order here as in the children (bench.isolation) and NVML, before this process asks
        # CUDA anything: the cache key's device facts then describe the GPU the rows run on.
        os.environ.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
        self.config = config
        self.reporter = reporter
        self.log = log
        self.cache = ArtifactCache()
        self.load_times = LoadTimes(self.cache.root)
        self.versions: dict[str, str] = {}
        self.peaks: dict[str, float] = {}
        self.floor = DEFAULT_FLOOR  # the machine's A/A floor, read when the run starts
        self._reference_boxes: dict[Path, Any] = {}  # PyTorch's boxes on each timed input, post-processed once
        self.run_dir = RESULTS_DIR  # the run's folder, set in run(): where tasks keep what they scored
        # The uncompressed fp32 row of each (model, runtime, target, batch): its measuring job, and the process
        # kept loaded to time it beside every later variant of the model (None when it could not start).
        self.baseline_jobs: dict[tuple[str, str, str, int], tuple[MeasureJob, str]] = {}
        self.anchors: dict[tuple[str, str, str, int], tuple[ChildSession, str] | None] = {}
        self.warm: WarmPool | None = None  # the warm processes export and compress children fork from, per run
        self.profiles: dict[str, list[ProfileLine]] = {}  # a profiled row's lines, until the row is written

    def run(self) -> RunSummary:
        from edgebench.bench.environment import capture, cpu_info, package_versions
        from edgebench.bench.measure.timing import harness_overhead_us

        config = self.config
        devices = {target: check_target(target) for target in config.targets}  # all checked before any work
        check_named_runtimes(config)
        models, tasks, plans = plan_run(config)
        run_dir = make_run_dir(config, "+".join(m.name for m in models))
        self.run_dir = run_dir
        if config.command and not config.resume:
            save_command(run_dir, config.command)
        planned = planned_keys(models, plans)
        previous = keep_finished_variants(run_dir, planned) if config.resume else []
        finished = {(row.model, row.compression) for row in previous}
        total = sum(len(keys) for variant, keys in planned.items() if variant not in finished)
        self.log.attach(run_dir / "run.log")
        logger.info("run folder %s; config %s", run_dir, asdict(config))
        if config.resume:
            logger.info("resuming: %d rows of %d finished variants kept, %d rows to measure", len(previous),
                        len(finished), total)
        precisions = tuple(job.precision for plan in plans for _, jobs in plan for job in jobs)
        peaks = self.peaks = gemm_peaks(config.threads, precisions)
        machine = machine_key(cpu_info(), config.threads, package_versions())
        self.floor = max((load_floor(machine, m.name) for m in models), key=lambda f: f.floor)  # one per run
        environment = capture({
            "targets": list(config.targets), "target_devices": devices, "threads": config.threads,
            "timing": asdict(config.timing), "harness_overhead_us": harness_overhead_us(),
            "repeats": config.repeats, "noise_guard": asdict(config.noise_guard),
            "gemm_peak_gflops": peaks, "mode": config.mode, "aa_floor": asdict(self.floor),
            "gemm_peak_method": f"torch: the faster of an n={GEMM_SIZE} matmul and a 256-channel 3x3 conv at "
                                f"56x56, best of {TRIES}",
        })
        self.versions = environment["packages"]
        writer = RunWriter(run_dir, table_header(config, models, tasks, environment))
        writer.rows = list(previous)
        writer.write_environment(resumed_environment(run_dir, environment) if config.resume else environment)
        where = ", ".join(config.targets)
        names = ", ".join(m.name for m in models)
        self.reporter.start(total, f"edgebench: {names} on {where}, {total} measurements -> {_display(run_dir)}")
        if config.warm_exports:
            self.warm = WarmPool(config.threads, run_dir / "jobs", planned_warm_uses(plans))
        try:
            for model, task, plan in zip(models, tasks, plans, strict=True):
                folder = run_dir / "reference" / _safe(model.name)
                reference = save_reference(model, config.batches, folder, config.seed, task)
                base = {"model": model.name, "weights": model.weights, "threads": config.threads,
                        "dataset": task.label if task is not None else "", "host": platform.node()}
                try:
                    for position, (variant, jobs) in enumerate(plan):
                        if (model.name, variant.spec) in finished:
                            later = any((model.name, v.spec) not in finished for v, _ in plan[position + 1:])
                            if variant.spec == "none" and later:  # its processes time beside the later variants
                                self.restart_baselines(jobs, reference, previous, run_dir,
                                                       {**base, "compression": variant.spec}, model.source)
                            continue
                        unavailable = variant_unavailable(variant, task)
                        made, error = (None, unavailable) if unavailable else \
                            self.compress(variant, model, reference, run_dir)
                        self.measure_variant(jobs, reference, made, error, run_dir,
                                             {**base, "compression": variant.spec}, model.source,
                                             lambda row, rounds: self._write(writer, row, rounds),
                                             "unavailable" if unavailable else "error")
                finally:
                    self.close_anchors()
        finally:
            if self.warm is not None:
                self.warm.close()
            self.reporter.finish()
            if not config.keep_artifacts:
                for folder in ("artifacts", "jobs", "reference", "variants"):
                    shutil.rmtree(run_dir / folder, ignore_errors=True)
        return RunSummary(run_dir, writer.rows)

    def restart_baselines(self, jobs: list[Job], reference: Reference, previous: list[ResultRow], run_dir: Path,
                          base: dict[str, Any], model_source: str) -> None:
        """Resuming after the uncompressed variant finished: its measured fp32 rows are exported again (from the
        artifact cache when it has them) so that their processes can be kept loaded beside the later variants,
        as in an uninterrupted run. Nothing is measured or written for them."""
        measured = {row.key for row in previous if row.status == "ok"}
        for job in jobs:
            if job.precision != "fp32" or job_key(base["model"], base["compression"], job) not in measured:
                continue
            row, spec, job_dir = self.export(job, reference, (reference.folder, reference.info), "", run_dir, base,
                                             model_source)
            if spec is not None:
                self.baseline_jobs[(row.model, job.runtime.name, job.target, job.batch)] = (spec, str(job_dir))

    def compress(self, variant: Variant, model: Any, reference: Reference,
                 run_dir: Path) -> tuple[tuple[Path, VariantInfo] | None, str]:
        """Make the variant once, in a child process: (its folder and counts, '') or (None, the error)."""
        if variant is NONE or not variant.methods:
            return (reference.folder, reference.info), ""
        slug = Path(_safe(model.name), _safe(variant.spec))
        folder = run_dir / "variants" / slug
        job = CompressJob(chain=variant.spec, model_file=str(reference.model_file), model=model.source,
                          out_dir=str(folder), inputs={str(b): str(reference.input(b)) for b in self.config.batches},
                          task=reference.task_for_job, finetune_epochs=self.config.finetune_epochs,
                          seed=self.config.seed, threads=self.config.threads)

        def on_phase(phase: str) -> None:
            self.reporter.phase(f"{model.name} {variant.spec}", phase)

        outcome = run_child("compress", job, run_dir / "jobs" / slug, self.config.threads, self.config.timeout_s,
                            on_phase, warm=self.warm)
        self.log.append_file(f"{model.name} {variant.spec}: compress", run_dir / "jobs" / slug / "compress.log")
        if outcome.error:
            return None, f"compress: {outcome.error}"
        return (folder, VariantInfo(**outcome.result)), ""

    def measure_variant(self, jobs: list[Job], reference: Reference, made: tuple[Path, VariantInfo] | None,
                        compress_error: str, run_dir: Path, base: dict[str, Any], model_source: str,
                        emit: Callable[[ResultRow, RowRounds | None], None], unmade: str = "error") -> None:
        """Every row of one variant: each exported in its own child, then all loaded at once and timed in
        interleaved rounds (A B C A B C ...), so a slow minute on a shared machine hits every runtime alike.

        Rows are emitted in job order, each as soon as it and the rows before it are finished. A variant that was
        not made (`made` None) gives rows with `unmade` as their status and `compress_error` as the reason.
        """
        finished: dict[int, tuple[ResultRow, RowRounds | None]] = {}
        next_out = 0

        def complete(index: int, row: ResultRow, rounds: RowRounds | None) -> None:
            nonlocal next_out
            finished[index] = (row, rounds)
            while next_out in finished:
                emit(*finished.pop(next_out))
                next_out += 1

        rows: list[ResultRow] = []
        sessions: dict[int, tuple[ChildSession, dict[str, Any]]] = {}
        started: list[ChildSession] = []  # every measuring child of this variant, killed in the end whatever happens
        uncompressed = base["compression"] == "none"

        # An export runs alone unless EXPORT_JOBS > 1, and one that trains (QAT) always does: two trainings of 2
        # threads each on 2 cores spent half their time in the kernel (OpenMP threads waiting on each other),
        # 100-150 s each instead of ~30. Rows load LOAD_JOBS at a time (bench.readying).
        gate = ReadyGate(self.config.load_jobs)
        exports_alone = self.config.export_jobs == 1 or any(job.qat_epochs for job in jobs)

        def export_and_load(job: Job) -> tuple[ResultRow, MeasureJob | None, Path, ChildSession | None]:
            """Export a row, then start its measuring child and wait until it has loaded: the child then idles
            (blocked on its next command) while the next rows export and load."""
            row, spec, job_dir = self.export(job, reference, made, compress_error, run_dir, base, model_source,
                                             gate if exports_alone else None, unmade)
            if spec is None:
                return row, spec, job_dir, None
            with gate.loading():
                session = ChildSession(spec, job_dir, self.config.threads, self.config.timeout_s,
                                       lambda phase, label=job.label: self._progress(label, phase))
                started.append(session)
                session.loaded()
            return row, spec, job_dir, session

        try:
            # Rows export and load in a pool (threads wait on child processes, the gate says who runs); later
            # variants' anchors (the uncompressed rows' processes) start in the same pool, so nothing waits for
            # them afterwards. Then each row's first inference, one at a time, while nothing else computes.
            with ThreadPoolExecutor(max_workers=max(self.config.export_jobs, self.config.load_jobs)) as pool:
                anchors_started = [] if uncompressed else \
                    [pool.submit(self.anchor, found, run_dir, gate) for found in self.anchors_for(jobs, base["model"])]
                keys = [LoadTimes.key(base["model"], base["compression"], job.runtime.name, job.precision, job.target,
                                      job.batch, self.config.threads) for job in jobs]
                started_first = {i: pool.submit(export_and_load, jobs[i]) for i in self.load_times.longest_first(keys)}
                loaded = [started_first[i].result() for i in range(len(jobs))]
                for future in anchors_started:
                    future.result()
            prepared = [(row, spec, job_dir, session, session.ready() if session is not None else None)
                        for row, spec, job_dir, session in loaded]
            for job, (row, spec, job_dir, session, ready) in zip(jobs, prepared, strict=True):
                rows.append(row)
                index = len(rows) - 1
                if session is None:
                    complete(index, row, None)
                    continue
                if ready is None:
                    self._finish(row, session, job_dir)
                    complete(index, row, None)
                    continue
                sessions[index] = (session, ready)
                if uncompressed and job.precision == "fp32":
                    self.baseline_jobs[(row.model, job.runtime.name, job.target, job.batch)] = (spec, str(job_dir))
            timed, baseline_of, anchors, order = self.pairing(jobs, sessions, base["model"], uncompressed, run_dir)
            counter = itertools.count()  # each try of a round answers in its own file
            state: dict[Hashable, RowRounds] = {}

            def run_round(key: Hashable, round_no: int) -> RoundResult:
                session, label = timed[key]
                t0 = time.monotonic()
                answer = session.round(next(counter))
                if answer is None:
                    raise RoundFailed((session.finish().error if key in sessions else "")
                                      or "measurement process ended early")
                result = RoundResult(**answer)
                logger.info("%s round %d: %.2f s, %d samples, p50 %.4g ms, other processes %s of the CPU, "
                            "quiet after %s", label, round_no + 1, time.monotonic() - t0, len(result.samples_ms),
                            float(np.median(result.samples_ms)),
                            "?" if result.foreign_load is None else f"{result.foreign_load:.1%}",
                            "?" if result.settle_s is None else f"{1000 * result.settle_s:.0f} ms")
                return result

            def on_round(key: Hashable, round_no: int) -> None:
                self.reporter.phase(timed[key][1], f"round {round_no + 1}/{self.config.stopping.most}")

            done_rows: list[tuple[Hashable, RowRounds]] = []

            def on_done(key: Hashable, rounds: RowRounds) -> None:
                if key not in sessions:  # an anchor: it stays loaded for the next variant, unless it failed
                    if rounds.error:
                        logger.info("%s: %s; later variants of the model have no paired ratio for it",
                                    key, rounds.error)
                        self.drop_anchor(timed[key][0])
                    return
                done_rows.append((key, rounds))  # closed once nothing is timed any more (below)

            interleave(order, self.config.stopping, run_round, self.config.noise_guard,
                       on_round=on_round, on_done=on_done, anchors=anchors, state=state,
                       name=lambda key: timed[key][1])
            # Nothing is timed now: the rows' children score accuracy one at a time (scored at once, PyTorch's
            # rows took 50-80 s instead of 1-2 s: OpenMP threads spinning on shared cores), then close all at
            # once (each waits on its own child; closing one by one cost a second or two a row), then each row
            # is filled in order.
            for key, _ in done_rows:
                sessions[key][0].score()
            with ThreadPoolExecutor(max_workers=max(len(done_rows), 1)) as pool:
                list(pool.map(lambda done: sessions[done[0]][0].finish(), done_rows))
            for key, rounds in done_rows:
                session, ready = sessions[key]
                row = rows[key]
                measured = self._finish(row, session, Path(session.job_dir), ready, rounds)
                if measured:
                    pytorch, own = (state.get(k) if k is not None else None for k in baseline_of[key])
                    annotate_ratios(row, rounds, pytorch, own, self.peaks, self.floor.floor)
                complete(key, row, rounds if measured else None)
            # this machine's load times, for the next run's readying order: one write per variant
            self.load_times.record({keys[key]: sessions[key][1]["load_s"] for key, _ in done_rows})
        finally:
            for session in started:
                session.kill()

    def anchors_for(self, jobs: list[Job], model: str) -> list[tuple[str, str, str, int]]:
        """The uncompressed baselines a later variant's rows are timed beside: PyTorch's and each row's own
        runtime's, per target and batch (`pairing` pairs them)."""
        return list(dict.fromkeys((model, runtime, job.target, job.batch) for job in jobs
                                  for runtime in ("pytorch", job.runtime.name)))

    def pairing(self, jobs: list[Job], sessions: dict[int, tuple[ChildSession, dict[str, Any]]], model: str,
                uncompressed: bool, run_dir: Path) -> tuple[dict[Hashable, tuple[ChildSession, str]],
                                                           dict[int, tuple[Hashable | None, Hashable | None]],
                                                           dict[Hashable, list[int]], list[Hashable]]:
        """Who is timed with whom in a variant's round-robin: (each key's process and label; each row's
        baselines, PyTorch's and its own runtime's uncompressed fp32; the anchors and the rows they serve;
        the order of a cycle). In the uncompressed variant the baselines are rows of it; later, the processes
        kept loaded for the model (`anchor`)."""
        timed: dict[Hashable, tuple[ChildSession, str]] = {i: (s, jobs[i].label) for i, (s, _) in sessions.items()}
        baseline_of: dict[int, tuple[Hashable | None, Hashable | None]] = {}
        anchors: dict[Hashable, list[int]] = {}
        for index in sessions:
            job = jobs[index]
            keys: list[Hashable | None] = []
            for runtime in ("pytorch", job.runtime.name):
                key = None
                if uncompressed:
                    key = next((i for i in sessions if jobs[i].runtime.name == runtime and jobs[i].precision == "fp32"
                                and jobs[i].target == job.target and jobs[i].batch == job.batch), None)
                else:
                    anchor = self.anchor((model, runtime, job.target, job.batch), run_dir)
                    if anchor is not None:
                        key = f"{anchor[1]} (uncompressed baseline)"
                        timed[key] = (anchor[0], key)
                        anchors.setdefault(key, []).append(index)
                keys.append(key)
            baseline_of[index] = (keys[0], keys[1])
        bases = {key for pair in baseline_of.values() for key in pair if key is not None}
        # Each baseline just before the first row compared with it: partners are timed seconds apart, and a
        # row's partner round is in before the row finishes.
        order: list[Hashable] = []
        for index in sorted(sessions, key=lambda i: (i not in bases, i)):
            order += [key for key in dict.fromkeys(baseline_of[index]) if key in anchors and key not in order]
            order.append(index)
        return timed, baseline_of, anchors, order

    def anchor(self, found: tuple[str, str, str, int], run_dir: Path,
               gate: ReadyGate | None = None) -> tuple[ChildSession, str] | None:
        """The loaded process that times an uncompressed fp32 row beside later variants of its model, and its
        label; started on first use (loading through `gate` while rows get ready). None where that row was not
        measured or its process did not start again."""
        if found not in self.anchors:
            if found not in self.baseline_jobs:
                return None
            spec, job_dir = self.baseline_jobs[found]
            _, runtime, target, batch = found
            label = f"{get_runtime(runtime).label} fp32 b{batch} on {target}"
            with gate.loading() if gate is not None else contextlib.nullcontext():
                session = ChildSession(spec, run_dir / "jobs" / "baselines" /
                                       Path(job_dir).relative_to(run_dir / "jobs"), self.config.threads,
                                       self.config.timeout_s, lambda phase: self._progress(f"{label} (baseline)",
                                                                                           phase))
                session.loaded()
            with gate.alone() if gate is not None else contextlib.nullcontext():
                ready = session.ready()
            if ready is None:
                logger.info("%s: the baseline's process did not start again (%s); later variants have no paired "
                            "ratio against it", label, session.finish().error)
                session.kill()
                self.anchors[found] = None
            else:
                self.anchors[found] = (session, label)
        return self.anchors[found]

    def drop_anchor(self, session: ChildSession) -> None:
        for found, kept in self.anchors.items():
            if kept is not None and kept[0] is session:
                session.kill()
                self.anchors[found] = None

    def close_anchors(self) -> None:
        """End the model's baseline processes: the next model has its own."""
        for kept in self.anchors.values():
            if kept is not None:
                kept[0].kill()
        self.anchors.clear()

    def _write(self, writer: RunWriter, row: ResultRow, rounds: RowRounds | None) -> None:
        writer.append(row, rounds.per_round_ms if rounds is not None else [], self.profiles.pop(row.key, ()))
        self.reporter.row_done(row)

    def _progress(self, label: str, phase: str) -> None:
        if phase not in IDLE_PHASES:  # a loaded child waiting for its next round is not news
            self.reporter.phase(label, phase)

    def export(self, job: Job, reference: Reference, made: tuple[Path, VariantInfo] | None, compress_error: str,
               run_dir: Path, base: dict[str, Any], model_source: str,
               gate: ReadyGate | None = None, unmade: str = "error") -> tuple[ResultRow, MeasureJob | None, Path]:
        """The row with what is known before timing; and the measuring job when the artifact was exported
        (alone at `gate`, when given) or restored from the cache (a file copy, which takes no turn)."""
        config = self.config
        row = ResultRow(**base, runtime=job.runtime.name, format=job.runtime.label, precision=job.precision,
                        target=job.target, device=job.target, batch=job.batch, status="ok", repeats=config.repeats,
                        mode=config.mode)
        where = Path(_safe(row.model), _safe(row.compression), job.slug)
        job_dir = run_dir / "jobs" / where
        if made is None:  # the variant was not made: it failed ("error") or cannot apply here ("unavailable")
            row.status, row.error = unmade, compress_error
            return row, None, job_dir
        folder, info = made
        row.params, row.sparsity = info.params, info.sparsity
        row.finetune_epochs, row.agreement = info.finetune_epochs, info.agreement
        row.pruned_fraction = info.pruned_fraction
        row.flops = info.flops * job.batch if info.flops else None
        if info.notes:
            row.details = info.notes
        reason = unavailable_before_export(job)
        if reason:
            row.status, row.error = "unavailable", reason
            return row, None, job_dir
        if job.precision == "int8" and not job.qat_epochs:  # post-training int8: calibrated, not trained
            row.calibration_images = reference.calibration_images
        artifact_dir = run_dir / "artifacts" / where
        spec = MeasureJob(
            adapter=adapter_ref(job.runtime),
            options=RuntimeOptions(target=job.target, precision=job.precision, threads=config.threads,
                                   model=model_source, seed=config.seed, mode=config.mode),
            model_file=str(folder / MODEL_FILE), input=str(reference.input(job.batch)),
            reference=str(outputs_path(folder, job.batch)), artifact_dir=str(artifact_dir), timing=config.timing,
            task=reference.task_for_job, calibration=str(reference.calibration), qat_epochs=job.qat_epochs,
            serve=True, boxes=str(job_dir / BOXES_FILE) if reference.detects else "", profile=config.profile)

        key = cache_key(spec, self.versions) if config.cache else ""
        cached = self.cache.restore(key, artifact_dir, job_dir) if key else None
        if cached is not None:
            logger.info("%s: artifact from the cache (key %s)", job.label, key)
            row.export_s, row.export_peak_rss_mb, spec.artifact = cached.export_s, cached.export_peak_rss_mb, \
                cached.artifact
            spec.reference = cached.reference or spec.reference
            contents = cached.contents
            row.details = "; ".join(part for part in ("artifact from cache", row.details) if part)
        else:
            with gate.alone() if gate is not None else contextlib.nullcontext():
                exported = run_child("export", spec, job_dir, config.threads, config.timeout_s,
                                     lambda phase: self.reporter.phase(job.label, phase), warm=self.warm)
            if exported.result and "unavailable" in exported.result:  # the runtime cannot express the model
                self.log.append_file(f"{job.label}: export", job_dir / "export.log")
                row.status, row.error = "unavailable", exported.result["unavailable"]
                return row, None, job_dir
            if exported.result:
                logger.info("%s stages: export process %.2f s, of which export %.2f s%s", job.label, exported.wall_s,
                            exported.result["export_s"], " (forked from a warm process)" if exported.forked else "")
            self.log.append_file(f"{job.label}: export", job_dir / "export.log")
            row.export_peak_rss_mb = exported.peak_rss_mb
            if exported.error:
                row.status, row.error = "error", f"export: {exported.error}"
                return row, None, job_dir
            row.export_s = exported.result["export_s"]
            spec.artifact = exported.result["artifact"]
            spec.reference = exported.result.get("reference") or spec.reference  # the QAT-trained model's outputs
            contents = exported.result.get("contents")
        size = artifact_size_bytes(artifact_dir)
        zipped = cached.zip_bytes if cached is not None and cached.zip_bytes else zipped_bytes(artifact_dir)
        if key and cached is None:
            self.cache.store(key, artifact_dir, spec.artifact, row.export_s, row.export_peak_rss_mb,
                             exported.result.get("reference", ""), contents, zipped)
        row.size_mb, row.zip_mb = size / 1e6, zipped / 1e6
        record_contents(row, Contents(**contents) if contents else None, size)
        return row, spec, job_dir

    def _match_boxes(self, row: ResultRow, boxes_file: Path, reference_file: Path) -> None:
        """A detector row's fidelity in boxes: its first inference's boxes against PyTorch's on the same input,
        after the same post-processing (`bench.measure.detections.box_agreement`)."""
        from edgebench.bench.measure.detections import box_agreement, boxes_on_input, candidates, unpack
        from edgebench.bench.measure.fidelity import read_outputs

        with np.load(boxes_file) as packed:
            size = int(packed["size"])
            found = boxes_on_input(unpack(dict(packed)), size)
        if reference_file not in self._reference_boxes:
            self._reference_boxes[reference_file] = boxes_on_input(candidates(read_outputs(reference_file)[0]),
                                                                   size)
        matched, total = box_agreement(self._reference_boxes[reference_file], found)
        row.box_match, row.reference_boxes = (matched / total if total else None), total
        boxes_file.unlink()

    def _finish(self, row: ResultRow, session: ChildSession, job_dir: Path, ready: dict[str, Any] | None = None,
                rounds: RowRounds | None = None) -> bool:
        """Close the measuring child and fill the row from its answers; False when the row is not measured."""
        measured = session.finish()
        if ready is not None:  # where a row's time went, stage by stage
            start_s = session.loaded_s - ready["load_s"]
            logger.info("%s %s b%d stages: measuring process start and imports %.2f s, load %.2f s, first "
                        "inference %.1f ms, accuracy %s, close %.2f s (rows close at once)", row.format, row.precision,
                        row.batch, start_s, ready["load_s"], ready["first_ms"],
                        "-" if session.score_s is None else f"{session.score_s:.2f} s", session.finish_s)
        self.log.append_file(f"{row.format} {row.precision} b{row.batch}: measure", session.log_path)
        error = (rounds.error if rounds is not None else "") or measured.error
        if error:
            row.status, row.error, row.peak_rss_mb = "error", error, measured.peak_rss_mb
            return False
        result = measured.result
        if "unavailable" in result:  # exported and sized, but nothing was run: no memory figure to report
            row.status, row.error = "unavailable", result["unavailable"]
            return False
        row.peak_rss_mb = measured.peak_rss_mb
        for name in ("load_s", "first_ms", "max_abs_diff", "cosine", "fidelity_ok", "energy_source"):
            setattr(row, name, ready[name])
        for name in ("device", "h2d_ms", "d2h_ms", "device_memory_mb", "device_memory_source"):
            setattr(row, name, result.get(name, getattr(row, name)))
        if ready.get("boxes_file"):
            self._match_boxes(row, Path(ready["boxes_file"]), Path(ready["boxes_reference"]))
        if result.get("task_kind"):  # scored on labelled data, in its own process: the task puts it on the row
            kinds()[result["task_kind"]].fill(row, result, self.run_dir, self.config.seed)
        if "profile" in result:
            self._fill_profile(row, result)
        chance = CHANCE_NOTE if row.at_chance else ""
        row.details = "; ".join(part for part in (chance, result["details"], row.details) if part)
        row.add_rounds(rounds)
        return True

    def _fill_profile(self, row: ResultRow, result: dict[str, Any]) -> None:
        """The row's profile summary, and its lines kept until the row is written (`_write`). The profiled
        session's memory is not the row's: its peak RSS is the one before profiling."""
        found = result["profile"]
        if "unavailable" in found:
            row.profile_note = found["unavailable"]
            return
        lines = [ProfileLine(**{**line, "run": self.run_dir.name, "key": row.key, "runtime": row.runtime,
                                "precision": row.precision}) for line in found["lines"]]
        row.add_profile(Profile(found["iterations"], found["wall_ms"], lines))
        foreign, pace, timed = found.get("foreign_load"), found.get("pace_ms"), found.get("timed_ms")
        row.profile_pace_ms = pace
        logger.info("%s %s b%d: profiled %d inferences after its %d timed rounds, median %.4g ms (other processes "
                    "%s of the CPU; unprofiled right after, median %s; profiled %d time%s)", row.format,
                    row.precision, row.batch, found["iterations"], found["after_rounds"], found["wall_ms"],
                    "-" if foreign is None else f"{foreign:.0%}",
                    "-" if pace is None else f"{pace:.4g} ms" + (f", x{pace / timed:.2f} of the timed rounds'"
                                                                 if timed else ""),
                    found.get("tries", 1), "" if found.get("tries", 1) == 1 else "s")
        self.profiles[row.key] = lines
        before = result.get("rss_before_profile_mb")
        if before and row.peak_rss_mb:
            row.peak_rss_mb = min(row.peak_rss_mb, before)


def unavailable_before_export(job: Job) -> str | None:
    """Why a row cannot be measured here, known before anything is exported: the runtime cannot make its artifact
    (package, target, precision, QAT), or, off the CPU, nothing here could run it (OpenVINO GPU without an Intel
    GPU, ONNX Runtime GPU without its CUDA provider): an artifact that cannot run is not worth its export."""
    reason = job.runtime.export_unavailable(job.target, job.precision)
    if not reason and job.qat_epochs:
        reason = job.runtime.qat_unavailable()
    if not reason and job.target != "cpu":  # the CPU check would import every CPU runtime into the harness
        reason = job.runtime.run_unavailable(job.target)
    return reason


def record_contents(row: ResultRow, contents: Contents | None, file_bytes: int) -> None:
    """What the artifact holds, on its row: its own packed size, its integer share, and whether it is what the
    label says (an int8 file of float weights, a clustered file with too many values per layer, is flagged)."""
    if contents is None:
        note = f"{row.format} files are not read back here: contents unchecked"
        row.details = "; ".join(part for part in (row.details, note) if part) \
            if row.precision == "int8" or clusters_of(row.compression) else row.details
        return
    row.packed_mb = packed_file_mb(contents, file_bytes)
    row.integer_weights = contents.integer_share
    row.integer_macs = contents.integer_mac_share
    row.contents_ok, note = check(contents, row.precision, row.compression)
    if note:
        row.details = "; ".join(part for part in (row.details, note) if part)


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)


def _display(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)

