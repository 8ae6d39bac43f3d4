"""Plain dataclass configs for a benchmark run, validated where they are built."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from edgebench.bench.errors import UsageError
from edgebench.bench.measure.rounds import NoiseGuard, Stopping

TARGETS = ("cpu", "gpu", "npu")
PRECISIONS = ("fp32", "tf32", "fp16", "bf16", "int8")  # tf32: fp32 tensors, TF32 math (NVIDIA Ampere+)
MODES = ("latency", "throughput")


def default_threads() -> int:
    """Cores this process may use: the harness gives every runtime the same count."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS has no sched_getaffinity
        return os.cpu_count() or 1


def default_load_jobs() -> int:
    """Rows loading at once (`BenchConfig.load_jobs`): two, or one on a one-core machine, where two only contend."""
    return min(2, default_threads())


@dataclass
class TimingConfig:
    """How long to warm up and measure; defaults sit between trtexec's and TFLite's benchmark_model."""

    warmup_iters: int = 10  # warm-up runs at least this many iterations...
    warmup_s: float = 0.5  # ...and at least this many seconds (first round; later rounds re-warm briefly)
    min_iters: int = 10  # each round times at least this many iterations...
    min_s: float = 0.3  # ...and at least this many seconds (10 rounds by default: 3 s and 100 iterations a row)
    max_s: float = 60.0  # but never longer than this (the count reached is recorded)

    def __post_init__(self) -> None:
        for name in ("warmup_iters", "min_iters"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < (1 if name == "min_iters" else 0):
                raise UsageError(f"bad {name} {value!r}: expected a whole number >= {1 if name == 'min_iters' else 0}")
        for name in ("warmup_s", "min_s", "max_s"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or value < 0:
                raise UsageError(f"bad {name} {value!r}: expected a number of seconds >= 0")
        if self.max_s < self.min_s:
            raise UsageError(f"bad max_s {self.max_s}: must be >= min_s ({self.min_s})")


@dataclass
class BenchConfig:
    """Everything one `edgebench` run measures: model x targets x runtimes x precisions x batches."""

    model: str = "resnet18"  # a reference model name or path/to/file.py:function
    weights: str | None = None  # None: random init (BN recalibrated); 'pretrained'; or a state_dict path
    runtimes: tuple[str, ...] = ()  # empty: every registered runtime
    precisions: tuple[str, ...] = ("fp32",)
    batches: tuple[int, ...] = (1,)
    threads: int = field(default_factory=default_threads)
    targets: tuple[str, ...] = ("cpu",)
    out: Path | None = None  # the run's folder; default results/<time>-<model>-<target>
    timing: TimingConfig = field(default_factory=TimingConfig)
    timeout_s: float = 900.0  # per child process (export, or measurement)
    seed: int = 0
    keep_artifacts: bool = False
    compress: tuple[str, ...] = ()  # compression variants, e.g. ("prune-channels:0.3", "cluster:16@last3")
    data: str | None = None  # a task (mnist, digits) or an ImageFolder path; None: the model's own task, if any
    preprocess: str | None = None  # how images become inputs (models.preprocess); None: as the model declares
    finetune_epochs: int = 2  # what every fine-tuning method (and its control) trains for
    repeats: int = 10  # timed rounds per row, interleaved across the runtimes of each variant: 10 cycles give each
    # paired speed-up the sign-test interval from the 2nd to the 9th ratio (97.9%), so one outlying cycle cannot
    # set it (6 are the fewest for 95%, 9 the fewest that drop an extreme; 3 gave 75%)
    target_ci: float | None = None  # adaptive: go on past `repeats` until the p50 interval is within ±this
    max_repeats: int = 20  # adaptive: never more rounds than this
    cache: bool = True  # reuse exported artifacts of an identical earlier export (bench.cache)
    export_jobs: int = 1  # exports run at once (each its own process); >1 is faster, but each row's export_s
    # then includes the others' contention for the cores
    load_jobs: int = field(default_factory=default_load_jobs)  # measuring processes loading at
    # once while nothing is timed (bench.readying); exports and first inferences still run alone. 2 takes PyTorch
    # compiled's compilation off the other rows' path, and each row's load_s then includes the other load's
    # contention (the table's header says so); 1 (the default on one core): each loads alone
    warm_exports: bool = True  # fork export and compress children from a warm process per kind (bench.forkserver)
    # that imported torch and the converter once; False: a fresh interpreter for each
    mode: str = "latency"  # latency: one request in flight; throughput: the runtime's concurrent requests
    profile: bool = False  # per-operator profiles after the timed rounds (bench.measure.profile)
    noise_guard: NoiseGuard = field(default_factory=NoiseGuard)  # how a round disturbed by other processes is redone
    command: tuple[str, ...] = ()  # the edgebench arguments that made this config: kept in the run folder for --resume
    resume: bool = False  # finish the interrupted run in `out` (bench.resume) instead of starting a new folder
    variants: tuple = field(init=False, default=())  # parsed from compress; the baseline `none` first
    # True when the user named the runtimes: a missing package is then bad input (exit 2), not a table row.
    runtimes_named: bool = field(init=False, default=False)

    @property
    def stopping(self) -> Stopping:
        return Stopping(repeats=self.repeats, target=self.target_ci, max_repeats=self.max_repeats)

    @property
    def model_names(self) -> tuple[str, ...]:
        """MODEL may name several models (an architecture family), comma-separated."""
        return tuple(part.strip() for part in self.model.split(",") if part.strip())

    def __post_init__(self) -> None:
        if not self.targets:
            raise UsageError(f"no target given: choose from {', '.join(TARGETS)}")
        for target in self.targets:
            if target not in TARGETS:
                raise UsageError(f"unknown target {target!r}: choose one of {', '.join(TARGETS)}")
        for precision in self.precisions:
            if precision not in PRECISIONS:
                raise UsageError(f"unknown precision {precision!r}: choose from {', '.join(PRECISIONS)}")
        if not self.batches:
            raise UsageError("no batch size given: expected e.g. 1 or 1,8")
        for batch in self.batches:
            if not isinstance(batch, int) or isinstance(batch, bool) or batch < 1:
                raise UsageError(f"bad batch size {batch!r}: expected a whole number >= 1, e.g. 1,8")
        max_threads = os.cpu_count() or 1
        if not isinstance(self.threads, int) or isinstance(self.threads, bool) or not 1 <= self.threads <= max_threads:
            raise UsageError(f"bad thread count {self.threads!r}: expected a whole number from 1 to {max_threads}")
        if not self.timeout_s > 0:
            raise UsageError(f"bad timeout {self.timeout_s!r}: expected seconds > 0")
        if not isinstance(self.finetune_epochs, int) or isinstance(self.finetune_epochs, bool) \
                or self.finetune_epochs < 0:
            raise UsageError(f"bad fine-tune epochs {self.finetune_epochs!r}: expected a whole number >= 0")
        if self.target_ci is not None and not 0 < self.target_ci < 1:
            raise UsageError(f"bad target interval {self.target_ci!r}: expected a fraction between 0 and 1, "
                             "e.g. 0.02 for ±2%")
        if not isinstance(self.max_repeats, int) or self.max_repeats < self.repeats:
            raise UsageError(f"bad max repeats {self.max_repeats!r}: expected a whole number >= repeats "
                             f"({self.repeats})")
        if self.mode not in MODES:
            raise UsageError(f"unknown mode {self.mode!r}: choose from {', '.join(MODES)}")
        jobs = self.export_jobs
        if not isinstance(jobs, int) or isinstance(jobs, bool) or not 1 <= jobs <= 16:
            raise UsageError(f"bad export jobs {self.export_jobs!r}: expected a whole number of exports at once, "
                             "from 1 to 16")
        loads = self.load_jobs
        if not isinstance(loads, int) or isinstance(loads, bool) or not 1 <= loads <= 16:
            raise UsageError(f"bad load jobs {self.load_jobs!r}: expected a whole number of rows loading at once, "
                             "from 1 to 16")
        if not isinstance(self.repeats, int) or isinstance(self.repeats, bool) or not 1 <= self.repeats <= 100:
            raise UsageError(f"bad repeats {self.repeats!r}: expected a whole number of rounds from 1 to 100, e.g. 3")
        if self.resume and self.out is None:
            raise UsageError("resuming needs the run's folder: --resume results/<run>")
        if not self.model_names:
            raise UsageError("no model given: e.g. resnet18, or mnist_resnet_s,mnist_resnet_m for a family")
        from edgebench.compression import parse_variants  # late, like the adapters below
        from edgebench.runtimes import runtime_names  # late: keeps `bench.config` importable without adapters

        self.variants = parse_variants(self.compress)

        known = runtime_names()
        for name in self.runtimes:
            if name not in known:
                raise UsageError(f"unknown runtime {name!r}: choose from {', '.join(known)}")
        self.runtimes_named = bool(self.runtimes)
        if not self.runtimes:
            self.runtimes = tuple(known)
