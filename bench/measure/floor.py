"""The machine's A/A floor: how far apart two processes timing the very same artifact land, kept per machine.

Every row of a run is its own process (its own memory placement, its own threads' cores), and that
difference holds for the whole run: no number of cycles averages it away, so a paired interval built from
cycles alone cannot see it. `make calibrate` (and `make validate`) measures it: pairs of processes loading one
artifact, timed like any two rows, each pair giving one A/A ratio. The floor is the between-process part of
the spread of those ratios: 1.96 x the root of their mean square on the log scale (A/A ratios are centred on
1 by construction: which process is "A" is arbitrary) less the part each pair's own cycles explain, so two
processes differ by more than it about 5 times in 100. Speed-up intervals add it in quadrature
(`stats.widen`) to what their cycles give; a ratio within it is within noise, whatever its cycles say.

The floor is kept per machine and model: the machine's key is the CPU, the cores, the thread count and the
runtimes' versions; a model's own floor applies to it, else the largest measured for any model on the machine
(a short inference can vary more between processes than a long one), else `DEFAULT`; every table says which.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

FLOOR_DIR_DEFAULT = Path(__file__).resolve().parents[2] / "models" / ".cache" / "aa-floor"
Z95 = 1.959963984540054
# Versions that decide how a runtime times (a new kernel library can move the floor).
KEY_PACKAGES = ("torch", "onnxruntime", "openvino", "ai-edge-litert")


@dataclass(frozen=True)
class AAFloor:
    """One machine's A/A floor and where it came from."""

    floor: float  # relative: 0.02 = two processes of one artifact time within ±2% of each other, 95 in 100
    comparisons: int  # A/A comparisons it was estimated from (0: not measured here, `DEFAULT`)
    source: str  # one line: who measured it, where and when (or why the default)
    false_positives: int = 0  # A/A intervals with the floor (each left out of its own estimate) excluding x1
    false_positives_without: int = 0  # the same intervals without the floor (cycles alone)
    key: str = ""  # the machine key it belongs to
    model: str = ""  # the model it was measured on
    between_runs: float = 0.0  # relative: two runs of one configuration, minutes apart, differ within it 95 in 100
    run_pairs: int = 0  # pairs of runs `between_runs` was estimated from (0: not measured)

    @property
    def measured(self) -> bool:
        return self.comparisons > 0

    def describe(self) -> str:
        """`±2.1% (measured: 42 A/A comparisons, ...)` for table headers."""
        if not self.measured or self.source.startswith("largest"):  # the source says it all
            return f"±{self.floor:.1%} ({self.source})"
        if self.floor == 0:  # the estimate left nothing beyond what the cycles' own intervals hold
            return (f"±0.0%, none added: two processes differed no more than their cycles explain (measured: "
                    f"{self.comparisons} A/A comparisons, {self.false_positives} intervals excluding x1; "
                    f"{self.source})")
        return (f"±{self.floor:.1%} (measured: {self.comparisons} A/A comparisons, {self.false_positives} "
                f"intervals excluding x1 with it and {self.false_positives_without} without; {self.source})")


# Used until `make calibrate` has measured this machine: about the whole A/A spread (between processes and
# within their cycles, 1.96 x the root mean square of A/A ratios) measured on the development host on
# 2026-12-06, 3.2% for resnet18 (42 pairs) and 5.0% for mnist_resnet_m (40 pairs), where the between-process
# part alone was 0. Counting the cycles' noise twice errs towards "within noise" on an unmeasured machine.
DEFAULT = AAFloor(floor=0.03, comparisons=0,
                  source="default, not measured on this machine: `make calibrate` measures it")


def estimate(log_ratios: Sequence[float], within: Sequence[float] | None = None) -> float:
    """The floor from A/A comparisons' log ratios: exp(1.96 x sigma) - 1, where sigma^2 is their mean square
    less the part their cycles already explain (`within`: each ratio's sampling variance from its own
    cycles, `within_variance`), which the interval the floor widens holds already."""
    values = np.asarray(log_ratios, dtype=np.float64)
    if not len(values):
        raise ValueError("an A/A floor needs at least one A/A comparison")
    between = np.mean(values ** 2) - (np.mean(within) if within is not None and len(within) else 0.0)
    return float(np.expm1(Z95 * np.sqrt(max(between, 0.0))))


def within_variance(cycle_log_ratios: Sequence[float]) -> float:
    """Sampling variance of the median of a pair's per-cycle log ratios: pi/2 x their variance / n (the
    median's variance for a normal sample), the part of an A/A ratio that its own cycles explain."""
    values = np.asarray(cycle_log_ratios, dtype=np.float64)
    if len(values) < 2:
        return 0.0
    return float(np.pi / 2 * values.var(ddof=1) / len(values))


def leave_one_out(log_ratios: Sequence[float], within: Sequence[float] | None = None) -> list[float]:
    """For each comparison, the floor estimated from all the others: judging an A/A interval with a floor
    that its own ratio helped to set would flatter the floor's coverage."""
    values = list(log_ratios)
    spreads = list(within) if within is not None else [0.0] * len(values)
    if len(values) < 2:
        raise ValueError("leave-one-out needs at least two A/A comparisons")
    return [estimate(values[:i] + values[i + 1:], spreads[:i] + spreads[i + 1:]) for i in range(len(values))]


def machine_key(cpu: Mapping[str, object], threads: int, versions: Mapping[str, str]) -> str:
    """What a floor belongs to: the CPU (model, instruction sets, cores), the thread count, runtime versions."""
    flags = sorted(f for f in cpu.get("flags", []) or [] if f.startswith(("avx", "amx", "fma", "sse4")))
    facts = {"cpu": cpu.get("model"), "cores": cpu.get("logical_cores"), "flags": flags, "threads": threads,
             "versions": {k: versions[k] for k in KEY_PACKAGES if k in versions}}
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()[:16]


def floor_dir() -> Path:
    """Where floors are kept: `EDGEBENCH_FLOOR_DIR`, or the project's models/.cache/aa-floor."""
    return Path(os.environ.get("EDGEBENCH_FLOOR_DIR") or FLOOR_DIR_DEFAULT)


def _slug(model: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in model) or "model"


def _read(path: Path) -> AAFloor:
    data = json.loads(path.read_text())
    return AAFloor(**{k: data[k] for k in AAFloor.__dataclass_fields__ if k in data})


def load(key: str, model: str, root: Path | None = None) -> AAFloor:
    """The floor for `model` on this machine: its own, else the largest measured here for another model
    (and says so), else `DEFAULT`. An unreadable file counts as none, and says so."""
    folder = (root or floor_dir()) / key
    path = folder / f"{_slug(model)}.json"
    try:
        if path.exists():
            return _read(path)
        others = [_read(p) for p in sorted(folder.glob("*.json"))]
    except (OSError, ValueError, TypeError) as exc:
        return AAFloor(floor=DEFAULT.floor, comparisons=0,
                       source=f"default: a stored floor in {folder} is unreadable ({type(exc).__name__})")
    if not others:
        return DEFAULT
    largest = max(others, key=lambda f: f.floor)
    return AAFloor(floor=largest.floor, comparisons=largest.comparisons, key=key, model=largest.model,
                   false_positives=largest.false_positives, false_positives_without=largest.false_positives_without,
                   source=f"largest measured on this machine, on {largest.model}, not on {model}: {largest.source}")


def save(floor: AAFloor, root: Path | None = None) -> Path:
    folder = (root or floor_dir()) / floor.key
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{_slug(floor.model)}.json"
    path.write_text(json.dumps({**asdict(floor), "saved": dt.datetime.now().isoformat(timespec="seconds")},
                               indent=1))
    return path
