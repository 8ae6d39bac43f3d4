"""`make study [TASK=classify|detect]`: the survey's tables, measured on this machine, one module per task.

A kind of task (`edgebench.tasks`) has a study when this package has a module of the same name, with a
`main(argv) -> int` (its command line: `--out`, `--tables-only`) writing STUDY.md in its study folder. `classify`
is the compression study on the MNIST ResNets (`study.classify`); `detect` the YOLO tables with mAP (`study.detect`).
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def studies() -> dict[str, str]:
    """Each kind of task with a study here: its name -> the module that runs it."""
    import pkgutil

    from edgebench.tasks import kinds

    here = {info.name for info in pkgutil.iter_modules(__path__)}
    return {kind: f"{__name__}.{kind}" for kind in kinds() if kind in here}


def main(argv: Sequence[str] | None = None) -> int:
    tasks = studies()
    args = list(sys.argv[1:] if argv is None else argv)
    task = "classify"
    if "--task" in args:
        where = args.index("--task")
        if where + 1 >= len(args):
            print(f"edgebench-study: error: --task needs a value: {', '.join(tasks)}", file=sys.stderr)
            return 2
        task = args[where + 1]
        del args[where:where + 2]
    if task not in tasks:
        print(f"edgebench-study: error: unknown TASK {task!r}: choose {', '.join(tasks)}", file=sys.stderr)
        return 2
    return importlib.import_module(tasks[task]).main(args)


@dataclass(frozen=True)
class StudyArguments:
    out: Path  # the study folder
    tables_only: bool  # rewrite STUDY.md from stored rows, measuring nothing
    repeats: int | None  # interleaved cycles per row; None: the harness's default (`BenchConfig.repeats`)


def study_arguments(argv: Sequence[str] | None, prog: str, description: str, folder: str) -> StudyArguments | int:
    """A task's command line, or 2 after one line on a bad combination; `folder`: the default folder's name
    under results/, before its time stamp."""
    from edgebench.bench.cli import _positive_int
    from edgebench.bench.runner import RESULTS_DIR

    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--out", type=Path, default=None, help=f"study folder [results/{folder}-<time>]")
    parser.add_argument("--tables-only", action="store_true",
                        help="rewrite STUDY.md from the rows already in --out, measuring nothing")
    parser.add_argument("--repeats", type=_positive_int("repeats"), default=None,
                        help="interleaved cycles per row [10]: fewer take less time and give wider intervals "
                             "(each table says what its intervals hold; 6 are the fewest for 95%%)")
    args = parser.parse_args(argv)
    if args.tables_only and args.out is None:
        print("edgebench-study: error: --tables-only needs --out, the study folder to read", file=sys.stderr)
        return 2
    if args.tables_only and args.repeats is not None:
        print("edgebench-study: error: --repeats measures; --tables-only only rewrites tables from stored rows",
              file=sys.stderr)
        return 2
    if args.repeats is not None:  # the harness's own check, before anything runs: one line, not a traceback
        from edgebench.bench.config import BenchConfig
        from edgebench.bench.errors import UsageError

        try:
            BenchConfig(**cycles(args.repeats))
        except UsageError as exc:
            print(f"edgebench-study: error: {exc}", file=sys.stderr)
            return 2
    return StudyArguments(args.out or RESULTS_DIR / f"{folder}-{dt.datetime.now():%Y%m%d-%H%M%S}",
                          args.tables_only, args.repeats)


def cycles(repeats: int | None) -> dict[str, int]:
    """The `BenchConfig` fields for `repeats` cycles per row ({}: the harness's default), the adaptive cap
    raised to them as the command line raises it."""
    from edgebench.bench.config import BenchConfig

    return {} if repeats is None else {"repeats": repeats, "max_repeats": max(repeats, BenchConfig.max_repeats)}


def run_configs(configs: Sequence[Any], out: Path) -> int | None:
    """Run each config (`bench.config.BenchConfig`) in turn, progress on stderr; the exit code when a run stops
    on bad input (2) or Ctrl-C (130, finished rows kept), else None."""
    from rich.console import Console

    from edgebench.bench.errors import UsageError
    from edgebench.bench.progress import Reporter
    from edgebench.bench.runlog import RunLog
    from edgebench.bench.runner import Runner

    err = Console(stderr=True)
    try:
        for config in configs:
            log = RunLog()
            try:
                Runner(config, Reporter(err), log).run()
            finally:
                log.close()
    except UsageError as exc:
        print(f"edgebench-study: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"edgebench-study: interrupted; finished rows are in {out}", file=sys.stderr)
        return 130
    return None
