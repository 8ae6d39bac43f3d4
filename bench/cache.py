"""Exported artifacts kept between runs, so a warm re-run exports nothing and starts timing at once.

An entry is keyed by everything the export reads: the bytes of the (compressed) module, of the timed input
(its shape is the exported batch), of the int8 calibration images and of the task (QAT trains on it), the
runtime's name, target and precision, the seed and QAT epochs, the source of every adapter in `runtimes/`
(a user's adapter file too), of `models/` and `compression/`, the versions of the installed packages, and for
GPU exports the device, its driver and CUDA, and for an artifact of machine code (AOTInductor) the CPU's vector
extensions and the threads it was built for (`Runtime.host_facts`). Any change is a new key, so an
entry is never served for another key; an old entry just stops being used. The cache lives in
`models/.cache/artifacts`, or `EDGEBENCH_CACHE_DIR` (`make clean-cache` empties it; `--no-cache` bypasses
it for one run).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgebench.bench.isolation import PROJECT_ROOT
from edgebench.runtimes import load_adapter

# EDGEBENCH_CACHE_DIR moves it (the test suite points it at a temporary folder).
CACHE_DIR = Path(os.environ.get("EDGEBENCH_CACHE_DIR") or PROJECT_ROOT / "models" / ".cache" / "artifacts")
META = "export.json"


def file_digest(path: str | Path, _memo: dict[tuple[str, float, int], str] = {}) -> str:  # noqa: B006
    """sha256 of a file's bytes; remembered per (path, mtime, size) within one process."""
    p = Path(path)
    stat = p.stat()
    key = (str(p.resolve()), stat.st_mtime, stat.st_size)
    if key not in _memo:
        digest = hashlib.sha256()
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        _memo[key] = digest.hexdigest()
    return _memo[key]


def adapter_sources(adapter: str) -> list[Path]:
    """Every file an export may run: all of `runtimes/` (shared helpers included), `models/` (the classes a pickled
    module is rebuilt from, and the training recipe QAT uses), `compression/`, the worker and the variant
    loader, and a user's adapter file. Pickles name classes without their code: a changed `forward` must not
    be served an artifact traced from the old one."""
    files = sorted(p for folder in ("runtimes", "models", "compression") for p in (PROJECT_ROOT / folder).glob("*.py"))
    files += [PROJECT_ROOT / "bench" / "worker.py", PROJECT_ROOT / "bench" / "variants.py"]
    module = adapter.split(":")[0]
    if module.endswith(".py"):
        files.append(Path(module))
    return files


def device_facts(target: str) -> dict[str, str]:
    """What shapes an accelerator's engine beyond package versions: the device, its driver, CUDA (TensorRT
    engines are built for one GPU and driver). Nothing for the CPU, whose exports are portable."""
    if target != "gpu":
        return {}
    facts = {}
    try:
        import torch

        if torch.cuda.is_available():
            facts = {"device": torch.cuda.get_device_name(0), "cuda": str(torch.version.cuda),
                     "capability": ".".join(map(str, torch.cuda.get_device_capability(0)))}
    except Exception:  # a broken CUDA install: the export will fail and say why
        pass
    try:
        import pynvml

        pynvml.nvmlInit()
        facts["driver"] = str(pynvml.nvmlSystemGetDriverVersion())
    except Exception:  # no NVML: the device name and CUDA version still separate engines
        pass
    return facts


def cache_key(job: Any, versions: dict[str, str]) -> str:
    """The key of a MeasureJob's export (see the module docstring for what goes in)."""
    parts = {
        "device": device_facts(job.options.target),
        "host": load_adapter(job.adapter).host_facts(job.options),
        "adapter": job.adapter,
        "sources": [file_digest(p) for p in adapter_sources(job.adapter)],
        "target": job.options.target,
        "precision": job.options.precision,
        "seed": job.options.seed,
        "model": file_digest(job.model_file),
        "input": file_digest(job.input),
        "calibration": file_digest(job.calibration) if job.calibration and job.options.precision == "int8" else "",
        "qat_epochs": job.qat_epochs,
        "task": file_digest(job.task) if job.task and job.qat_epochs else "",
        "versions": versions,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:32]


@dataclass
class CachedExport:
    """What a stored export gives back: the artifact's path in the run, and the export's own figures."""

    artifact: str
    export_s: float
    export_peak_rss_mb: float | None
    reference: str  # the QAT-trained model's outputs, restored into the job folder ("" when not QAT)
    contents: dict[str, Any] | None = None  # what the artifact holds (`bench.measure.contents.Contents`)
    zip_bytes: int | None = None  # the artifact deflated (seconds to recompute for a large model; the bytes are fixed)


class ArtifactCache:
    def __init__(self, root: Path | None = None) -> None:
        self.root = root or CACHE_DIR  # read when made, so tests can point it elsewhere

    def restore(self, key: str, artifact_dir: Path, job_dir: Path) -> CachedExport | None:
        """Copy a stored export into this run's folders; None when there is none under this key."""
        entry = self.root / key
        meta_path = entry / META
        if not meta_path.is_file():
            return None
        meta = json.loads(meta_path.read_text())
        if artifact_dir.exists():
            shutil.rmtree(artifact_dir)
        shutil.copytree(entry / "artifact", artifact_dir)
        reference = ""
        if meta.get("reference"):
            job_dir.mkdir(parents=True, exist_ok=True)
            reference = str(job_dir / meta["reference"])
            shutil.copy2(entry / meta["reference"], reference)
        return CachedExport(str(artifact_dir / meta["artifact"]), meta["export_s"], meta.get("export_peak_rss_mb"),
                            reference, meta.get("contents"), meta.get("zip_bytes"))

    def store(self, key: str, artifact_dir: Path, artifact: str, export_s: float, peak_rss_mb: float | None,
              reference: str = "", contents: dict[str, Any] | None = None, zip_bytes: int | None = None) -> None:
        """Keep an export under its key: written aside, then renamed, so a reader never sees half an entry."""
        entry = self.root / key
        if entry.exists():
            return
        tmp = self.root / f".tmp-{uuid.uuid4().hex}"
        shutil.copytree(artifact_dir, tmp / "artifact")
        meta = {"artifact": str(Path(artifact).relative_to(artifact_dir)), "export_s": export_s,
                "export_peak_rss_mb": peak_rss_mb, "reference": Path(reference).name if reference else "",
                "contents": contents, "zip_bytes": zip_bytes}
        if reference:
            shutil.copy2(reference, tmp / meta["reference"])
        (tmp / META).write_text(json.dumps(meta))
        try:
            tmp.rename(entry)
        except OSError:  # another run stored the same key first: theirs is as good
            shutil.rmtree(tmp, ignore_errors=True)
