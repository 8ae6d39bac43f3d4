"""Table layout: one target, and the YOLOv5-style CPU ms / GPU ms layout across targets."""

from edgebench.bench.report import markdown_table
from edgebench.bench.results import ResultRow


def row(runtime, target, status="ok", p50=None, error="", size=46.8, diff=1e-6):
    return ResultRow(model="m", weights="w", compression="none", runtime=runtime, format=runtime.title(),
                     precision="fp32", target=target, device=target, batch=1, threads=2, status=status, error=error,
                     size_mb=size, p50_ms=p50, max_abs_diff=diff if status == "ok" else None,
                     fidelity_ok=True if status == "ok" else None)


def test_single_target_table_footnotes_every_reason():
    text = markdown_table([row("onnx", "cpu", p50=12.0),
                           row("tensorrt", "cpu", "unavailable", error="TensorRT does not run on cpu", size=None)])
    assert "| Onnx | fp32 | 1 | ok | 46.8 | 12.00 |" in text
    assert "| Tensorrt | fp32 | 1 | unavailable [1] | - |" in text
    assert "[1] Tensorrt fp32 b1 on cpu: TensorRT does not run on cpu" in text


def test_cross_target_table_has_a_column_per_target_and_na_with_reason():
    rows = [row("onnx", "cpu", p50=12.0), row("tensorrt", "cpu", "unavailable", error="no cpu", size=None),
            row("onnx", "gpu", p50=1.5), row("tensorrt", "gpu", p50=0.8, size=30.0)]
    text = markdown_table(rows)
    assert "| Format | Precision | Batch | Size (MB) | CPU ms | GPU ms | max abs diff vs PyTorch |" in text
    assert "| Onnx | fp32 | 1 | 46.8 | 12.00 | 1.50 |" in text
    assert "| Tensorrt | fp32 | 1 | 30.0 | N/A [1] | 0.80 |" in text
    assert "[1] Tensorrt on cpu: no cpu" in text


def test_flags_are_shown_and_explained():
    flagged = row("onnx", "cpu", p50=12.0)
    flagged.noisy, flagged.fidelity_ok = True, False
    text = markdown_table([flagged])
    assert "ok (fidelity!, noisy)" in text and "- noisy: other processes" in text


def test_details_section_lists_measured_rows_only():
    from edgebench.bench.report import markdown_report

    measured = row("onnx", "cpu", p50=12.0)
    measured.export_s, measured.load_s, measured.first_ms, measured.foreign_load = 4.2, 0.2, 30.0, 0.015
    measured.iterations, measured.peak_rss_mb = 91, 206.0
    text = markdown_report([measured, row("tensorrt", "cpu", "unavailable", error="no", size=None)])
    details = text.split("## Details", 1)[1]
    assert "| Onnx | fp32 | 1 | cpu | 4.20 | 0.20 | 30.00 |" in details and "| 91 | - | - | - | - | 206 |" in details
    assert "1.5%" in details and "Tensorrt" not in details


def test_cross_target_table_keeps_flags_and_explains_them():
    noisy = row("onnx", "gpu", p50=1.5)
    noisy.noisy = True
    off = row("onnx", "cpu", p50=12.0)
    off.fidelity_ok, off.capped = False, True
    text = markdown_table([off, noisy])
    assert "| Onnx | fp32 | 1 | 46.8 | 12.00 (fidelity!, capped) | 1.50 (noisy) |" in text
    assert "- noisy: other processes used over 10%" in text and "- capped: max duration" in text
    assert "- fidelity!: outputs differ" in text


def test_rows_of_different_precisions_and_batches_stay_apart_when_merged():
    rows = []
    for precision, batch, cpu, gpu in (("fp32", 1, 12.0, 1.5), ("fp16", 1, 30.0, 0.9), ("fp32", 8, 80.0, 6.0)):
        for target, p50 in (("cpu", cpu), ("gpu", gpu)):
            r = row("onnx", target, p50=p50)
            r.precision, r.batch = precision, batch
            rows.append(r)
    text = markdown_table(rows)
    assert "| Onnx | fp32 | 1 | 46.8 | 12.00 | 1.50 |" in text
    assert "| Onnx | fp16 | 1 | 46.8 | 30.00 | 0.90 |" in text
    assert "| Onnx | fp32 | 8 | 46.8 | 80.00 | 6.00 |" in text
    assert text.count("| Onnx |") == 3


def test_cross_target_row_missing_on_one_target_and_largest_diff():
    cpu = row("onnx", "cpu", p50=12.0, diff=2e-6)
    gpu = row("onnx", "gpu", p50=1.5, diff=3e-4)
    only_cpu = row("tflite", "cpu", p50=9.0, size=None)
    text = markdown_table([cpu, gpu, only_cpu])
    assert "| Onnx | fp32 | 1 | 46.8 | 12.00 | 1.50 | 3.0e-04 |" in text  # the worse of the two
    assert "| Tflite | fp32 | 1 | - | 9.00 | - | 1.0e-06 |" in text


def test_number_formats():
    from edgebench.bench.report import fmt, sci

    assert (fmt(None), fmt(0.0), fmt(12.345), fmt(0.001), fmt(0.01), fmt(46.84, 1)) == \
        ("-", "0.00", "12.35", "1.0e-03", "0.01", "46.8")
    assert (fmt(0.0095), fmt(-0.0095), fmt(0.095, 1)) == ("9.5e-03", "-9.5e-03", "9.5e-02")
    assert (sci(None), sci(0.0), sci(2.5e-6)) == ("-", "0", "2.5e-06")


def test_unavailable_rows_carry_no_flags_and_pipes_are_escaped():
    down = row("tensorrt", "cpu", "unavailable", error="a|b", size=None)
    down.noisy = True  # ignored: nothing was timed
    text = markdown_table([down])
    assert "| Tensorrt | fp32 | 1 | unavailable [1] |" in text and "noisy" not in text
    assert "[1] Tensorrt fp32 b1 on cpu: a|b" in text


def test_same_reason_gets_one_footnote():
    rows = [row("a", "cpu", "unavailable", error="same", size=None),
            row("b", "cpu", "unavailable", error="other", size=None),
            row("c", "cpu", "unavailable", error="same", size=None)]
    rows[2].format = "A"  # same text -> same number
    text = markdown_table(rows)
    assert "| A | fp32 | 1 | unavailable [1] |" in text and "| B | fp32 | 1 | unavailable [2] |" in text
    assert text.count("\n[1] ") == 1 and text.count("unavailable [1]") == 2


def test_details_columns():
    from edgebench.bench.report import DETAIL_HEADERS, markdown_report

    measured = row("onnx", "cpu", p50=12.0)
    measured.p99_ms, measured.std_ms, measured.cosine, measured.iterations = 15.5, 1.25, 0.9999995, 40
    text = markdown_report([measured])
    assert "| " + " | ".join(DETAIL_HEADERS) + " |" in text
    assert "| Onnx | fp32 | 1 | cpu | - | - | - | 15.50 | 1.25 | 40 | - | - | - | - | - | 1.000000 | - |" in text


def test_table_md_body_exactly():
    """The whole text a reader sees, character for character: headers, rule lines, cells, notes, details."""
    from edgebench.bench.report import markdown_report

    measured = row("onnx", "cpu", p50=12.345, diff=2.5e-6)
    measured.p90_ms, measured.throughput, measured.p99_ms, measured.std_ms = 14.0, 81.04, 20.5, 1.5
    measured.export_s, measured.load_s, measured.first_ms, measured.iterations = 3.9, 0.16, 22.61, 87
    measured.peak_rss_mb, measured.cosine, measured.foreign_load, measured.noisy = 206.4, 0.99999912, 0.25, True
    measured.p50_ci_low_ms, measured.p50_ci_high_ms, measured.repeats, measured.rounds_repeated = 12.1, 12.6, 3, 2
    measured.speedup, measured.speedup_ci_low, measured.speedup_ci_high = 3.391, 3.2, 3.55
    measured.gflops_per_s, measured.peak_fraction = 146.2, 0.2466
    measured.energy_source = "no readable RAPL energy counters under /sys/class/powercap (common in VMs)"
    down = row("tensorrt", "cpu", "unavailable", error="TensorRT does not run on cpu | (it runs on gpu)", size=None)
    odd = row("mine", "cpu", p50=1.0, diff=0.0)
    odd.format, odd.capped, odd.iterations = "My|Runtime", True, 3  # a user's label with a pipe in it
    odd.speedup, odd.speedup_ci_low, odd.speedup_ci_high, odd.repeats = 1.02, 0.97, 1.08, 1  # within noise
    lost = row("coreml", "cpu", "error", error="process killed by SIGSEGV while loading", size=None)
    assert markdown_report([measured, down, odd, lost]) == (
        "| Format | Precision | Batch | Status | Size (MB) | p50 ms (95% CI) | p90 ms | Speed-up vs PyTorch (95% CI) "
        "| Throughput (img/s) | max abs diff vs PyTorch |\n"
        "|---|---|---|---|---|---|---|---|---|---|\n"
        "| Onnx | fp32 | 1 | ok (noisy) | 46.8 | 12.35 (12.10-12.60) | 14.00 | x3.39 (3.20-3.55) | 81.0 | 2.5e-06 |\n"
        "| Tensorrt | fp32 | 1 | unavailable [1] | - | - | - | - | - | - |\n"
        "| My/Runtime | fp32 | 1 | ok (capped) | 46.8 | 1.00 | - | x1.02 (0.97-1.08) ~ | - | 0 |\n"
        "| Coreml | fp32 | 1 | error [2] | - | - | - | - | - | - |\n"
        "\n"
        "[1] Tensorrt fp32 b1 on cpu: TensorRT does not run on cpu | (it runs on gpu)\n"
        "[2] Coreml fp32 b1 on cpu: process killed by SIGSEGV while loading\n"
        "\n"
        "- noisy: other processes used over 10% of the machine's CPU while timing\n"
        "- capped: max duration reached before the minimum iteration count\n"
        "\n"
        "## Details\n"
        "\n"
        "| Format | Precision | Batch | Target | Export s | Load s | First ms | p99 ms | std ms | Iterations "
        "| Rounds (repeated) | GFLOP/s | % of peak | Energy (mJ/inference) | Peak RSS (MB) | Cosine "
        "| Other CPU load |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"
        "| Onnx | fp32 | 1 | cpu | 3.90 | 0.16 | 22.61 | 20.50 | 1.50 | 87 | 3 (2) | 146.2 | 24.7% | - | 206 "
        "| 0.999999 | 25.0% |\n"
        "| My/Runtime | fp32 | 1 | cpu | - | - | - | - | - | 3 | 1 | - | - | - | - | - | - |\n"
        "\n"
        "Energy not measured: no readable RAPL energy counters under /sys/class/powercap (common in VMs).\n"
    )


def test_cross_target_table_exactly():
    rows = [row("onnx", "cpu", p50=12.0), row("onnx", "gpu", p50=1.5, diff=None),
            row("tensorrt", "cpu", "unavailable", error="no cpu", size=None),
            row("tensorrt", "gpu", p50=0.8, size=30.0)]
    assert markdown_table(rows) == (
        "| Format | Precision | Batch | Size (MB) | CPU ms | GPU ms | max abs diff vs PyTorch |\n"
        "|---|---|---|---|---|---|---|\n"
        "| Onnx | fp32 | 1 | 46.8 | 12.00 | 1.50 | 1.0e-06 |\n"
        "| Tensorrt | fp32 | 1 | 30.0 | N/A [1] | 0.80 | 1.0e-06 |\n"
        "\n"
        "[1] Tensorrt on cpu: no cpu\n"
    )
    unmeasured = [row("tensorrt", "cpu", "unavailable", error="no", size=None),
                  row("tensorrt", "gpu", "error", error="boom", size=None)]
    assert "| Tensorrt | fp32 | 1 | - | N/A [1] | N/A [2] | - |\n" in markdown_table(unmeasured)


def test_cross_target_table_keeps_each_compression_apart_and_shows_accuracy():
    """Rows of two variants with the same format, precision and batch once overwrote each other here."""
    rows = []
    for compression, p50, accuracy in (("none", 12.0, 0.98), ("prune-l1:0.5", 9.0, 0.95)):
        for target in ("cpu", "gpu"):
            r = row("onnx", target, p50=p50 if target == "cpu" else p50 / 10)
            r.compression, r.accuracy = compression, accuracy
            rows.append(r)
    rows[-1].accuracy = 0.94  # fp16-like drift on one target: both figures are shown, named
    text = markdown_table(rows)
    assert ("| Format | Compression | Precision | Batch | Size (MB) | CPU ms | GPU ms | Accuracy % (95% CI) "
            "| max abs diff vs PyTorch |") in text
    assert "| Onnx | none | fp32 | 1 | 46.8 | 12.00 | 1.20 | 98.0 | 1.0e-06 |" in text
    assert "| Onnx | prune-l1:0.5 | fp32 | 1 | 46.8 | 9.00 | 0.90 | cpu: 95.0; gpu: 94.0 | 1.0e-06 |" in text


def test_cross_device_accuracy_names_each_device_and_a_variant_without_labels_shows_a_dash():
    rows = []
    for host, accuracy in (("jetson01", 0.95), ("mac-m2", 0.96)):
        r = row("onnx", "cpu", p50=5.0)
        r.host, r.accuracy = host, accuracy
        rows.append(r)
    unscored = row("tflite", "cpu", p50=4.0)  # on one device only, and without a test set
    unscored.host = "jetson01"
    text = markdown_table(rows + [unscored])
    assert "| CPU ms [jetson01] | CPU ms [mac-m2] | Accuracy % (95% CI) |" in text
    assert "| Onnx | fp32 | 1 | 46.8 | 5.00 | 5.00 | cpu [jetson01]: 95.0; cpu [mac-m2]: 96.0 | 1.0e-06 |" in text
    assert "| Tflite | fp32 | 1 | 46.8 | 4.00 | - | - | 1.0e-06 |" in text


def test_the_energy_note_names_its_counter_or_why_there_is_none():
    from edgebench.bench.report import energy_note

    measured = row("onnx", "cpu", p50=5.0)
    measured.energy_mj, measured.energy_source = 12.5, "RAPL package-0"
    absent = row("tflite", "cpu", p50=4.0)
    absent.energy_source = "no readable RAPL energy counters"
    assert energy_note([measured]) == "\nEnergy from RAPL package-0.\n"
    assert energy_note([absent]) == "\nEnergy not measured: no readable RAPL energy counters.\n"
    assert energy_note([measured, absent]) == ("\nEnergy from RAPL package-0. Not measured in the other rows: "
                                               "no readable RAPL energy counters.\n")
    assert energy_note([row("onnx", "cpu", p50=5.0)]) == ""


def test_fast_models_keep_significant_digits_in_their_latency():
    """A 0.02 ms model printed "0.02 (0.02-0.02)": its interval said nothing."""
    from edgebench.bench.report import fmt_ms, latency_cell

    fast = row("onnxruntime", "cpu", p50=0.02134)
    fast.p50_ci_low_ms, fast.p50_ci_high_ms = 0.02091, 0.02188
    assert latency_cell(fast) == "0.0213 (0.0209-0.0219)"
    assert fmt_ms(24.481) == "24.48" and fmt_ms(0) == "0.00" and fmt_ms(None) == "-"
    assert "| 0.0213 (0.0209-0.0219) |" in markdown_table([fast])
