"""Runs against runs: what two runs of one configuration, minutes apart, differ by on this machine.

The A/A floor (`aa.py`) compares processes timed in the same cycles, so whatever the whole machine does
between minutes cancels in it. `make compare` compares two runs, which share no cycle: there a machine that
is slower for a whole run (a neighbour, a frequency change, a vCPU moved) moves every row. This times the
same small configuration `runs` times in a row and compares disjoint pairs (1 with 2, 3 with 4, ...) row by
row: the spread of those log p50 ratios, 1.96 x their root mean square, is the between-run floor the
compare gate must clear.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from edgebench.bench.measure.floor import estimate


def between_runs_floor(p50s: Sequence[dict[str, float]]) -> tuple[float, int, list[float]]:
    """(floor, pairs, every log ratio) from each run's p50 per row key, runs paired 1-2, 3-4, ..."""
    ratios = []
    pairs = 0
    for a, b in zip(p50s[0::2], p50s[1::2], strict=False):
        common = [k for k in a if k in b and a[k] > 0 and b[k] > 0]
        if common:
            pairs += 1
            ratios += [float(np.log(b[k] / a[k])) for k in common]
    if not ratios:
        raise ValueError("a between-run floor needs at least one pair of runs with a row in common")
    return estimate(ratios), pairs, ratios  # no cycles to explain any of it: the whole spread


def measure_runs(model: str, runtimes: Sequence[str], threads: int, runs: int, out: Path,
                 say: Callable[[str], None]) -> tuple[str, list[dict[str, float]]]:
    """`runs` ordinary runs of the same configuration, one after another: the model's name (as rows and
    stored floors name it), and each run's p50 per row key."""
    from rich.console import Console

    from edgebench.bench.config import BenchConfig
    from edgebench.bench.progress import Reporter
    from edgebench.bench.runlog import RunLog
    from edgebench.bench.runner import Runner

    p50s, name = [], model
    for i in range(runs):
        say(f"run {i + 1}/{runs}")
        config = BenchConfig(model=model, runtimes=tuple(runtimes), threads=threads, out=out / f"run{i + 1}")
        log = RunLog()
        try:
            summary = Runner(config, Reporter(Console(stderr=True, quiet=True)), log).run()
        finally:
            log.close()
        p50s.append({r.key: r.p50_ms for r in summary.rows if r.status == "ok" and r.p50_ms})
        name = summary.rows[0].model if summary.rows else name
    return name, p50s
