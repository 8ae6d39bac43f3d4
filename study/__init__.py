"""`make study [TASK=classify|detect]`: the survey's tables, measured on this machine, one module per task.

A task's module has a `main(argv) -> int` (its command line: `--out`, `--tables-only`) and writes STUDY.md in
its study folder. `classify` is the compression study on the MNIST ResNets (`bench.studyrun`, to move here);
`detect` the YOLO tables with mAP (`study.detect`).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

TASKS = {"classify": "edgebench.bench.studyrun", "detect": "edgebench.study.detect"}


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    task = "classify"
    if "--task" in args:
        where = args.index("--task")
        if where + 1 >= len(args):
            print(f"edgebench-study: error: --task needs a value: {', '.join(TASKS)}", file=sys.stderr)
            return 2
        task = args[where + 1]
        del args[where:where + 2]
    if task not in TASKS:
        print(f"edgebench-study: error: unknown TASK {task!r}: choose {', '.join(TASKS)}", file=sys.stderr)
        return 2
    return importlib.import_module(TASKS[task]).main(args)
