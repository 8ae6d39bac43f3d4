"""`make validate` (both checks) and `make calibrate` (the A/A runs alone): one line per finding, files in OUT."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edgebench.bench.config import BenchConfig, TimingConfig, default_threads
from edgebench.bench.errors import UsageError

CHECKS = ("tools", "aa", "runs")


def cpu_runtimes() -> tuple[str, ...]:
    """The runtimes that can export and run fp32 on this CPU (with their packages installed)."""
    from edgebench.runtimes import get_runtime, runtime_names

    return tuple(n for n in runtime_names() if not get_runtime(n).export_unavailable("cpu", "fp32")
                 and not get_runtime(n).run_unavailable("cpu"))


def _write_calibration(out: Path, model: str, threads: int, pairs: int, cycles: int, lines: list[str],
                       saved: Path | None) -> None:
    kept = f"Kept for this machine in {saved}; runs on it read the floor from there." if saved else \
        "Not kept (--no-save)."
    (out / "CALIBRATE.md").write_text(
        f"# A/A runs: {model}, batch 1, {threads} thread(s)\n\n"
        f"Per runtime, {pairs} pairs of processes on one exported artifact plus two positive controls (the "
        "model's batch-2 artifact, twice the work per call; the same artifact on one thread, when there are more), all "
        f"loaded first, then {cycles} cycles timed round-robin with `make bench`'s rounds. Each pair's speed-up "
        "and its 95% interval are read as a table reads them; an A/A interval that excludes x1 is a false "
        "positive. The floor is 1.96 x the between-process part of the A/A log ratios (their mean square less "
        "what each pair's own cycles explain); each pair is judged with the floor of the others.\n\n"
        + "\n".join(f"- {line}" for line in lines) + f"\n\n{kept}\n")


def _between_runs(args: argparse.Namespace, runtimes: tuple[str, ...], out: Path, say) -> list[str]:
    """Repeated runs; the between-run floor kept beside this machine's A/A floor for the model."""
    import dataclasses

    from edgebench.bench.environment import cpu_info, package_versions
    from edgebench.bench.measure.floor import load, machine_key, save
    from edgebench.bench.validate.runs import between_runs_floor, measure_runs

    name, p50s = measure_runs(args.model, runtimes, args.threads, args.runs, out / "runs", say)
    floor, pairs, ratios = between_runs_floor(p50s)
    spread = np.exp(np.abs(ratios))
    lines = [f"Between runs: {pairs} pairs of runs, {len(ratios)} row ratios, median x{np.median(spread):.3f}, "
             f"largest x{spread.max():.3f}; between-run floor ±{floor:.1%} (1.96 x their root mean square): "
             f"`make compare` calls nothing smaller a change on this machine"]
    if not args.no_save:  # beside the model's A/A floor (or what stands in for it, whose source says so)
        key = machine_key(cpu_info(), args.threads, package_versions())
        stored = dataclasses.replace(load(key, name), key=key, model=name, between_runs=floor, run_pairs=pairs)
        lines.append(f"Kept in {save(stored)}")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="edgebench-validate", description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=CHECKS, default=None,
                        help="tools: edgebench against each runtime's own tool; aa: the A/A runs; runs: repeated "
                             "runs for the compare gate's between-run floor [tools and aa]")
    parser.add_argument("--model", default="resnet18", help="model to validate on [resnet18]")
    parser.add_argument("--threads", type=int, default=default_threads(), help="threads for every side [all cores]")
    parser.add_argument("--repeats", type=int, default=8, help="tools: rounds per side [8]")
    parser.add_argument("--seconds", type=float, default=2.0, help="tools: timed seconds per round [2]")
    parser.add_argument("--pairs", type=int, default=7, help="aa: pairs of processes per runtime [7]")
    parser.add_argument("--cycles", type=int, default=BenchConfig.repeats,
                        help=f"aa: cycles, as `make bench`'s rounds [{BenchConfig.repeats}]")
    parser.add_argument("--duration", type=float, default=TimingConfig.min_s,
                        help=f"aa: timed seconds per round, as `make bench`'s DURATION [{TimingConfig.min_s:g}]")
    parser.add_argument("--runtimes", default="", help="aa, runs: comma-separated [every CPU runtime installed]")
    parser.add_argument("--runs", type=int, default=10, help="runs: how many runs, paired 1-2, 3-4, ... [10]")
    parser.add_argument("--no-save", action="store_true", help="aa, runs: do not keep the floor for this machine")
    parser.add_argument("--out", type=Path, default=None, help="folder [results/validate-<time>]")
    args = parser.parse_args(argv)
    from edgebench.bench.runner import RESULTS_DIR

    out = args.out or RESULTS_DIR / f"validate-{dt.datetime.now():%Y%m%d-%H%M%S}"
    say = lambda text: print(text, file=sys.stderr)  # noqa: E731
    t0 = time.monotonic()
    lines: list[str] = []
    try:
        if not 1 <= args.repeats <= 100:
            raise UsageError(f"bad repeats {args.repeats!r}: expected 1 to 100")
        if not args.seconds > 0:
            raise UsageError(f"bad seconds {args.seconds!r}: expected a duration > 0")
        if not 1 <= args.pairs <= 50:
            raise UsageError(f"bad pairs {args.pairs!r}: expected 1 to 50 pairs of processes per runtime")
        if not 0 < args.duration <= 60:
            raise UsageError(f"bad duration {args.duration!r}: expected seconds per round, more than 0 and at most 60")
        if not 2 <= args.runs <= 100 or args.runs % 2:
            raise UsageError(f"bad runs {args.runs!r}: expected an even number from 2 to 100 (runs are paired)")
        if not 2 <= args.cycles <= 100:
            raise UsageError(f"bad cycles {args.cycles!r}: expected 2 to 100")
        available = cpu_runtimes()
        runtimes = tuple(r.strip() for r in args.runtimes.split(",") if r.strip()) or available
        for name in runtimes:
            if name not in available:
                raise UsageError(f"unknown or unavailable runtime {name!r}: choose from {', '.join(available)}")
        if args.only in (None, "aa") and args.pairs * len(runtimes) < 2:
            raise UsageError(f"too few A/A pairs: {args.pairs} pair(s) on {len(runtimes)} runtime(s); a floor needs "
                             "at least 2 (--pairs 2, or more runtimes)")
        if args.only in (None, "tools"):
            from edgebench.bench.validate.tools import validate

            lines += validate(args.model, args.threads, args.repeats, args.seconds, out, say=say)
        if args.only in (None, "aa"):
            from edgebench.bench.measure.floor import save
            from edgebench.bench.validate.aa import calibrate

            timing = TimingConfig(min_s=args.duration)
            found, floor, _ = calibrate(args.model, runtimes, args.threads, args.pairs, out / "aa", timing,
                                        args.cycles, say=say)
            saved = None if args.no_save else save(floor)
            _write_calibration(out, args.model, args.threads, args.pairs, args.cycles, found, saved)
            lines += found
        if args.only == "runs":
            lines += _between_runs(args, runtimes, out, say)
    except UsageError as exc:
        print(f"edgebench-validate: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("edgebench-validate: interrupted", file=sys.stderr)
        return 130
    print(f"\nValidated in {time.monotonic() - t0:.0f} s; {out}")
    for line in lines:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
