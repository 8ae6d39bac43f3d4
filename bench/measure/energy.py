"""Energy per inference from the hardware's own counters, where they exist; never an estimate.

On a CPU target: RAPL's package energy counters (`/sys/class/powercap/intel-rapl:N/energy_uj`, summed over
packages, a wrap of the counter at `max_energy_range_uj` handled). On an NVIDIA GPU: NVML's total-energy
counter of the device (`nvmlDeviceGetTotalEnergyConsumption`, mJ since the driver loaded), through the
`nvidia-ml-py` package. Both count the whole package or board over the window, so on a shared machine a
neighbour's work is in the figure: read it with the row's foreign CPU load. Where neither exists (a VM
without RAPL, no NVML), the meter says why and reports nothing: a TDP-based guess is not a measurement.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

POWERCAP_DIR_ENV = "EDGEBENCH_POWERCAP_DIR"  # tests point it at a fake tree; default /sys/class/powercap


def powercap_dir() -> Path:
    return Path(os.environ.get(POWERCAP_DIR_ENV, "/sys/class/powercap"))


@dataclass(frozen=True)
class RaplZone:
    """One package's energy counter."""

    counter: Path
    wrap_uj: int

    def read_uj(self) -> int:
        return int(self.counter.read_text())


def rapl_zones(root: Path | None = None) -> list[RaplZone]:
    """The top-level RAPL zones (one per CPU package; their sub-zones are parts of them, not added again)."""
    root = root or powercap_dir()
    zones = []
    for zone in sorted(root.glob("intel-rapl:*")):
        if zone.name.count(":") != 1 or not (zone / "energy_uj").exists():
            continue
        try:
            zone_counter = RaplZone(zone / "energy_uj", int((zone / "max_energy_range_uj").read_text()))
            zone_counter.read_uj()  # readable only by root on recent kernels
        except (OSError, ValueError):
            continue
        zones.append(zone_counter)
    return zones


def cuda_device_handle(pynvml: Any, environ: Mapping[str, str] = os.environ) -> Any:
    """NVML's handle of this process's CUDA device 0. NVML numbers every GPU of the machine in PCI bus order; CUDA
    numbers only those CUDA_VISIBLE_DEVICES lists, in its order, and orders them by PCI bus only under
    CUDA_DEVICE_ORDER=PCI_BUS_ID (the harness sets it for itself and its children). So NVML's device 0 is not
    CUDA's under CUDA_VISIBLE_DEVICES=2: the variable's first entry is followed, by UUID where it names one."""
    first = environ.get("CUDA_VISIBLE_DEVICES", "").split(",")[0].strip()
    if first.startswith(("GPU-", "MIG-")):
        return pynvml.nvmlDeviceGetHandleByUUID(first)
    return pynvml.nvmlDeviceGetHandleByIndex(int(first) if first.isdigit() else 0)


def _nvml_counter() -> Callable[[], float] | None:
    """Millijoules read from NVML's total-energy counter of the row's GPU, or None without NVML or the counter."""
    try:
        import pynvml

        pynvml.nvmlInit()
        handle = cuda_device_handle(pynvml)
        pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)
    except Exception:  # no package, no driver, or a board without the counter (pre-Volta)
        return None
    return lambda: float(pynvml.nvmlDeviceGetTotalEnergyConsumption(handle))


def energy_source(target: str) -> tuple[Callable[[], float] | None, str]:
    """(a function returning the counter in joules, what it is) or (None, why energy is not measured here)."""
    if target == "gpu":
        counter = _nvml_counter()
        if counter is None:
            return None, "no NVML energy counter (pip install nvidia-ml-py; needs an NVIDIA driver, Volta or later)"
        return (lambda: counter() / 1e3), "NVML total energy of the row's GPU (CUDA device 0)"
    if target == "cpu":
        zones = rapl_zones()
        if not zones:
            return None, f"no readable RAPL energy counters under {powercap_dir()} (common in VMs)"
        return RaplMeter(zones).joules, f"RAPL package energy ({len(zones)} package{'s' if len(zones) > 1 else ''})"
    return None, f"no energy counter known for target {target}"


class RaplMeter:
    """Joules accumulated across RAPL zones since creation, counting each counter's wrap."""

    def __init__(self, zones: list[RaplZone]) -> None:
        self.zones = zones
        self.last = [z.read_uj() for z in zones]
        self.total_uj = 0

    def joules(self) -> float:
        for i, zone in enumerate(self.zones):
            now = zone.read_uj()
            delta = now - self.last[i]
            if delta < 0:  # the counter wrapped at max_energy_range_uj
                delta += zone.wrap_uj + 1
            self.total_uj += delta
            self.last[i] = now
        return self.total_uj / 1e6


class EnergyMeter:
    """`with EnergyMeter(read) as m: ...` then `m.joules` is the energy the counter saw meanwhile, or None."""

    def __init__(self, read: Callable[[], float] | None) -> None:
        self.read = read
        self.joules: float | None = None

    def __enter__(self) -> EnergyMeter:
        self._before = self.read() if self.read is not None else None
        return self

    def __exit__(self, *exc: object) -> None:
        if self.read is not None and self._before is not None:
            self.joules = self.read() - self._before
