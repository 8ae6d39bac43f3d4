"""Interleaved rounds and their statistics, on synthetic samples and a fake load source: no model, no clock.

Round-robin order, a noisy round measured again (and kept, flagged, once the retries are spent), a failed
row dropping out while the others go on, and the intervals of the median and of a speed-up.
"""

from __future__ import annotations

import numpy as np
import pytest

from edgebench.bench.measure.cpuload import NOISY_FOREIGN_LOAD
from edgebench.bench.measure.rounds import NoiseGuard, RoundFailed, RoundResult, interleave
from edgebench.bench.measure.stats import median_interval, ratio_interval


def quiet(samples=(1.0, 1.0, 1.0), load=0.0) -> RoundResult:
    return RoundResult(samples_ms=list(samples), warmup_iters=1, capped=False, foreign_load=load, steal=0.0)


def test_rounds_go_round_robin_across_rows():
    calls = []

    def run_round(key, index):
        calls.append((key, index))
        return quiet()

    rows = interleave(["A", "B", "C"], 3, run_round, sleep=lambda s: None)
    assert calls == [("A", 0), ("B", 0), ("C", 0), ("A", 1), ("B", 1), ("C", 1), ("A", 2), ("B", 2), ("C", 2)]
    assert all(len(r.kept) == 3 and r.repeated == 0 and not r.noisy for r in rows.values())


def test_a_noisy_round_is_measured_again_after_a_pause_and_the_quiet_one_is_kept():
    loads = iter([0.5, 0.0, 0.0, 0.0])  # A's first try is disturbed by a neighbour
    pauses = []

    def run_round(key, index):
        load = next(loads)
        return quiet(samples=(9.0,) if load else (1.0,), load=load)

    rows = interleave(["A", "B"], 1, run_round, NoiseGuard(retries=2, quiet_wait_s=0.7), sleep=pauses.append)
    assert pauses == [0.7]
    assert rows["A"].repeated == 1 and rows["A"].samples_ms == [1.0] and not rows["A"].noisy
    assert rows["B"].repeated == 0


def test_a_reading_within_one_tick_of_the_threshold_is_not_measured_again():
    # 3 foreign ticks of a 24-tick round (12.5%): within /proc's counting error of 10%, so kept as it is
    def run_round(key, index):
        return RoundResult(samples_ms=[1.0], warmup_iters=1, capped=False, foreign_load=3 / 24, foreign_tick=1 / 24)

    rows = interleave(["A"], 2, run_round, NoiseGuard(retries=2, quiet_wait_s=0.7), sleep=lambda s: 1 / 0)
    assert rows["A"].repeated == 0 and len(rows["A"].kept) == 2 and not rows["A"].noisy
    assert rows["A"].foreign_load == pytest.approx(0.125)  # still recorded as read


def test_a_round_that_stays_noisy_is_kept_and_flagged_once_the_retries_are_spent():
    tries = []

    def run_round(key, index):
        tries.append(index)
        return quiet(load=NOISY_FOREIGN_LOAD + 0.05)

    rows = interleave(["A"], 2, run_round, NoiseGuard(retries=1, quiet_wait_s=0), sleep=lambda s: None)
    assert tries == [0, 0, 1, 1]  # each round: one try and one retry
    assert rows["A"].repeated == 2 and len(rows["A"].kept) == 2 and rows["A"].noisy
    assert rows["A"].foreign_load == pytest.approx(NOISY_FOREIGN_LOAD + 0.05)


def test_a_failed_row_drops_out_and_the_others_are_still_measured():
    def run_round(key, index):
        if key == "B" and index == 1:
            raise RoundFailed("process killed by SIGSEGV while timing round 2")
        return quiet()

    rows = interleave(["A", "B", "C"], 3, run_round, sleep=lambda s: None)
    assert rows["B"].error == "process killed by SIGSEGV while timing round 2" and len(rows["B"].kept) == 1
    assert len(rows["A"].kept) == len(rows["C"].kept) == 3


def test_the_median_interval_covers_the_median_and_narrows_with_more_samples():
    rng = np.random.default_rng(1)
    few = [list(rng.normal(10, 1, 20)) for _ in range(3)]
    many = [list(rng.normal(10, 1, 2000)) for _ in range(3)]
    low_f, high_f = median_interval(few)
    low_m, high_m = median_interval(many)
    assert low_f < 10 < high_f and low_m < 10 < high_m
    assert (high_m - low_m) < (high_f - low_f) / 3
    assert median_interval(many) == (low_m, high_m)  # seeded: the same rows give the same interval


def test_a_slow_round_widens_the_interval_which_pooled_samples_would_hide():
    rng = np.random.default_rng(2)
    steady = [list(rng.normal(10, 0.1, 500)) for _ in range(3)]
    one_slow = steady[:2] + [list(rng.normal(13, 0.1, 500))]
    width = lambda rounds: np.subtract(*median_interval(rounds)[::-1])  # noqa: E731
    assert width(one_slow) > 10 * width(steady)


def test_speedup_interval_brackets_the_true_ratio_and_says_when_rows_do_not_differ():
    rng = np.random.default_rng(3)
    base = [list(rng.normal(20, 1, 300)) for _ in range(3)]
    faster = [list(rng.normal(10, 0.5, 300)) for _ in range(3)]
    ratio, low, high = ratio_interval(base, faster)
    assert low < 2.0 < high and ratio == pytest.approx(2.0, rel=0.02)
    same = [list(rng.normal(20, 1, 300)) for _ in range(3)]
    _, low, high = ratio_interval(base, same)
    assert low < 1.0 < high  # overlapping: not called different


def test_an_interval_needs_samples():
    with pytest.raises(ValueError):
        median_interval([[], []])


def test_the_gemm_peak_is_measured_only_for_the_runs_precisions():
    from edgebench.bench.measure.peak import gemm_peaks

    peaks = gemm_peaks(1, ("fp32", "fp32", "int4"))
    assert list(peaks) == ["fp32"] and peaks["fp32"] > 0


def test_the_int8_peak_times_the_quantized_convolutions_int8_rows_run(monkeypatch):
    """`torch._int_mm` alone was a reference loop without VNNI (3.4 GOP/s against rows at 40-48): the int8 peak
    also times u8 x s8 convolutions through each quantized engine, and is the best of them."""
    import torch

    import edgebench.bench.measure.peak as peak

    timed = {}
    real = peak._kernel_peak
    monkeypatch.setattr(peak, "_kernel_peak", lambda name, size, kernel: timed.setdefault(
        kernel, real(name, size, kernel)))
    engine = torch.backends.quantized.engine
    peaks = peak.gemm_peaks(1, ("int8",), size=256)
    assert {"gemm", "conv:onednn", "conv:x86"} <= set(timed) and peaks["int8"] == round(max(timed.values()), 1)
    assert torch.backends.quantized.engine == engine  # the process's engine is left as it was


def test_a_share_of_peak_above_one_is_left_empty_and_says_why():
    from edgebench.bench.results import peak_share

    assert peak_share(40.0, 80.0, "fp32") == (0.5, "")
    share, note = peak_share(45.0, 3.4, "int8")
    assert share is None and note.startswith("no % of peak: 45.0 GFLOP/s achieved is above the measured int8 peak")
    assert peak_share(None, 3.4, "int8") == (None, "") and peak_share(10.0, None, "bf16") == (None, "")


def test_adaptive_stopping_ends_a_steady_row_early_and_a_noisy_one_at_the_limit():
    from edgebench.bench.measure.rounds import Stopping

    rng = np.random.default_rng(4)
    steady = lambda: quiet(samples=rng.normal(10, 0.05, 200))  # noqa: E731
    wobbly = lambda index: quiet(samples=rng.normal(10 + 4 * (index % 2), 0.05, 200))  # noqa: E731
    stopping = Stopping(repeats=2, target=0.01, max_repeats=6)
    rows = interleave(["steady", "wobbly"], stopping,
                      lambda key, index: steady() if key == "steady" else wobbly(index), sleep=lambda s: None)
    assert len(rows["steady"].kept) == 2 and rows["steady"].stopped_by == "interval within ±1.0% after 2 rounds"
    assert len(rows["wobbly"].kept) == 6 and rows["wobbly"].stopped_by.startswith("max 6 rounds (interval ±")


def test_without_a_target_the_rounds_are_exactly_repeats():
    from edgebench.bench.measure.rounds import Stopping

    rows = interleave(["A"], Stopping(repeats=3, target=None, max_repeats=10), lambda key, index: quiet(),
                      sleep=lambda s: None)
    assert len(rows["A"].kept) == 3 and rows["A"].stopped_by == "3 rounds"


def test_a_paired_ratio_cancels_a_slow_stretch_that_hit_both_rows_which_an_unpaired_one_cannot():
    """Round 3 ran on a machine 1.5x slower for both rows (the VM's vCPU state here): the paired interval
    stays around the true 2x, the unpaired one spreads over the states."""
    rng = np.random.default_rng(5)
    slow = (1.0, 1.0, 1.5)
    base = [list(rng.normal(20 * s, 0.2, 300)) for s in slow]
    row = [list(rng.normal(10 * s, 0.1, 300)) for s in slow]
    ratio, low, high = ratio_interval(base, row, paired=True)
    assert low < 2.0 < high and high - low < 0.05
    _, low, high = ratio_interval(base, row)
    assert high - low > 0.5
    with pytest.raises(ValueError, match="one for one"):
        ratio_interval(base, row[:2], paired=True)


def test_an_anchor_is_timed_in_every_cycle_its_rows_are_and_only_then():
    """A baseline kept loaded beside a variant goes before its row in each cycle, for as long as the row takes
    rounds (adaptive here: the noisy row takes five, the steady one two), then stops without being judged."""
    from edgebench.bench.measure.rounds import Stopping, paired_rounds

    calls = []
    rng = np.random.default_rng(6)

    def run_round(key, index):
        calls.append((key, index))
        wobble = 4 * (index % 2) if key == "noisy" else 0
        return quiet(samples=rng.normal(10 + wobble, 0.05, 100))

    stopping = Stopping(repeats=2, target=0.01, max_repeats=5)
    rows = interleave(["base-a", "steady", "base-b", "noisy"], stopping, run_round, sleep=lambda s: None,
                      anchors={"base-a": ["steady"], "base-b": ["noisy"]})
    assert calls[:4] == [("base-a", 0), ("steady", 0), ("base-b", 0), ("noisy", 0)]
    assert [k for k, i in calls if k == "base-a"] == ["base-a"] * 2  # stops with its row, at 2
    assert [i for k, i in calls if k == "base-b"] == [i for k, i in calls if k == "noisy"] == [0, 1, 2, 3, 4]
    assert rows["base-b"].stopped_by == "baseline for 5 rounds" and rows["base-b"].cycles == [0, 1, 2, 3, 4]
    base, mine = paired_rounds(rows["base-b"], rows["noisy"])
    assert len(base) == len(mine) == 5


def test_an_anchor_whose_rows_failed_stops_and_pairs_only_shared_cycles():
    from edgebench.bench.measure.rounds import paired_rounds

    def run_round(key, index):
        if key == "row" and index == 1:
            raise RoundFailed("crashed")
        return quiet()

    rows = interleave(["base", "row", "other"], 3, run_round, sleep=lambda s: None, anchors={"base": ["row"]})
    assert rows["row"].error == "crashed" and rows["base"].cycles == [0, 1] and rows["other"].cycles == [0, 1, 2]
    assert rows["row"].cycles == [0]  # shared with the anchor: cycle 0 only
    assert [len(side) for side in paired_rounds(rows["base"], rows["row"])] == [1, 1]
