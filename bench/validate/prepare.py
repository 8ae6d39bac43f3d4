"""Exports a model for some runtimes as `make bench` does, so a check of the harness times the very same files."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from edgebench.bench.config import BenchConfig, TimingConfig
from edgebench.bench.job import MeasureJob

EXPORT_JOBS = 2


@dataclass
class Exported:
    """What the checks need: each runtime's measuring job (its artifact exported), or why it has none."""

    config: BenchConfig
    model: str  # the model's name, as rows and stored floors name it
    reference: object  # bench.runner.Reference: the timed input and PyTorch's outputs
    specs: dict[str, MeasureJob] = field(default_factory=dict)
    job_dirs: dict[str, Path] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    larger: dict[str, MeasureJob] = field(default_factory=dict)  # the same model at batch 2 (a slower artifact)


def export_all(model: str, runtimes: tuple[str, ...], threads: int, timing: TimingConfig, repeats: int,
               out: Path, log: object, larger: bool = False) -> Exported:
    """Export `model` for each runtime (through the artifact cache) into `out`; `log` is the run's RunLog.
    With `larger`, each runtime's batch-2 artifact too: twice the work per call, for a positive control."""
    from rich.console import Console

    from edgebench.bench.environment import package_versions
    from edgebench.bench.progress import Reporter
    from edgebench.bench.runner import Job, Runner, save_reference
    from edgebench.models import load_model
    from edgebench.runtimes import get_runtime

    config = BenchConfig(model=model, runtimes=runtimes, threads=threads, timing=timing, repeats=repeats, out=out)
    loaded = load_model(model, None, config.seed)
    out.mkdir(parents=True, exist_ok=True)
    runner = Runner(config, Reporter(Console(stderr=True)), log)
    runner.versions = package_versions()
    reference = save_reference(loaded, (1, 2) if larger else (1,), out / "reference", config.seed)
    base = {"model": loaded.name, "weights": loaded.weights, "threads": threads, "dataset": "", "compression": "none"}
    done = Exported(config, loaded.name, reference)

    def export(name: str, batch: int) -> tuple[object, MeasureJob | None, Path]:
        return runner.export(Job("cpu", get_runtime(name), "fp32", batch), reference,
                             (reference.folder, reference.info), "", out, base, loaded.source)

    # Two exports at once, each its own process (as `make study` does): nothing is timed while they run, and
    # validate's five exports took 45 s one by one on the 2-core host.
    batches = (1, 2) if larger else (1,)
    with ThreadPoolExecutor(max_workers=EXPORT_JOBS) as pool:
        made = {(name, batch): pool.submit(export, name, batch) for name in runtimes for batch in batches}
        for name in runtimes:
            row, spec, job_dir = made[name, 1].result()
            if spec is None:
                done.errors[name] = row.error or row.status
                continue
            done.specs[name], done.job_dirs[name] = spec, job_dir
            if larger and (spec := made[name, 2].result()[1]) is not None:
                done.larger[name] = spec
    return done
