"""`make report`: stored runs -> REPORT.md, report.html, plots, and the rows as CSV and Parquet.

Built from what the runs wrote, measuring nothing. Deterministic: the same runs give the same Markdown,
HTML and PNG bytes (no generation time anywhere; plots carry no software stamp), so a report kept in git
changes only when its rows do.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from edgebench.bench.measure.profile import PROFILE_FILE, PROFILE_PARQUET, write_profile, write_profile_parquet
from edgebench.bench.report import (
    FLAG_HELP,
    accuracy_cell,
    compression_speedup_cell,
    detail_cells,
    detail_headers,
    fmt,
    latency_cell,
    markdown_grid,
    profile_cells,
    speedup_cell,
    table_layout,
    used_flags,
)
from edgebench.reports import plots
from edgebench.reports.html import html_page
from edgebench.reports.runs import Run, rows_frame
from edgebench.reports.tables import environment_lines, side_by_side, slowest_blocks, slowest_layers


@dataclass
class Figure:
    title: str
    path: Path  # relative to the report folder
    caption: str = ""


@dataclass
class Table:
    headers: list[str]
    body: list[list[str]]
    notes: list[str] = field(default_factory=list)


@dataclass
class Section:
    """One part of the report: a heading, lines of text, tables, then figures; rendered as Markdown and HTML."""

    title: str
    lines: list[str] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)


def markdown_section(section: Section) -> str:
    text = f"\n## {section.title}\n\n"
    text += "".join(f"- {line}\n" for line in section.lines) + ("\n" if section.lines else "")
    for table in section.tables:
        text += markdown_grid(table.headers, table.body)
        text += ("\n" + "".join(f"- {note}\n" for note in table.notes)) if table.notes else ""
        text += "\n"
    for figure in section.figures:
        text += f"![{figure.title}]({figure.path.as_posix()})\n\n" + (f"{figure.caption}\n\n" if figure.caption else "")
    return text


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-").lower()


def _groups(run: Run) -> list[tuple[str, list]]:
    """A run's rows by target: latencies on different targets do not share an axis."""
    targets = list(dict.fromkeys(r.target for r in run.rows))
    return [(t, [r for r in run.rows if r.target == t]) for t in targets]


def _add(section: Section, out: Path, name: str, fig, title: str, caption: str = "") -> None:
    if fig is not None:
        section.figures.append(Figure(title, plots.save(fig, out / "plots" / f"{name}.png").relative_to(out), caption))


SPEEDUP_CAPTION = ("Grey bars are within noise (their interval holds x1, or they lie within the shaded A/A floor, "
                   "±{floor:.1%}).")


def headline_section(run: Run, target: str, rows: list, out: Path) -> Section:
    """The reader's question first: per model and runtime, p50 and the speed-ups with their intervals, and
    accuracy where the run scored it; then the speed-up bars."""
    slug, where = _slug(run.name), f"{run.name}, {target.upper()} ({run.machine})"
    compressed = any(r.compression != "none" or r.precision != "fp32" for r in rows)
    scored = any(r.accuracy is not None for r in rows)
    headers = ["Model", "Format", "Compression", "Precision", "Batch", "p50 ms (95% CI)",
               "Speed-up vs PyTorch (95% CI)"]
    headers += ["Speed-up vs its fp32 uncompressed (95% CI)"] * compressed + ["Accuracy % (95% CI)"] * scored
    floor = run.floor
    body = [[r.model, r.format, r.compression, r.precision, str(r.batch), latency_cell(r), speedup_cell(r, floor)]
            + [compression_speedup_cell(r, floor)] * compressed + [accuracy_cell(r)] * scored
            for r in rows if r.status == "ok"]
    notes = [f"~: within noise: the interval holds x1, or the speed-up lies within the machine's A/A floor "
             f"(±{floor:.1%}: two processes timing one file differ that much); speed-ups are paired, each row "
             "timed in the same cycles as its baseline."]
    notes += [f"{r.status}: {r.format} {r.compression} {r.precision} b{r.batch}: {r.error or '-'}"
              for r in rows if r.status != "ok"]
    section = Section(f"Results: {where}", tables=[Table(headers, body, notes)])
    _add(section, out, f"{slug}-{target}-speedup", plots.speedups(
        rows, f"Speed-up against PyTorch fp32: {where}", floor=floor), "Speed-up against PyTorch",
        SPEEDUP_CAPTION.format(floor=floor))
    if compressed:
        _add(section, out, f"{slug}-{target}-compression-speedup", plots.speedups(
            rows, f"Speed-up against the same runtime uncompressed at fp32: {where}", "compression_speedup", floor),
            "Speed-up from compression, per runtime", SPEEDUP_CAPTION.format(floor=floor))
    return section


def tradeoff_section(run: Run, target: str, rows: list, out: Path) -> Section:
    """Latency against accuracy (or fidelity) and size, with the Pareto front, where the axis's spread is more
    than its noise; a plot left out says why."""
    slug, where = _slug(run.name), f"{run.name}, {target.upper()} ({run.machine})"
    section = Section(f"Trade-offs: {where}")
    scored = any(r.accuracy is not None for r in rows if r.status == "ok")
    quality = "accuracy" if scored else "max_abs_diff"
    what = "accuracy" if scored else "fidelity to PyTorch"
    paired = any(plots.paired_ms(r, rows) != r.p50_ms for r in rows if r.status == "ok")
    placed = (" A compressed row is placed at its runtime's uncompressed p50 over its paired speed-up: each "
              "variant was timed in its own round-robin, minutes from the others, and its own p50 carries the "
              "machine's speed of that moment." if paired else "")
    _add(section, out, f"{slug}-{target}-latency-vs-{quality}", plots.tradeoff(
        rows, quality, f"Latency vs {'accuracy' if scored else 'fidelity'}: {where}"),
        f"Latency vs {what}",
        "Circled and joined: the Pareto front, the choices nothing else beats on both axes."
        + ("" if scored else " No labelled data: fidelity (largest output difference from PyTorch) instead.")
        + placed)
    reason = plots.within_noise(rows, quality)
    if reason:
        section.lines.append(f"No latency vs {what} plot: {reason}.")
    _add(section, out, f"{slug}-{target}-latency-vs-size", plots.tradeoff(
        rows, "size_mb", f"Latency vs size on disk: {where}"), "Latency vs size",
        "Size on an axis from zero." + placed)
    _add(section, out, f"{slug}-{target}-compression", plots.compression_curves(
        rows, f"Compression trade-off curves: {where}"), "Compression trade-offs",
        "Accuracy and latency against how hard each method compressed, from the uncompressed model.")
    if not section.figures and not section.lines:
        measured = sum(r.status == "ok" for r in rows)
        section.lines.append(f"{measured} row{'s' if measured != 1 else ''} measured here: nothing to trade off; "
                             "the rows are in the tables below.")
    return section


def profile_section(run: Run, target: str, rows: list, out: Path) -> Section | None:
    """Where each runtime spends its time (`PROFILE=1` runs): operator categories per row, the slowest layers
    matched across runtimes, and per int8 row its integer coverage and what stayed float."""
    lines = run.profile
    if not lines or not any(r.profile_ms is not None for r in rows):
        return None
    slug, where = _slug(run.name), f"{run.name}, {target.upper()} ({run.machine})"
    section = Section(f"Operator profiles: {where}", lines=[
        "Each runtime's own profiler, in a profiled round after the timed rounds; every operator is in the run's "
        "profile.csv. Times are per profiled inference, profiler on: compare rows with each other. What the "
        "profiler itself cost is the bracketed ratio beside Profiled ms, over unprofiled inferences timed right "
        "after the profile (runs from before that ratio have only the p50 column to compare with)."])
    profiled = [r for r in rows if r.status == "ok" and (r.profile_ms is not None or r.profile_note)]
    body = [[r.model, r.format, r.compression, r.precision, str(r.batch), fmt(r.p50_ms, 3), *profile_cells(r)]
            for r in profiled]
    section.tables.append(Table(["Model", "Format", "Compression", "Precision", "Batch", "p50 ms", "Profiled ms",
                                 "Slowest operators", "int8 coverage", "Not in integer kernels"], body))
    headers, matched = slowest_layers(rows, lines)
    if matched:
        section.tables.append(Table(headers, matched, ["The slowest layers that runtimes report under the same "
                                                       "exported node name, ms per profiled inference."]))
    headers, blocks = slowest_blocks(rows, lines)
    if blocks:
        section.tables.append(Table(headers, blocks, [
            "The slowest PyTorch module blocks, ms per profiled inference: what each row ran in the block, by "
            "the module its profile names (eager PyTorch its own modules; ONNX Runtime and OpenVINO their nodes' "
            "source), compared at the parent of that module, since an exported convolution with a folded "
            "BatchNorm carries the BatchNorm's name. An operator a runtime fused into another block's moves "
            "with it."]))
    _add(section, out, f"{slug}-{target}-profile", plots.profile_categories(
        rows, lines, f"Time by operator category: {where}"), "Where each runtime spends its time",
        "Each row's profiled inference split by operator category; light grey is time outside any operator.")
    return section


def run_section(run: Run, out: Path) -> Section:
    """A run's own table, its details, its environment, the distribution of its samples and its speed-ups."""
    slug = _slug(run.name)
    headers, body, notes = table_layout(run.rows)
    notes = [f"[{i}] {n}" for i, n in enumerate(notes, 1)] + [f"{f}: {FLAG_HELP[f]}" for f in used_flags(body)]
    section = Section(f"Run {run.name}", environment_lines(run), [Table(headers, body, notes)])
    details = detail_cells(run.rows)
    if details:
        section.tables.append(Table(detail_headers(run.rows), details))
    for target, rows in _groups(run):
        where = f"{run.name}, {target.upper()}"
        _add(section, out, f"{slug}-{target}-distribution", plots.distribution(
            rows, run.samples, f"Latency distribution per row: {where}"), "Latency distributions",
            "Every kept sample of every round, so the noise behind each p50 is visible.")
    return section


def build_report(runs: Sequence[Run], out: Path) -> Path:
    """Write the report folder; returns REPORT.md's path."""
    out.mkdir(parents=True, exist_ok=True)
    for old in (out / "plots").glob("*.png"):  # plots of runs no longer in the report go
        old.unlink()
    groups = [(run, target, rows) for run in runs for target, rows in _groups(run)]
    sections = [headline_section(*group, out) for group in groups] + [tradeoff_section(*group, out)
                                                                        for group in groups]
    sections += [found for found in (profile_section(*group, out) for group in groups) if found is not None]
    if len(runs) > 1:
        headers, body, notes = side_by_side(runs)
        sections.append(Section("All runs side by side: p50 ms per target and machine",
                                tables=[Table(headers, body, notes)]))
    sections += [run_section(run, out) for run in runs]
    intro = (f"Built from {len(runs)} stored run{'s' if len(runs) != 1 else ''} "
             f"({', '.join(r.name for r in runs)}), measuring nothing; the rows as CSV and Parquet"
             + (" and the operator profiles (profile.csv, profile.parquet)" if any(r.profile for r in runs) else "")
             + " are beside this file.")
    (out / "REPORT.md").write_text("# edgebench report\n\n" + intro + "\n" + "".join(map(markdown_section, sections)))
    (out / "report.html").write_text(html_page("edgebench report", intro, sections, out))
    frame = rows_frame(list(runs))
    frame.to_csv(out / "rows.csv", index=False)
    frame.to_parquet(out / "rows.parquet", index=False)
    write_profiles(runs, out)
    return out / "REPORT.md"


def write_profiles(runs: Sequence[Run], out: Path) -> None:
    """Every profiled run's operator lines in one table beside the rows (profile.csv and profile.parquet; `run`
    names the run as rows.csv does), or neither where no run was profiled (a rebuilt report keeps no stale one)."""
    lines = [replace(line, run=run.name) for run in runs for line in run.profile]
    for path in (out / PROFILE_FILE, out / PROFILE_PARQUET):
        path.unlink(missing_ok=True)
    if lines:
        write_profile(out / PROFILE_FILE, lines)
        write_profile_parquet(out / PROFILE_PARQUET, lines)
