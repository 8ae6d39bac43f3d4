"""Energy from hardware counters only: RAPL zones read and summed with their wrap, the reason when none exist,
and the figure carried from the measuring process to the row (a fake powercap tree stands in for RAPL)."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgebench.bench.measure.energy import POWERCAP_DIR_ENV, EnergyMeter, RaplMeter, energy_source, rapl_zones
from edgebench.bench.measure.rounds import RoundResult, RowRounds


def fake_powercap(root: Path, packages: dict[int, int], wrap: int = 1_000_000) -> Path:
    for package, uj in packages.items():
        zone = root / f"intel-rapl:{package}"
        zone.mkdir(parents=True)
        (zone / "energy_uj").write_text(str(uj))
        (zone / "max_energy_range_uj").write_text(str(wrap))
        sub = root / f"intel-rapl:{package}:0"  # a sub-zone (the cores): part of the package, not added again
        sub.mkdir()
        (sub / "energy_uj").write_text("5")
        (sub / "max_energy_range_uj").write_text(str(wrap))
    return root


def test_rapl_packages_are_summed_across_a_counter_wrap(tmp_path):
    root = fake_powercap(tmp_path, {0: 999_000, 1: 10})
    zones = rapl_zones(root)
    assert [z.counter.parent.name for z in zones] == ["intel-rapl:0", "intel-rapl:1"]
    meter = RaplMeter(zones)
    (root / "intel-rapl:0" / "energy_uj").write_text("500")  # wrapped: 1,000,001 - 999,000 + 500 = 1,501 uJ
    (root / "intel-rapl:1" / "energy_uj").write_text("2010")  # 2,000 uJ
    assert meter.joules() == pytest.approx(3501e-6)


def test_without_counters_energy_is_empty_and_says_why(tmp_path, monkeypatch):
    monkeypatch.setenv(POWERCAP_DIR_ENV, str(tmp_path / "none"))
    read, why = energy_source("cpu")
    assert read is None and why.startswith("no readable RAPL energy counters under")
    with EnergyMeter(read) as meter:
        pass
    assert meter.joules is None
    assert energy_source("npu")[0] is None


def test_energy_per_inference_counts_every_inference_of_the_kept_rounds():
    rounds = RowRounds(kept=[RoundResult(samples_ms=[1.0] * 97, warmup_iters=3, capped=False, energy_j=0.5),
                             RoundResult(samples_ms=[1.0] * 100, warmup_iters=0, capped=False, energy_j=0.3)])
    assert rounds.energy_mj == pytest.approx(1e3 * 0.8 / 200)
    rounds.kept.append(RoundResult(samples_ms=[1.0], warmup_iters=0, capped=False))  # a round without a counter
    assert rounds.energy_mj is None


class _FakeNvml:
    """NVML's lookup calls, recorded: enough to see which GPU a row's energy is read from."""

    def __init__(self):
        self.asked = []

    def nvmlDeviceGetHandleByIndex(self, index):
        self.asked.append(("index", index))
        return f"nvml-{index}"

    def nvmlDeviceGetHandleByUUID(self, uuid):
        self.asked.append(("uuid", uuid))
        return f"nvml-{uuid}"


@pytest.mark.parametrize("visible,expected", [
    (None, ("index", 0)),
    ("2", ("index", 2)),  # CUDA's device 0 is the machine's third GPU, NVML's index 2 (PCI order, set at spawn)
    ("3,1", ("index", 3)),
    ("GPU-8f6c1a2b-0000-4c1e-9d5a-1234567890ab,1", ("uuid", "GPU-8f6c1a2b-0000-4c1e-9d5a-1234567890ab")),
    ("MIG-5f0c", ("uuid", "MIG-5f0c")),
])
def test_energy_is_read_from_the_gpu_the_row_runs_on_not_nvmls_first(visible, expected):
    from edgebench.bench.measure.energy import cuda_device_handle

    nvml = _FakeNvml()
    cuda_device_handle(nvml, {} if visible is None else {"CUDA_VISIBLE_DEVICES": visible})
    assert nvml.asked == [expected]
