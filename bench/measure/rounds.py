"""Interleaved rounds: every row of a variant timed round-robin (A B C A B C ...), a noisy round measured again.

On a shared machine a slow minute should hit every runtime alike, so no row gets all of its samples from
one bad stretch; ratios between rows measured this way hold where single back-to-back measurements did not
(measured here: PyTorch's p50 for one model 1.62 ms and 0.71 ms minutes apart). A round during which other
processes used more than `NOISY_FOREIGN_LOAD` of the CPU (beyond /proc's one-tick resolution, `cpuload`) is
measured again after a pause, up to a limit; only a row that keeps a noisy round is flagged `noisy`. This
module knows nothing about processes or runtimes: it calls `run_round(key, index)` and decides what to keep.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Hashable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from edgebench.bench.measure.cpuload import over_noise_floor

logger = logging.getLogger("edgebench")

RE_WARMUP_ITERS = 3  # warm-up of every round after the first: the runtime is loaded and compiled, only caches are cold


@dataclass
class RoundResult:
    """One timed round of one row, as the measuring child reports it."""

    samples_ms: list[float]
    warmup_iters: int
    capped: bool  # the round hit its time cap before its minimum iteration count
    foreign_load: float | None = None  # share of the machine's CPU other processes used during the round
    steal: float | None = None
    completed: int | None = None  # throughput mode: requests completed within the window
    window_s: float | None = None  # throughput mode: the window's length
    energy_j: float | None = None  # the energy counter's joules over the round (warm-up included), where one exists
    settle_s: float | None = None  # how long its process took to go quiet after the round (bench.worker.settle)
    foreign_tick: float | None = None  # share of one clock tick of the round's CPU time (cpuload.CpuLoad.tick)

    @property
    def noisy(self) -> bool:
        return over_noise_floor(self.foreign_load, self.foreign_tick)


class RoundFailed(Exception):
    """The row's measuring process could not time a round (it crashed, hung or raised): one line why."""


@dataclass(frozen=True)
class NoiseGuard:
    """How hard to try for a quiet round before keeping a noisy one."""

    retries: int = 2  # a noisy round is measured again up to this many times
    quiet_wait_s: float = 1.0  # pause before measuring it again, for the neighbour to finish


@dataclass
class RowRounds:
    """What the rounds of one row came to: the kept rounds, the repeats spent, or why it stopped."""

    kept: list[RoundResult] = field(default_factory=list)
    cycles: list[int] = field(default_factory=list)  # the round-robin cycle each kept round was timed in
    repeated: int = 0  # rounds measured again because of foreign load
    error: str = ""
    stopped_by: str = ""  # what ended its rounds: their number, the interval reached, or the limit

    @property
    def samples_ms(self) -> list[float]:
        return [s for r in self.kept for s in r.samples_ms]

    @property
    def per_round_ms(self) -> list[list[float]]:
        return [list(r.samples_ms) for r in self.kept]

    @property
    def noisy(self) -> bool:
        return any(r.noisy for r in self.kept)

    @property
    def per_round_items(self) -> list[list[float]] | None:
        """Throughput mode: each round's completed requests per second (one figure a round); None otherwise."""
        if not self.kept or any(r.completed is None or not r.window_s for r in self.kept):
            return None
        return [[r.completed / r.window_s] for r in self.kept]

    def items_per_s(self, batch: int) -> float | None:
        """Throughput mode: items completed over the kept rounds' windows, all rounds together."""
        windows = sum(r.window_s or 0.0 for r in self.kept)
        if not windows or any(r.completed is None for r in self.kept):
            return None
        return batch * sum(r.completed for r in self.kept) / windows

    @property
    def energy_mj(self) -> float | None:
        """Millijoules per inference over the kept rounds (their warm-up inferences counted too), or None."""
        if not self.kept or any(r.energy_j is None for r in self.kept):
            return None
        inferences = sum(r.warmup_iters + len(r.samples_ms) for r in self.kept)
        return 1e3 * sum(r.energy_j for r in self.kept) / inferences if inferences else None

    @property
    def foreign_load(self) -> float | None:
        loads = [r.foreign_load for r in self.kept if r.foreign_load is not None]
        return max(loads) if loads else None

    @property
    def steal(self) -> float | None:
        steals = [r.steal for r in self.kept if r.steal is not None]
        return max(steals) if steals else None


def paired_rounds(base: RowRounds, row: RowRounds, throughput: bool = False
                  ) -> tuple[list[list[float]], list[list[float]]]:
    """The per-round figures of a baseline and a row from the cycles both were timed in, one for one.

    Latency: each round's samples (ms); throughput: each round's requests per second. Empty when they share
    no cycle (or a throughput round lacks its count).
    """
    def figures(rounds: RowRounds) -> dict[int, list[float]]:
        per_round = rounds.per_round_items if throughput else rounds.per_round_ms
        return dict(zip(rounds.cycles, per_round or [], strict=False))

    mine, theirs = figures(row), figures(base)
    common = [cycle for cycle in mine if cycle in theirs]
    return [theirs[c] for c in common], [mine[c] for c in common]


@dataclass(frozen=True)
class Stopping:
    """When a row has rounds enough: after `repeats`, or, adaptively, once its interval is narrow enough.

    With `target` (say 0.02), a row goes on past `repeats` until the 95% interval of its median lies within
    ±target of the median, or `max_repeats` rounds are spent; the row says which stopped it.
    """

    repeats: int = 10
    target: float | None = None  # relative half-width of the p50 interval to reach (adaptive), or None
    max_repeats: int = 20

    @property
    def most(self) -> int:
        return max(self.repeats, self.max_repeats) if self.target else self.repeats

    def reason(self, rounds: RowRounds) -> str | None:
        """Why the row is done after the rounds it has, or None to go on."""
        from edgebench.bench.measure.stats import median_interval

        count = len(rounds.kept)
        if count < self.repeats:
            return None
        if not self.target:
            return f"{count} rounds"
        low, high = median_interval(rounds.per_round_ms)
        median = float(np.median(rounds.samples_ms))
        if (high - low) / 2 <= self.target * median:
            return f"interval within ±{self.target:.1%} after {count} rounds"
        return f"max {count} rounds (interval ±{(high - low) / 2 / median:.1%})" if count >= self.most else None


def interleave(keys: Sequence[Hashable], stopping: Stopping | int, run_round: Callable[[Hashable, int], RoundResult],
               guard: NoiseGuard = NoiseGuard(), sleep: Callable[[float], None] = time.sleep,
               on_round: Callable[[Hashable, int], None] = lambda key, index: None,
               on_done: Callable[[Hashable, RowRounds], None] = lambda key, rounds: None,
               anchors: Mapping[Hashable, Collection[Hashable]] | None = None,
               state: dict[Hashable, RowRounds] | None = None, name: Callable[[Hashable], str] = str
               ) -> dict[Hashable, RowRounds]:
    """Time rounds of every key, round-robin in the given order, until each has enough (`Stopping`, or a plain
    number of rounds); a failed key drops out, the rest go on.

    `anchors` maps a key timed only as a baseline to the keys compared with it: it takes a round in every
    cycle while any of them is still going, so each of their rounds has a partner from the same minute
    (put it before them in `keys`, so the partner is timed first within a cycle).
    `on_done` hears of each key as soon as it has all its rounds (or has failed), so its row can be written
    while the others finish their last round; `state`, when given, is the dict the rounds are kept in, for an
    `on_done` that reads a baseline's rounds. `name` says a key in the log.
    """
    if isinstance(stopping, int):
        stopping = Stopping(repeats=stopping)
    anchors = anchors or {}
    rows = state if state is not None else {}
    rows.update({key: RowRounds() for key in keys})
    active = list(keys)

    def done(key: Hashable, reason: str = "") -> None:
        rows[key].stopped_by = reason or rows[key].stopped_by
        active.remove(key)
        on_done(key, rows[key])

    def idle_anchor(key: Hashable) -> bool:
        return key in anchors and not any(k in active for k in anchors[key])

    for index in range(stopping.most):
        for key in list(active):
            if idle_anchor(key):
                done(key, f"baseline for {len(rows[key].kept)} rounds")
                continue
            row = rows[key]
            on_round(key, index)
            try:
                result = run_round(key, index)
                tries = 0
                while result.noisy and tries < guard.retries:
                    logger.info("%s round %d: other processes used %.0f%% of the CPU; measuring it again in %g s",
                                name(key), index + 1, 100 * result.foreign_load, guard.quiet_wait_s)
                    tries += 1
                    row.repeated += 1
                    sleep(guard.quiet_wait_s)
                    result = run_round(key, index)
            except RoundFailed as exc:
                row.error = str(exc)
                done(key)
                continue
            row.kept.append(result)
            row.cycles.append(index)
            reason = None if key in anchors else stopping.reason(row)
            if reason:
                done(key, reason)
    for key in list(active):  # anchors whose rows finished in the last cycle
        done(key, f"baseline for {len(rows[key].kept)} rounds")
    return rows
