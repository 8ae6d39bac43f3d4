"""A/A runs and the floor: what a speed-up interval promises when two processes time the same file.

Synthetic rounds first: a world where each process carries an offset for its whole life (memory placement,
thread placement), which cycles cannot average away. Then one small real calibration through the CLI.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgebench.bench.measure import floor as floors
from edgebench.bench.measure.rounds import RoundResult, RowRounds
from edgebench.bench.measure.stats import widen
from edgebench.bench.validate.aa import AAComparison, clopper_pearson, compare, judge

PROCESS_SD = 0.02  # the between-process offset's spread, on the log scale
CYCLE_SD = 0.01  # what each cycle adds on top (a slow stretch that hits one side of a pair)


def _process(rng: np.random.Generator, cycles: int, offset: float, truth: float = 10.0) -> RowRounds:
    """One measuring process: its rounds (40 samples each) carry the process's offset in every cycle."""
    kept = []
    for _ in range(cycles):
        centre = truth * np.exp(offset + rng.normal(0, CYCLE_SD))
        kept.append(RoundResult(samples_ms=list(centre * rng.lognormal(0, 0.03, 40)), warmup_iters=3, capped=False))
    return RowRounds(kept=kept, cycles=list(range(cycles)))


def _aa_world(seed: int, comparisons: int, cycles: int) -> list[AAComparison]:
    """A/A comparisons: two processes of one artifact, each with its own offset."""
    rng = np.random.default_rng(seed)
    return [compare("onnxruntime", "A/A", _process(rng, cycles, rng.normal(0, PROCESS_SD)),
                    _process(rng, cycles, rng.normal(0, PROCESS_SD))) for _ in range(comparisons)]


def test_cycles_alone_miss_a_between_process_offset_and_the_floor_restores_the_promise():
    """Intervals from cycles alone (what edgebench printed: 3 cycles, no floor) exclude x1 for identical
    artifacts far more than 5 times in 100; with 8 cycles and the floor measured by a separate A/A
    calibration, at most 8% do (5% plus the binomial slack at this size)."""
    before = _aa_world(seed=1, comparisons=200, cycles=3)
    assert np.mean([c.excludes_one for c in before]) > 0.3
    calibration = _aa_world(seed=2, comparisons=42, cycles=8)
    floor = floors.estimate([c.log_ratio for c in calibration])
    assert floor == pytest.approx(np.expm1(1.96 * np.hypot(PROCESS_SD, PROCESS_SD)), rel=0.35)
    after = judge(_aa_world(seed=3, comparisons=200, cycles=8), "k", "test")[0]
    assert np.mean([c.excludes_one for c in after]) > 0.3  # cycles alone still miss it...
    assert np.mean([c.excludes_one_floored for c in after]) <= 0.08  # ...the floor (leave-one-out) does not
    fresh = _aa_world(seed=4, comparisons=200, cycles=8)
    held = [widen(c.ratio, c.low, c.high, floor) for c in fresh]
    assert np.mean([not lo <= 1 <= hi for lo, hi in held]) <= 0.08


def test_a_real_difference_beyond_the_floor_is_still_flagged():
    """The positive control's logic: a process 1.5x slower is flagged with the floor added."""
    rng = np.random.default_rng(5)
    aa = _aa_world(seed=6, comparisons=20, cycles=8)
    slow = compare("onnxruntime", "control", _process(rng, 8, 0.0), _process(rng, 8, 0.0, truth=15.0))
    judged, floor = judge([*aa, slow], "k", "test")
    control = judged[-1]
    assert control.kind == "control" and control.high_floored < 1 and control.ratio == pytest.approx(2 / 3, rel=0.05)
    assert floor.comparisons == 20 and floor.false_positives <= floor.false_positives_without


def test_each_aa_comparison_is_judged_with_the_floor_of_the_others():
    """Leave-one-out: an outlying A/A ratio does not widen its own interval."""
    comparisons = [AAComparison("tflite", "A/A", r, r, r, 8) for r in (1.0, 1.001, 0.999, 1.002, 1.20)]
    judged, floor = judge(comparisons, "k", "test")
    assert judged[-1].excludes_one_floored  # 1.20 against a floor from four ratios within 0.2%
    assert not any(c.excludes_one_floored for c in judged[:-1])
    assert floor.false_positives == 1 and floor.false_positives_without == 4
    ratios = np.log([1.0, 1.001, 0.999, 1.002, 1.2])
    assert floor.floor == pytest.approx(np.expm1(floors.Z95 * np.sqrt(np.mean(ratios ** 2))))
    # Of three, the whole floor (1.96 x RMS = 1.13 x the outlier's log) would cover 1.20; its own does not.
    few, whole = judge([comparisons[0], comparisons[1], comparisons[-1]], "k", "test")
    assert whole.floor > 0.20 and few[-1].excludes_one_floored
    with pytest.raises(ValueError, match="at least 2"):
        judge(comparisons[:1], "k", "test")


def test_the_false_positive_rate_carries_its_exact_interval():
    low, high = clopper_pearson(2, 42)
    assert low == pytest.approx(0.0058, abs=5e-4) and high == pytest.approx(0.1616, abs=5e-4)


def test_a_floor_is_kept_per_machine_threads_and_versions(tmp_path):
    cpu = {"model": "Xeon", "logical_cores": 2, "flags": ["fpu", "avx2", "avx512f"]}
    key = floors.machine_key(cpu, 2, {"torch": "2.9", "numpy": "2"})
    assert key != floors.machine_key(cpu, 1, {"torch": "2.9"})
    assert key != floors.machine_key({**cpu, "flags": ["avx2"]}, 2, {"torch": "2.9"})
    assert key == floors.machine_key({**cpu, "flags": ["avx2", "avx512f", "sse2"]}, 2, {"torch": "2.9", "numpy": "3"})
    assert floors.load(key, "resnet18", tmp_path) is floors.DEFAULT and not floors.DEFAULT.measured
    measured = floors.AAFloor(floor=0.021, comparisons=42, source="test", false_positives=1,
                              false_positives_without=9, key=key, model="resnet18")
    floors.save(measured, tmp_path)
    assert floors.load(key, "resnet18", tmp_path) == measured
    assert floors.load(floors.machine_key(cpu, 1, {}), "resnet18", tmp_path) is floors.DEFAULT
    assert "±2.1% (measured: 42 A/A comparisons, 1 intervals excluding x1 with it and 9 without" in measured.describe()
    nothing = floors.AAFloor(floor=0.0, comparisons=40, source="t0", false_positives=3, false_positives_without=3)
    assert nothing.describe().startswith("±0.0%, none added: two processes differed no more than their cycles")
    floors.save(floors.AAFloor(floor=0.05, comparisons=40, source="t2", key=key, model="mnist_resnet_m"), tmp_path)
    other = floors.load(key, "yolov8n", tmp_path)  # not measured on it: the largest of the machine's
    assert other.floor == 0.05 and "largest measured on this machine, on mnist_resnet_m" in other.describe()
    assert floors.load(key, "resnet18", tmp_path) == measured  # its own floor, not the largest
    (tmp_path / key / "resnet18.json").write_text("{not json")
    broken = floors.load(key, "resnet18", tmp_path)
    assert broken.floor == floors.DEFAULT.floor and "unreadable" in broken.source


@pytest.mark.alone  # a real calibration: it measures the machine's A/A floor, which a busy neighbour widens
def test_calibrate_measures_pairs_of_processes_and_keeps_the_floor(tmp_path, tiny_model_source, monkeypatch):
    """The real thing, small: ONNX Runtime, 2 pairs and both controls (one thread, batch 2), 2 cycles."""
    from edgebench.bench.validate.__main__ import main

    monkeypatch.setenv("EDGEBENCH_FLOOR_DIR", str(tmp_path / "floors"))
    out = tmp_path / "cal"
    code = main(["--only", "aa", "--model", tiny_model_source, "--runtimes", "onnxruntime", "--pairs", "2",
                 "--cycles", "2", "--threads", "2", "--out", str(out)])
    assert code == 0
    text = (out / "CALIBRATE.md").read_text()
    assert "ONNX Runtime: 2 A/A ratios" in text and "False positives, with the floor: " in text
    assert "Positive control, ONNX Runtime on 1 thread against the A process" in text
    assert "Positive control, ONNX Runtime at batch 2 against the A process" in text
    stored = list((tmp_path / "floors").glob("*/*.json"))
    assert len(stored) == 1 and json.loads(stored[0].read_text())["comparisons"] == 2


@pytest.mark.parametrize(("args", "message"), [
    (["--runtimes", "nope"], "unknown or unavailable runtime 'nope': choose from"),
    (["--pairs", "0"], "bad pairs 0"),
    (["--cycles", "1"], "bad cycles 1"),
    (["--only", "runs", "--runs", "3"], "bad runs 3: expected an even number"),
    (["--pairs", "1", "--runtimes", "onnxruntime"], "too few A/A pairs: 1 pair(s) on 1 runtime(s)"),
])
def test_calibrate_refuses_bad_input_in_one_line(args, message, capsys, tmp_path):
    from edgebench.bench.validate.__main__ import main

    assert main(["--only", "aa", "--out", str(tmp_path / "x"), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and not (tmp_path / "x").exists()


def test_a_speed_up_within_the_floor_reads_within_noise_whatever_its_interval():
    from edgebench.bench.report import ratio_cell

    assert ratio_cell(1.02, 1.01, 1.03) == "x1.02 (1.01-1.03)"
    assert ratio_cell(1.02, 1.01, 1.03, floor=0.03) == "x1.02 (1.01-1.03) ~"
    assert ratio_cell(0.975, 0.97, 0.98, floor=0.03).endswith("~")
    assert not ratio_cell(1.10, 1.08, 1.12, floor=0.03).endswith("~")


def _row(p50: float):
    from edgebench.bench.results import ResultRow

    return ResultRow(model="m", weights="random", compression="none", runtime="onnxruntime", format="ONNX Runtime",
                     precision="fp32", target="cpu", device="cpu", batch=1, threads=2, status="ok", p50_ms=p50)


def test_the_compare_gate_calls_no_change_within_the_floor_a_regression():
    """A steady 4% slow-down with tight rounds: a regression beyond a 1% threshold on a machine whose two
    processes agree, not where two processes of one file differ by 5%."""
    from edgebench.reports.compare import judge as gate

    base = [[10.0 + 0.01 * i for i in range(50)] for _ in range(10)]
    new = [[10.4 + 0.01 * i for i in range(50)] for _ in range(10)]
    assert gate(_row(10.25), _row(10.65), base, new, threshold=0.01).verdict == "regression"
    judged = gate(_row(10.25), _row(10.65), base, new, threshold=0.01, floor=0.05)
    assert judged.verdict == "within noise" and judged.low < 1 < judged.high


def test_the_speed_up_plot_greys_bars_within_noise_and_shades_the_floor():
    from dataclasses import replace

    from matplotlib.colors import to_hex
    from matplotlib.container import BarContainer

    from edgebench.reports import plots

    rows = [replace(_row(10.0), runtime=name, format=name, speedup=s, speedup_ci_low=lo, speedup_ci_high=hi)
            for name, s, lo, hi in (("a", 1.02, 1.01, 1.03), ("b", 1.5, 1.4, 1.6), ("c", 0.7, 0.6, 0.8))]
    fig = plots.speedups(rows, "t", floor=0.03)
    ax = fig.axes[0]
    bars = list(next(c for c in ax.containers if isinstance(c, BarContainer)))  # the bars, in row order
    assert [to_hex(b.get_facecolor()) for b in bars] == [plots.NOISE_COLOUR, plots.POINT_COLOUR, plots.FRONT_COLOUR]
    shaded = [p for p in ax.patches if p not in bars]
    assert len(shaded) == 1 and shaded[0].get_x() == pytest.approx(1 / 1.03)
    assert len(plots.speedups(rows, "t").axes[0].patches) == 3  # no floor: no band


def test_the_between_run_floor_pairs_runs_and_ignores_rows_in_one_run_only():
    from edgebench.bench.validate.runs import between_runs_floor

    runs = [{"a": 1.0, "b": 2.0}, {"a": 1.2, "b": 2.0, "c": 5.0}, {"a": 1.0}, {"a": 1.0 / 1.2}]
    floor, pairs, ratios = between_runs_floor(runs)
    assert pairs == 2 and ratios == pytest.approx([np.log(1.2), 0.0, -np.log(1.2)])
    assert floor == pytest.approx(np.expm1(floors.Z95 * np.log(1.2) * np.sqrt(2 / 3)))
    with pytest.raises(ValueError, match="at least one pair"):
        between_runs_floor([{"a": 1.0}])


def test_the_compare_gate_clears_the_between_run_floor_of_either_run(tmp_path):
    from edgebench.reports.compare import compare
    from edgebench.reports.runs import Run

    base = Run(tmp_path / "a", [_row(10.0)], {"aa_floor": {"floor": 0.0, "between_runs": 0.4}})
    new = Run(tmp_path / "b", [_row(12.0)], {"aa_floor": {"floor": 0.0}})
    assert [c.verdict for c in compare(base, new)[0]] == ["below threshold"]
    base.environment["aa_floor"]["between_runs"] = 0.0
    assert [c.verdict for c in compare(base, new)[0]] == ["regression"]


@pytest.mark.alone  # a real calibration: it measures the machine's A/A floor, which a busy neighbour widens
def test_repeated_runs_keep_a_between_run_floor_beside_the_machines_a_a_floor(tmp_path, tiny_model_source,
                                                                               monkeypatch):
    """Two real runs of ONNX Runtime on the tiny model: one pair, its ratio, the floor kept for the model."""
    from edgebench.bench.validate.__main__ import main

    monkeypatch.setenv("EDGEBENCH_FLOOR_DIR", str(tmp_path / "floors"))
    assert main(["--only", "runs", "--model", tiny_model_source, "--runtimes", "onnxruntime", "--runs", "2",
                 "--threads", "1", "--out", str(tmp_path / "r")]) == 0
    stored = [json.loads(p.read_text()) for p in (tmp_path / "floors").glob("*/*.json")]
    assert len(stored) == 1 and stored[0]["run_pairs"] == 1 and stored[0]["between_runs"] > 0
    assert stored[0]["comparisons"] == 0  # no A/A runs yet: its A/A floor is still the default's
    assert (tmp_path / "r" / "runs" / "run2" / "rows.jsonl").exists()


def test_the_gate_floor_covers_the_whole_family_of_rows(tmp_path):
    """A between-run floor of 43% (95% per row) becomes Bonferroni's for 4 rows, so that two runs of one
    configuration fail the gate at most 5 times in 100, not 19: measured here, 0 of 10 such pairs failed with
    it where 3 of 10 failed without."""
    from scipy.stats import norm

    from edgebench.reports.compare import gate_floor
    from edgebench.reports.runs import Run

    base = Run(tmp_path / "a", [], {"aa_floor": {"floor": 0.01, "between_runs": 0.43}})
    new = Run(tmp_path / "b", [], {"aa_floor": {"floor": 0.02}})
    assert gate_floor(base, new, 1) == pytest.approx(0.43)
    z4 = norm.ppf(1 - 0.025 / 4)
    assert gate_floor(base, new, 4) == pytest.approx(np.expm1(np.log(1.43) * z4 / floors.Z95))
    assert gate_floor(Run(tmp_path / "c", [], {}), new, 4) == floors.DEFAULT.floor  # no between-run floor
