"""The report's figures, drawn headless with matplotlib from stored rows and samples.

Each function takes rows (and samples) and returns a Figure; `save` writes it as a PNG whose bytes depend
only on the figure (no software or time stamp), so the same rows give the same files.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: no display on a server or in CI

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from edgebench.bench.measure.profile import CATEGORIES, ProfileLine  # noqa: E402
from edgebench.bench.results import ResultRow  # noqa: E402
from edgebench.reports.pareto import pareto_front  # noqa: E402
from edgebench.reports.runs import samples_of  # noqa: E402

plt.rcParams.update({"svg.hashsalt": "edgebench", "font.size": 8, "axes.titlesize": 9, "figure.dpi": 100})
FRONT_COLOUR, POINT_COLOUR = "#c0392b", "#2c6fbb"
NOISE_COLOUR = "#b0b0b0"  # within noise: not shown to differ from x1


def _set_title(ax, title: str) -> None:
    """The title wrapped to its figure's width, before the layout is made: a run's long CPU name ("Intel(R)
    Xeon(R) Processor, 2 threads") ran off the figure's edge."""
    import textwrap

    chars = int(0.7 * ax.figure.get_figwidth() * ax.figure.dpi / 6.5)  # 9-point characters over the axes
    ax.set_title(textwrap.fill(title, max(chars, 40)))


def point_label(row: ResultRow) -> str:
    """Runtime + compression (+ precision where not fp32): what a point or a bar stands for."""
    parts = [row.format]
    if row.precision != "fp32":
        parts.append(row.precision)
    if row.compression != "none":
        parts.append(row.compression)
    if row.batch != 1:
        parts.append(f"b{row.batch}")
    return " ".join(parts)


def _measured(rows: Sequence[ResultRow]) -> list[ResultRow]:
    return [r for r in rows if r.status == "ok" and r.p50_ms]


RUNTIME_COLOURS = ("#2c6fbb", "#e08a1e", "#2a9d58", "#8e44ad", "#c0392b", "#6d4c41", "#d35fa0", "#607d8b")
LABEL_OFFSETS = ((4, 3), (4, -9), (-4, 3), (-4, -9), (4, 10), (4, -16), (-4, 10), (-4, -16), (10, -3))


def variant_label(row: ResultRow) -> str:
    """What a point is beside its runtime (which its colour says): compression and precision."""
    parts = [row.compression] if row.compression != "none" else []
    if row.precision != "fp32" or not parts:
        parts.append(row.precision)
    if row.batch != 1:
        parts.append(f"b{row.batch}")
    return " ".join(parts)


def _place_labels(ax, fig: Figure, xs: list[float], ys: list[float], texts: list[str], colours: list[str]) -> None:
    """Label every point, trying a few offsets around it for one that overlaps no label already placed."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    placed = []
    for x, y, text, colour in zip(xs, ys, texts, colours, strict=True):
        for dx, dy in LABEL_OFFSETS:
            note = ax.annotate(text, (x, y), xytext=(dx, dy), textcoords="offset points", fontsize=6.5, color=colour,
                               ha="left" if dx > 0 else "right")
            box = note.get_window_extent(renderer)
            if not any(box.overlaps(other) for other in placed):
                break
            if (dx, dy) != LABEL_OFFSETS[-1]:
                note.remove()
        placed.append(box)


def within_noise(rows: Sequence[ResultRow], y: str) -> str:
    """Why the rows' spread on axis `y` is no trade-off (empty when it is one): a front drawn through differences
    smaller than their own noise would show noise as a choice.

    max_abs_diff: the spread is within the tightest tolerance of the rows' precisions (fp32: 1e-3), i.e.
    rounding; accuracy: every row's 95% interval overlaps every other's; size: never (drawn from zero).
    """
    from edgebench.bench.measure.fidelity import TOLERANCES

    points = [r for r in _measured(rows) if getattr(r, y) is not None]
    if len(points) < 2 or y == "size_mb":
        return ""
    if y == "max_abs_diff":
        values = [r.max_abs_diff for r in points]
        tolerance = min(TOLERANCES.get(r.precision, (0.0, 0.0))[0] for r in points)
        if max(values) - min(values) <= tolerance:
            return (f"every row's largest difference from PyTorch is within {max(values):.1e}, inside the "
                    f"{tolerance:g} tolerance of its precision: rounding, not a trade-off")
        return ""
    if y == "accuracy":
        lows = [r.accuracy_ci_low for r in points]
        highs = [r.accuracy_ci_high for r in points]
        if None in lows or None in highs:
            return ""
        if max(lows) <= min(highs):
            return (f"every row's accuracy ({min(r.accuracy for r in points):.1%}-"
                    f"{max(r.accuracy for r in points):.1%}) lies inside every other row's 95% interval: no "
                    "accuracy difference this test set can show")
    return ""


def paired_ms(row: ResultRow, rows: Sequence[ResultRow]) -> float | None:
    """Where a trade-off plot puts a row on its latency axis: its p50, or for a compressed row with a paired speed-up,
    its runtime's uncompressed fp32 p50 over that speed-up. Each variant is timed in its own round-robin,
    minutes from the others, beside the uncompressed model kept loaded, so its own p50 carries the machine's speed
    of that moment (the stored study's eager `cluster:16`: 1.476 ms against 0.749 uncompressed, yet x1.14 faster
    in the same cycles); its paired speed-up places it in the cycles where the runtimes were timed together, with
    the uncompressed int8 rows, which were timed there too."""
    if row.compression == "none" or not row.compression_speedup:
        return row.p50_ms
    base = next((r for r in rows if (r.model, r.runtime, r.target, r.batch, r.compression, r.precision, r.status)
                 == (row.model, row.runtime, row.target, row.batch, "none", "fp32", "ok") and r.p50_ms), None)
    return base.p50_ms / row.compression_speedup if base is not None else row.p50_ms


def tradeoff(rows: Sequence[ResultRow], y: str, title: str) -> Figure | None:
    """Latency (x) against size, accuracy or the fidelity error (y): one colour per runtime, every point
    labelled with its compression and precision, and the Pareto front drawn: the points no other beats on
    both axes. A variant's latency is its paired one (`paired_ms`). None when fewer than two rows have both
    figures, or when their spread on `y` is within noise (`within_noise` says why). Size is drawn from zero, so a
    2% spread looks like one."""
    better_high = y == "accuracy"
    points = [r for r in _measured(rows) if getattr(r, y) is not None]
    if len(points) < 2 or within_noise(points, y):
        return None
    xs = [paired_ms(r, rows) for r in points]
    paired = any(x != r.p50_ms for x, r in zip(xs, points, strict=True))
    ys = [getattr(r, y) * (100 if better_high else 1) for r in points]
    front = pareto_front(list(zip(xs, ys, strict=True)), maximize_y=better_high)
    runtimes = list(dict.fromkeys(r.format for r in points))
    colour = {name: RUNTIME_COLOURS[i % len(RUNTIME_COLOURS)] for i, name in enumerate(runtimes)}
    fig, ax = plt.subplots(figsize=(10.5, 6))
    for name in runtimes:
        chosen = [i for i, r in enumerate(points) if r.format == name]
        ax.scatter([xs[i] for i in chosen], [ys[i] for i in chosen], s=20, color=colour[name], label=name, zorder=2)
    ax.plot([xs[i] for i in front], [ys[i] for i in front], "-o", color="#111111", ms=9, mfc="none", lw=1,
            zorder=3, label="Pareto front: nothing is both faster and " + (
                "more accurate" if better_high else "smaller" if y == "size_mb" else "closer to PyTorch"))
    if max(xs) / min(xs) > 20:
        ax.set_xscale("log")
    if y in ("size_mb", "max_abs_diff") and min(ys) > 0 and max(ys) / min(ys) > 20:
        ax.set_yscale("log")
    elif y == "size_mb":
        ax.set_ylim(0, max(ys) * 1.08)
    order = front + [i for i in range(len(points)) if i not in front]  # the front's labels get the best places
    _place_labels(ax, fig, [xs[i] for i in order], [ys[i] for i in order],
                  [variant_label(points[i]) for i in order], [colour[points[i].format] for i in order])
    ax.set_xlabel("p50 latency (ms, lower is better)" + (
        "; a variant: its runtime's uncompressed p50 over its paired speed-up" if paired else ""))
    ax.set_ylabel({"size_mb": "size on disk (MB, lower is better)", "accuracy": "top-1 accuracy (%, higher is better)",
                   "max_abs_diff": "max abs difference from PyTorch (lower is better)"}[y])
    _set_title(ax, title)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, frameon=False)
    fig.tight_layout()
    return fig


def distribution(rows: Sequence[ResultRow], samples: dict[str, list[list[float]]], title: str) -> Figure | None:
    """The kept latency samples of each row, all rounds together, as boxes (whiskers at the 1st and 99th
    percentiles), so the spread and the noise behind each p50 are visible. None without samples."""
    shown = [(r, [s for chunk in samples_of(samples, r) for s in chunk]) for r in _measured(rows)]
    shown = [(r, s) for r, s in shown if s]
    if not shown:
        return None
    fig, ax = plt.subplots(figsize=(8, 0.6 + 0.28 * len(shown)))
    ax.boxplot([s for _, s in shown], vert=False, whis=(1, 99), showfliers=False, widths=0.6,
               medianprops={"color": FRONT_COLOUR})
    devices = len({r.host for r, _ in shown}) > 1  # a fleet run: say which device each box is
    ax.set_yticks(range(1, len(shown) + 1),
                  [point_label(r) + (f" [{r.host}]" if devices else "") for r, _ in shown], fontsize=7)
    ax.invert_yaxis()  # the table's order, top to bottom
    values = [v for _, s in shown for v in s]
    if max(values) / max(min(values), 1e-9) > 20:
        ax.set_xscale("log")
    ax.set_xlabel("latency per inference (ms); box: quartiles, line: median, whiskers: 1st-99th percentile")
    _set_title(ax, title)
    ax.grid(True, axis="x", alpha=0.3)
    fig.tight_layout()
    return fig


def speedups(rows: Sequence[ResultRow], title: str, field: str = "speedup", floor: float = 0.0) -> Figure | None:
    """Speed-up bars against the run's PyTorch fp32 (or, with field='compression_speedup', against each
    runtime's own uncompressed fp32), with their 95% intervals where the run has them; a bar within noise
    (`bench.report.within_noise`) is grey, and the machine's A/A floor is shaded around x1."""
    from edgebench.bench.report import within_noise

    shown = [r for r in _measured(rows) if getattr(r, field) is not None]
    if not shown:
        return None
    values = [getattr(r, field) for r in shown]
    lows = [getattr(r, f"{field}_ci_low") for r in shown]
    highs = [getattr(r, f"{field}_ci_high") for r in shown]
    errors = None
    if all(v is not None for v in lows + highs):
        errors = [[v - lo for v, lo in zip(values, lows, strict=True)],
                  [hi - v for v, hi in zip(values, highs, strict=True)]]
    fig, ax = plt.subplots(figsize=(8, 0.6 + 0.28 * len(shown)))
    colours = [NOISE_COLOUR if within_noise(v, lo, hi, floor) else POINT_COLOUR if v >= 1 else FRONT_COLOUR
               for v, lo, hi in zip(values, lows, highs, strict=True)]
    if floor > 0:
        ax.axvspan(1 / (1 + floor), 1 + floor, color=NOISE_COLOUR, alpha=0.3, lw=0)
    ax.barh(range(len(shown)), values, xerr=errors, color=colours, alpha=0.85, capsize=2)
    ax.set_yticks(range(len(shown)), [point_label(r) for r in shown], fontsize=7)
    ax.invert_yaxis()
    ax.axvline(1.0, color="#333333", lw=0.8)
    what = "PyTorch fp32" if field == "speedup" else "the same runtime at fp32, uncompressed"
    ax.set_xlabel(f"speed-up against {what} (x, higher is faster; bars: 95% interval)")
    _set_title(ax, title)
    ax.grid(True, axis="x", alpha=0.3)
    fig.tight_layout()
    return fig


def _strength(row: ResultRow) -> tuple[str, float] | None:
    """A single-method variant's family and how hard it compressed, as measured: ('prune-channels', 0.286) for
    the share of channels really removed (not the 0.3 asked), ('cluster', 4 bits)."""
    spec = row.compression
    if "+" in spec or ":" not in spec:
        return None
    method, arg = spec.split(":", 1)
    if method == "prune-channels" and row.pruned_fraction is not None:
        return method, row.pruned_fraction
    if method.startswith("prune-"):
        return method, float(arg)
    if method == "cluster":
        clusters = arg.split("@")[0]
        return (f"cluster{'@' + arg.split('@')[1] if '@' in arg else ''}",
                math.log2(int(clusters))) if clusters.isdigit() else None
    return None


def compression_curves(rows: Sequence[ResultRow], title: str) -> Figure | None:
    """For a compression study: accuracy and speed against how hard each method compressed (pruning's realised
    share removed, clustering's bits per weight), starting from the uncompressed model. Accuracy is one line per
    method (every runtime scores the same fp32 model); speed is one line per method and runtime: the paired
    speed-up against that runtime uncompressed, with its interval, where the run has it, else p50. None when
    no method was measured at two strengths or more."""
    measured = _measured(rows)
    families: dict[tuple[str, str], list[tuple[float, ResultRow]]] = {}
    for row in measured:
        found = _strength(row) if row.precision == "fp32" else None
        if found:
            families.setdefault((found[0], row.runtime), []).append((found[1], row))
    families = {k: sorted(v, key=lambda p: p[0]) for k, v in families.items() if len(v) >= 2}
    if not families:
        return None
    paired = all(r.compression_speedup is not None for points in families.values() for _, r in points)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10.5, 7))
    scored_by: dict[str, str] = {}
    for (method, runtime), points in sorted(families.items()):
        base = next((r for r in measured if r.compression == "none" and r.precision == "fp32"
                     and r.runtime == runtime and r.target == points[0][1].target), None)
        if base is not None and method.startswith("prune-"):
            points = [(0.0, base), *points]
        xs = [x for x, _ in points]
        if method not in scored_by and all(r.accuracy is not None for _, r in points):
            scored_by[method] = points[0][1].format
            top.plot(xs, [r.accuracy * 100 for _, r in points], "-o", ms=3, label=method)
        label = f"{points[0][1].format}: {method}"
        if paired:
            ratios = [(1.0, 1.0, 1.0) if r is base else (r.compression_speedup, r.compression_speedup_ci_low,
                                                         r.compression_speedup_ci_high) for _, r in points]
            bottom.errorbar(xs, [v for v, _, _ in ratios], yerr=[[v - lo for v, lo, _ in ratios],
                                                                 [hi - v for v, _, hi in ratios]],
                            fmt="-o", ms=3, capsize=2, label=label)
        else:
            bottom.plot(xs, [r.p50_ms for _, r in points], "-o", ms=3, label=label)
    runtimes = sorted(set(scored_by.values()))
    top.set_ylabel(f"top-1 accuracy (%, scored in {', '.join(runtimes)})" if runtimes else "top-1 accuracy (%)")
    if paired:
        bottom.axhline(1.0, color="#333333", lw=0.8)
        bottom.set_ylabel("speed-up vs the same runtime\nuncompressed (x, 95% interval)")
    else:
        bottom.set_ylabel("p50 latency (ms)")
    bottom.set_xlabel("pruning: share of channels (structured) or weights (unstructured) really removed; "
                      "clustering: bits per weight (log2 of clusters)")
    _set_title(top, title)
    for ax in (top, bottom):
        ax.grid(True, alpha=0.3)
    top.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, frameon=False)
    bottom.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=6.5, frameon=False)
    fig.tight_layout()
    return fig


def save(fig: Figure, path: Path) -> Path:
    """Write the figure as PNG with no software or time stamp in the file: same figure, same bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", metadata={"Software": None})
    plt.close(fig)
    return path


# One colour per category of `bench.measure.profile.CATEGORIES`, in its order, then the time outside operators:
# a category added there without a colour here fails at import.
CATEGORY_COLOURS = dict(zip((*CATEGORIES, "outside operators"),
                            ("#2c6fbb", "#6a3d9a", "#1b9e77", "#e6ab02", "#d95f02", "#66a61e", "#a6761d", "#e7298a",
                             "#7f7f7f", "#d0d0d0"), strict=True))


def profile_categories(rows: Sequence[ResultRow], lines: Sequence[ProfileLine], title: str) -> Figure | None:
    """Where each profiled row spends its profiled inference: one stacked bar per row, ms per operator category
    (and the time outside any operator), from profile.csv."""
    from edgebench.bench.measure.profile import OUTSIDE

    shown = [r for r in _measured(rows) if any(line.key == r.key for line in lines)]
    if not shown:
        return None
    fig, ax = plt.subplots(figsize=(8, 1.0 + 0.32 * len(shown)))
    left = [0.0] * len(shown)
    for category, colour in CATEGORY_COLOURS.items():
        widths = [sum(line.ms for line in lines if line.key == r.key and
                      (line.operator == OUTSIDE if category == "outside operators"
                       else line.operator != OUTSIDE and line.category == category)) for r in shown]
        if any(widths):
            ax.barh(range(len(shown)), widths, left=left, color=colour, label=category)
            left = [a + b for a, b in zip(left, widths, strict=True)]
    ax.set_yticks(range(len(shown)), [point_label(r) for r in shown], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("ms per profiled inference (profiler on), by operator category")
    ax.legend(fontsize=6, loc="lower right", ncol=2)
    _set_title(ax, title)
    ax.grid(True, axis="x", alpha=0.3)
    fig.tight_layout()
    return fig
