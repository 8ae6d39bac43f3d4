"""`make validate`: the ratio of edgebench's timing to each runtime's own tool, and how it is read.

The pure parts on synthetic figures; one slow whole validation on the tiny model through every real tool.
"""

from __future__ import annotations

import re

import pytest

from edgebench.bench.measure.rounds import RoundFailed
from edgebench.bench.validate.tools import TOOLS, _benchmark_app_median, paired_ratio, validate, verdict


def test_the_ratio_pairs_rounds_and_brackets_the_truth():
    ours = [10.2, 10.1, 10.3, 10.0, 10.2]
    theirs = [10.0, 9.9, 10.1, 9.8, 10.0]
    ratio, low, high = paired_ratio(ours, theirs)
    assert ratio == pytest.approx(10.2 / 10.0) and low <= ratio <= high
    assert paired_ratio(ours, theirs, floor=0.03)[1] < low


def test_a_slow_minute_that_hits_both_sides_of_a_pair_cancels_out():
    ours = [10.0, 10.0, 20.0, 10.0, 10.0]  # round 3 ran in a slow minute...
    theirs = [10.0, 10.0, 20.0, 10.0, 10.0]  # ...for both sides
    assert paired_ratio(ours, theirs)[0] == 1.0


def test_the_verdict_needs_the_whole_interval_inside_the_band():
    assert verdict(0.98, 1.02) == "within ±3%"
    assert verdict(1.05, 1.09) == "outside ±3%"
    assert verdict(0.95, 1.02).startswith("not resolved")


@pytest.mark.parametrize(("text", "ms"), [("[ INFO ]    Median:        190.52 us\n", 0.19052),
                                          ("[ INFO ]    Median:        24.26 ms\n", 24.26)])
def test_benchmark_app_medians_are_read_in_either_unit(text, ms, tmp_path):
    assert _benchmark_app_median("[ INFO ] Latency:\n" + text, tmp_path) == pytest.approx(ms)


def test_benchmark_app_output_without_a_median_is_a_failed_round(tmp_path):
    with pytest.raises(RoundFailed, match="no median"):
        _benchmark_app_median("[ ERROR ] something\n", tmp_path)


@pytest.mark.slow
def test_validate_times_every_tool_against_edgebench_on_the_same_files(tmp_path, tiny_model_source):
    lines = validate(tiny_model_source, 1, 2, 0.3, tmp_path / "v", say=lambda text: None)
    assert len(lines) == len(TOOLS), lines
    for line in lines:
        match = re.search(r"ratio (\d+\.\d+) \(95% CI (\d+\.\d+)-(\d+\.\d+)\)", line)
        assert match, line
        ratio, low, high = map(float, match.groups())
        assert 0.2 < ratio < 5 and low <= ratio <= high
    assert "benchmark_app" in (tmp_path / "v" / "VALIDATE.md").read_text()
