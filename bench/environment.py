"""Captures the machine and software a run measured on, once, into environment.json."""

from __future__ import annotations

import datetime as dt
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = ("torch", "torchvision", "numpy", "onnx", "onnxscript", "onnxruntime", "onnxruntime-gpu", "openvino",
            "litert-torch", "ai-edge-litert", "coremltools", "tensorrt", "tensorrt-cu13", "tensorrt-cu12", "nncf",
            "torchao", "torch-pruning")  # TensorRT installs as a distribution named for its CUDA (tensorrt-cu13)


def cpu_info() -> dict[str, Any]:
    info: dict[str, Any] = {"model": platform.processor() or platform.machine(), "logical_cores": os.cpu_count()}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return info
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    info["model"] = fields.get("model name", info["model"])
    info["physical_cores_per_socket"] = int(fields["cpu cores"]) if fields.get("cpu cores", "").isdigit() else None
    info["flags"] = fields.get("flags", "").split()
    return info


def memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024**2, 1)
    except OSError:
        pass
    return None


def package_versions() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def git_commit(root: Path) -> str | None:
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5)
        if commit.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return commit.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def accelerators() -> list[str]:
    """CUDA devices torch can see (torch is already imported by the run)."""
    try:
        import torch

        if torch.cuda.is_available():
            return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    except Exception:  # a broken CUDA install must not stop a CPU run
        pass
    return []


def cpu_frequency_governor() -> str | None:
    """The Linux cpufreq scaling governor of CPU 0 ("performance", "powersave", ...), None where unreadable
    (most VMs expose no cpufreq): a "powersave" or "ondemand" governor makes the first samples slower."""
    try:
        return Path("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor").read_text().strip()
    except OSError:
        return None


def capture(extra: dict[str, Any] | None = None) -> dict[str, Any]:
    root = Path(__file__).resolve().parent.parent
    cpu = cpu_info()
    environment = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(sys.argv),
        "cpu": cpu["model"],
        "cpu_logical_cores": cpu["logical_cores"],
        "cpu_physical_cores_per_socket": cpu.get("physical_cores_per_socket"),
        "cpu_flags": cpu.get("flags", []),
        "ram_gib": memory_gib(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "packages": package_versions(),
        "git_commit": git_commit(root),
        "accelerators": accelerators(),
        "cpu_governor": cpu_frequency_governor(),
    }
    from edgebench.runtimes.onnxrt import installed_onnxruntimes, onnxruntime_conflict

    environment["onnxruntime_distributions"] = installed_onnxruntimes()
    conflict = onnxruntime_conflict()
    if conflict:
        environment["warnings"] = [conflict]
    environment.update(extra or {})
    return environment
