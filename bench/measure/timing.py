"""The timing engine: warm-up, then timed iterations until a minimum count and duration are reached.

It knows nothing about runtimes: it times a zero-argument `step` that must include any device sync.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from edgebench.bench.config import TimingConfig

Clock = Callable[[], int]  # nanoseconds


@dataclass(frozen=True)
class TimedRun:
    """What one measurement produced: every timed sample and how the loop ended."""

    samples_ms: tuple[float, ...]
    warmup_iters: int
    warmup_s: float
    capped: bool  # True when max_s stopped the loop before min_iters was reached


def _loop(step: Callable[[], object], min_iters: int, min_ns: int, max_ns: int, clock: Clock) -> tuple[list[int], int]:
    """Run `step` until min_iters and min_ns are both reached or max_ns has passed; return sample ns and elapsed."""
    samples: list[int] = []
    start = clock()
    now = start
    while True:
        elapsed = now - start
        if len(samples) >= min_iters and elapsed >= min_ns:
            break
        if elapsed >= max_ns and samples:
            break
        t0 = clock()
        step()
        now = clock()
        samples.append(now - t0)
    return samples, now - start


def time_step(step: Callable[[], object], config: TimingConfig, clock: Clock = time.perf_counter_ns) -> TimedRun:
    """Warm up, then time `step` per iteration; warm-up samples are discarded."""
    max_ns = int(config.max_s * 1e9)
    warm, warm_elapsed = (
        _loop(step, config.warmup_iters, int(config.warmup_s * 1e9), max_ns, clock)
        if config.warmup_iters or config.warmup_s
        else ([], 0)
    )
    samples, _ = _loop(step, config.min_iters, int(config.min_s * 1e9), max_ns, clock)
    return TimedRun(
        samples_ms=tuple(s / 1e6 for s in samples),
        warmup_iters=len(warm),
        warmup_s=warm_elapsed / 1e9,
        capped=len(samples) < config.min_iters,
    )


@dataclass(frozen=True)
class ConcurrentRun:
    """Throughput mode: requests kept in flight on every stream for a window, and what completed in it."""

    samples_ms: tuple[float, ...]  # the latency of every request that completed within the window
    completed: int
    window_s: float
    warmup_iters: int
    capped: bool


def time_concurrent(steps: Sequence[Callable[[], object]], config: TimingConfig,
                    clock: Clock = time.perf_counter_ns) -> ConcurrentRun:
    """Each step (one stream, blocking) runs back to back in its own thread until the window closes.

    The window closes once `min_s` has passed and `min_iters` requests have completed (or at `max_s`);
    requests still in flight then are not counted, so items/s = completed / window is never inflated.
    Steps must release the GIL while they compute, as runtimes' inference calls do.
    """
    for step in steps:  # warm-up, stream by stream
        _loop(step, config.warmup_iters, int(config.warmup_s * 1e9) // max(len(steps), 1), int(config.max_s * 1e9),
              clock)
    if len(steps) == 1:  # one stream: in this thread, like latency mode (a torch module in a thread ran 3x slower)
        samples, elapsed = _loop(steps[0], config.min_iters, int(config.min_s * 1e9), int(config.max_s * 1e9), clock)
        return ConcurrentRun(samples_ms=tuple(s / 1e6 for s in samples), completed=len(samples),
                             window_s=elapsed / 1e9, warmup_iters=config.warmup_iters,
                             capped=len(samples) < config.min_iters)
    stop = threading.Event()
    finished: list[list[tuple[int, int]]] = [[] for _ in steps]

    def stream(index: int) -> None:
        while not stop.is_set():
            t0 = clock()
            steps[index]()
            finished[index].append((t0, clock()))

    threads = [threading.Thread(target=stream, args=(i,), daemon=True) for i in range(len(steps))]
    start = clock()
    for thread in threads:
        thread.start()
    min_ns, max_ns = int(config.min_s * 1e9), int(config.max_s * 1e9)
    while True:
        time.sleep(0.005)
        now = clock()
        done = sum(len(f) for f in finished)
        if (now - start >= min_ns and done >= config.min_iters) or now - start >= max_ns:
            break
    stop.set()
    end = clock()
    for thread in threads:
        thread.join()
    kept = [(t0, t1) for f in finished for t0, t1 in f if t1 <= end]
    return ConcurrentRun(samples_ms=tuple((t1 - t0) / 1e6 for t0, t1 in kept), completed=len(kept),
                         window_s=(end - start) / 1e9, warmup_iters=config.warmup_iters,
                         capped=len(kept) < config.min_iters)


def overhead_us(engine_ns: list[int], bare_ns: list[int], iterations: int) -> float:
    """Microseconds per iteration the engine adds: fastest engine try minus fastest bare try (never below 0)."""
    return max(min(engine_ns) - min(bare_ns), 0) / iterations / 1e3


def harness_overhead_us(iterations: int = 20000, repeats: int = 5, clock: Clock = time.perf_counter_ns) -> float:
    """Per-iteration cost the engine adds around a step, against a bare loop around the same no-op.

    Recorded with every run so a reader can check it is far below the latencies reported. The fastest of
    `repeats` tries of each is compared: a neighbour can only slow a try down, never speed it up.
    """

    def noop() -> None:
        return None

    config = TimingConfig(warmup_iters=0, warmup_s=0.0, min_iters=iterations, min_s=0.0, max_s=60.0)
    engine_ns, bare_ns = [], []
    for _ in range(repeats):
        t0 = clock()
        time_step(noop, config, clock)
        engine_ns.append(clock() - t0)
        t0 = clock()
        for _ in range(iterations):
            noop()
        bare_ns.append(clock() - t0)
    return overhead_us(engine_ns, bare_ns, iterations)
