"""Stored run folders read back: their rows, environment and kept samples, checked, as one pandas frame.

Everything under `reports/` reads only what a run wrote (rows.jsonl, environment.json, samples.jsonl);
nothing here measures. A folder that is not a run, or holds rows this version cannot read, is refused with
one line (`UsageError`) rather than half-read.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import MISSING, asdict, dataclass, field, fields
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd

from edgebench.bench.errors import UsageError
from edgebench.bench.measure.profile import PROFILE_FILE, ProfileLine, read_profile
from edgebench.bench.results import ResultRow

ROWS_FILE, ENVIRONMENT_FILE, SAMPLES_FILE = "rows.jsonl", "environment.json", "samples.jsonl"
ROW_FIELDS = {f.name for f in fields(ResultRow)}
REQUIRED_FIELDS = {f.name for f in fields(ResultRow) if f.default is MISSING and f.default_factory is MISSING}
IDENTITY = ["model", "compression", "runtime", "precision", "target", "batch"]  # what makes two rows the same row


@dataclass
class Run:
    """One run folder: its rows in run order, the environment it was measured in, and its kept samples."""

    folder: Path
    rows: list[ResultRow]
    environment: dict[str, Any] = field(default_factory=dict)
    label: str = ""  # set where two runs read together would share a name (`unique_names`)

    @property
    def name(self) -> str:
        if self.label:
            return self.label
        return self.folder.name if self.folder.name not in ("compression", "family") else \
            f"{self.folder.parent.name}/{self.folder.name}"

    @property
    def machine(self) -> str:
        return machine_label(self.environment)

    @cached_property
    def profile(self) -> list[ProfileLine]:
        """The run's per-operator profile lines (`PROFILE=1`); none for a run measured without."""
        path = self.folder / PROFILE_FILE
        try:
            return read_profile(path)
        except (KeyError, TypeError, ValueError) as exc:
            raise UsageError(f"{path} is not a profile this edgebench reads ({type(exc).__name__}: {exc}): "
                             "re-measure the run with PROFILE=1") from None

    @property
    def floor(self) -> float:
        """The A/A floor the run was measured with (`bench.measure.floor`); the default for runs made before
        floors were kept."""
        from edgebench.bench.measure.floor import DEFAULT

        return float((self.environment.get("aa_floor") or {}).get("floor", DEFAULT.floor))

    @property
    def between_runs(self) -> float:
        """What two runs of one configuration differ by on the run's machine (0 where not measured)."""
        return float((self.environment.get("aa_floor") or {}).get("between_runs", 0.0))

    @cached_property
    def device_machines(self) -> dict[str, str]:
        """A fleet run's devices, each with the machine it ran on (`devices/<host>/environment.json`), read once."""
        return {path.parent.name: f"{path.parent.name}: {machine_label(json.loads(path.read_text()))}"
                for path in sorted((self.folder / "devices").glob(f"*/{ENVIRONMENT_FILE}"))}

    def machine_of(self, row: ResultRow) -> str:
        """The machine that measured `row`: in a fleet run, its device's."""
        return self.device_machines.get(row.host, self.machine)

    @cached_property
    def samples(self) -> dict[str, list[list[float]]]:
        """Each row's kept latency samples per round, by row key (empty where none were kept)."""
        path = _existing(self.folder / SAMPLES_FILE)
        if path is None:
            return {}
        opener = gzip.open if path.suffix == ".gz" else open
        found = {}
        with opener(path, "rt") as f:
            for line in f:
                if line.strip():
                    entry = json.loads(line)
                    flat, sizes = entry["latency_ms"], entry.get("rounds") or [len(entry["latency_ms"])]
                    starts = [sum(sizes[:i]) for i in range(len(sizes))]
                    found[entry["key"]] = [flat[s:s + n] for s, n in zip(starts, sizes, strict=True)]
        return found


def samples_of(samples: dict[str, list[list[float]]], row: ResultRow) -> list[list[float]]:
    """A row's samples: a fleet run keys them by device too (`host|key`), since devices share row keys."""
    return samples.get(f"{row.host}|{row.key}") or samples.get(row.key, [])


def _existing(path: Path) -> Path | None:
    """The file, or its gzipped copy (how the reference runs keep their samples in git)."""
    for candidate in (path, path.with_name(path.name + ".gz")):
        if candidate.exists():
            return candidate
    return None


SPEED_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "asimd")  # what kernels use


def machine_identity(environment: dict[str, Any]) -> tuple[str, int | None, tuple[str, ...], str]:
    """What changes speed, as a run recorded it: CPU model, logical cores, vector extensions, accelerators. Two runs
    with the same label ("AMD EPYC, 2 threads") on an AVX2 and an AVX-512 host differ here."""
    flags = set(environment.get("cpu_flags") or [])
    accelerators = sorted(str(a.get("name", a) if isinstance(a, dict) else a)
                          for a in environment.get("accelerators") or [] if a)
    return (str(environment.get("cpu") or ""), environment.get("cpu_logical_cores"),
            tuple(f for f in SPEED_FLAGS if f in flags), ", ".join(accelerators))


def this_machine() -> tuple[str, int | None, tuple[str, ...], str]:
    """This machine's identity, read now, as `machine_identity` reads a run's (accelerators aside: a run says)."""
    from edgebench.bench.environment import cpu_info

    info = cpu_info()
    return machine_identity({"cpu": info.get("model"), "cpu_logical_cores": info.get("logical_cores"),
                             "cpu_flags": info.get("flags")})


def machine_label(environment: dict[str, Any]) -> str:
    """Which machine a run measured, in a few words: the accelerators when it had any, else the CPU."""
    cpu = environment.get("cpu") or "unknown CPU"
    threads = environment.get("threads")
    label = f"{cpu}, {threads} threads" if threads else cpu
    accelerators = [a for a in environment.get("accelerators") or [] if a]
    if accelerators:
        names = sorted({a.get("name", str(a)) if isinstance(a, dict) else str(a) for a in accelerators})
        label = f"{', '.join(names)} + {label}"
    return label


def load_run(folder: Path | str) -> Run:
    """A run folder read and checked: one line naming the folder and what is wrong when it cannot be read."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UsageError(f"no run folder {str(folder)!r}: expected a folder `make bench` wrote (holding {ROWS_FILE})")
    path = folder / ROWS_FILE
    if not path.exists():
        raise UsageError(f"{folder} is not a run: it has no {ROWS_FILE} (a run folder `make bench` wrote has)")
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UsageError(f"{path} line {number} is not JSON ({exc.msg}): the file is damaged") from None
        unknown, missing = sorted(set(data) - ROW_FIELDS), sorted(REQUIRED_FIELDS - set(data))
        if unknown or missing:
            what = f"unknown columns {', '.join(unknown)}" if unknown else f"no {', '.join(missing)}"
            raise UsageError(f"{path} line {number} is not a row this edgebench reads ({what}): a run from another "
                             "version; re-measure it with `make bench`")
        rows.append(ResultRow(**data))
    if not rows:
        raise UsageError(f"{folder} has no rows yet: {ROWS_FILE} is empty")
    environment_path = folder / ENVIRONMENT_FILE
    environment = json.loads(environment_path.read_text()) if environment_path.exists() else {}
    return Run(folder, rows, environment)


def unique_names(runs: list[Run]) -> list[Run]:
    """Runs read together whose names clash (`/x/resnet18-cpu` and `/y/resnet18-cpu`) are told apart by their
    parent folder, then by machine and date: one name is one column and one set of plot files in a report."""
    def clashing() -> list[Run]:
        names = [run.name for run in runs]
        return [run for run in runs if names.count(run.name) > 1]

    for run in clashing():
        run.label = f"{run.folder.parent.name}/{run.folder.name}"
    for run in clashing():
        run.label = f"{run.name} ({run.machine}, {str(run.environment.get('date', ''))[:16] or 'no date'})"
    for number, run in enumerate(clashing(), 1):  # the same folder named twice, or twins to the minute
        run.label = f"{run.name} #{number}"
    return runs


def find_runs(root: Path) -> list[Path]:
    """Every run folder under `root` (any folder holding rows.jsonl), in path order; the report's own excluded."""
    return sorted(p.parent for p in root.rglob(ROWS_FILE) if "report" not in p.relative_to(root).parts[:1])


def rows_frame(runs: list[Run]) -> pd.DataFrame:
    """Every row of every run, one line each, with the run and machine it came from beside it."""
    records = []
    for run in runs:
        for row in run.rows:
            records.append({"run": run.name, "machine": run.machine_of(row), "date": run.environment.get("date", ""),
                            **asdict(row)})
    return pd.DataFrame.from_records(records)
