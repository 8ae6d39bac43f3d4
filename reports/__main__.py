"""`python -m edgebench.reports build|compare|recommend`: what `make report`, `make compare` and `make recommend` run.

Exit status: 0 done; 1 `compare` found a regression beyond the threshold and the noise, or no row met
`recommend`'s constraints; 2 bad input (one line on stderr naming the bad value and the choices).
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

from edgebench.bench.errors import UsageError

PROG = "edgebench-report"
RESULTS = Path("results")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, no usage dump
        print(f"{PROG}: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def _runs(text: str) -> list[Path]:
    return [Path(p) for p in text.split(",") if p.strip()]


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    build = sub.add_parser("build", help="REPORT.md, report.html, plots, CSV and Parquet from stored runs")
    build.add_argument("runs", nargs="?", type=_runs, default=None,
                       help="comma-separated run folders [every run under results/]")
    build.add_argument("--out", type=Path, default=RESULTS / "report", help="report folder [results/report]")
    compare = sub.add_parser("compare", help="change per row between two runs; exit 1 on a regression")
    compare.add_argument("base", type=Path)
    compare.add_argument("new", type=Path)
    compare.add_argument("--across-machines", action="store_true",
                         help="judge latencies of runs from machines that differ in CPU, cores, vector extensions "
                              "or accelerators (by default they are marked not comparable)")
    compare.add_argument("--threshold", default="0.05",
                         help="smallest change that counts: a fraction or a percent [0.05, the same as 5%%]")
    rec = sub.add_parser("recommend", help="what to deploy under constraints, from stored rows")
    rec.add_argument("runs", nargs="?", type=_runs, default=None, help="comma-separated run folders [all]")
    rec.add_argument("--max-ms", default="", help="p50 budget in ms, one number or per target: cpu:10,gpu:2")
    rec.add_argument("--min-accuracy", default="", help="minimum top-1 accuracy as a fraction (0.98)")
    rec.add_argument("--max-mb", default="", help="largest artifact on disk (MB)")
    rec.add_argument("--max-memory-mb", default="", help="largest peak memory of the measuring process (MB)")
    rec.add_argument("--min-cosine", default="", help="minimum cosine similarity of outputs to PyTorch's")
    rec.add_argument("--where", action="append", default=[], metavar="COLUMN<=N",
                     help="any numeric column with a bound, repeatable (p50_ms<=5@gpu, throughput>=1000)")
    rec.add_argument("--objective", default="p50_ms", help="column to rank by [p50_ms]")
    rec.add_argument("--include-unfaithful", action="store_true",
                     help="also rank rows whose outputs are beyond their precision's tolerance (fidelity!)")
    return parser


def _load(folders: list[Path] | None) -> list:
    from edgebench.reports.runs import find_runs, load_run, unique_names

    if folders is None:
        folders = find_runs(RESULTS) if RESULTS.is_dir() else []
        if not folders:
            raise UsageError("no runs under results/: measure one with `make bench`, or name run folders with RUNS=")
    runs = []
    for folder in folders:  # a folder of runs (a study's, results/reference) is read as its runs
        inside = find_runs(folder) if folder.is_dir() and not (folder / "rows.jsonl").exists() else []
        runs += [load_run(run) for run in inside] or [load_run(folder)]
    return unique_names(runs)


def _recommendable(folders: list[Path] | None) -> tuple[list, str]:
    """The runs a recommendation reads, and which they are: those named; else the stored runs measured on this
    machine (same CPU, cores and vector extensions), never another machine's reference runs; else the latest."""
    from edgebench.reports.runs import machine_identity, this_machine

    runs = _load(folders)
    if folders is not None:
        return runs, "as named (RUNS=)"
    here = this_machine()[:3]
    mine = [run for run in runs if machine_identity(run.environment)[:3] == here]
    if mine:
        return mine, f"this machine's ({len(runs) - len(mine)} from other machines left out; RUNS= to choose)"
    latest = max(runs, key=lambda run: str(run.environment.get("date", "")))
    return [latest], "the latest: none was measured on this machine (RUNS= to choose)"


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # third-party chatter (pandas, matplotlib) stays off the terminal
            return _run(args)
    except UsageError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    if args.command == "build":
        from edgebench.reports.build import build_report

        runs = _load(args.runs)
        path = build_report(runs, args.out)
        profiles = " and operator profiles as profile.csv, profile.parquet" if (path.parent / "profile.csv").exists() \
            else ""
        print(f"report of {len(runs)} run(s): {path} and {path.parent / 'report.html'} "
              f"(rows also as {path.parent / 'rows.csv'} and rows.parquet{profiles})")
        return 0
    if args.command == "compare":
        from edgebench.reports.compare import compare, comparison_table, gate_floor, operator_changes, parse_threshold
        from edgebench.reports.runs import load_run

        threshold = parse_threshold(args.threshold)  # before the runs are read: a bad value is one line
        base, new = load_run(args.base), load_run(args.new)
        changes, warnings_ = compare(base, new, threshold, args.across_machines)
        for line in warnings_:
            print(f"warning: {line}")
        print(comparison_table(changes), end="")
        print(operator_changes(base, new), end="")
        bad = [c for c in changes if c.regression]
        unpaired = sum("unpaired" in c.accuracy or "not tested" in c.accuracy for c in changes)
        floor = gate_floor(base, new, sum(c.base is not None and c.new is not None for c in changes))
        print(f"\n{len(bad)} regression(s) beyond {threshold:.0%}, the machine's floor "
              f"(±{floor:.1%}: A/A, or between runs where measured) and the noise "
              f"(accuracy lost: "
              f"{sum(c.accuracy_lost for c in changes)}); {sum(c.verdict == 'faster' for c in changes)} row(s) "
              f"faster; {sum(c.verdict.startswith('only') for c in changes)} row(s) in one run only"
              + (f"; {unpaired} accuracy change(s) not tested image by image (no per-image results in a run)"
                 if unpaired else ""))
        return 1 if bad else 0
    from edgebench.reports.recommend import Constraint, budget_constraints, recommend, recommendation_text

    constraints = budget_constraints(args.max_ms, args.min_accuracy, args.max_mb, args.max_memory_mb,
                                     args.min_cosine) + [Constraint.parse(text) for text in args.where]
    runs, which = _recommendable(args.runs)
    passing, misses, skipped = recommend([(run.name, row) for run in runs for row in run.rows], constraints,
                                         args.objective, args.include_unfaithful)
    print(f"Read {len(runs)} run(s), {which}: {', '.join(run.name for run in runs)}.\n")
    print(recommendation_text(passing, misses, skipped, constraints, args.objective), end="")
    return 0 if passing else 1  # a script can tell "nothing fits" from a recommendation


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BrokenPipeError:  # `| head` closed the pipe: not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)
