"""The timing engine, driven by a fake clock so the stopping rules are checked exactly."""

import pytest

from edgebench.bench.config import TimingConfig
from edgebench.bench.measure.timing import harness_overhead_us, overhead_us, time_step


class FakeClock:
    """Advances `step_ns` per step; reading the clock is free."""

    def __init__(self, step_ns: int) -> None:
        self.now = 10**15  # perf_counter_ns has an arbitrary origin: never assume it starts at 0
        self.step_ns = step_ns
        self.calls = 0

    def __call__(self) -> int:
        return self.now

    def step(self) -> None:
        self.calls += 1
        self.now += self.step_ns


def test_stops_when_both_minimum_count_and_duration_are_reached():
    clock = FakeClock(step_ns=10_000_000)  # 10 ms per step
    config = TimingConfig(warmup_iters=3, warmup_s=0.0, min_iters=5, min_s=0.2, max_s=60)
    run = time_step(clock.step, config, clock=clock)
    assert run.warmup_iters == 3
    assert len(run.samples_ms) == 20  # 0.2 s needs 20 steps of 10 ms, more than min_iters
    assert all(s == pytest.approx(10.0) for s in run.samples_ms)
    assert not run.capped


def test_minimum_count_wins_when_steps_are_slow():
    clock = FakeClock(step_ns=100_000_000)  # 100 ms
    config = TimingConfig(warmup_iters=0, warmup_s=0.0, min_iters=7, min_s=0.1, max_s=60)
    assert len(time_step(clock.step, config, clock=clock).samples_ms) == 7


def test_max_duration_caps_the_loop_and_says_so():
    clock = FakeClock(step_ns=1_000_000_000)  # 1 s per step
    config = TimingConfig(warmup_iters=0, warmup_s=0.0, min_iters=100, min_s=0.0, max_s=5.0)
    run = time_step(clock.step, config, clock=clock)
    assert len(run.samples_ms) == 5
    assert run.capped


def test_warmup_runs_for_its_minimum_seconds_too():
    clock = FakeClock(step_ns=10_000_000)  # 10 ms
    config = TimingConfig(warmup_iters=1, warmup_s=0.05, min_iters=3, min_s=0.0, max_s=60)
    run = time_step(clock.step, config, clock=clock)
    assert run.warmup_iters == 5 and run.warmup_s == pytest.approx(0.05)
    assert len(run.samples_ms) == 3 and clock.calls == 8


def test_no_warmup_when_both_minimums_are_zero():
    clock = FakeClock(step_ns=10_000_000)
    config = TimingConfig(warmup_iters=0, warmup_s=0.0, min_iters=2, min_s=0.0, max_s=60)
    run = time_step(clock.step, config, clock=clock)
    assert (run.warmup_iters, run.warmup_s, clock.calls) == (0, 0.0, 2)


def test_a_cap_reached_after_the_minimum_count_is_not_reported_as_capped():
    clock = FakeClock(step_ns=1_000_000_000)  # 1 s
    config = TimingConfig(warmup_iters=0, warmup_s=0.0, min_iters=3, min_s=5.0, max_s=5.0)
    run = time_step(clock.step, config, clock=clock)
    assert len(run.samples_ms) == 5 and not run.capped


def test_warmup_counts_against_its_own_cap_not_the_timed_loop():
    clock = FakeClock(step_ns=1_000_000_000)  # 1 s
    config = TimingConfig(warmup_iters=100, warmup_s=0.0, min_iters=2, min_s=0.0, max_s=3.0)
    run = time_step(clock.step, config, clock=clock)
    assert run.warmup_iters == 3 and len(run.samples_ms) == 2 and not run.capped


def test_samples_are_what_each_step_took():
    durations = iter([5, 7, 11, 13])
    clock = FakeClock(step_ns=0)

    def step():
        clock.now += next(durations) * 1_000_000

    run = time_step(step, TimingConfig(warmup_iters=1, warmup_s=0.0, min_iters=3, min_s=0.0, max_s=60), clock=clock)
    assert run.samples_ms == (7.0, 11.0, 13.0)


def test_warmup_samples_are_not_kept():
    clock = FakeClock(step_ns=1_000_000)
    config = TimingConfig(warmup_iters=10, warmup_s=0.0, min_iters=4, min_s=0.0, max_s=60)
    run = time_step(clock.step, config, clock=clock)
    assert clock.calls == 14 and len(run.samples_ms) == 4


@pytest.mark.parametrize("field,value", [("min_iters", 0), ("warmup_iters", -1), ("min_s", -1.0), ("warmup_s", -0.1),
                                         ("max_s", -1.0), ("min_iters", 2.5), ("warmup_iters", True)])
def test_bad_timing_values_are_usage_errors(field, value):
    from edgebench.bench.errors import UsageError

    with pytest.raises(UsageError, match=field):
        TimingConfig(**{field: value})


@pytest.mark.alone  # pytest-benchmark records a timing: not beside another worker
def test_harness_overhead_per_iteration(benchmark):
    """Records the engine's own cost per iteration around a no-op (reported, not asserted on time)."""

    def noop():
        return None

    config = TimingConfig(warmup_iters=0, warmup_s=0.0, min_iters=1000, min_s=0.0, max_s=60.0)
    run = benchmark.pedantic(time_step, args=(noop, config), rounds=20, iterations=1)
    assert len(run.samples_ms) == 1000
    overhead = harness_overhead_us()
    benchmark.extra_info["overhead_us_per_iteration"] = overhead
    # The engine reads the clock twice and appends a sample per iteration: it cannot cost nothing.
    assert overhead > 0.0


def test_overhead_is_the_engines_clock_reads_over_a_bare_loop():
    """With a clock that advances 1 us per read, the engine's cost is exactly its reads: one at the start, then
    two per iteration (no warm-up, no minimum duration), against the bare loop's none."""
    clock = FakeClock(step_ns=1000)

    def reading_clock():
        clock.now += clock.step_ns
        return clock.now

    iterations = 1000
    expected = (2 * iterations + 1) / iterations
    assert harness_overhead_us(iterations, repeats=2, clock=reading_clock) == pytest.approx(expected)


def test_overhead_takes_the_fastest_try_of_each_in_microseconds():
    assert overhead_us([9_000_000, 5_000_000], [3_000_000, 1_000_000], 1000) == pytest.approx(4.0)
    assert overhead_us([1_000_000], [2_000_000], 1000) == 0.0  # a noisy bare loop never gives a negative cost


def test_real_overhead_is_in_microseconds():
    """Units, not speed: a few clock reads per iteration are well under a millisecond anywhere."""
    assert 0 < harness_overhead_us(iterations=2000, repeats=3) < 1000


def test_max_below_min_duration_is_a_usage_error():
    from edgebench.bench.errors import UsageError

    with pytest.raises(UsageError, match="bad max_s 1.0: must be >= min_s"):
        TimingConfig(min_s=2.0, max_s=1.0)
    assert TimingConfig(min_s=2.0, max_s=2.0).max_s == 2.0
