"""The contract between the runner and its child processes: what a child is asked to do, written once.

The runner writes one of these as JSON beside the child's log; `bench.worker` reads it back with
`load_job`. Adding a field here is the whole change to the protocol.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgebench.bench.config import TimingConfig
from edgebench.runtimes.base import RuntimeOptions


@dataclass
class CompressJob:
    """Apply a compression chain to the reference model once; every runtime then exports the result."""

    chain: str  # e.g. "prune-channels:0.5+qat"; "none" copies the reference
    model_file: str  # the reference module, pickled whole
    model: str  # the model source, so a child can import a user's classes before unpickling
    out_dir: str  # where model.pt, outputs_b<N>.npz and the description go
    inputs: dict[str, str]  # batch size -> .npy input on which eager outputs are saved as the fidelity reference
    task: str = ""  # the task's .npz ("" when the model has no labels: fine-tuning is skipped)
    finetune_epochs: int = 2
    seed: int = 0
    threads: int = 1


@dataclass
class MeasureJob:
    """Export one runtime's artifact from a (compressed) model, or load it and measure it."""

    adapter: str  # `module:Class` or `file.py:Class`
    options: RuntimeOptions
    model_file: str  # the module every runtime exports, pickled whole
    input: str  # .npy: the batch that is timed and compared
    reference: str  # .npz: PyTorch eager's outputs of the same module on that batch
    artifact_dir: str
    timing: TimingConfig = field(default_factory=TimingConfig)
    artifact: str = ""  # set by the runner after export
    task: str = ""  # the task's .npz: accuracy on its test split ("" when there are no labels)
    calibration: str = ""  # .npy of inputs for int8 calibration
    qat_epochs: int = 0  # > 0: the int8 export trains this long with the runtime's QAT toolchain (needs task)
    serve: bool = False  # measure: time rounds when the parent says so on stdin (bench.isolation.ChildSession)
    boxes: str = ""  # a detector's: where the first inference's candidate boxes go (.npz), to match PyTorch's
    rounds: int = 1  # measure without serve: this many rounds back to back
    profile: bool = False  # after timing and scoring: a per-operator profile with the runtime's own profiler


JOB_TYPES = {"compress": CompressJob, "export": MeasureJob, "measure": MeasureJob}


def save_job(job: CompressJob | MeasureJob, path: Path) -> None:
    path.write_text(json.dumps(asdict(job), indent=1))


def load_job(mode: str, path: Path) -> CompressJob | MeasureJob:
    data: dict[str, Any] = json.loads(path.read_text())
    cls = JOB_TYPES[mode]
    if cls is MeasureJob:
        data["options"] = RuntimeOptions(**data["options"])
        data["timing"] = TimingConfig(**data["timing"])
    return cls(**data)
