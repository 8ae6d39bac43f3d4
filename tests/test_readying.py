"""Readying a variant's rows: loads overlap, an export and a first inference each run alone."""

import threading
import time

import pytest

from edgebench.bench.readying import LoadTimes, ReadyGate


def _run(gate: ReadyGate, steps: list[tuple[str, float]]) -> list[tuple[str, float, float]]:
    """Each (kind, seconds) step in its own thread through the gate: when each ran (start, end)."""
    spans: list[tuple[str, float, float]] = []
    lock = threading.Lock()

    def step(kind: str, seconds: float) -> None:
        with gate.alone() if kind == "alone" else gate.loading():
            start = time.monotonic()
            time.sleep(seconds)
            end = time.monotonic()
        with lock:
            spans.append((kind, start, end))

    threads = [threading.Thread(target=step, args=s) for s in steps]
    for thread in threads:
        thread.start()
        time.sleep(0.01)  # started in order
    for thread in threads:
        thread.join()
    return spans


def _overlap(a: tuple[str, float, float], b: tuple[str, float, float]) -> bool:
    return a[1] < b[2] and b[1] < a[2]


def _most_at_once(spans: list[tuple[str, float, float]]) -> int:
    return max(sum(s[1] <= start < s[2] for s in spans) for _, start, _ in spans)


def test_loads_overlap_up_to_the_limit():
    spans = _run(ReadyGate(2), [("load", 0.3)] * 4)
    assert _most_at_once(spans) == 2
    assert max(end for _, _, end in spans) - min(start for _, start, _ in spans) < 0.9  # not one by one (1.2 s)


def test_a_step_alone_overlaps_nothing():
    spans = _run(ReadyGate(2), [("load", 0.3), ("alone", 0.1), ("load", 0.2), ("alone", 0.1), ("load", 0.2)])
    for alone in (s for s in spans if s[0] == "alone"):
        assert not any(_overlap(alone, other) for other in spans if other is not alone)


def test_a_load_waits_for_a_step_alone_to_end():
    spans = _run(ReadyGate(2), [("alone", 0.3), ("load", 0.1), ("alone", 0.1)])
    assert not any(_overlap(a, b) for i, a in enumerate(spans) for b in spans[i + 1:])


def test_one_load_at_a_time_is_serial():
    spans = _run(ReadyGate(1), [("load", 0.1)] * 3)
    assert _most_at_once(spans) == 1


def test_a_gate_needs_a_load_slot():
    with pytest.raises(ValueError, match="at least 1"):
        ReadyGate(0)


def test_rows_are_readied_longest_load_first_with_unknown_ones_first_in_their_order(tmp_path):
    times = LoadTimes(tmp_path)
    keys = ["eager", "compiled", "onnx", "new", "executorch", "newer"]
    times.record({"eager": 2.4, "compiled": 8.7, "onnx": 0.5, "executorch": 1.5})
    assert times.longest_first(keys) == [3, 5, 1, 0, 4, 2]
    # kept for the next run, in the cache's folder; a later figure replaces the earlier
    LoadTimes(tmp_path).record({"onnx": 9.0})
    assert LoadTimes(tmp_path).longest_first(keys) == [3, 5, 2, 1, 0, 4]


def test_an_unreadable_record_of_load_times_leaves_the_given_order(tmp_path):
    (tmp_path / LoadTimes.FILE).write_text("{not json")
    assert LoadTimes(tmp_path).longest_first(["a", "b", "c"]) == [0, 1, 2]
    assert LoadTimes.key("resnet18", "none", "aoti", "fp32", "cpu", 1, 2) == "resnet18|none|aoti|fp32|cpu|b1|t2"
