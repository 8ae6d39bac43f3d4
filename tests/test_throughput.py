"""Throughput mode's accounting: streams kept busy together, only requests completed in the window counted.

On sleeping steps (a sleep releases the GIL, as runtimes' inference calls do), so the arithmetic is known;
one slow whole run puts ONNX Runtime and OpenVINO in throughput mode through the real processes.
"""

from __future__ import annotations

import time

import pytest

from edgebench.bench.config import TimingConfig
from edgebench.bench.measure.rounds import RoundResult, RowRounds
from edgebench.bench.measure.timing import time_concurrent
from edgebench.bench.results import ResultRow

WINDOW = TimingConfig(warmup_iters=1, warmup_s=0.0, min_iters=1, min_s=0.3, max_s=5.0)


def sleeper(ms: float):
    return lambda: time.sleep(ms / 1000)


def test_streams_run_side_by_side_and_the_window_counts_only_finished_requests():
    one = time_concurrent([sleeper(10)], WINDOW)
    four = time_concurrent([sleeper(10) for _ in range(4)], WINDOW)
    assert four.completed > 3 * one.completed  # four requests in flight at once, not one after another
    for run in (one, four):
        assert run.completed == len(run.samples_ms) and run.warmup_iters == 1 and run.capped is False
        assert all(10 <= s < 250 for s in run.samples_ms)  # each request's own time in ms (a 10 ms sleep)
        streams = 4 if run is four else 1
        assert run.completed * 0.010 <= streams * run.window_s  # nothing counted that ran past the window
        assert run.window_s >= WINDOW.min_s


def test_a_window_that_reaches_max_s_before_min_iters_is_capped():
    run = time_concurrent([sleeper(50)], TimingConfig(warmup_iters=0, warmup_s=0.0, min_iters=1000, min_s=0.0,
                                                      max_s=0.2))
    assert run.capped and run.completed < 1000 and run.window_s < 1.0


def test_items_per_second_are_completions_over_windows_across_rounds():
    rounds = RowRounds(kept=[RoundResult([4.0] * 10, 1, False, completed=10, window_s=1.0),
                             RoundResult([4.0] * 30, 1, False, completed=30, window_s=1.0)])
    assert rounds.items_per_s(batch=2) == pytest.approx(2 * 40 / 2.0)
    assert RowRounds(kept=[RoundResult([4.0], 1, False)]).items_per_s(1) is None  # latency mode: none


def test_a_throughput_row_reports_completions_not_one_over_latency():
    row = ResultRow(model="m", weights="w", compression="none", runtime="openvino", format="OpenVINO",
                    precision="fp32", target="cpu", device="CPU", batch=1, threads=2, status="ok",
                    mode="throughput", flops=2_000_000)
    row.add_rounds(RowRounds(kept=[RoundResult([4.0] * 500, 1, False, completed=500, window_s=1.0)]))
    assert row.throughput == pytest.approx(500.0)  # 4 requests in flight: 500/s, not 1000/4 = 250/s
    assert row.p50_ms == pytest.approx(4.0) and row.gflops_per_s == pytest.approx(1.0)


def test_requests_still_in_flight_when_the_window_closes_are_not_counted():
    # Two streams of 600 ms requests, a 0.9 s window: each finishes one request inside it; the second one of each
    # stream ends at about 1.2 s, after the window, and must not count. (At a third of this scale the 90 ms
    # margin was less than a thread wake-up on a busy neighbour.)
    run = time_concurrent([sleeper(600), sleeper(600)],
                          TimingConfig(warmup_iters=0, warmup_s=0.0, min_iters=1, min_s=0.9, max_s=5.0))
    assert run.completed == 2 and len(run.samples_ms) == 2 and 0.9 <= run.window_s < 1.17
