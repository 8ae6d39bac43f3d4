"""`make study`: measure the default compression study on this machine and write the survey's seven tables.

Two runs, so every comparison in a table comes from one run: the MNIST ResNet family at fp32 in
each runtime (tables 1 and 6), and every compression method on the middle model, int8 included (tables 2-5, 7).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from edgebench.bench.config import BenchConfig, TimingConfig

FAMILY = ("mnist_resnet_s", "mnist_resnet_m", "mnist_resnet_l")
MODEL = "mnist_resnet_m"
RUNTIMES = ("pytorch", "pytorch-compiled", "onnxruntime", "openvino", "tflite")
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


def study_configs(out: Path, threads: int | None = None, seed: int = 0) -> list[BenchConfig]:
    common = dict(runtimes=RUNTIMES, timing=TIMING, seed=seed, targets=("cpu",), export_jobs=EXPORT_JOBS)
    if threads:
        common["threads"] = threads
    return [BenchConfig(model=",".join(FAMILY), out=out / "family", **common),
            BenchConfig(model=MODEL, compress=COMPRESS, out=out / "compression", **common)]


def main(argv: Sequence[str] | None = None) -> int:
    from edgebench.bench.results import read_rows
    from edgebench.study import run_configs, study_arguments

    parsed = study_arguments(argv, "edgebench-study", __doc__.splitlines()[0], "study")
    if isinstance(parsed, int):
        return parsed
    out, tables_only = parsed
    configs = study_configs(out)
    if tables_only:
        missing = [str(c.out) for c in configs if not read_rows(c.out)]
        if missing:
            print(f"edgebench-study: error: no rows in {', '.join(missing)}: expected a folder `make study` wrote",
                  file=sys.stderr)
            return 2
        return write_study(out, configs)
    stopped = run_configs(configs, out)
    return stopped if stopped is not None else write_study(out, configs)


def write_study(out: Path, configs: list[BenchConfig]) -> int:
    from edgebench.bench.results import read_rows
    from edgebench.bench.study import study_markdown
    from edgebench.reports.runs import load_run

    family, compression = (read_rows(c.out) for c in configs)
    floor = load_run(configs[1].out).floor
    header = (f"# Compression study: {MODEL} on MNIST, measured on this machine\n\n"
              f"Runs: `{configs[0].out.name}` (tables 1, 6) and `{configs[1].out.name}` (tables 2-5, 7) in {out}; "
              "machine, software and method in each run's table.md and environment.json.\n\n")
    (out / "STUDY.md").write_text(study_markdown(family, compression, MODEL, header, floor))
    print((out / "STUDY.md").read_text())
    print(f"Study: {out / 'STUDY.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
