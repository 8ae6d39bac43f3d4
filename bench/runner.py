"""Runs a benchmark: builds the reference once, then exports and measures each runtime in its own process."""

from __future__ import annotations

import datetime as dt
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.config import BenchConfig
from bench.errors import UsageError
from bench.isolation import PROJECT_ROOT, run_child
from bench.progress import Reporter
from bench.results import ResultRow, RunWriter
from bench.runlog import RunLog, logger
from bench.stats import LatencyStats
from bench.targets import check_target
from runtimes import Runtime, adapter_ref, artifact_size_bytes, get_runtime

RESULTS_DIR = PROJECT_ROOT / "results"


@dataclass
class Job:
    target: str
    runtime: type[Runtime]
    precision: str
    batch: int

    @property
    def label(self) -> str:
        return f"{self.runtime.label} {self.precision} b{self.batch} on {self.target}"

    @property
    def slug(self) -> str:
        return f"{self.target}-{self.runtime.name}-{self.precision}-b{self.batch}"


@dataclass
class Reference:
    """What every child reads: the weights, and per batch size the input and PyTorch eager's outputs."""

    folder: Path

    @property
    def state_dict(self) -> Path:
        return self.folder / "state_dict.pt"

    def input(self, batch: int) -> Path:
        return self.folder / f"input_b{batch}.npy"

    def outputs(self, batch: int) -> Path:
        return self.folder / f"outputs_b{batch}.npz"


@dataclass
class RunSummary:
    run_dir: Path
    rows: list[ResultRow]


def plan_jobs(config: BenchConfig) -> list[Job]:
    return [Job(target, get_runtime(name), precision, batch) for target in config.targets
            for name in config.runtimes for precision in config.precisions for batch in config.batches]


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
    if config.out is not None:
        run_dir = Path(config.out)
        if (run_dir / "rows.jsonl").exists():
            raise UsageError(f"--out {str(run_dir)!r} already holds a run (rows.jsonl): choose a new folder")
        if run_dir.exists() and not run_dir.is_dir():
            raise UsageError(f"--out {str(run_dir)!r} is a file, not a folder")
    else:
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in model_name)
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


def save_reference(model: Any, batches: tuple[int, ...], folder: Path, seed: int) -> Reference:
    import torch

    from models import make_input
    from runtimes._torch import to_host

    folder.mkdir(parents=True, exist_ok=True)
    reference = Reference(folder)
    torch.save(model.module.state_dict(), reference.state_dict)
    for batch in batches:
        x = make_input(model.example, batch, seed)
        np.save(reference.input(batch), x.numpy())
        with torch.inference_mode():
            outputs = to_host(model.module(x))
        np.savez(reference.outputs(batch), **{f"out_{i}": o for i, o in enumerate(outputs)})
    return reference


def table_header(config: BenchConfig, model: Any, environment: dict[str, Any]) -> str:
    t = config.timing
    packages = ", ".join(f"{k} {v}" for k, v in environment["packages"].items())
    return (
        f"# edgebench: {model.name} on {', '.join(config.targets)}\n\n"
        f"- Model: {model.name}, input {tuple(model.example.shape[1:])}, weights: {model.weights}\n"
        f"- Machine: {environment['cpu']}, {environment['cpu_logical_cores']} logical cores, "
        f"{environment['ram_gib']} GiB RAM, {environment['os']}, Python {environment['python']}\n"
        f"- Software: {packages}; edgebench commit {environment['git_commit']}\n"
        f"- Method: each runtime exported and measured in its own process with {config.threads} thread(s); "
        f"warm-up >= {t.warmup_iters} iterations and >= {t.warmup_s:g} s, then >= {t.min_iters} timed iterations "
        f"and >= {t.min_s:g} s (at most {t.max_s:g} s); latency = one synchronous inference on a prepared input; "
        f"harness overhead {environment['harness_overhead_us']:.2f} us/iteration\n"
        f"- Date: {environment['date']}\n\n"
    )


class Runner:
    """One run: a reference, a plan of jobs, a writer. Split into steps so tests can drive each."""

    def __init__(self, config: BenchConfig, reporter: Reporter, log: RunLog) -> None:
        self.config = config
        self.reporter = reporter
        self.log = log

    def run(self) -> RunSummary:
        from bench.environment import capture
        from bench.timing import harness_overhead_us
        from models import load_model

        config = self.config
        devices = {target: check_target(target) for target in config.targets}  # all checked before any work
        check_named_runtimes(config)
        model = load_model(config.model, config.weights, config.seed)  # bad model/weights fail here, nothing written
        jobs = plan_jobs(config)
        run_dir = make_run_dir(config, model.name)
        self.log.attach(run_dir / "run.log")
        logger.info("run folder %s; config %s", run_dir, asdict(config))
        environment = capture({
            "targets": list(config.targets), "target_devices": devices, "threads": config.threads,
            "timing": asdict(config.timing), "harness_overhead_us": harness_overhead_us(),
        })
        writer = RunWriter(run_dir, table_header(config, model, environment))
        writer.write_environment(environment)
        where = ", ".join(config.targets)
        self.reporter.start(len(jobs), f"edgebench: {model.name} on {where}, {len(jobs)} measurements "
                                       f"-> {_display(run_dir)}")
        try:
            reference = save_reference(model, config.batches, run_dir / "reference", config.seed)
            base = {"model": model.name, "weights": model.weights, "compression": "none",
                    "threads": config.threads}
            for job in jobs:
                row, samples = self.measure(job, reference, run_dir, base, model.source)
                writer.append(row, samples)
                self.reporter.row_done(row)
        finally:
            self.reporter.finish()
            if not config.keep_artifacts:
                for folder in ("artifacts", "jobs", "reference"):
                    shutil.rmtree(run_dir / folder, ignore_errors=True)
        return RunSummary(run_dir, writer.rows)

    def measure(self, job: Job, reference: Reference, run_dir: Path, base: dict[str, Any],
                model_source: str) -> tuple[ResultRow, tuple[float, ...]]:
        config = self.config
        row = ResultRow(**base, runtime=job.runtime.name, format=job.runtime.label, precision=job.precision,
                        target=job.target, device=job.target, batch=job.batch, status="ok")
        reason = job.runtime.export_unavailable(job.target, job.precision)
        if reason:
            row.status, row.error = "unavailable", reason
            return row, ()
        artifact_dir = run_dir / "artifacts" / job.slug
        job_dir = run_dir / "jobs" / job.slug
        spec = {
            "adapter": adapter_ref(job.runtime),
            "options": {"target": job.target, "precision": job.precision, "threads": config.threads,
                        "model": model_source, "seed": config.seed},
            "state_dict": str(reference.state_dict),
            "input": str(reference.input(job.batch)),
            "reference": str(reference.outputs(job.batch)),
            "artifact_dir": str(artifact_dir),
            "timing": asdict(config.timing),
        }

        def on_phase(phase: str) -> None:
            self.reporter.phase(job.label, phase)

        exported = run_child("export", spec, job_dir, config.threads, config.timeout_s, on_phase)
        self.log.append_file(f"{job.label}: export", job_dir / "export.log")
        row.export_peak_rss_mb = exported.peak_rss_mb
        if exported.error:
            row.status, row.error = "error", f"export: {exported.error}"
            return row, ()
        row.export_s = exported.result["export_s"]
        row.size_mb = artifact_size_bytes(artifact_dir) / 1e6
        spec["artifact"] = exported.result["artifact"]

        measured = run_child("measure", spec, job_dir, config.threads, config.timeout_s, on_phase)
        self.log.append_file(f"{job.label}: measure", job_dir / "measure.log")
        if measured.error:
            row.status, row.error, row.peak_rss_mb = "error", measured.error, measured.peak_rss_mb
            return row, ()
        result = measured.result
        if "unavailable" in result:  # exported and sized, but nothing was run: no memory figure to report
            row.status, row.error = "unavailable", result["unavailable"]
            return row, ()
        row.peak_rss_mb = measured.peak_rss_mb
        samples = tuple(result["samples_ms"])
        row.add_latency(LatencyStats(samples))
        for name in ("load_s", "first_ms", "warmup_iters", "capped", "max_abs_diff", "cosine", "fidelity_ok",
                     "foreign_load", "steal", "noisy", "device", "details", "h2d_ms", "d2h_ms"):
            setattr(row, name, result[name])
        return row, samples


def _display(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)

