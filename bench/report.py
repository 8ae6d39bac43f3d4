"""Result tables in the YOLOv5 export layout, with footnotes for every row that did not run (pure functions).

One target: a row per format x precision x batch with latency and fidelity columns. Several targets:
a row per format x precision x batch with one `<TARGET> ms` column each (p50), `N/A [n]` where the
runtime could not run there, and the reason in footnote n.
"""

from __future__ import annotations

from collections.abc import Sequence

from bench.results import ResultRow

SINGLE_TARGET_HEADERS = ["Format", "Precision", "Batch", "Status", "Size (MB)", "p50 ms", "p90 ms",
                         "Throughput (img/s)", "max abs diff vs PyTorch"]

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
        text += f" [{notes.add(f'{row.format} {row.precision} b{row.batch} on {row.target}: {row.error}')}]"
    return text


def table_layout(rows: Sequence[ResultRow]) -> tuple[list[str], list[list[str]], list[str]]:
    """(headers, cells of every row, footnotes) for whichever layout the rows need."""
    targets = list(dict.fromkeys(r.target for r in rows))
    notes = _Notes()
    if len(targets) <= 1:
        body = [[r.format, r.precision, str(r.batch), _status_cell(r, notes), fmt(r.size_mb, 1), fmt(r.p50_ms),
                 fmt(r.p90_ms), fmt(r.throughput, 1), sci(r.max_abs_diff)] for r in rows]
        return SINGLE_TARGET_HEADERS, body, notes.items
    groups: dict[tuple[str, str, int], dict[str, ResultRow]] = {}
    for row in rows:
        groups.setdefault((row.format, row.precision, row.batch), {})[row.target] = row
    headers = ["Format", "Precision", "Batch", "Size (MB)", *(f"{t.upper()} ms" for t in targets),
               "max abs diff vs PyTorch"]
    body = []
    for (fmt_name, precision, batch), by_target in groups.items():
        sizes = [r.size_mb for r in by_target.values() if r.size_mb is not None]
        cells = [fmt_name, precision, str(batch), fmt(sizes[0], 1) if sizes else "-"]
        for target in targets:
            row = by_target.get(target)
            if row is None:
                cells.append("-")
            elif row.status == "ok":
                cells.append(fmt(row.p50_ms) + (f" ({', '.join(flags(row))})" if flags(row) else ""))
            else:
                cells.append(f"N/A [{notes.add(f'{fmt_name} on {target}: {row.error or row.status}')}]")
        diffs = [r.max_abs_diff for r in by_target.values() if r.max_abs_diff is not None]
        cells.append(sci(max(diffs)) if diffs else "-")
        body.append(cells)
    return headers, body, notes.items


def used_flags(body: list[list[str]]) -> list[str]:
    return [flag for flag in FLAG_HELP if any(flag in cell for cells in body for cell in cells)]


DETAIL_HEADERS = ["Format", "Precision", "Batch", "Target", "Export s", "Load s", "First ms", "p99 ms", "std ms",
                  "Iterations", "Peak RSS (MB)", "Cosine", "Other CPU load"]


def detail_cells(rows: Sequence[ResultRow]) -> list[list[str]]:
    """The rest of each measured row: export, load, first inference, spread, memory, noise."""
    return [[r.format, r.precision, str(r.batch), r.target, fmt(r.export_s), fmt(r.load_s), fmt(r.first_ms),
             fmt(r.p99_ms), fmt(r.std_ms), str(r.iterations), fmt(r.peak_rss_mb, 0), fmt(r.cosine, 6),
             f"{r.foreign_load:.1%}" if r.foreign_load is not None else "-"] for r in rows if r.status == "ok"]


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
        text += "\n## Details\n\n" + markdown_grid(DETAIL_HEADERS, details)
    return text
