"""Result tables in the YOLOv5 export layout, with footnotes for every row that did not run (pure functions).

One target: a row per format x precision x batch with latency and fidelity columns. Several targets:
a row per format x precision x batch with one `<TARGET> ms` column each (p50), `N/A [n]` where the
runtime could not run there, and the reason in footnote n.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edgebench.bench.results import ResultRow

SINGLE_TARGET_HEADERS = ["Format", "Precision", "Batch", "Status", "Size (MB)", "p50 ms (95% CI)", "p90 ms",
                         "Speed-up vs PyTorch (95% CI)", "Throughput (img/s)", "max abs diff vs PyTorch"]

FLAG_HELP = {
    "fidelity!": "outputs differ from PyTorch beyond the precision's tolerance",
    "noisy": "other processes used over 10% of the machine's CPU while timing",
    "capped": "max duration reached before the minimum iteration count",
}


def fmt(value: float | None, digits: int = 2) -> str:
    if value is None:
        return "-"
    if value != 0 and abs(value) < 10 ** -digits:
        return f"{value:.1e}"
    return f"{value:.{digits}f}"


def sci(value: float | None) -> str:
    if value is None:
        return "-"
    return "0" if value == 0 else f"{value:.1e}"


def flags(row: ResultRow) -> list[str]:
    if row.status != "ok":
        return []
    found = []
    if row.fidelity_ok is False:
        found.append("fidelity!")
    if row.contents_ok is False:  # the details say what the file holds instead
        found.append("contents!")
    if row.noisy:
        found.append("noisy")
    if row.capped:
        found.append("capped")
    return found


class _Notes:
    """Numbered footnotes; the same text gets the same number."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, text: str) -> int:
        if text not in self.items:
            self.items.append(text)
        return self.items.index(text) + 1


def _status_cell(row: ResultRow, notes: _Notes) -> str:
    text = row.status
    found = flags(row)
    if found:
        text += f" ({', '.join(found)})"
    if row.error:
        what = f"{row.format} {row.precision} b{row.batch} on {row.target}"
        if row.compression != "none":
            what = f"{row.compression}: {what}"
        text += f" [{notes.add(f'{what}: {row.error}')}]"
    return text


def fmt_ms(value: float | None) -> str:
    """Milliseconds with two decimals, and three significant digits below 1 ms, so that a fast model's p50 and
    its interval stay readable (`0.0213 (0.0209-0.0218)`, not `0.02 (0.02-0.02)`)."""
    if value is None:
        return "-"
    return f"{value:.2f}" if abs(value) >= 1 or value == 0 else f"{value:.3g}"


def latency_cell(row: ResultRow) -> str:
    """p50 with the interval of the median where the row has one, e.g. `1.23 (1.20-1.26)`."""
    if row.p50_ci_low_ms is None or row.p50_ci_high_ms is None:
        return fmt_ms(row.p50_ms)
    return f"{fmt_ms(row.p50_ms)} ({fmt_ms(row.p50_ci_low_ms)}-{fmt_ms(row.p50_ci_high_ms)})"


def within_noise(ratio: float, low: float | None, high: float | None, floor: float = 0.0) -> bool:
    """A speed-up not shown to differ from x1: its interval holds 1, or it lies within the machine's A/A floor
    (two processes of one file differ that much), whatever its interval says."""
    return (low is not None and high is not None and low <= 1 <= high) or abs(np.log(ratio)) <= np.log1p(floor)


def ratio_cell(ratio: float | None, low: float | None, high: float | None, floor: float = 0.0) -> str:
    """`x2.10 (2.02-2.19)`; `~` when it is within noise (`within_noise`: not faster or slower beyond it)."""
    if ratio is None:
        return "-"
    same = " ~" if within_noise(ratio, low, high, floor) else ""
    if low is None or high is None:
        return f"x{ratio:.2f}{same}"
    return f"x{ratio:.2f} ({low:.2f}-{high:.2f}){same}"


def speedup_cell(row: ResultRow, floor: float = 0.0) -> str:
    """Against PyTorch fp32, uncompressed, of the same run."""
    if row.is_speedup_baseline and row.speedup is not None:
        return "x1 (baseline)"
    return ratio_cell(row.speedup, row.speedup_ci_low, row.speedup_ci_high, floor)


def compression_speedup_cell(row: ResultRow, floor: float = 0.0) -> str:
    """Against the same runtime at fp32, uncompressed: what the compression (or int8) itself gained."""
    if row.compression == "none" and row.precision == "fp32" and row.compression_speedup is not None:
        return "x1 (baseline)"
    return ratio_cell(row.compression_speedup, row.compression_speedup_ci_low, row.compression_speedup_ci_high,
                      floor)


def accuracy_cell(row: ResultRow) -> str:
    """Top-1 in percent with its 95% interval, e.g. `97.5 (96.4-98.3)`."""
    if row.accuracy is None:
        return "-"
    chance = " at chance!" if row.at_chance else ""  # the notes say: check the preprocessing
    if row.accuracy_ci_low is None or row.accuracy_ci_high is None:
        return f"{row.accuracy:.1%}".rstrip("%") + chance
    return f"{row.accuracy * 100:.1f} ({row.accuracy_ci_low * 100:.1f}-{row.accuracy_ci_high * 100:.1f}){chance}"


def map_cell(row: ResultRow) -> str:
    """A detector's mAP50-95 in percent with its 95% bootstrap interval, e.g. `52.8 (50.5-56.2)`."""
    if row.map50_95 is None:
        return "-"
    if row.map_ci_low is None or row.map_ci_high is None:
        return f"{row.map50_95 * 100:.1f}"
    return f"{row.map50_95 * 100:.1f} ({row.map_ci_low * 100:.1f}-{row.map_ci_high * 100:.1f})"


def map_delta_cell(row: ResultRow) -> str:
    """mAP50-95 points against the row's control, paired over images: `-0.4 (-1.1 to +0.3)` against the runtime's
    fp32 uncompressed row, `-4.2 (-5.9 to -2.6) vs finetune:5` against the baseline fine-tuned as long."""
    if row.map_delta is None or row.map_delta_ci_low is None or row.map_delta_ci_high is None:
        return "-"
    against = f" vs {row.map_control.removesuffix(' fp32')}" if row.map_control not in ("", "none fp32") else ""
    return (f"{row.map_delta * 100:+.1f} ({row.map_delta_ci_low * 100:+.1f} to {row.map_delta_ci_high * 100:+.1f})"
            f"{against}")


def box_match_cell(row: ResultRow) -> str:
    """The share of PyTorch's boxes a detector row found too, and of how many: `99.7% of 300`."""
    if row.reference_boxes is None:
        return "-"
    if row.box_match is None:
        return "no boxes"  # PyTorch's outputs had none above the confidence threshold: nothing to match
    return f"{row.box_match:.1%} of {row.reference_boxes}"


def detection_headers(rows: Sequence[ResultRow]) -> list[str]:
    compared = any(r.map_delta is not None for r in rows)
    return ["mAP50-95 % (95% CI)"] + (["mAP vs its control (95% CI)"] if compared else []) + ["mAP50 %", "Post ms"]


def detection_cells(row: ResultRow, compared: bool) -> list[str]:
    return [map_cell(row)] + ([map_delta_cell(row)] if compared else []) + \
        [fmt(None if row.map50 is None else row.map50 * 100, 1), fmt(row.postprocess_ms, 2)]


def _single_target(rows: Sequence[ResultRow], notes: _Notes) -> tuple[list[str], list[list[str]]]:
    """The plain table; Model, Compression, Zip and Accuracy columns appear only when the rows vary in them."""
    many_models, compressed = _identity_columns(rows)
    scored = any(r.accuracy is not None for r in rows)
    detected = any(r.map50_95 is not None for r in rows)
    compared = any(r.map_delta is not None for r in rows)
    agreement = compressed and not scored and not detected  # no labels: fidelity to the uncompressed model
    boxed = any(r.reference_boxes is not None for r in rows)  # a detector: its boxes matched to PyTorch's
    gains = compressed or len({r.precision for r in rows}) > 1  # what compression or int8 gained, per runtime
    h = SINGLE_TARGET_HEADERS
    headers = (["Model"] if many_models else []) + ["Format"] + (["Compression"] if compressed else []) + \
        h[1:5] + (["Zip (MB)"] if compressed else []) + h[5:8] + \
        (["Speed-up vs its fp32 uncompressed (95% CI)"] if gains else []) + h[8:9] + \
        (["Accuracy % (95% CI)"] if scored else []) + (detection_headers(rows) if detected else []) + \
        (["Top-1 agreement vs uncompressed (fidelity)"] if agreement else []) + \
        (["Boxes vs PyTorch"] if boxed else []) + h[9:]
    body = []
    for r in rows:
        cells = ([r.model] if many_models else []) + [r.format] + ([r.compression] if compressed else [])
        cells += [r.precision, str(r.batch), _status_cell(r, notes), fmt(r.size_mb, 1)]
        cells += [fmt(r.zip_mb, 2)] if compressed else []
        cells += [latency_cell(r), fmt_ms(r.p90_ms), speedup_cell(r)]
        cells += [compression_speedup_cell(r)] if gains else []
        cells += [fmt(r.throughput, 1)]
        cells += [accuracy_cell(r)] if scored else []
        cells += detection_cells(r, compared) if detected else []
        cells += [f"{r.agreement:.0%}" if r.agreement is not None else "-"] if agreement else []
        cells += [box_match_cell(r)] if boxed else []
        body.append(cells + [sci(r.max_abs_diff)])
    return headers, body


def table_layout(rows: Sequence[ResultRow]) -> tuple[list[str], list[list[str]], list[str]]:
    """(headers, cells of every row, footnotes) for whichever layout the rows need."""
    many_hosts = len({r.host for r in rows}) > 1  # a fleet run: a column per device and target
    columns = list(dict.fromkeys((r.host if many_hosts else "", r.target) for r in rows))
    notes = _Notes()
    if len(columns) <= 1:
        headers, body = _single_target(rows, notes)
        return headers, body, notes.items
    many_models, compressed = _identity_columns(rows)
    scored = any(r.accuracy is not None for r in rows)
    detected = any(r.map50_95 is not None for r in rows)
    groups: dict[tuple[str, str, str, str, int], dict[tuple[str, str], ResultRow]] = {}
    for row in rows:  # one line per variant; its targets (and devices) side by side
        column = (row.host if many_hosts else "", row.target)
        groups.setdefault((row.model, row.format, row.compression, row.precision, row.batch), {})[column] = row
    headers = (["Model"] if many_models else []) + ["Format"] + (["Compression"] if compressed else []) + \
        ["Precision", "Batch", "Size (MB)", *(f"{t.upper()} ms" + (f" [{h}]" if h else "") for h, t in columns)] + \
        (["Accuracy % (95% CI)"] if scored else []) + (["mAP50-95 % (95% CI)"] if detected else []) + \
        ["max abs diff vs PyTorch"]
    body = []
    for (model, fmt_name, compression, precision, batch), by_column in groups.items():
        sizes = [r.size_mb for r in by_column.values() if r.size_mb is not None]
        cells = ([model] if many_models else []) + [fmt_name] + ([compression] if compressed else [])
        cells += [precision, str(batch), fmt(sizes[0], 1) if sizes else "-"]
        name = " ".join([fmt_name] + ([compression] if compressed and compression != "none" else []))
        for host, target in columns:
            row = by_column.get((host, target))
            where = f"{target} of {host}" if host else target
            if row is None:
                cells.append("-")
            elif row.status == "ok":
                cells.append(fmt(row.p50_ms) + (f" ({', '.join(flags(row))})" if flags(row) else ""))
            else:
                cells.append(f"N/A [{notes.add(f'{name} on {where}: {row.error or row.status}')}]")
        if scored:
            cells.append(_accuracy_across(by_column, columns, many_hosts))
        if detected:  # the first target's: each target's own is in rows.csv
            cells.append(next((map_cell(r) for r in by_column.values() if r.map50_95 is not None), "-"))
        diffs = [r.max_abs_diff for r in by_column.values() if r.max_abs_diff is not None]
        cells.append(sci(max(diffs)) if diffs else "-")
        body.append(cells)
    return headers, body, notes.items


def _accuracy_across(by_column: dict[tuple[str, str], ResultRow], columns: list[tuple[str, str]],
                     many_hosts: bool) -> str:
    """One accuracy where every target scored the same; else each target's, named (fp16 on a GPU can differ)."""
    scored = [(column, accuracy_cell(by_column[column])) for column in columns
              if column in by_column and by_column[column].accuracy is not None]
    if len({cell for _, cell in scored}) <= 1:
        return scored[0][1] if scored else "-"
    return "; ".join(f"{target}{f' [{host}]' if many_hosts else ''}: {cell}" for (host, target), cell in scored)


def used_flags(body: list[list[str]]) -> list[str]:
    return [flag for flag in FLAG_HELP if any(flag in cell for cells in body for cell in cells)]


DETAIL_HEADERS = ["Format", "Precision", "Batch", "Target", "Export s", "Load s", "First ms", "p99 ms", "std ms",
                  "Iterations", "Rounds (repeated)", "GFLOP/s", "% of peak", "Energy (mJ/inference)", "Peak RSS (MB)",
                  "Cosine", "Other CPU load"]


def _identity_columns(rows: Sequence[ResultRow]) -> tuple[bool, bool]:
    """Whether the rows vary in model, and in compression: those columns are shown only then."""
    return len({r.model for r in rows}) > 1, len({r.compression for r in rows}) > 1


def _device_memory_shown(rows: Sequence[ResultRow]) -> bool:
    """Only where some row ran on an accelerator: a CPU run's memory is its peak RSS alone."""
    return any(r.device_memory_source for r in rows if r.status == "ok")


def detail_headers(rows: Sequence[ResultRow]) -> list[str]:
    many_models, compressed = _identity_columns(rows)
    headers = (["Model"] if many_models else []) + DETAIL_HEADERS[:1] + (["Compression"] if compressed else []) + \
        DETAIL_HEADERS[1:]
    if _device_memory_shown(rows):
        headers.insert(headers.index("Peak RSS (MB)") + 1, "Device memory (MB)")
    return headers


def _device_memory_cell(row: ResultRow) -> str:
    if row.device_memory_mb is not None:
        return f"{row.device_memory_mb:.0f} ({row.device_memory_source.split(' (')[0]})"
    return f"- ({row.device_memory_source})" if row.device_memory_source else "-"


def detail_cells(rows: Sequence[ResultRow]) -> list[list[str]]:
    """The rest of each measured row: export, load, first inference, spread, memory, noise."""
    many_models, compressed = _identity_columns(rows)
    devices = _device_memory_shown(rows)
    return [([r.model] if many_models else []) + [r.format] + ([r.compression] if compressed else []) +
            [r.precision, str(r.batch), r.target, fmt(r.export_s), fmt(r.load_s), fmt(r.first_ms),
             fmt(r.p99_ms), fmt(r.std_ms), str(r.iterations), _rounds_cell(r), fmt(r.gflops_per_s, 1),
             f"{r.peak_fraction:.1%}" if r.peak_fraction is not None else "-", fmt(r.energy_mj, 3),
             fmt(r.peak_rss_mb, 0)] + ([_device_memory_cell(r)] if devices else []) +
            [fmt(r.cosine, 6), f"{r.foreign_load:.1%}" if r.foreign_load is not None else "-"]
            for r in rows if r.status == "ok"]


def _rounds_cell(row: ResultRow) -> str:
    if row.repeats is None:
        return "-"
    return f"{row.repeats} ({row.rounds_repeated})" if row.rounds_repeated else str(row.repeats)


def markdown_grid(headers: Sequence[str], body: Sequence[Sequence[str]]) -> str:
    """A Markdown table; a `|` inside a cell (a user's runtime label, say) becomes `/` so columns stay put."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell.replace("|", "/") for cell in cells) + " |" for cells in body]
    return "\n".join(lines) + "\n"


def markdown_table(rows: Sequence[ResultRow]) -> str:
    headers, body, notes = table_layout(rows)
    text = markdown_grid(headers, body)
    if notes:
        text += "\n" + "\n".join(f"[{i}] {n}" for i, n in enumerate(notes, 1)) + "\n"
    flags_used = used_flags(body)
    if flags_used:
        text += "\n" + "\n".join(f"- {flag}: {FLAG_HELP[flag]}" for flag in flags_used) + "\n"
    return text


def markdown_report(rows: Sequence[ResultRow]) -> str:
    """table.md's body: the comparison table, then the per-row details behind it."""
    text = markdown_table(rows)
    details = detail_cells(rows)
    if details:
        text += "\n## Details\n\n" + markdown_grid(detail_headers(rows), details)
        text += energy_note(rows)
    return text + profile_section(rows)


def coverage_cell(row: ResultRow) -> str:
    """An int8 row's integer coverage: `65% of time, 97% of MACs` (the second where the profile counts them)."""
    if row.int8_coverage is None:
        return "-"
    macs = f", {row.int8_mac_coverage:.0%} of MACs" if row.int8_mac_coverage is not None else ""
    return f"{row.int8_coverage:.0%} of time{macs}"


def profile_cells(row: ResultRow) -> list[str]:
    """A profiled row's cells, in table.md and the report alike: the profiled inference, the slowest operators
    (or why there is no profile), its integer coverage and what did not run in integer kernels."""
    if row.profile_ms is None:
        return ["-", f"no profile: {row.profile_note}", "-", "-"]
    overhead = f" (x{row.profile_ms / row.profile_pace_ms:.2f})" if row.profile_pace_ms else ""
    return [fmt(row.profile_ms, 3) + overhead, row.profile_top, coverage_cell(row), row.float_ops or "-"]


def profile_section(rows: Sequence[ResultRow]) -> str:
    """table.md's operator profiles (`PROFILE=1`): per profiled row its slowest operators, the profiled
    inference beside the unprofiled p50 (the profiler's overhead), and for int8 rows the share of operator time
    in integer kernels and the slowest operators left in float; the lines are in profile.csv."""
    asked = [r for r in rows if r.status == "ok" and (r.profile_ms is not None or r.profile_note)]
    if not asked:
        return ""
    many_models, compressed = _identity_columns(asked)
    headers = (["Model"] if many_models else []) + ["Format"] + (["Compression"] if compressed else []) + \
        ["Precision", "Batch", "p50 ms", "Profiled ms", "Slowest operators (share of the profiled inference)",
         "int8 coverage", "Not in integer kernels"]
    body = [([r.model] if many_models else []) + [r.format] + ([r.compression] if compressed else []) +
            [r.precision, str(r.batch), fmt(r.p50_ms, 3), *profile_cells(r)] for r in asked]
    return ("\n## Operator profiles\n\nEach runtime's own profiler, in a profiled round after the timed rounds "
            "(profile.csv has every operator, its category and the precision its kernel ran in). Profiled ms is "
            "the median profiled inference, profiler on; in brackets, its ratio to unprofiled inferences timed "
            "right after it: the profiler's overhead at that moment (p50 ms comes from the timed rounds, earlier, "
            "when the host may have run faster or slower). "
            "int8 coverage: the share of operator time in integer kernels (quantize/dequantize count as float), "
            "and of the multiply-adds where the runtime's graph gives them.\n\n"
            + markdown_grid(headers, body))


def energy_note(rows: Sequence[ResultRow]) -> str:
    """Where the energy column came from, or why it is empty: never a guess in its place."""
    ok = [r for r in rows if r.status == "ok" and r.energy_source]
    sources = sorted({r.energy_source for r in ok if r.energy_mj is not None})
    reasons = sorted({r.energy_source for r in ok if r.energy_mj is None})
    parts = [f"Energy from {'; '.join(sources)}."] if sources else []
    if reasons:  # a GPU box: NVML for the GPU rows, and why the CPU rows have none
        parts.append(f"{'Not measured in the other rows' if sources else 'Energy not measured'}: {'; '.join(reasons)}.")
    return "\n" + " ".join(parts) + "\n" if parts else ""
