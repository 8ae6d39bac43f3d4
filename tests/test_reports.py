"""Reports from stored runs: merging machines, the Pareto front, compare's gate, recommend, determinism,
bad input, and the HTML page as a browser shows it.

Runs are written here as a run folder would be (rows.jsonl, environment.json, samples.jsonl) with samples
drawn from known distributions, so every verdict below is known in advance.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest

from edgebench.bench.results import ResultRow
from edgebench.reports.__main__ import main
from edgebench.reports.pareto import pareto_front
from edgebench.reports.runs import load_run

PROJECT = Path(__file__).resolve().parents[1]


def result(runtime: str, p50: float, target: str = "cpu", compression: str = "none", precision: str = "fp32",
           status: str = "ok", error: str = "", size: float = 10.0, accuracy: float | None = None,
           rss: float = 100.0) -> ResultRow:
    return ResultRow(model="m", weights="w", compression=compression, runtime=runtime, format=runtime.title(),
                     precision=precision, target=target, device=target, batch=1, threads=2, status=status,
                     error=error, size_mb=size if status == "ok" else None, p50_ms=p50 if status == "ok" else None,
                     p90_ms=p50 * 1.1 if status == "ok" else None, accuracy=accuracy, peak_rss_mb=rss,
                     max_abs_diff=1e-6 if status == "ok" else None)


def write_run(folder: Path, rows: list[ResultRow], machine: str = "Test CPU", accelerators=(), seed: int = 0,
              spread: float = 0.01, packages: dict | None = None, shifts=(1.0, 1.0, 1.0),
              flags: tuple[str, ...] = ("avx2", "avx512f"), cores: int = 2) -> Path:
    """A run folder; each measured row gets 3 rounds of 200 samples around its p50 (relative sd `spread`),
    round i's centre scaled by shifts[i] (a machine that changed speed between rounds)."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    with open(folder / "rows.jsonl", "w") as f, open(folder / "samples.jsonl", "w") as s:
        for row in rows:
            if row.status == "ok":
                rounds = [list(rng.normal(row.p50_ms * k, spread * row.p50_ms, 200)) for k in shifts]
                flat = [x for r in rounds for x in r]
                row.p50_ms, row.p90_ms = float(np.median(flat)), float(np.percentile(flat, 90))
                s.write(json.dumps({"key": row.key, "latency_ms": flat, "rounds": [200] * 3}) + "\n")
            f.write(json.dumps(asdict(row)) + "\n")
    environment = {"cpu": machine, "threads": 2, "accelerators": list(accelerators), "date": "2026-11-30T00:00:00",
                   "packages": packages or {"torch": "2.14.1"}, "mode": "latency", "cpu_flags": list(flags),
                   "cpu_logical_cores": cores}
    (folder / "environment.json").write_text(json.dumps(environment))
    return folder


def test_a_cpu_run_and_a_gpu_run_from_different_machines_become_one_table_with_each_machine_named(tmp_path):
    from edgebench.reports.tables import side_by_side

    cpu = write_run(tmp_path / "laptop", [result("onnxruntime", 12.0), result("tensorrt", 0, status="unavailable",
                                                                             error="TensorRT needs a GPU")])
    gpu = write_run(tmp_path / "server", [result("onnxruntime", 1.5, "gpu"), result("tensorrt", 0.8, "gpu")],
                    machine="Xeon", accelerators=[{"name": "NVIDIA H200"}])
    headers, body, notes = side_by_side([load_run(cpu), load_run(gpu)])
    assert headers[5:] == ["Size (MB)", "CPU ms [m1]", "GPU ms [m2]", "Accuracy %"]
    lines = {cells[1]: cells for cells in body}
    assert float(lines["Onnxruntime"][6]) == pytest.approx(12.0, rel=0.01)  # the median of its samples
    assert float(lines["Onnxruntime"][7]) == pytest.approx(1.5, rel=0.01)
    assert lines["Tensorrt"][6] == "unavailable [1]" and float(lines["Tensorrt"][7]) == pytest.approx(0.8, rel=0.01)
    assert notes[0] == "[1] Tensorrt none fp32 on cpu (laptop): TensorRT needs a GPU"
    assert notes[1:] == ["m1: Test CPU, 2 threads, run laptop", "m2: NVIDIA H200 + Xeon, 2 threads, run server"]


def test_the_pareto_front_on_a_hand_checked_example():
    # (latency, size): A (1, 10) fastest; B (2, 5); C (3, 6) is beaten by B on both; D (4, 1) smallest;
    # E (2, 5) ties B, so neither beats the other.
    points = [(1, 10), (2, 5), (3, 6), (4, 1), (2, 5)]
    assert pareto_front(points) == [0, 1, 4, 3]
    # (latency, accuracy), higher accuracy better: C (3, 0.99) now survives, D (4, 0.90) is beaten by A.
    scored = [(1, 0.95), (2, 0.94), (3, 0.99), (4, 0.90)]
    assert pareto_front(scored, maximize_y=True) == [0, 2]


def test_compare_flags_an_injected_20_percent_regression_and_passes_a_noise_level_change(tmp_path, capsys):
    base = write_run(tmp_path / "base", [result("onnxruntime", 10.0), result("openvino", 10.0),
                                         result("tflite", 10.0), result("pytorch", 20.0)], seed=1)
    new = write_run(tmp_path / "new", [result("onnxruntime", 12.0), result("openvino", 10.1),
                                       result("tflite", 7.0), result("coreml", 5.0)], seed=2,
                    packages={"torch": "2.15.0"})
    assert main(["compare", str(base), str(new)]) == 1
    out = capsys.readouterr().out
    verdicts = {line.split(" | ")[0].lstrip("| "): line.rstrip(" |").rsplit("| ", 1)[1]
                for line in out.splitlines() if line.startswith("| m ")}
    assert verdicts.pop("m Openvino fp32 b1 cpu") in ("within noise", "below threshold")  # 1%: passes either way
    assert verdicts == {"m Onnxruntime fp32 b1 cpu": "REGRESSION", "m Tflite fp32 b1 cpu": "faster",
                        "m Pytorch fp32 b1 cpu": "only in base",
                        "m Coreml fp32 b1 cpu": "only in new"}
    assert "warning: different library versions: torch 2.14.1 -> 2.15.0" in out
    assert "1 regression(s) beyond 5%, the machine's floor (±3.0%: A/A, or between runs where measured) and the " \
        "noise" in out
    # The same noise-level change alone passes the gate.
    calm = write_run(tmp_path / "calm", [result("openvino", 10.1)], seed=3)
    assert main(["compare", str(base), str(calm), "--threshold", "0.05"]) == 0
    # 8% slower, beyond the threshold, but the new run's rounds spread over 0.8-1.3x: not beyond its noise.
    capsys.readouterr()
    shaky = write_run(tmp_path / "shaky", [result("openvino", 10.8)], seed=4, shifts=(0.8, 1.0, 1.3))
    assert main(["compare", str(base), str(shaky)]) == 0
    assert "| within noise |" in capsys.readouterr().out


def _scored(runtime: str, wrong: range, images: int = 1000) -> ResultRow:
    from edgebench.bench.measure.paired import pack_correct

    correct = np.ones(images, dtype=bool)
    correct[list(wrong)] = False
    row = result(runtime, 10.0, accuracy=float(correct.mean()))
    row.dataset, row.correct_bits = f"mnist ({images} test images)", pack_correct(correct)
    return row


def test_compare_fails_the_gate_on_an_accuracy_loss_the_paired_test_sees_and_only_then(tmp_path, capsys):
    """1.2 points lost on 12 images and none gained fails the gate (McNemar p=0.00049, x2 by Holm for 2 rows); the
    same loss as 52 lost and 40 gained passes; a run without per-image results is tested unpaired, and says so."""
    base = write_run(tmp_path / "base", [_scored("onnxruntime", range(18)), _scored("openvino", range(40))], seed=1)
    new = write_run(tmp_path / "new", [_scored("onnxruntime", range(30)), _scored("openvino", range(40, 92))],
                    seed=1)
    assert main(["compare", str(base), str(new)]) == 1
    out = capsys.readouterr().out
    lines = {line.split(" | ")[0].lstrip("| "): line for line in out.splitlines() if line.startswith("| m ")}
    assert "| -1.2 pts (McNemar p=0.00098) | within noise, ACCURACY LOST |" in lines["m Onnxruntime fp32 b1 cpu"]
    assert "| -1.2 pts (McNemar p=0.25, within noise) | within noise |" in lines["m Openvino fp32 b1 cpu"]
    assert "(accuracy lost: 1)" in out
    unpaired = result("onnxruntime", 10.0, accuracy=0.95)  # a run from before per-image results: 2.8 points lost
    unpaired.dataset = "mnist (1000 test images)"
    old = write_run(tmp_path / "old", [unpaired], seed=1)
    assert main(["compare", str(base), str(old)]) == 1
    out = capsys.readouterr().out
    assert "| -3.2 pts (unpaired z-test p=7.9e-05) | within noise, ACCURACY LOST |" in out
    assert "1 accuracy change(s) not tested image by image" in out


def test_compare_counts_a_row_that_now_fails_as_a_regression_and_refuses_runs_with_nothing_in_common(tmp_path,
                                                                                                     capsys):
    base = write_run(tmp_path / "base", [result("onnxruntime", 10.0)])
    broken = write_run(tmp_path / "broken", [result("onnxruntime", 0, status="error", error="segfault")])
    assert main(["compare", str(base), str(broken)]) == 1
    assert "NOW FAILING" in capsys.readouterr().out
    other = write_run(tmp_path / "other", [result("tflite", 10.0, target="npu")])
    assert main(["compare", str(base), str(other)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "have no row in common" in err


def test_compare_of_a_fleet_run_with_a_local_run_compares_every_device_with_the_local_machine(tmp_path, capsys):
    """The local run's row stands for each device in turn: no device's row may silently replace another's."""
    local = write_run(tmp_path / "local", [result("onnxruntime", 10.0), result("tflite", 10.0)], seed=1)
    rows = []
    for host, p50 in (("jetson01", 20.0), ("nuc", 10.05)):
        row = result("onnxruntime", p50)
        row.host = host
        rows.append(row)
    fleet = write_run(tmp_path / "fleet", rows, seed=2)
    with open(fleet / "samples.jsonl") as f:  # a fleet run keys its samples by device
        lines = [json.loads(line) for line in f]
    (fleet / "samples.jsonl").write_text("".join(json.dumps({**line, "key": f"{row.host}|{line['key']}"}) + "\n"
                                                 for line, row in zip(lines, rows, strict=True)))
    for base, new in ((local, fleet), (fleet, local)):
        main(["compare", str(base), str(new)])
        out = capsys.readouterr().out
        verdicts = {line.split(" | ")[0].lstrip("| "): line.rstrip(" |").rsplit("| ", 1)[1]
                    for line in out.splitlines() if line.startswith("| m ")}
        assert verdicts.pop("m Onnxruntime fp32 b1 cpu [nuc]") in ("within noise", "below threshold")
        assert verdicts == {"m Onnxruntime fp32 b1 cpu [jetson01]": "REGRESSION" if base == local else "faster",
                            "m Tflite fp32 b1 cpu": "only in base" if base == local else "only in new"}


def test_recommend_on_a_hand_checked_example(tmp_path, capsys):
    run = write_run(tmp_path / "run", [
        result("onnxruntime", 8.0, accuracy=0.985, size=40.0),
        result("onnxruntime", 4.0, precision="int8", accuracy=0.975, size=10.0),  # fastest, but 97.5%
        result("openvino", 6.0, accuracy=0.984, size=40.0),  # meets both: the answer
        result("pytorch", 25.0, accuracy=0.985, size=40.0),  # too slow
        result("tensorrt", 0, status="unavailable", error="no GPU"),
    ])
    assert main(["recommend", str(run), "--max-ms", "10", "--min-accuracy", "0.98"]) == 0
    out = capsys.readouterr().out
    assert "Deploy: Openvino fp32 on cpu (m)." in out
    table = out.split("Near misses")[0]
    assert table.index("| Openvino |") < table.index("| Onnxruntime | none | fp32 |") and "Pytorch" not in table
    misses = out.split("Near misses")[1]
    assert "| Onnxruntime | none | int8 |" in misses and "accuracy 97.5% (needs >= 98.0%)" in misses
    assert "accuracy >= 0.98 (98.0%)" in out  # the bound said back as a fraction and as the tables' percent
    assert re.search(r"p50_ms 2[45]\.\d+ \(needs <= 10\)", misses) and "1 rows were not considered" in out
    assert "| no uncompressed fp32 row to compare with |" not in misses  # ONNX Runtime's int8 has its fp32 row
    assert "| -1.0 pts (unpaired z-test" not in misses  # no test set size in these rows: not tested
    # A percent with its sign is the same bound.
    assert main(["recommend", str(run), "--max-ms", "10", "--min-accuracy", "98%"]) == 0
    assert "Deploy: Openvino fp32 on cpu (m)." in capsys.readouterr().out
    # Nothing meets an impossible budget: the closest rows are named instead, and the exit status says so.
    assert main(["recommend", str(run), "--max-ms", "cpu:1"]) == 1
    assert "Nothing meets every constraint. Closest:" in capsys.readouterr().out


def test_recommend_says_what_a_candidate_costs_in_accuracy_tested_image_by_image(tmp_path, capsys):
    int8 = _scored("onnxruntime", range(30))  # 12 images lost against its fp32 row, none gained
    int8.precision, int8.p50_ms = "int8", 4.0
    run = write_run(tmp_path / "run", [_scored("onnxruntime", range(18)), int8])
    assert main(["recommend", str(run), "--max-ms", "10"]) == 0
    out = capsys.readouterr().out
    assert "| Accuracy vs uncompressed fp32 |" in out
    assert "| 97.0 | -1.2 pts (McNemar p=0.00049) |" in out  # one test: Holm leaves it as it is


@pytest.mark.parametrize("args, says", [
    (["recommend", "--where", "latency<=3"], "unknown column 'latency'"),
    (["recommend", "--min-accuracy", "98"], "bad accuracy bound 98: expected a fraction between 0 and 1 (0.98) or a"),
    (["recommend", "--min-accuracy", "980%"], "bad accuracy bound 9.8"),
    (["recommend", "--max-ms", "fast"], "bad number in MAX_MS=fast"),
    (["recommend", "--max-ms", "cpuu:1"], "unknown target 'cpuu' in MAX_MS=cpuu:1: choose cpu, gpu, npu"),
    (["recommend", "--objective", "speed"], "unknown objective 'speed'"),
    (["compare", "--threshold", "-1"], "bad THRESHOLD '-1'"),
    (["compare", "--threshold", "5"], "bad THRESHOLD '5': expected a fraction between 0 and 1 (0.05) or a percent"),
    (["compare", "--threshold", "150%"], "bad THRESHOLD '150%'"),
    (["compare", "--threshold", "five"], "bad THRESHOLD 'five'"),
])
def test_bad_constraints_are_one_line_naming_the_value_and_the_choices(tmp_path, capsys, args, says):
    run = str(write_run(tmp_path / "run", [result("onnxruntime", 8.0)]))
    argv = [args[0], run, run, *args[1:]] if args[0] == "compare" else [args[0], run, *args[1:]]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert says in err and err.count("\n") == 1


def test_a_folder_that_is_not_a_run_or_from_another_version_is_refused_in_one_line(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["build", str(tmp_path / "empty")]) == 2
    assert "is not a run: it has no rows.jsonl" in capsys.readouterr().err
    old = write_run(tmp_path / "old", [result("onnxruntime", 8.0)])
    line = json.loads((old / "rows.jsonl").read_text())
    line["latency_p50"] = line.pop("p50_ms")  # a column this version does not know
    (old / "rows.jsonl").write_text(json.dumps(line) + "\n")
    assert main(["build", str(old), "--out", str(tmp_path / "report")]) == 2
    err = capsys.readouterr().err
    assert "unknown columns latency_p50" in err and "re-measure it" in err and err.count("\n") == 1
    assert not (tmp_path / "report").exists()


def _build(runs: list[Path], out: Path) -> dict[str, bytes]:
    assert main(["build", ",".join(map(str, runs)), "--out", str(out)]) == 0
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


@pytest.fixture
def two_runs(tmp_path) -> list[Path]:
    rows = [result("pytorch", 20.0, accuracy=0.97), result("onnxruntime", 10.0, accuracy=0.97),
            result("onnxruntime", 5.0, precision="int8", accuracy=0.96, size=2.5),
            result("onnxruntime", 7.0, compression="prune-channels:0.3", accuracy=0.95, size=6.0),
            result("onnxruntime", 6.0, compression="prune-channels:0.5", accuracy=0.93, size=4.0),
            result("tensorrt", 0, status="error", error="export: engine build failed")]
    for r in rows:
        if r.status == "ok":  # paired speed-ups as the runner gives them
            r.speedup, r.speedup_ci_low, r.speedup_ci_high = 20.0 / r.p50_ms, 18.0 / r.p50_ms, 22.0 / r.p50_ms
            own = 20.0 if r.runtime == "pytorch" else 10.0
            r.compression_speedup, r.compression_speedup_ci_low, r.compression_speedup_ci_high = \
                own / r.p50_ms, 0.9 * own / r.p50_ms, 1.1 * own / r.p50_ms
    return [write_run(tmp_path / "cpu-run", rows),
            write_run(tmp_path / "gpu-run", [result("onnxruntime", 1.0, "gpu", accuracy=0.97)], machine="Xeon",
                      accelerators=[{"name": "NVIDIA H200"}])]


def test_the_report_is_the_same_bytes_from_the_same_rows_and_shows_errors_with_their_reason(tmp_path, two_runs):
    first = _build(two_runs, tmp_path / "a")
    second = _build(two_runs, tmp_path / "b")
    assert {"REPORT.md", "report.html", "rows.csv", "rows.parquet"} <= set(first)
    plots = [name for name in first if name.endswith(".png")]
    assert any("latency-vs-accuracy" in p for p in plots) and any("distribution" in p for p in plots)
    assert any("compression.png" in p for p in plots) and any("speedup" in p for p in plots)
    for name in ("REPORT.md", "report.html", *plots):
        assert first[name] == second[name], f"{name} differs between two builds of the same rows"
    assert not any(b"Software" in first[name] or b"matplotlib" in first[name] for name in plots)  # no stamp
    report = first["REPORT.md"].decode()
    assert "engine build failed" in report and "error [1]" in report  # never silently dropped
    assert "GPU ms [m" in report and "NVIDIA H200 + Xeon" in report
    import pandas as pd

    frame = pd.read_parquet(tmp_path / "a" / "rows.parquet")
    assert len(frame) == 7 and set(frame["run"]) == {"cpu-run", "gpu-run"}
    assert list(pd.read_csv(tmp_path / "a" / "rows.csv")["runtime"]) == list(frame["runtime"])


def test_the_stored_reference_runs_rebuild_into_a_report(tmp_path):
    reference = PROJECT / "results" / "reference"
    runs = sorted(p.parent for p in reference.rglob("rows.jsonl"))
    assert runs, "the repository keeps reference runs under results/reference"
    files = _build(runs, tmp_path / "report")
    assert "report.html" in files and any(name.endswith("latency-vs-size.png") for name in files)
    # The copy kept in git is what this code builds from those rows (`make report` on a fresh clone).
    assert files["REPORT.md"] == (reference / "report" / "REPORT.md").read_bytes()


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# `.ci/run` sets this: there, a missing browser is a broken set-up and fails the test instead of skipping it.
BROWSER_REQUIRED = os.environ.get("EDGEBENCH_REQUIRE_BROWSER") == "1"
needs_browser = pytest.mark.skipif(CHROMIUM is None and not BROWSER_REQUIRED,
                                   reason="needs Debian's chromium package (`.ci/run` installs it): none here")


def chromium() -> str:
    if CHROMIUM is None:  # only reached where the browser is required
        pytest.fail("EDGEBENCH_REQUIRE_BROWSER=1 but no chromium on PATH: the CI set-up failed to install it")
    return CHROMIUM


@needs_browser
def test_the_html_page_renders_in_a_real_browser_with_its_table_and_first_plot(tmp_path, two_runs):
    from matplotlib.image import imread

    _build(two_runs, tmp_path / "report")
    shot = tmp_path / "shot.png"
    subprocess.run([chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    f"--user-data-dir={tmp_path / 'profile'}", "--hide-scrollbars", "--window-size=1300,2600",
                    f"--screenshot={shot}", (tmp_path / "report" / "report.html").as_uri()],
                   check=True, capture_output=True, timeout=120)
    pixels = (imread(shot)[:, :, :3] * 255).round().astype(int)

    def rows_with(colour: tuple[int, int, int]) -> np.ndarray:
        return np.flatnonzero((np.abs(pixels - colour).sum(axis=2) <= 6).any(axis=1))

    plot_points = rows_with((44, 111, 187))  # the first runtime's colour in the first plot
    table_heads = rows_with((243, 245, 248))  # table header background
    assert len(plot_points) > 5, "the first plot is not visible in the screenshot"
    assert len(table_heads) > 5, "no table is visible in the screenshot"


@needs_browser
def test_a_click_on_a_column_header_sorts_the_table_in_the_browser(tmp_path, two_runs):
    """The page's own script, run by Chromium: a click on `Size (MB)` sorts numerically, rows without a size
    last; a second click reverses."""
    _build(two_runs, tmp_path / "report")
    page = (tmp_path / "report" / "report.html").read_text()
    probe = """<script>
    function headsOf(t) { return Array.prototype.map.call(t.querySelectorAll("th"), function (h) {
        return h.textContent; }); }
    var table = Array.prototype.filter.call(document.querySelectorAll("table.sortable"), function (t) {
        return headsOf(t).indexOf("Size (MB)") >= 0; })[0];  // the run's full table (the results table has none)
    var col = headsOf(table).indexOf("Size (MB)"), th = table.querySelectorAll("th")[col];
    function column() { return Array.prototype.map.call(table.tBodies[0].rows, function (r) {
        return r.cells[col].textContent; }); }
    th.click(); var first = column(); th.click();
    document.body.setAttribute("data-probe", JSON.stringify([first, column()]));
    </script>"""
    (tmp_path / "probe.html").write_text(page.replace("</body>", probe + "</body>"))
    dom = subprocess.run([chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                          "--disable-background-networking", "--disable-component-update", "--disable-sync",
                          f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", (tmp_path / "probe.html").as_uri()],
                         check=True, capture_output=True, text=True, timeout=120).stdout
    import html as html_module

    found = re.search(r'data-probe="([^"]*)"', dom)
    assert found, "the page's script did not run"
    ascending, descending = json.loads(html_module.unescape(found.group(1)))
    numbers = [float(x) for x in ascending if x != "-"]
    assert numbers == sorted(numbers) and len(numbers) >= 4
    assert ascending[len(numbers):] == ["-"] * (len(ascending) - len(numbers))  # no size: after the numbers
    assert descending == ascending[::-1]


def test_a_variant_is_placed_at_its_paired_latency_since_variants_were_timed_minutes_apart(tmp_path):
    """The stored study's eager PyTorch: uncompressed 0.749 ms, cluster:16's own p50 1.476 ms (timed minutes later,
    the machine slower), x1.137 faster than the uncompressed model in the same cycles: the trade-off plots put it
    at 0.749 / 1.137, and the report's caption says so."""
    from edgebench.reports import plots

    base = result("pytorch", 0.749, size=0.34, accuracy=0.975)
    clustered = result("pytorch", 1.476, compression="cluster:16", size=0.33, accuracy=0.973)
    clustered.compression_speedup = 1.137
    orphan = result("onnxruntime", 0.150, compression="cluster:16", size=0.33, accuracy=0.973)
    orphan.compression_speedup = 1.01  # its runtime's uncompressed row is not in the run: its own p50
    unpaired = result("pytorch", 0.9, compression="cluster:32", size=0.33, accuracy=0.974)  # no pair: its p50
    rows = [base, clustered, orphan, unpaired]
    assert [plots.paired_ms(r, rows) for r in rows] == [0.749, pytest.approx(0.749 / 1.137), 0.150, 0.9]
    figure = plots.tradeoff(rows, "size_mb", "t")
    placed = [tuple(point) for c in figure.axes[0].collections for point in c.get_offsets()]
    assert (pytest.approx(0.749 / 1.137), 0.33) in placed and (1.476, 0.33) not in placed
    assert "paired speed-up" in figure.axes[0].get_xlabel()
    files = _build([write_run(tmp_path / "run", rows)], tmp_path / "report")
    assert "placed at its runtime's uncompressed p50 over its paired speed-up" in files["REPORT.md"].decode()
    int8 = result("onnxruntime", 0.08, precision="int8", size=0.12, accuracy=0.96)
    int8.compression_speedup = 1.4  # timed in the uncompressed variant's own cycles: its p50 as it is
    plain = [base, result("onnxruntime", 0.11, size=0.34, accuracy=0.96), int8]  # timed together: no note
    assert plots.paired_ms(int8, plain) == 0.08
    uncompressed = _build([write_run(tmp_path / "plain", plain)], tmp_path / "plain-report")["REPORT.md"].decode()
    assert "![Latency vs size]" in uncompressed and "paired speed-up:" not in uncompressed


def test_a_spread_within_noise_is_not_drawn_as_a_trade_off_and_the_report_says_why(tmp_path):
    """fp32 rows differ from PyTorch by rounding (1e-7..1e-6, far inside fp32's 1e-3): no fidelity front; an int8
    row 0.1 away is a real difference and brings the plot back. Accuracies inside each other's intervals are
    no trade-off either; sizes are drawn from zero."""
    from edgebench.reports import plots

    rows = [result("pytorch", 20.0), result("onnxruntime", 10.0), result("openvino", 12.0, size=10.3)]
    rows[1].max_abs_diff, rows[2].max_abs_diff = 6e-7, 3e-7
    assert "inside the 0.001 tolerance of its precision" in plots.within_noise(rows, "max_abs_diff")
    assert plots.tradeoff(rows, "max_abs_diff", "t") is None
    size = plots.tradeoff(rows, "size_mb", "t")
    assert size is not None and size.axes[0].get_ylim()[0] == 0
    int8 = result("onnxruntime", 5.0, precision="int8", size=2.5)
    int8.max_abs_diff = 0.1
    assert plots.within_noise([*rows, int8], "max_abs_diff") == ""
    assert plots.tradeoff([*rows, int8], "max_abs_diff", "t") is not None

    for r, (acc, low, high) in zip(rows, [(0.970, 0.958, 0.979), (0.968, 0.956, 0.977), (0.972, 0.960, 0.981)],
                                   strict=True):
        r.accuracy, r.accuracy_ci_low, r.accuracy_ci_high = acc, low, high
    assert "lies inside every other row's 95% interval" in plots.within_noise(rows, "accuracy")
    rows[2].accuracy, rows[2].accuracy_ci_low, rows[2].accuracy_ci_high = 0.90, 0.88, 0.92
    assert plots.within_noise(rows, "accuracy") == "" and plots.tradeoff(rows, "accuracy", "t") is not None

    fp32 = [result("pytorch", 20.0), result("onnxruntime", 10.0)]
    fp32[1].max_abs_diff = 6e-7
    files = _build([write_run(tmp_path / "run", fp32)], tmp_path / "report")
    report = files["REPORT.md"].decode()
    assert not any("latency-vs-max_abs_diff" in name for name in files)
    assert "No latency vs fidelity to PyTorch plot: every row's largest difference from PyTorch" in report


def test_the_report_opens_with_the_results_table_and_the_speed_up_bars(tmp_path, two_runs):
    files = _build(two_runs, tmp_path / "report")
    report = files["REPORT.md"].decode()
    sections = re.findall(r"^## (.+)$", report, flags=re.M)
    assert sections[0].startswith("Results: cpu-run, CPU") and sections[1].startswith("Results: gpu-run, GPU")
    first = report.split("\n## ")[1]
    assert "| p50 ms (95% CI) | Speed-up vs PyTorch (95% CI) | Speed-up vs its fp32 uncompressed (95% CI) |" in first
    assert "| m | Onnxruntime | none | int8 | 1 | 5." in first  # measured rows in the table, the rest in its notes
    assert "- error: Tensorrt none fp32 b1: export: engine build failed" in first
    assert first.index("| m |") < first.index("![Speed-up against PyTorch]")


def test_a_long_plot_title_is_wrapped_to_its_figure():
    """A run's CPU name made titles run off the figure's edge: they wrap to the axes' width."""
    import matplotlib.pyplot as plt

    from edgebench.reports.plots import _set_title

    figure, ax = plt.subplots(figsize=(8, 6))
    title = ("Speed-up against the same runtime uncompressed at fp32: frameworks, CPU (Intel(R) Xeon(R) Processor, "
             "2 threads)")
    _set_title(ax, title)
    lines = ax.get_title().split("\n")
    assert len(lines) == 2 and " ".join(lines) == title
    _set_title(ax, "short")
    assert ax.get_title() == "short"
    plt.close(figure)


def test_threshold_is_a_fraction_or_a_percent_and_nothing_else():
    from edgebench.bench.errors import UsageError
    from edgebench.reports.compare import parse_threshold

    assert parse_threshold("0.05") == parse_threshold("5%") == pytest.approx(0.05)
    assert parse_threshold(" 12.5% ") == pytest.approx(0.125)
    for bad in ("5", "0", "1", "100%", "-3%", "%", ""):
        with pytest.raises(UsageError, match="bad THRESHOLD"):
            parse_threshold(bad)


def test_the_compare_command_exits_0_1_or_2_for_a_ci_job(tmp_path):
    """What a CI job calls (the README's direct command): 0 nothing regressed, 1 a regression, 2 bad input."""
    import sys

    base = write_run(tmp_path / "base", [result("onnxruntime", 10.0)], seed=1)
    same = write_run(tmp_path / "same", [result("onnxruntime", 10.0)], seed=1)
    slower = write_run(tmp_path / "slower", [result("onnxruntime", 14.0)], seed=2)

    def code(*args: str) -> int:
        return subprocess.run([sys.executable, "-m", "edgebench.reports", "compare", *args], capture_output=True,
                              timeout=120).returncode

    assert code(str(base), str(same)) == 0
    assert code(str(base), str(slower), "--threshold", "5%") == 1
    assert code(str(base), str(slower), "--threshold", "5") == 2
    assert code(str(base), str(tmp_path / "missing")) == 2


def test_recommend_leaves_out_rows_that_compute_something_else_and_says_so(tmp_path, capsys):
    fast_but_wrong = result("onnxruntime", 2.0, precision="int8", accuracy=0.985)
    fast_but_wrong.fidelity_ok = False  # `ok (fidelity!)`: beyond int8's tolerance of PyTorch's outputs
    run = write_run(tmp_path / "run", [result("openvino", 6.0, accuracy=0.985), fast_but_wrong])
    assert main(["recommend", str(run), "--max-ms", "10"]) == 0
    out = capsys.readouterr().out
    assert "Deploy: Openvino fp32 on cpu (m)." in out and "| Onnxruntime |" not in out
    assert "1 rows were not considered: their outputs are beyond their precision's tolerance" in out
    assert main(["recommend", str(run), "--max-ms", "10", "--include-unfaithful"]) == 0
    assert "Deploy: Onnxruntime int8 on cpu (m)." in capsys.readouterr().out


def test_a_folder_of_runs_is_read_as_its_runs(tmp_path, capsys):
    """RUNS=results/reference/study (a study's folder) was "not a run"; its runs are what a user means."""
    study = tmp_path / "study"
    write_run(study / "frameworks", [result("onnxruntime", 8.0)])
    write_run(study / "family", [result("openvino", 6.0)])
    files = _build([study], tmp_path / "report")
    report = files["REPORT.md"].decode()
    assert "frameworks" in report and "family" in report
    (tmp_path / "empty").mkdir()
    assert main(["build", str(tmp_path / "empty")]) == 2  # a folder with no run anywhere inside: still refused


def test_runs_with_the_same_folder_name_stay_apart_in_a_report(tmp_path):
    """Two runs named alike from different places were one column, their plots overwriting each other's."""
    x = write_run(tmp_path / "x" / "resnet18-cpu", [result("onnxruntime", 8.0)])
    y = write_run(tmp_path / "y" / "resnet18-cpu", [result("onnxruntime", 4.0)])
    files = _build([x, y], tmp_path / "report")
    report = files["REPORT.md"].decode()
    assert "x/resnet18-cpu" in report and "y/resnet18-cpu" in report
    plots = [name for name in files if name.startswith("plots/")]
    assert any("x-resnet18-cpu" in name for name in plots) and any("y-resnet18-cpu" in name for name in plots)


def test_runs_from_machines_that_differ_in_speed_are_not_judged_unless_asked(tmp_path, capsys):
    """Both hosts are "AMD EPYC, 2 threads"; one has AVX-512 and one only AVX2: 5 REGRESSIONs were read."""
    base = write_run(tmp_path / "avx512", [result("onnxruntime", 10.0), result("openvino", 10.0)], machine="AMD EPYC",
                     flags=("avx2", "avx512f", "avx512_vnni"), seed=1)
    new = write_run(tmp_path / "avx2", [result("onnxruntime", 14.0), result("openvino", 10.0)], machine="AMD EPYC",
                    flags=("avx2",), seed=2)
    assert main(["compare", str(base), str(new)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("warning: ACROSS MACHINES: vector extensions avx2, avx512f, avx512_vnni (base) vs avx2 "
                          "(new)") and "REGRESSION" not in out and out.count("not comparable (other machine)") == 2
    assert main(["compare", str(base), str(new), "--across-machines"]) == 1
    out = capsys.readouterr().out
    assert "latencies judged anyway" in out and "REGRESSION" in out
    same = write_run(tmp_path / "again", [result("onnxruntime", 14.0)], machine="AMD EPYC",
                     flags=("avx2", "avx512f", "avx512_vnni"), seed=3)
    assert main(["compare", str(base), str(same)]) == 1 and "ACROSS MACHINES" not in capsys.readouterr().out


def test_recommend_reads_this_machines_runs_by_default_and_names_them(tmp_path, capsys, monkeypatch):
    """With no RUNS it ranked every run under results/, a reference run from another machine included."""
    import edgebench.reports.__main__ as cli
    from edgebench.reports.runs import this_machine

    cpu, cores, flags, _ = this_machine()
    results = tmp_path / "results"
    write_run(results / "mine", [result("openvino", 6.0)], machine=cpu, flags=flags, cores=cores)
    write_run(results / "reference" / "other-host", [result("onnxruntime", 1.0)], machine="Other CPU",
              flags=("asimd",), cores=64)
    monkeypatch.setattr(cli, "RESULTS", results)
    assert main(["recommend", "--max-ms", "10"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Read 1 run(s), this machine's (1 from other machines left out; RUNS= to choose): mine.")
    assert "Deploy: Openvino fp32 on cpu (m)." in out
    assert main(["recommend", ",".join(str(p) for p in (results / "mine", results / "reference"))]) == 0
    assert "Read 2 run(s), as named (RUNS=): mine, other-host." in capsys.readouterr().out


def test_recommend_shows_rows_whose_intervals_overlap_the_winners_as_tied(tmp_path, capsys):
    """It ranked by point estimates alone: 6.0 ms beat 6.1 ms though their intervals overlap."""
    def timed(runtime: str, p50: float, low: float, high: float) -> ResultRow:
        row = result(runtime, p50)
        row.p50_ci_low_ms, row.p50_ci_high_ms = low, high
        return row

    rows = [timed("openvino", 6.0, 5.8, 6.3), timed("onnxruntime", 6.1, 5.9, 6.4), timed("pytorch", 9.0, 8.8, 9.3)]
    run = tmp_path / "run"
    run.mkdir()
    (run / "rows.jsonl").write_text("".join(json.dumps(asdict(r)) + "\n" for r in rows))
    assert main(["recommend", str(run)]) == 0
    out = capsys.readouterr().out
    assert "Deploy: Openvino fp32 on cpu (m).\nTied with it (their p50_ms 95% intervals overlap" in out
    assert "Onnxruntime fp32 on cpu (m). Choose among them" in out and "Pytorch fp32 on cpu (m). Choose" not in out
    table = {line.split("|")[2].strip(): line.split("|")[-2].strip() for line in out.splitlines()
             if line.startswith("| m |")}
    assert table == {"Openvino": "best", "Onnxruntime": "tied", "Pytorch": "worse"}
    assert "6.00 (5.80-6.30)" in out  # the interval the tie is read from is printed
    assert main(["recommend", str(run), "--objective", "size_mb"]) == 0
    assert "size_mb has no interval: the ranking is by point estimates" in capsys.readouterr().out


@pytest.mark.parametrize(("text", "share"), [("0.05", 0.05), ("5%", 0.05), (" 98% ", 0.98), ("0.98", 0.98)])
def test_a_share_reads_the_same_as_a_fraction_or_a_percent_in_every_command(text, share):
    from edgebench.reports.compare import parse_threshold
    from edgebench.reports.recommend import budget_constraints
    from edgebench.reports.shares import parse_share

    assert parse_share(text) == pytest.approx(share)
    assert parse_threshold(text) == pytest.approx(share)
    assert budget_constraints(min_accuracy=text)[0].bound == pytest.approx(share)
    for bad in ("abc", "nan", "5%%", ""):
        with pytest.raises(ValueError):
            parse_share(bad)
