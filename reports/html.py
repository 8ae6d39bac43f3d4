"""report.html: one self-contained page (plots inlined, styles and the table sorter inside), opened by
double-click with no server and no network."""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from edgebench.reports.build import Section, Table

STYLE = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 1280px;
       padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 12px; }
th, td { border: 1px solid #ddd; padding: 3px 6px; text-align: left; white-space: nowrap; }
th { background: #f3f5f8; cursor: pointer; user-select: none; }
th[aria-sort="ascending"]::after { content: " \\25B2"; } th[aria-sort="descending"]::after { content: " \\25BC"; }
tbody tr:nth-child(even) { background: #fafbfc; }
.scroll { overflow-x: auto; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #555; font-size: 12px; } ul.notes { font-size: 12px; color: #444; }
"""

# Click a header to sort by it (numbers by value, the rest as text); click again to reverse.
SORTER = """
document.querySelectorAll("table.sortable").forEach(function (table) {
  table.querySelectorAll("th").forEach(function (th, col) {
    th.addEventListener("click", function () {
      var ascending = th.getAttribute("aria-sort") !== "ascending";
      table.querySelectorAll("th").forEach(function (h) { h.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
      var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
      function key(row) {
        var text = row.cells[col].textContent.trim(), number = parseFloat(text.replace(/^x/, ""));
        return isNaN(number) ? [1, text.toLowerCase()] : [0, number];
      }
      rows.sort(function (a, b) {
        var ka = key(a), kb = key(b), order = ka[0] - kb[0];
        if (!order) { order = ka[1] < kb[1] ? -1 : ka[1] > kb[1] ? 1 : 0; }
        return ascending ? order : -order;
      });
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });
});
"""


def table_html(table: Table) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in table.headers)
    rows = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>\n" for cells in table.body)
    text = f'<div class="scroll"><table class="sortable"><thead><tr>{head}</tr></thead>\n<tbody>\n{rows}</tbody>' \
           "</table></div>\n"
    if table.notes:
        text += '<ul class="notes">' + "".join(f"<li>{html.escape(n)}</li>" for n in table.notes) + "</ul>\n"
    return text


def image_html(path: Path, title: str, caption: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    text = f'<figure><img alt="{html.escape(title)}" src="data:image/png;base64,{data}">'
    return text + (f"<figcaption>{html.escape(caption)}</figcaption>" if caption else "") + "</figure>\n"


def html_page(title: str, intro: str, sections: Sequence[Section], folder: Path) -> str:
    """The whole page; figures are read from `folder` (where the report's plots were written) and inlined."""
    parts = [f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
             f"\n<style>{STYLE}</style></head>\n<body>\n<h1>{html.escape(title)}</h1>\n<p>{html.escape(intro)}</p>\n"]
    for section in sections:
        parts.append(f"<h2>{html.escape(section.title)}</h2>\n")
        if section.lines:
            parts.append("<ul>" + "".join(f"<li>{html.escape(line)}</li>" for line in section.lines) + "</ul>\n")
        parts += [table_html(table) for table in section.tables]
        parts += [image_html(folder / f.path, f.title, f.caption) for f in section.figures]
    parts.append(f"<script>{SORTER}</script>\n</body></html>\n")
    return "".join(parts)
