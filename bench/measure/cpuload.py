"""Tracks how busy the machine was with *other* processes during a measurement (Linux /proc).

On a shared machine a neighbour can slow a run 10x; the row records that instead of hiding it.

/proc counts CPU time in clock ticks (10 ms of one CPU), so a 0.12 s round on 2 cores spans 24 of them, and one
tick is 4% of it: a burst of 1 ms elsewhere can be charged a whole tick. A round is flagged only when other
processes' share exceeds `NOISY_FOREIGN_LOAD` by more than that tick. Measured in the stored study (2026-12-06,
AVX-512 host): 45 of its 59 repeated rounds read exactly 3 ticks of 22-24 (13-15%), and the rounds flagged that
way had the same p50 as the row's quiet rounds (median ratio 1.005, quartiles 0.92-1.10, against 0.97-1.07).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

NOISY_FOREIGN_LOAD = 0.10  # other processes used >10% of the machine's CPU time: flag the row as noisy


@dataclass(frozen=True)
class CpuSnapshot:
    """Cumulative jiffies at one instant: the whole machine's, and this process's own."""

    total: int  # all CPUs, every state
    idle: int  # idle + iowait
    steal: int  # taken by the hypervisor
    own: int  # this process, all threads, and the children it has waited for (a compiler it ran)


def parse_proc(proc_stat: str, self_stat: str) -> CpuSnapshot:
    """The snapshot from the texts of /proc/stat and /proc/self/stat."""
    values = [int(v) for v in proc_stat.splitlines()[0].split()[1:]]  # the "cpu" line: all CPUs together
    # user nice system idle iowait irq softirq steal guest guest_nice; guest time is already in user.
    # Kernels before 2.6.11 have no steal column.
    fields = self_stat.rsplit(")", 1)[1].split()  # after the command name, which may itself hold ") "
    # utime + stime, and cutime + cstime: a child the process ran and waited for (AOTInductor's profiled build runs
    # g++) is the process's own work, not a neighbour's.
    return CpuSnapshot(total=sum(values[:8]), idle=values[3] + values[4], steal=values[7] if len(values) > 7 else 0,
                       own=sum(int(v) for v in fields[11:15]))


def read_proc() -> CpuSnapshot | None:
    """The snapshot now, or None where /proc is absent (macOS)."""
    try:
        return parse_proc(Path("/proc/stat").read_text(), Path("/proc/self/stat").read_text())
    except OSError:
        return None


@dataclass
class CpuLoad:
    foreign: float | None = None  # share of the machine's CPU time used by other processes (0..1)
    steal: float | None = None  # share taken by the hypervisor (VM steal time)
    tick: float | None = None  # share of one clock tick in the window: the resolution of `foreign`

    @property
    def noisy(self) -> bool:
        return over_noise_floor(self.foreign, self.tick)


def over_noise_floor(foreign: float | None, tick: float | None) -> bool:
    """Other processes used more than `NOISY_FOREIGN_LOAD` of the CPU, beyond one tick of counting error."""
    return foreign is not None and foreign - (tick or 0.0) > NOISY_FOREIGN_LOAD


def load_between(before: CpuSnapshot | None, after: CpuSnapshot | None) -> CpuLoad:
    """What other processes used between two snapshots: busy time minus our own, as a share of all CPU time."""
    if before is None or after is None:
        return CpuLoad()
    total = after.total - before.total
    if total <= 0:
        return CpuLoad()
    busy = total - (after.idle - before.idle)
    own = after.own - before.own
    return CpuLoad(foreign=min(max((busy - own) / total, 0.0), 1.0), steal=(after.steal - before.steal) / total,
                   tick=1 / total)


class ForeignLoadTracker:
    """`with ForeignLoadTracker() as t: ...` then `t.load` says what else ran meanwhile."""

    def __init__(self, read: Callable[[], CpuSnapshot | None] = read_proc) -> None:
        self.read = read
        self.load = CpuLoad()

    def __enter__(self) -> ForeignLoadTracker:
        self._before = self.read()
        return self

    def __exit__(self, *exc: object) -> None:
        self.load = load_between(self._before, self.read())
