"""A/A runs: one artifact timed by pairs of processes, to measure what edgebench's speed-up intervals promise.

Two processes loading the very same file should time the same. For each runtime this starts `pairs` pairs of
measuring processes on one exported artifact (all loaded before anything is timed), times them round-robin
like the rows of a run (the same rounds, warm-up and noise guard as `make bench`), and reads each pair's
speed-up the way a table would. Every such A/A interval that excludes x1 is a false positive. From all pairs
it estimates the machine's A/A floor (`bench.measure.floor`), judges each pair's interval with the floor the
others gave (leave-one-out), and reports both false-positive rates with their own intervals. A positive
control per runtime must be flagged: the same model exported at batch 2 (twice the work per call) against the
A process, and, with more than one thread, the A artifact on one thread. On a 1 ms model one thread was barely
slower than two (x0.67-x0.99), so that control alone missed runtimes that batch 2 does not.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgebench.bench.config import BenchConfig, TimingConfig
from edgebench.bench.errors import UsageError
from edgebench.bench.measure.floor import AAFloor, estimate, leave_one_out, within_variance
from edgebench.bench.measure.rounds import RoundFailed, RoundResult, RowRounds, Stopping, interleave
from edgebench.bench.measure.stats import cycle_ratios, interval_coverage, ratio_interval, widen

logger = logging.getLogger("edgebench")


@dataclass(frozen=True)
class AAComparison:
    """One pair of processes: its speed-up read as a table would (`ratio` of A's p50 over B's)."""

    runtime: str
    kind: str  # "A/A" (the same file, two processes) or "control" (a slower process against the A one)
    ratio: float
    low: float  # the 95% interval from the cycles alone (no floor)
    high: float
    cycles: int
    cycle_log_ratios: tuple[float, ...] = ()  # each cycle's log(A's round median / B's)
    control: str = ""  # what makes a control slower: "on 1 thread" or "at batch 2" (CONTROLS)
    low_floored: float | None = None  # with the floor estimated from the other A/A comparisons
    high_floored: float | None = None

    @property
    def log_ratio(self) -> float:
        return float(np.log(self.ratio))

    @property
    def excludes_one(self) -> bool:
        return not self.low <= 1 <= self.high

    @property
    def excludes_one_floored(self) -> bool:
        return self.low_floored is not None and not self.low_floored <= 1 <= self.high_floored


def clopper_pearson(k: int, n: int) -> tuple[float, float]:
    """95% exact interval of a rate of k in n."""
    from scipy.stats import binomtest

    interval = binomtest(k, n).proportion_ci(0.95, method="exact")
    return float(interval.low), float(interval.high)


def judge(comparisons: Sequence[AAComparison], key: str, source: str, model: str = ""
          ) -> tuple[list[AAComparison], AAFloor]:
    """The A/A comparisons with their leave-one-out floored intervals, the controls with the whole floor,
    and the floor itself with the false-positive counts it came with."""
    aa = [c for c in comparisons if c.kind == "A/A"]
    if len(aa) < 2:
        raise ValueError(f"an A/A floor needs at least 2 A/A comparisons, got {len(aa)}")
    within = [within_variance(c.cycle_log_ratios) for c in aa]
    floors = leave_one_out([c.log_ratio for c in aa], within)
    whole = estimate([c.log_ratio for c in aa], within)
    judged, own = [], iter(floors)
    for c in comparisons:
        low, high = widen(c.ratio, c.low, c.high, next(own) if c.kind == "A/A" else whole)
        judged.append(dataclasses.replace(c, low_floored=low, high_floored=high))
    fp = sum(c.excludes_one_floored for c in judged if c.kind == "A/A")
    fp_without = sum(c.excludes_one for c in judged if c.kind == "A/A")
    return judged, AAFloor(floor=whole, comparisons=len(aa), source=source, false_positives=fp,
                           false_positives_without=fp_without, key=key, model=model)


def compare(runtime: str, kind: str, a: RowRounds, b: RowRounds) -> AAComparison:
    """A pair's speed-up and its interval from the cycles both were timed in (no floor yet)."""
    from edgebench.bench.measure.rounds import paired_rounds

    base, row = paired_rounds(a, b)
    ratio, low, high = ratio_interval(base, row, paired=True)
    return AAComparison(runtime, kind, ratio, low, high, len(row), tuple(np.log(cycle_ratios(base, row))))


CONTROLS = {"thread": "on 1 thread", "batch": "at batch 2"}


def run_pairs(config: BenchConfig, specs: dict, job_dirs: dict[str, Path], pairs: int,
              say: Callable[[str], None], larger: dict | None = None) -> tuple[list[AAComparison], list[str]]:
    """For each runtime in turn: start 2 x `pairs` processes on its artifact and the controls (one thread; its
    batch-2 artifact from `larger`), ready them all (nothing is timed meanwhile), then time them round-robin for
    `config.repeats` cycles."""
    from edgebench.bench.isolation import ChildSession
    from edgebench.runtimes import get_runtime

    comparisons, problems = [], []
    counter = itertools.count()
    for name, spec in specs.items():
        label = get_runtime(name).label
        one_thread = dataclasses.replace(spec, options=dataclasses.replace(spec.options, threads=1))
        wanted: list[tuple[Hashable, object, int]] = [((side, i), spec, config.threads)
                                                       for i in range(pairs) for side in "AB"]
        if config.threads > 1:
            wanted.append((("thread", 0), one_thread, 1))
        if larger and name in larger:
            wanted.append((("batch", 0), larger[name], config.threads))
        say(f"{label}: starting {len(wanted)} measuring processes on one artifact")
        sessions = {key: ChildSession(job, job_dirs[name] / "aa" / f"{key[0]}{key[1]}", threads, config.timeout_s)
                    for key, job, threads in wanted}
        try:
            ready = {key: s for key, s in sessions.items() if s.ready() is not None}
            if len(ready) < len(sessions):
                failed = next(k for k in sessions if k not in ready)
                problems.append(f"{label}: a process did not start: {sessions[failed].finish().error}")
            keys = [key for key, _, _ in wanted if key in ready]
            if not keys:  # nothing of this runtime started (the problem line says why)
                continue

            def run_round(key: Hashable, index: int, sessions: dict = ready, label: str = label,
                          first: Hashable = keys[0]) -> RoundResult:
                if key == first:
                    say(f"{label}: cycle {index + 1}/{config.repeats}")
                answer = sessions[key].round(next(counter))
                if answer is None:
                    raise RoundFailed(sessions[key].finish().error or "the measuring process ended")
                result = RoundResult(**answer)
                logger.info("%s %s%d round %d: %d samples, p50 %.4g ms, other processes %s of the CPU", label,
                            *key, index + 1, len(result.samples_ms), float(np.median(result.samples_ms)),
                            "?" if result.foreign_load is None else f"{result.foreign_load:.1%}")
                return result

            rounds = interleave(keys, Stopping(repeats=config.repeats), run_round, config.noise_guard,
                                name=lambda key, label=label: f"{label} {key[0]}{key[1]}")
        finally:
            for session in sessions.values():
                session.kill()
        for i in range(pairs):
            a, b = rounds.get(("A", i)), rounds.get(("B", i))
            if a is None or b is None or a.error or b.error or not a.kept or not b.kept:
                problems.append(f"{label} pair {i + 1}: {(a and a.error) or (b and b.error) or 'not timed'}")
                continue
            comparisons.append(compare(name, "A/A", a, b))
        for which, what in CONTROLS.items():
            control = rounds.get((which, 0))
            if control is not None and control.kept and not control.error and ("A", 0) in rounds:
                comparisons.append(dataclasses.replace(compare(name, "control", rounds[("A", 0)], control),
                                                       control=what))
    return comparisons, problems


def report_lines(judged: Sequence[AAComparison], floor: AAFloor, cycles: int) -> list[str]:
    """What `make calibrate` prints and keeps: per runtime, then the false-positive rates and the controls."""
    from edgebench.runtimes import get_runtime

    aa = [c for c in judged if c.kind == "A/A"]
    n = len(aa)
    lines = []
    for runtime in dict.fromkeys(c.runtime for c in aa):
        mine = [c for c in aa if c.runtime == runtime]
        ratios = ", ".join(f"{c.ratio:.3f}" for c in mine)
        lines.append(f"{get_runtime(runtime).label}: {len(mine)} A/A ratios {ratios}; "
                     f"{sum(c.excludes_one for c in mine)} intervals exclude x1 from cycles alone, "
                     f"{sum(c.excludes_one_floored for c in mine)} with the floor")
    logs = np.array([c.log_ratio for c in aa])
    spread = np.exp(np.abs(logs))
    lines.append(f"A/A ratios over {n} comparisons ({cycles} cycles each, {interval_coverage(cycles):.1%} "
                 f"intervals from cycles): median |log| x{np.median(spread):.4f}, largest x{spread.max():.4f}, "
                 f"root mean square ±{np.expm1(np.sqrt(np.mean(logs ** 2))):.2%}; floor "
                 f"±{floor.floor:.2%} (1.96 x the between-process part of that)")
    for what, k in (("cycles alone", floor.false_positives_without), ("with the floor", floor.false_positives)):
        low, high = clopper_pearson(k, n)
        lines.append(f"False positives, {what}: {k}/{n} = {k / n:.1%} (95% CI {low:.1%}-{high:.1%})"
                     + (" (each judged with the floor of the other comparisons)" if what != "cycles alone" else ""))
    for c in (c for c in judged if c.kind == "control"):
        cycle_ratios = ", ".join(f"{np.exp(v):.2f}" for v in c.cycle_log_ratios)
        lines.append(f"Positive control, {get_runtime(c.runtime).label} {c.control or 'slower'} against the A "
                     f"process: x{c.ratio:.3f} "
                     f"({c.low_floored:.3f}-{c.high_floored:.3f} with the floor; cycles {cycle_ratios}): "
                     + ("flagged slower" if c.high_floored < 1 else "NOT flagged"))
    return lines


def calibrate(model: str, runtimes: Sequence[str], threads: int, pairs: int, out: Path, timing: TimingConfig,
              cycles: int, say: Callable[[str], None] = print) -> tuple[list[str], AAFloor, list[AAComparison]]:
    """Export, run the A/A pairs and the controls, and return (lines, the floor measured, the comparisons)."""
    import datetime as dt

    from edgebench.bench.environment import cpu_info, package_versions
    from edgebench.bench.measure.floor import machine_key
    from edgebench.bench.runlog import RunLog
    from edgebench.bench.validate.prepare import export_all
    from edgebench.runtimes import get_runtime

    log = RunLog()
    out.mkdir(parents=True, exist_ok=True)
    log.attach(out / "run.log")
    try:
        exported = export_all(model, tuple(runtimes), threads, timing, cycles, out, log, larger=True)
        problems = [f"{get_runtime(n).label}: no artifact: {e}" for n, e in exported.errors.items()]
        problems += [f"{get_runtime(n).label}: no batch-2 artifact for the positive control"
                     for n in exported.specs if n not in exported.larger]
        comparisons, failed = run_pairs(exported.config, exported.specs, exported.job_dirs, pairs, say,
                                        exported.larger)
    finally:
        log.close()
    cpu = cpu_info()
    key = machine_key(cpu, threads, package_versions())
    source = (f"`make calibrate` on {cpu.get('model')}, {threads} threads, {model}, "
              f"{dt.date.today().isoformat()}")
    if sum(c.kind == "A/A" for c in comparisons) < 2:
        raise UsageError("fewer than 2 A/A comparisons were timed, too few for a floor: "
                         + ("; ".join(problems + failed) or "ask for more --pairs or --runtimes"))
    judged, floor = judge(comparisons, key, source, exported.model)
    lines = problems + failed + report_lines(judged, floor, cycles)
    return lines, floor, judged
