"""Tracks how busy the machine was with *other* processes during a measurement (Linux /proc).

On a shared machine a neighbour can slow a run 10x; the row records that instead of hiding it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

NOISY_FOREIGN_LOAD = 0.10  # other processes used >10% of the machine's CPU time: flag the row as noisy


def _system_jiffies() -> tuple[int, int, int] | None:
    """(total, idle+iowait, steal) jiffies of all CPUs, or None where /proc/stat is absent."""
    try:
        first = Path("/proc/stat").read_text().splitlines()[0].split()
    except OSError:
        return None
    values = [int(v) for v in first[1:]]
    # user nice system idle iowait irq softirq steal guest guest_nice; guest time is already in user.
    total = sum(values[:8])
    return total, values[3] + values[4], values[7] if len(values) > 7 else 0


def _self_jiffies() -> int | None:
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[11]) + int(fields[12])  # utime + stime, all threads of this process


@dataclass
class CpuLoad:
    foreign: float | None = None  # share of the machine's CPU time used by other processes (0..1)
    steal: float | None = None  # share taken by the hypervisor (VM steal time)

    @property
    def noisy(self) -> bool:
        return self.foreign is not None and self.foreign > NOISY_FOREIGN_LOAD


class ForeignLoadTracker:
    """`with ForeignLoadTracker() as t: ...` then `t.load` says what else ran meanwhile."""

    def __init__(self) -> None:
        self.load = CpuLoad()

    def __enter__(self) -> ForeignLoadTracker:
        self._sys0, self._self0 = _system_jiffies(), _self_jiffies()
        return self

    def __exit__(self, *exc: object) -> None:
        sys1, self1 = _system_jiffies(), _self_jiffies()
        if None in (self._sys0, self._self0, sys1, self1):
            return
        total = sys1[0] - self._sys0[0]
        if total <= 0:
            return
        busy = total - (sys1[1] - self._sys0[1])
        own = self1 - self._self0
        self.load = CpuLoad(
            foreign=min(max((busy - own) / total, 0.0), 1.0),
            steal=(sys1[2] - self._sys0[2]) / total,
        )
