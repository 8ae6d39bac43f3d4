"""`make recommend`: which runtime x compression x precision to deploy, from stored rows and constraints.

A constraint is a column with a bound (`p50_ms<=10`, `accuracy>=0.98`); the latency budget may differ per
target (`MAX_MS=cpu:10,gpu:2`). Rows that meet every constraint are ranked by the objective; a near miss
(a row that fails one constraint) says which and by how much; when nothing passes, the closest rows are
named instead.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, fields

from edgebench.bench.config import TARGETS
from edgebench.bench.errors import UsageError
from edgebench.bench.measure.paired import holm
from edgebench.bench.report import fmt, latency_cell, markdown_grid
from edgebench.bench.results import ResultRow
from edgebench.reports.shares import parse_share

NUMERIC = [f.name for f in fields(ResultRow) if f.type in ("float | None", "int | None")]  # every measured figure
HIGHER_IS_BETTER = {"throughput", "cosine", "accuracy", "accuracy_ci_low", "accuracy_ci_high", "agreement", "speedup",
                    "compression_speedup", "sparsity", "gflops_per_s", "peak_fraction"}
NOT_MEASURED = "they were not measured (error or unavailable)"
UNFAITHFUL = ("their outputs are beyond their precision's tolerance of PyTorch's (`fidelity!`); rank them too with "
              "--include-unfaithful (UNFAITHFUL=1)")
FRACTIONS = ("accuracy", "cosine")  # stored as fractions, printed by the tables as percent (accuracy)
_CONSTRAINT = re.compile(r"^\s*([a-z_0-9]+)\s*(<=|>=)\s*([-+0-9.eE]+)\s*(?:@\s*([a-z]+))?\s*$")


@dataclass(frozen=True)
class Constraint:
    """`column <= bound` or `column >= bound`, for one target or all (target '')."""

    column: str
    op: str
    bound: float
    target: str = ""

    @classmethod
    def parse(cls, text: str) -> Constraint:
        found = _CONSTRAINT.match(text)
        if not found:
            raise UsageError(f"bad constraint {text!r}: expected COLUMN<=NUMBER or COLUMN>=NUMBER (for one target: "
                             "p50_ms<=10@cpu)")
        column, op, bound, target = found.groups()
        if column not in NUMERIC:
            raise UsageError(f"unknown column {column!r} in constraint {text!r}: choose from {', '.join(NUMERIC)}")
        return cls(column, op, float(bound), target or "")

    def applies(self, row: ResultRow) -> bool:
        return not self.target or row.target == self.target

    def shortfall(self, row: ResultRow) -> float | None:
        """0 when the row meets it; else how far off, relative to the bound; None when the row lacks the figure."""
        value = getattr(row, self.column)
        if value is None:
            return None
        over = value - self.bound if self.op == "<=" else self.bound - value
        return max(0.0, over) / (abs(self.bound) or 1.0)

    def __str__(self) -> str:
        bound = f"{self.bound:.4g} ({self.bound:.1%})" if self.column in FRACTIONS else f"{self.bound:g}"
        return f"{self.column} {self.op} {bound}" + (f" on {self.target}" if self.target else "")


def budget_constraints(max_ms: str = "", min_accuracy: str = "", max_mb: str = "", max_memory_mb: str = "",
                       min_cosine: str = "") -> list[Constraint]:
    """The Makefile's named limits as constraints; MAX_MS is one number or per target (cpu:10,gpu:2)."""
    found = []
    for part in filter(None, (p.strip() for p in max_ms.split(","))):
        target, _, value = part.rpartition(":")
        if target and target not in TARGETS:  # a typo would constrain nothing, and any row would pass
            raise UsageError(f"unknown target {target!r} in MAX_MS={max_ms}: choose {', '.join(TARGETS)} "
                             "(e.g. MAX_MS=cpu:10,gpu:2), or one number for every target")
        found.append(_bound("p50_ms", "<=", value, f"MAX_MS={max_ms}", target))
    named = (("accuracy", ">=", min_accuracy, "MIN_ACCURACY"), ("size_mb", "<=", max_mb, "MAX_MB"),
             ("peak_rss_mb", "<=", max_memory_mb, "MAX_MEMORY_MB"), ("cosine", ">=", min_cosine, "MIN_COSINE"))
    for column, op, text, name in named:
        if text:
            found.append(_bound(column, op, text, f"{name}={text}"))
    for c in found:
        if c.column in FRACTIONS and not 0 <= c.bound <= 1:
            raise UsageError(f"bad {c.column} bound {c.bound:g}: expected a fraction between 0 and 1 (0.98) or a "
                             "percent with its sign (98%)")
    return found


def _bound(column: str, op: str, text: str, given: str, target: str = "") -> Constraint:
    """A bound as given; a share (accuracy, cosine) also as a percent with its sign (`98%`)."""
    try:
        value = parse_share(text) if column in FRACTIONS else float(text)
    except ValueError:
        raise UsageError(f"bad number in {given}: expected for example 10 or cpu:10,gpu:2") from None
    if value < 0:
        raise UsageError(f"bad bound in {given}: expected a number >= 0")
    return Constraint(column, op, value, target)


@dataclass
class Verdict:
    row: ResultRow
    run: str
    failed: list[tuple[Constraint, float | None]]  # the constraints it misses (None: the row lacks that figure)
    accuracy_change: str = "-"  # against the uncompressed fp32 row (`add_accuracy_changes`)

    @property
    def miss(self) -> float:
        return sum(1.0 if s is None else s for _, s in self.failed)


def recommend(rows: Sequence[tuple[str, ResultRow]], constraints: Sequence[Constraint],
              objective: str = "p50_ms",
              unfaithful: bool = False) -> tuple[list[Verdict], list[Verdict], dict[str, int]]:
    """(rows meeting every constraint, best first by the objective; the near misses, closest first; how many
    rows were not considered, by reason). A row whose outputs are beyond its precision's tolerance (`ok
    (fidelity!)`: it computes something else than the model) is not considered unless `unfaithful`."""
    if objective not in NUMERIC:
        raise UsageError(f"unknown objective {objective!r}: choose from {', '.join(NUMERIC)}")
    ok = [(run, r) for run, r in rows if r.status == "ok"]
    measured = [(run, r) for run, r in ok if unfaithful or r.fidelity_ok is not False]
    left_out = {NOT_MEASURED: len(rows) - len(ok), UNFAITHFUL: len(ok) - len(measured)}
    verdicts = []
    for run, row in measured:
        failed = []
        for c in constraints:
            if c.applies(row):
                short = c.shortfall(row)
                if short is None or short > 0:
                    failed.append((c, short))
        verdicts.append(Verdict(row, run, failed))
    sign = -1 if objective in HIGHER_IS_BETTER else 1

    def rank(v: Verdict) -> tuple:
        value = getattr(v.row, objective)
        return (value is None, sign * value if value is not None else 0.0, v.row.p50_ms or 0.0)

    passing = sorted((v for v in verdicts if not v.failed), key=rank)
    misses = sorted((v for v in verdicts if v.failed), key=lambda v: (len(v.failed), v.miss, rank(v)))
    add_accuracy_changes(verdicts, rows)
    return passing, misses, {reason: count for reason, count in left_out.items() if count}


def _why(verdict: Verdict) -> str:
    parts = []
    for c, short in verdict.failed:
        value = getattr(verdict.row, c.column)
        if short is None:
            parts.append(f"{c.column} not measured")
        elif c.column in FRACTIONS:  # as the tables print them
            parts.append(f"{c.column} {value:.1%} (needs {c.op[0]}= {c.bound:.1%})")
        else:
            parts.append(f"{c.column} {fmt(value, 3)} (needs {c.op[0]}= {c.bound:g})")
    return "; ".join(parts)


def _cells(v: Verdict) -> list[str]:
    r = v.row
    return [r.model, r.format, r.compression, r.precision, str(r.batch), r.target, v.run, latency_cell(r),
            fmt(r.size_mb, 3), fmt(r.accuracy * 100 if r.accuracy is not None else None, 1), v.accuracy_change,
            fmt(r.peak_rss_mb, 0)]


HEADERS = ["Model", "Format", "Compression", "Precision", "Batch", "Target", "Run", "p50 ms (95% CI)", "Size (MB)",
           "Accuracy %", "Accuracy vs uncompressed fp32", "Peak RSS (MB)"]


def add_accuracy_changes(verdicts: Sequence[Verdict], rows: Sequence[tuple[str, ResultRow]]) -> None:
    """What each candidate costs in accuracy against the same runtime's uncompressed fp32 row of its run, tested
    as `make compare` tests it (`ResultRow.accuracy_test`), Holm-adjusted across every measured row."""
    from edgebench.reports.compare import accuracy_text

    baselines = {(run, r.model, r.runtime, r.target, r.batch): r for run, r in rows
                 if r.status == "ok" and r.compression == "none" and r.precision == "fp32"}
    tests = []
    for v in verdicts:
        base = baselines.get((v.run, v.row.model, v.row.runtime, v.row.target, v.row.batch))
        found = v.row.accuracy_test(base) if base is not None and base is not v.row else None
        if found is not None:
            tests.append((v, base, *found))
        elif v.row.accuracy is not None and base is not v.row:
            v.accuracy_change = "no uncompressed fp32 row to compare with" if base is None else "not tested"
    for (v, base, how, _), p in zip(tests, holm([p for *_, p in tests]), strict=True):
        v.accuracy_change = accuracy_text(v.row, base, how, p)


INTERVALS = {"p50_ms": ("p50_ci_low_ms", "p50_ci_high_ms"), "speedup": ("speedup_ci_low", "speedup_ci_high"),
             "compression_speedup": ("compression_speedup_ci_low", "compression_speedup_ci_high"),
             "accuracy": ("accuracy_ci_low", "accuracy_ci_high")}  # objectives whose rows carry a 95% interval


def tied(best: ResultRow, other: ResultRow, objective: str) -> bool | None:
    """Whether `other` is not shown to differ from `best` on the objective: their 95% intervals overlap. None
    where the objective has no interval, or either row lacks one (a point estimate cannot say)."""
    if objective not in INTERVALS:
        return None
    low, high = INTERVALS[objective]
    bounds = [getattr(r, name) for r in (best, other) for name in (low, high)]
    if any(b is None for b in bounds):
        return None
    return bounds[0] <= bounds[3] and bounds[2] <= bounds[1]


def _name(row: ResultRow) -> str:
    return f"{row.format} {row.precision}" + (f" {row.compression}" if row.compression != "none" else "") + \
        f" on {row.target} ({row.model})"


def recommendation_text(passing: list[Verdict], misses: list[Verdict], skipped: dict[str, int],
                        constraints: Sequence[Constraint], objective: str, near: int = 5) -> str:
    wanted = "; ".join(map(str, constraints)) or "none"
    text = f"Constraints: {wanted}. Best first by {objective}" + (
        " (higher is better)." if objective in HIGHER_IS_BETTER else " (lower is better).") + "\n\n"
    if passing:
        best = passing[0].row
        ties = [v for v in passing[1:] if tied(best, v.row, objective)]
        text += f"Deploy: {_name(best)}.\n"
        if ties:
            text += (f"Tied with it (their {objective} 95% intervals overlap, so the ranking between them is not "
                     f"measured): {'; '.join(_name(v.row) for v in ties)}. Choose among them on the other "
                     "columns.\n")
        elif objective not in INTERVALS:
            text += f"({objective} has no interval: the ranking is by point estimates.)\n"
        text += "\n" + markdown_grid([*HEADERS, "vs best"], [
            [*_cells(v), "best" if i == 0 else {True: "tied", False: "worse", None: "-"}[tied(best, v.row, objective)]]
            for i, v in enumerate(passing)])
    else:
        text += "Nothing meets every constraint. Closest:\n\n"
    if misses:
        shown = misses[:near]
        text += ("\nNear misses (what ruled each out):\n\n" if passing else "") + markdown_grid(
            [*HEADERS, "Ruled out by"], [[*_cells(v), _why(v)] for v in shown])
    for reason, count in skipped.items():
        text += f"\n{count} rows were not considered: {reason}.\n"
    return text
