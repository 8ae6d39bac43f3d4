"""Result tables: the YOLOv5-export-style Markdown table and its footnotes (pure functions)."""

from __future__ import annotations

from collections.abc import Sequence

from bench.results import ResultRow

HEADERS = ["Format", "Precision", "Batch", "Status", "Size (MB)", "p50 ms", "p90 ms", "Throughput (img/s)",
           "max abs diff vs PyTorch"]


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


def status_cell(row: ResultRow, note: int | None) -> str:
    text = row.status
    flags = []
    if row.status == "ok":
        if row.fidelity_ok is False:
            flags.append("fidelity!")
        if row.noisy:
            flags.append("noisy")
        if row.capped:
            flags.append("capped")
    if flags:
        text += f" ({', '.join(flags)})"
    return text + (f" [{note}]" if note else "")


def table_cells(rows: Sequence[ResultRow]) -> tuple[list[list[str]], list[str]]:
    """Cells of every row and the footnotes (reasons for error/unavailable, flag explanations)."""
    notes: list[str] = []
    body = []
    for row in rows:
        note = None
        if row.error:
            notes.append(f"{row.format} {row.precision} b{row.batch}: {row.error}")
            note = len(notes)
        body.append([
            row.format, row.precision, str(row.batch), status_cell(row, note), fmt(row.size_mb, 1),
            fmt(row.p50_ms), fmt(row.p90_ms), fmt(row.throughput, 1), sci(row.max_abs_diff),
        ])
    return body, notes


FLAG_HELP = {
    "fidelity!": "outputs differ from PyTorch beyond the precision's tolerance",
    "noisy": "other processes used over 10% of the machine's CPU while timing",
    "capped": "max duration reached before the minimum iteration count",
}


def markdown_table(rows: Sequence[ResultRow]) -> str:
    body, notes = table_cells(rows)
    lines = ["| " + " | ".join(HEADERS) + " |", "|" + "|".join("---" for _ in HEADERS) + "|"]
    lines += ["| " + " | ".join(cell.replace("|", "/") for cell in cells) + " |" for cells in body]
    text = "\n".join(lines) + "\n"
    if notes:
        text += "\n" + "\n".join(f"[{i}] {n}" for i, n in enumerate(notes, 1)) + "\n"
    used = {flag for cells in body for flag in FLAG_HELP if flag in cells[3]}
    if used:
        text += "\n" + "\n".join(f"- {flag}: {FLAG_HELP[flag]}" for flag in sorted(used)) + "\n"
    return text
