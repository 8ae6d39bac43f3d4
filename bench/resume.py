"""Finishing an interrupted run in its own folder (`--resume RUN_DIR`, `make bench RESUME=...`).

A run writes its command line (`command.json`) before any work, and each row as it finishes. Resuming
re-reads the command, keeps every variant whose rows are all written, and measures the rest. A variant
interrupted part-way is measured again whole: its rows are timed together in interleaved rounds (and paired
with their baselines), so rows of it from before the interruption are dropped rather than mixed with rows
timed later. The finished folder then holds the same rows, in the same order, as an uninterrupted run.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from dataclasses import asdict
from pathlib import Path

from edgebench.bench.errors import UsageError
from edgebench.bench.results import ResultRow, read_jsonl, read_rows

COMMAND_FILE = "command.json"


def save_command(run_dir: Path, argv: Iterable[str]) -> None:
    (run_dir / COMMAND_FILE).write_text(json.dumps({"argv": list(argv)}, indent=1))


def load_command(run_dir: Path) -> list[str]:
    """The arguments the run was started with (its --out left out); UsageError when there is nothing to resume."""
    if not run_dir.is_dir():
        raise UsageError(f"--resume {str(run_dir)!r}: no such run folder")
    path = run_dir / COMMAND_FILE
    if not path.exists():
        raise UsageError(f"--resume {str(run_dir)!r}: not a run edgebench can resume (no {COMMAND_FILE}: it is not "
                         "a run folder, or the run was started before resuming existed)")
    try:
        return [str(part) for part in json.loads(path.read_text())["argv"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"--resume {str(run_dir)!r}: {COMMAND_FILE} is damaged ({exc})") from exc


def resumed_environment(run_dir: Path, now: dict) -> dict:
    """The run's first environment, with this resumption's appended under `resumes` (machine, date, versions):
    a resumed run says that it was, and where and when each part was measured."""
    path = run_dir / "environment.json"
    try:
        first = json.loads(path.read_text())
    except (OSError, ValueError):
        return {**now, "resumes": []}
    return {**first, "resumes": [*first.get("resumes", []), now]}


def without_options(argv: Iterable[str], names: tuple[str, ...]) -> list[str]:
    """argv less the named options and their values (`--out X` and `--out=X` alike)."""
    out, skip = [], False
    for part in argv:
        if skip:
            skip = False
        elif part in names:
            skip = True
        elif not any(part.startswith(name + "=") for name in names):
            out.append(part)
    return out


def _rewrite(path: Path, records: list[dict]) -> None:
    temporary = path.with_suffix(path.suffix + ".tmp")
    temporary.write_text("".join(json.dumps(r) + "\n" for r in records))
    os.replace(temporary, path)


def keep_rows(run_dir: Path, rows: list[ResultRow], sample_key: Callable[[ResultRow], str] = lambda r: r.key) -> None:
    """Rewrite the run's rows.jsonl and samples.jsonl with only `rows` and their samples (found by `sample_key`)."""
    if rows or (run_dir / "rows.jsonl").exists():
        _rewrite(run_dir / "rows.jsonl", [asdict(row) for row in rows])
    samples = run_dir / "samples.jsonl"
    if samples.exists():
        keys = {sample_key(row) for row in rows}
        _rewrite(samples, [s for s in read_jsonl(samples) if s.get("key") in keys])


def finished_variant_rows(rows: list[ResultRow], variants: dict[tuple[str, str], set[str]]) -> list[ResultRow]:
    """The rows of every variant (model, compression) whose planned row keys are all among `rows`."""
    written: dict[tuple[str, str], set[str]] = {}
    for row in rows:
        written.setdefault((row.model, row.compression), set()).add(row.key)
    finished = {variant for variant, keys in variants.items() if keys <= written.get(variant, set())}
    return [row for row in rows if (row.model, row.compression) in finished]


def keep_finished_variants(run_dir: Path, variants: dict[tuple[str, str], set[str]]) -> list[ResultRow]:
    """The rows of every variant (model, compression) whose planned row keys are all written; the files are
    rewritten without the rest (a variant's partial rows and their samples), which will be measured again."""
    rows = read_rows(run_dir)
    kept = finished_variant_rows(rows, variants)
    if rows:
        keep_rows(run_dir, kept)
    return kept
