"""`make compare`: two stored runs lined up row by row, and a gate a CI pipeline can fail on.

A change is called a regression only when it exceeds the threshold (5% by default), the machine's floor
(`gate_floor`: what two processes timing one file differ by, and where measured what two runs of one
configuration differ by, for the whole family of rows) and the noise: the 95% interval of new p50 / base p50,
bootstrapped from both runs' kept samples (rounds, then samples) and widened by that floor, must exclude 1.
A noise-level change is reported with its interval and passes. An accuracy loss fails the gate only when
McNemar's exact test on the images both runs scored says so (Holm-adjusted across the rows); runs without
per-image results fall back to an unpaired test, and say so.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgebench.bench.errors import UsageError
from edgebench.bench.measure.floor import Z95
from edgebench.bench.measure.paired import ALPHA, holm
from edgebench.bench.measure.stats import ratio_interval, widen
from edgebench.bench.report import latency_cell, markdown_grid
from edgebench.bench.results import ResultRow
from edgebench.reports.runs import Run, samples_of
from edgebench.reports.shares import parse_share

KEY_PACKAGES = ("torch", "torchvision", "onnxruntime", "onnxruntime-gpu", "openvino", "ai-edge-litert", "litert-torch",
                "tensorrt", "coremltools", "numpy")


@dataclass
class Change:
    """One row of the comparison: the two rows (either may be missing) and what their difference means."""

    label: str
    base: ResultRow | None
    new: ResultRow | None
    ratio: float | None = None  # new p50 / base p50
    low: float | None = None  # its 95% interval
    high: float | None = None
    p90_ratio: float | None = None
    verdict: str = ""  # regression | faster | within noise | below threshold | only in base | only in new | ...
    accuracy: str = "-"  # the accuracy change and how it was tested
    accuracy_p: float | None = None  # McNemar (or unpaired) p of the accuracy change, Holm-adjusted over the rows

    @property
    def accuracy_lost(self) -> bool:
        """Accuracy fell beyond noise: the paired test says so after adjustment for every row compared."""
        return self.accuracy_p is not None and self.accuracy_p <= ALPHA and self.new.accuracy < self.base.accuracy

    @property
    def regression(self) -> bool:
        return self.verdict in ("regression", "now failing") or self.accuracy_lost


def _identity(row: ResultRow, by_device: bool = False) -> tuple:
    """What makes two rows the same measurement; in two fleet runs, the device too."""
    return row.model, row.compression, row.runtime, row.precision, row.target, row.batch, \
        row.host if by_device else ""


def _fleet(run: Run) -> bool:
    return len({r.host for r in run.rows}) > 1


def _label(row: ResultRow, by_device: bool = False) -> str:
    parts = [row.model, row.format, row.precision, f"b{row.batch}", row.target]
    if by_device and row.host:
        parts.append(f"[{row.host}]")
    if row.compression != "none":
        parts.insert(2, row.compression)
    return " ".join(parts)


def judge(base: ResultRow, new: ResultRow, base_rounds: list[list[float]], new_rounds: list[list[float]],
          threshold: float, floor: float = 0.0) -> Change:
    """The change between two measurements of one row, judged against the threshold, the A/A floor and the
    noise: each run's row was timed by its own process."""
    change = Change(_label(new), base, new)
    if base.status != "ok" or new.status != "ok":
        if base.status == "ok":
            change.verdict = "now failing"  # a row that measured and now errors fails the gate
        else:
            change.verdict = "now measured" if new.status == "ok" else f"{new.status} in both"
        return change
    change.ratio = new.p50_ms / base.p50_ms
    change.p90_ratio = new.p90_ms / base.p90_ms if base.p90_ms and new.p90_ms else None
    if base_rounds and new_rounds:
        change.ratio, change.low, change.high = ratio_interval(new_rounds, base_rounds, floor=floor)
    elif None not in (base.p50_ci_low_ms, base.p50_ci_high_ms, new.p50_ci_low_ms, new.p50_ci_high_ms):
        low, high = new.p50_ci_low_ms / base.p50_ci_high_ms, new.p50_ci_high_ms / base.p50_ci_low_ms
        change.low, change.high = widen(change.ratio, min(low, change.ratio), max(high, change.ratio), floor)
    beyond_noise = change.low is None or not (change.low <= 1 <= change.high)
    if abs(change.ratio - 1) <= max(threshold, floor):
        change.verdict = "below threshold" if beyond_noise else "within noise"
    elif not beyond_noise:
        change.verdict = "within noise"
    else:
        change.verdict = "regression" if change.ratio > 1 else "faster"
    return change


def environment_warnings(base: Run, new: Run) -> list[str]:
    """Why the two runs' numbers may differ for reasons other than the change: machine, threads, versions."""
    warnings = []
    if base.machine != new.machine:
        warnings.append(f"different machines: {base.machine} (base) and {new.machine} (new)")
    packages = [(name, (base.environment.get("packages") or {}).get(name), (new.environment.get("packages") or {})
                 .get(name)) for name in KEY_PACKAGES]
    changed = [f"{name} {a} -> {b}" for name, a, b in packages if a != b and (a or b)]
    if changed:
        warnings.append("different library versions: " + ", ".join(changed))
    for what in ("mode", "timing"):
        a, b = base.environment.get(what), new.environment.get(what)
        if a != b and a is not None and b is not None:
            warnings.append(f"different {what}: {a} (base) and {b} (new)")
    return warnings


def gate_floor(base: Run, new: Run, rows: int) -> float:
    """The least change the gate may call one: the larger of the runs' A/A floors and their between-run floor
    (`bench.validate.runs`), the latter for the whole family of `rows` rows compared, so that two runs of one
    configuration fail the gate 5 times in 100 at most, not 5% per row (its z from 1.96 to Bonferroni's)."""
    from scipy.stats import norm

    between = max(base.between_runs, new.between_runs)
    family = float(np.expm1(np.log1p(between) * norm.ppf(1 - 0.025 / max(rows, 1)) / Z95)) if between else 0.0
    return max(base.floor, new.floor, family)


def parse_threshold(text: str) -> float:
    """THRESHOLD as a fraction in (0, 1) (`0.05`) or a percent with its sign in (0, 100) (`5%`); anything else,
    `5` above all (read as 500% it let +91% rows through as "below threshold"), is refused in one line."""
    try:
        value = parse_share(text)
    except ValueError:
        value = float("nan")
    if not 0 < value < 1:
        raise UsageError(f"bad THRESHOLD {text!r}: expected a fraction between 0 and 1 (0.05) or a percent with "
                         "its sign (5%)")
    return value


TIMING_VERDICTS = ("regression", "faster", "within noise", "below threshold")
NOT_COMPARABLE = "not comparable (other machine)"


def machine_difference(base: Run, new: Run) -> str:
    """How the two runs' machines differ in what changes speed ("" when they do not), from `machine_identity`."""
    from edgebench.reports.runs import machine_identity

    a, b = machine_identity(base.environment), machine_identity(new.environment)
    parts = [f"{what} {x or 'none'} (base) vs {y or 'none'} (new)"
             for what, x, y in zip(("CPU", "logical cores", "vector extensions", "accelerators"),
                                   (a[0], a[1], ", ".join(a[2]), a[3]), (b[0], b[1], ", ".join(b[2]), b[3]),
                                   strict=True) if x != y]
    return "; ".join(parts)


def compare(base: Run, new: Run, threshold: float = 0.05,
            across_machines: bool = False) -> tuple[list[Change], list[str]]:
    """Every row of both runs, matched by model, compression, runtime, precision, target and batch; rows
    present in one run only are listed, not dropped. Two fleet runs compare each device with itself; a fleet
    run and a single-machine run compare every device with that machine. Refused when no row is in common."""
    if not 0 < threshold < 1:  # a caller other than the command line (which parsed THRESHOLD) gives a fraction
        raise UsageError(f"bad THRESHOLD {threshold!r}: expected a fraction between 0 and 1 (0.05)")
    base_fleet, new_fleet = _fleet(base), _fleet(new)
    base_rows = {_identity(r, base_fleet): r for r in base.rows}
    new_rows = {_identity(r, new_fleet): r for r in new.rows}
    if base_fleet != new_fleet:  # the single machine's row stands for the same row of each device
        single, fleet = (base_rows, new_rows) if new_fleet else (new_rows, base_rows)
        unpinned = {key: key[:-1] + ("",) for key in fleet}
        single.update({key: single[other] for key, other in unpinned.items() if other in single})
        for other in set(unpinned.values()):
            single.pop(other, None)
    by_device = base_fleet or new_fleet
    if not set(base_rows) & set(new_rows):
        raise UsageError(f"{base.folder} and {new.folder} have no row in common (same model, compression, runtime, "
                         "precision, target and batch): nothing to compare")
    floor = gate_floor(base, new, len(set(base_rows) & set(new_rows)))
    changes = []
    for key in dict.fromkeys([*base_rows, *new_rows]):
        a, b = base_rows.get(key), new_rows.get(key)
        if a is None:
            changes.append(Change(_label(b, by_device), None, b, verdict="only in new"))
        elif b is None:
            changes.append(Change(_label(a, by_device), a, None, verdict="only in base"))
        else:
            change = judge(a, b, samples_of(base.samples, a), samples_of(new.samples, b), threshold, floor)
            change.label = _label(a if base_fleet and not new_fleet else b, by_device)
            changes.append(change)
    judge_accuracy(changes)
    warnings = environment_warnings(base, new)
    differ = "" if base_fleet or new_fleet else machine_difference(base, new)  # a fleet compares each device
    if differ:
        if not across_machines:  # the same label ("AMD EPYC, 2 threads") hid an AVX2 and an AVX-512 host
            for change in changes:
                if change.verdict in TIMING_VERDICTS:
                    change.verdict = NOT_COMPARABLE
        warnings.insert(0, f"ACROSS MACHINES: {differ}: " + ("latencies judged anyway (ACROSS_MACHINES=1)"
                                                             if across_machines else
                                                             "latency verdicts are not comparable and none is a "
                                                             "regression; ACROSS_MACHINES=1 (--across-machines) "
                                                             "judges them anyway"))
    return changes, warnings


def accuracy_text(new: ResultRow, base: ResultRow, how: str, p: float) -> str:
    noise = "" if p <= ALPHA else ", within noise"
    return f"{(new.accuracy - base.accuracy) * 100:+.1f} pts ({how} p={p:.2g}{noise})"


def judge_accuracy(changes: list[Change]) -> None:
    """Each row's accuracy change (`ResultRow.accuracy_test`), p-values Holm-adjusted across the rows so that the gate's
    family-wise error is 5%."""
    tests = {}
    for c in changes:
        found = c.new.accuracy_test(c.base) if c.base is not None and c.new is not None else None
        if found is not None:
            tests[id(c)] = (c, *found)
        elif c.base is not None and c.new is not None and None not in (c.base.accuracy, c.new.accuracy):
            c.accuracy = f"{(c.new.accuracy - c.base.accuracy) * 100:+.1f} pts (not tested: test set size unknown)"
    adjusted = holm([p for _, _, p in tests.values()])
    for (change, how, _), p in zip(tests.values(), adjusted, strict=True):
        change.accuracy_p = p
        change.accuracy = accuracy_text(change.new, change.base, how, p)


def _percent(ratio: float | None) -> str:
    return "-" if ratio is None else f"{(ratio - 1) * 100:+.1f}%"


def comparison_table(changes: list[Change]) -> str:
    body = []
    for c in changes:
        noise = "-" if c.low is None else f"{_percent(c.low)} to {_percent(c.high)}"
        mark = {"regression": "REGRESSION", "now failing": "NOW FAILING", "faster": "faster"}.get(c.verdict, c.verdict)
        if c.accuracy_lost:
            mark += ", ACCURACY LOST"
        body.append([c.label, latency_cell(c.base) if c.base else "-", latency_cell(c.new) if c.new else "-",
                     _percent(c.ratio), noise, _percent(c.p90_ratio), c.accuracy, mark])
    return markdown_grid(["Row", "Base p50 ms (95% CI)", "New p50 ms (95% CI)", "p50 change",
                          "95% interval of the change", "p90 change", "Accuracy change", "Verdict"], body)


def operator_changes(base: Run, new: Run, top: int = 3) -> str:
    """For rows profiled in both runs (`PROFILE=1`), the operators whose profiled time changed most: where a
    change in p50 came from. Profiled times are medians of one profiled round, profiler on, with no interval:
    a pointer to look at, not a verdict. Empty where either run has no profile."""
    from dataclasses import replace

    from edgebench.bench.measure.profile import line_label

    if not base.profile or not new.profile:
        return ""

    def typed_layers(lines: list) -> set[str]:  # rows whose operator types carry the layer that ran them
        return {line.key for line in lines if line.layer and line.operator == line.kind}

    layered = typed_layers(base.profile) & typed_layers(new.profile)

    def by_operator(lines: list) -> dict[str, dict[str, float]]:
        """Time per line label; operator types by layer only where both runs give layers (a run from before eager
        PyTorch's layers is compared type by type, not as every layer new)."""
        found: dict[str, dict[str, float]] = {}
        for line in lines:
            kept = line if line.key in layered or line.operator != line.kind else replace(line, layer="")
            name = line_label(kept)
            found.setdefault(line.key, {})[name] = found.get(line.key, {}).get(name, 0.0) + line.ms
        return found

    before, after = by_operator(base.profile), by_operator(new.profile)
    labels = {row.key: _label(row) for row in new.rows}
    body = []
    for key in [k for k in after if k in before]:
        names = set(before[key]) | set(after[key])
        moved = sorted(names, key=lambda n: -abs(after[key].get(n, 0.0) - before[key].get(n, 0.0)))[:top]
        cells = [f"{name} {after[key].get(name, 0.0) - before[key].get(name, 0.0):+.3f} ms "
                 f"({before[key].get(name, 0.0):.3f} to {after[key].get(name, 0.0):.3f})" for name in moved]
        total = sum(after[key].values()) - sum(before[key].values())
        body.append([labels.get(key, key), f"{total:+.3f} ms", "; ".join(cells)])
    if not body:
        return ""
    return ("\nOperators that changed most (profiled ms per inference, profiler on, one profiled round each: where "
            "to look, not a verdict):\n\n"
            + markdown_grid(["Row", "Profiled total change", f"Largest {top} operator changes (base to new)"], body))
