"""The survey's tables from stored rows: controls, significance marks and ratios computed as documented."""

from __future__ import annotations

import numpy as np
import pytest

from edgebench.bench.measure.paired import compare_correct, detectable_difference, holm, pack_correct
from edgebench.bench.results import ResultRow
from edgebench.bench.runner import with_controls
from edgebench.compression import parse_variants
from edgebench.study.classify import AccuracyComparisons, control_of, significant, study_markdown, summary_table

DATASET = "mnist (1000 test images)"


def row(compression: str, runtime: str, p50: float, accuracy: float, precision: str = "fp32", size: float = 1.0,
        zip_mb: float = 0.9, epochs: int = 0, params: int = 1000, sparsity: float = 0.0, model: str = "m",
        gain: tuple[float, float, float] = (1.0, 0.95, 1.05), pruned: float | None = None) -> ResultRow:
    """`gain`: the speed-up against the runtime's uncompressed fp32 as the runner pairs it, with its interval."""
    labels = {"onnxruntime": "ONNX Runtime", "tflite": "TFLite", "executorch": "ExecuTorch (XNNPACK)"}
    return ResultRow(model=model, weights="w", compression=compression, runtime=runtime, format=labels[runtime],
                     precision=precision, target="cpu", device="cpu", batch=1, threads=1, status="ok",
                     size_mb=size, zip_mb=zip_mb, p50_ms=p50, accuracy=accuracy, accuracy_ci_low=accuracy - 0.01,
                     accuracy_ci_high=accuracy + 0.01, dataset=DATASET, finetune_epochs=epochs, params=params,
                     sparsity=sparsity, compression_speedup=gain[0], compression_speedup_ci_low=gain[1],
                     compression_speedup_ci_high=gain[2], pruned_fraction=pruned)


ROWS = [
    row("none", "onnxruntime", 1.0, 0.970), row("none", "tflite", 2.0, 0.970),
    row("none", "onnxruntime", 0.5, 0.968, precision="int8", size=0.25),
    row("finetune:2", "onnxruntime", 1.0, 0.980, epochs=2), row("finetune:2", "tflite", 2.0, 0.980, epochs=2),
    row("finetune:2", "onnxruntime", 0.5, 0.979, precision="int8", size=0.25, epochs=2),
    row("prune-channels:0.5", "onnxruntime", 0.5, 0.975, size=0.5, zip_mb=0.45, epochs=2, params=400,
        gain=(2.0, 1.8, 2.2), pruned=0.5),
    row("prune-channels:0.5", "tflite", 0.8, 0.975, size=0.5, zip_mb=0.45, epochs=2, params=400,
        gain=(2.5, 2.3, 2.7)),
    row("prune-unstructured:0.9", "onnxruntime", 1.0, 0.930, zip_mb=0.2, epochs=2, sparsity=0.88),
    row("qat", "onnxruntime", 0.5, 0.981, precision="int8", size=0.25, epochs=2, gain=(2.0, 0.9, 2.4)),
    row("distill:s", "onnxruntime", 0.3, 0.955, size=0.2, params=200, epochs=6),
    row("student:s", "onnxruntime", 0.3, 0.960, size=0.2, params=200, epochs=6),
]


def find(compression: str, runtime: str = "onnxruntime", precision: str = "fp32") -> ResultRow:
    return next(r for r in ROWS if (r.compression, r.runtime, r.precision) == (compression, runtime, precision))


def test_each_variant_is_compared_with_its_own_control():
    assert control_of(find("prune-channels:0.5"), ROWS) is find("finetune:2")  # fine-tuned as long
    assert control_of(find("qat", precision="int8"), ROWS) is find("finetune:2", precision="int8")  # and quantized
    assert control_of(find("distill:s"), ROWS) is find("student:s")  # the student alone
    assert control_of(find("finetune:2"), ROWS) is find("none")
    assert control_of(find("none", precision="int8"), ROWS) is find("none")  # PTQ against fp32


def test_differences_within_noise_are_not_significant():
    assert significant(find("prune-channels:0.5"), find("finetune:2")) is False  # 0.5 points on 1000 images
    assert significant(find("prune-unstructured:0.9"), find("finetune:2")) is True  # 5 points
    assert significant(find("none"), None) is None


def test_summary_gives_each_runtime_its_paired_speed_up_with_interval_and_sizes_from_the_reference_runtime():
    table = summary_table(ROWS, "m")
    assert table.splitlines()[0] == ("| Technique | Size decrease (file) | Size decrease (zipped) | ONNX Runtime "
                                     "speed-up (95% CI) | TFLite speed-up (95% CI) | Accuracy % |")
    line = next(x for x in table.splitlines() if x.startswith("| prune-channels:0.5 |"))
    # file 1.0/0.5, zipped 0.9/0.45; speed-ups as the runner paired them, not p50 over p50 across variants
    assert line == ("| prune-channels:0.5 | x2.00 | x2.00 | x2.00 (1.80-2.20) | x2.50 (2.30-2.70) "
                    "| 97.5 (96.5-98.5) [-0.5 vs finetune:2, unpaired ~] |")
    qat = next(x for x in table.splitlines() if x.startswith("| qat int8 |"))
    assert "| x4.00 |" in qat and "[+0.2 vs finetune:2, unpaired ~]" in qat
    assert "| x2.00 (0.90-2.40) ~ | - |" in qat  # an interval holding x1 is within noise; TFLite not measured
    assert next(x for x in table.splitlines() if x.startswith("| PTQ int8 |"))


def test_the_study_has_the_seven_tables_of_the_talk():
    text = study_markdown(ROWS, ROWS, "m", "# header\n\n")
    titles = [line for line in text.splitlines() if line.startswith("## ")]
    assert [t.split(". ", 1)[1].split(":")[0] for t in titles] == [
        "Inference frameworks", "Pruning", "Quantization", "Weight clustering", "Knowledge distillation",
        "Architecture family", "Summary"]
    assert "| student s, with distillation | 200 | 95.5 (94.5-96.5) [-0.5 vs student:s, unpaired ~] |" in text
    scored_rows = [scored("student:s", list(range(40))), scored("distill:s", list(range(35))), *ROWS]
    for r in scored_rows[:2]:
        r.params = 200
    distillation = study_markdown(scored_rows, scored_rows, "m").split("## 5.")[1].split("## 6.")[0]
    # the rows it shows (distilled vs alone; the teacher here has no per-image results), not every variant's
    assert "across this table's 1 comparison (family-wise 5%)" in distillation
    assert "| prune-unstructured:0.9 | - | 88% | 1,000 | 120 |" in text  # non-zero parameters from true sparsity
    assert "| prune-channels:0.5 | 50.0% | 0% | 400 |" in text  # the channels really removed, not the ratio asked


def test_the_deployment_runs_runtimes_join_the_frameworks_quantization_and_summary_tables():
    """ExecuTorch and AOTInductor are measured in a third run at fp32 and int8 only: they appear where that run
    answers (tables 1, 3, 7), and its rows of runtimes the other runs measured are not shown twice."""
    deployment = [row("none", "executorch", 0.8, 0.971), row("none", "executorch", 0.4, 0.969, precision="int8",
                                                              size=0.3, gain=(2.0, 1.7, 2.3)),
                  row("none", "onnxruntime", 9.9, 0.5)]  # another run's ONNX Runtime: not this table's
    text = study_markdown(ROWS, ROWS, "m", "", 0.0, deployment)
    tables = {t.split("\n", 1)[0]: t for t in text.split("## ")[1:]}
    frameworks = tables["1. Inference frameworks"]
    assert "| ExecuTorch (XNNPACK) | 1.00 | 0.800 | 97.1" in frameworks and "9.90" not in frameworks
    quantization = tables["3. Quantization"]
    assert "| ExecuTorch (XNNPACK) | 1.000 | 0.800 | 97.1 (96.1-98.1) | 0.300 | 0.400 (x2.00) | 96.9" in quantization
    summary = tables["7. Summary: measured ratios to the uncompressed fp32 model"]
    assert "ExecuTorch (XNNPACK) speed-up (95% CI)" in summary and "x2.00 (1.70-2.30)" in summary
    assert "ExecuTorch" not in tables["2. Pruning"]
    assert study_markdown(ROWS, ROWS, "m") == study_markdown(ROWS, ROWS, "m", "", 0.0, [])


def test_a_variants_ms_carries_its_paired_speed_up_since_p50s_of_one_column_were_timed_minutes_apart():
    """The stored study's eager PyTorch: uncompressed 0.749 ms, cluster:16 1.476 ms, yet x1.14 faster when both
    were timed in the same cycles (each variant is timed beside the uncompressed model kept loaded, minutes
    from the others, and the machine ran slower meanwhile). The cell shows both; the baseline needs no bracket."""
    from edgebench.study.classify import clustering_table, latency_cell

    base = row("none", "onnxruntime", 0.749, 0.975)
    clustered = row("cluster:16", "onnxruntime", 1.476, 0.973, epochs=2, gain=(1.137, 1.099, 1.183))
    same = row("cluster:32", "onnxruntime", 1.426, 0.975, epochs=2, gain=(1.01, 0.98, 1.04))
    assert latency_cell(base) == "0.749"
    assert latency_cell(clustered) == "1.476 (x1.14)"
    assert latency_cell(same) == "1.426 (x1.01 ~)"  # its interval holds x1
    assert latency_cell(row("cluster:16", "onnxruntime", 0.5, 0.9, gain=(1.02, 1.01, 1.03)), floor=0.03) == \
        "0.500 (x1.02 ~)"  # beyond x1 but within the machine's A/A floor
    missing = row("cluster:16", "onnxruntime", 0.5, 0.9)
    missing.compression_speedup = None  # its baseline failed: no paired figure to show
    assert latency_cell(missing) == "0.500"
    table = clustering_table([base, row("finetune:2", "onnxruntime", 0.8, 0.976, epochs=2), clustered, same], "m")
    assert "| 0.749 |" in table and "| 1.476 (x1.14) |" in table


def scored(compression: str, wrong: list[int], epochs: int = 0, images: int = 1000) -> ResultRow:
    """A row whose per-image results are stored: right on every image but `wrong`."""
    correct = np.ones(images, dtype=bool)
    correct[wrong] = False
    r = row(compression, "onnxruntime", 1.0, correct.mean(), epochs=epochs)
    r.correct_bits = pack_correct(correct)
    return r


def test_a_difference_the_unpaired_test_misses_is_seen_image_by_image():
    """12 images lost and none gained (98.2% -> 97.0%): the z-test cannot see it, McNemar's exact test can."""
    control = scored("finetune:2", list(range(18)), epochs=2)
    variant = scored("prune-channels:0.5", list(range(30)), epochs=2)
    assert significant(variant, row("finetune:2", "onnxruntime", 1.0, 0.982)) is False  # no per-image results
    assert significant(variant, control) is True
    assert compare_correct(np.array([1, 1, 0, 0], bool), np.array([1, 0, 1, 1], bool)).only_control == 2
    # the same 1.2 points lost as 52 images lost for 40 gained: within noise
    wide = scored("finetune:2", list(range(40)), epochs=2)
    assert significant(scored("prune-channels:0.5", list(range(40, 92)), epochs=2), wide) is False


def test_a_tables_comparisons_are_holm_adjusted_and_the_note_says_what_the_test_set_resolves():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    control = scored("finetune:2", list(range(18)), epochs=2)
    strong = scored("prune-channels:0.5", list(range(30)), epochs=2)  # 12 lost, none gained: p=0.00049 alone
    weak = scored("prune-unstructured:0.5", list(range(24)), epochs=2)  # 6 lost: p=0.031 alone, significant
    rows = [control, strong, weak]
    assert significant(weak, control) is True
    comparisons = AccuracyComparisons([strong, weak], rows)
    assert comparisons.cell(strong).endswith("[-1.2 vs finetune:2, p=0.00098]")
    assert comparisons.cell(weak).endswith("[-0.6 vs finetune:2, p=0.031]")
    twice = scored("cluster:16", list(range(24)), epochs=2)  # two such: 0.031 x 2 each, within noise together
    pair = AccuracyComparisons([weak, twice], [*rows, twice])
    assert pair.cell(weak).endswith("[-0.6 vs finetune:2, p=0.062 ~]")
    note = comparisons.note()
    assert "Holm-adjusted across this table's 2 comparisons" in note and "resolves about" in note


def test_detectable_difference_is_the_exact_tests_80_percent_power_point():
    """Checked by simulation: at the returned difference McNemar's exact test rejects about 80% of the time."""
    from edgebench.bench.measure.paired import PairedComparison

    images, discordance = 1000, 0.03
    difference = detectable_difference(images, discordance)
    assert 0.005 < difference < discordance
    rng = np.random.default_rng(0)
    share = (discordance + difference) / (2 * discordance)
    rejected = 0
    for _ in range(2000):
        discordant = rng.binomial(images, discordance)
        only_variant = rng.binomial(discordant, share)
        rejected += PairedComparison(images, only_variant, discordant - only_variant).p_value <= 0.05
    assert 0.77 < rejected / 2000 < 0.85
    assert detectable_difference(images, 0.06) > difference  # more disagreement, less resolution


def test_a_chain_is_compared_with_the_baseline_fine_tuned_as_long_as_the_whole_chain_and_never_another():
    variants = parse_variants("prune-channels:0.5,prune-channels:0.5+qat,prune-unstructured:0.5+cluster:16")
    assert [v.spec for v in with_controls(variants, True, 2)][:3] == ["none", "finetune:2", "finetune:4"]
    chain = row("prune-channels:0.5+qat", "onnxruntime", 0.5, 0.975, precision="int8", epochs=4)
    four = row("finetune:4", "onnxruntime", 0.5, 0.985, precision="int8", epochs=4)
    assert control_of(chain, [*ROWS, chain]) is None  # finetune:2 or the untrained baseline would flatter it
    cell = AccuracyComparisons([chain], [*ROWS, chain]).cell(chain)
    assert cell.endswith("[no comparison: its control finetune:4 int8 was not measured]")
    assert control_of(chain, [*ROWS, chain, four]) is four


def test_repeats_reach_every_run_of_the_study_and_default_to_the_harness(tmp_path):
    from edgebench.bench.config import BenchConfig
    from edgebench.study import study_arguments
    from edgebench.study.classify import study_configs

    parsed = study_arguments(["--out", str(tmp_path), "--repeats", "6"], "edgebench-study", "", "study")
    assert parsed.repeats == 6 and parsed.out == tmp_path and not parsed.tables_only
    assert [c.repeats for c in study_configs(tmp_path, repeats=parsed.repeats)] == [6, 6, 6]
    assert {c.repeats for c in study_configs(tmp_path)} == {BenchConfig.repeats}
    assert study_configs(tmp_path, repeats=30)[0].max_repeats == 30  # the adaptive cap never below the rounds


@pytest.mark.parametrize("argv, message", [(["--repeats", "500"], "bad repeats 500"),
                                           (["--repeats", "6", "--tables-only", "--out", "x"], "--tables-only")])
def test_bad_study_repeats_are_one_line_before_anything_runs(argv, message, capsys, monkeypatch):
    import edgebench.study
    from edgebench.study import classify

    def nothing_may_run(*args):
        raise AssertionError("a bad --repeats reached the runs")

    monkeypatch.setattr(edgebench.study, "run_configs", nothing_may_run)
    assert classify.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_zero_repeats_are_refused_by_the_command_line(capsys):
    from edgebench.study import classify

    with pytest.raises(SystemExit) as stop:
        classify.main(["--repeats", "0"])
    assert stop.value.code == 2 and "bad repeats '0'" in capsys.readouterr().err
