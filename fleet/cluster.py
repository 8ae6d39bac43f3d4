"""The Dask cluster a fleet run uses: a scheduler the user runs (`tcp://host:8786`, `tls://...`), or `local`.

`local` starts a scheduler on 127.0.0.1 and one worker process per named device on this machine, so the
whole path runs without a second machine. Nothing listens beyond loopback unless the user names another
address: Dask's dashboard otherwise binds 0.0.0.0. Workers whose dask or distributed differ from this
machine's are refused with one line naming both versions (a mismatched worker was seen accepted and then
crashing on its first task).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgebench.bench.errors import UsageError
from edgebench.bench.isolation import PROJECT_ROOT, project_env
from edgebench.fleet.device import DEVICE_RESOURCE

CHECKED_PACKAGES = ("dask", "distributed")
TLS_ENV = ("EDGEBENCH_TLS_CA", "EDGEBENCH_TLS_CERT", "EDGEBENCH_TLS_KEY")


def security() -> Any:
    """TLS from EDGEBENCH_TLS_CA / _CERT / _KEY (PEM files) when set: for fleets on a real network."""
    paths = [os.environ.get(name, "") for name in TLS_ENV]
    if not any(paths):
        return None
    missing = [name for name, path in zip(TLS_ENV, paths, strict=True) if not path or not Path(path).is_file()]
    if missing:
        raise UsageError(f"TLS needs {', '.join(TLS_ENV)} set to PEM files; missing or not a file: "
                         f"{', '.join(missing)}")
    from distributed.security import Security

    ca, cert, key = paths
    return Security(tls_ca_file=ca, tls_client_cert=cert, tls_client_key=key, tls_worker_cert=cert,
                    tls_worker_key=key, tls_scheduler_cert=cert, tls_scheduler_key=key, require_encryption=True)


def worker_command(address: str, name: str, targets: tuple[str, ...], host: str | None = "127.0.0.1") -> list[str]:
    """The plain `dask worker` command line for a device: one thread, its device resource and its targets;
    listening on `host`, or where Dask chooses when None."""
    resources = ",".join([f"{DEVICE_RESOURCE.format(name)}=1", *(f"{t}=1" for t in targets)])
    # The worker's HTTP server (health and metrics routes) stays up without the dashboard, on every interface
    # unless given an address: bind it where the worker listens.
    return [sys.executable, "-m", "distributed.cli.dask_worker", address, "--name", name, "--nthreads", "1",
            "--nworkers", "1", "--resources", resources, *(["--host", host] if host else []), "--no-dashboard",
            "--dashboard-address", f"{host or ''}:0", "--no-nanny"]


@dataclass
class Fleet:
    """A connected client, and the local scheduler and worker processes when `local` started them."""

    client: Any
    address: str
    local_cluster: Any = None
    local_workers: dict[str, subprocess.Popen] = field(default_factory=dict)

    def devices(self) -> dict[str, dict[str, Any]]:
        """Device name -> the scheduler's record of the worker that serves it (resources name the device)."""
        found = {}
        for address, info in self.client.scheduler_info(n_workers=-1)["workers"].items():
            for resource in info.get("resources", {}):
                if resource.startswith(DEVICE_RESOURCE.format("")):
                    found[resource[len(DEVICE_RESOURCE.format("")):]] = {**info, "address": address}
        return found

    def wait_for(self, devices: tuple[str, ...], wait_s: float) -> list[str]:
        """Wait up to `wait_s` for every device to have a worker; the devices still missing."""
        deadline = time.monotonic() + wait_s
        while True:
            missing = [d for d in devices if d not in self.devices()]
            if not missing or time.monotonic() > deadline:
                return missing
            time.sleep(0.5)

    def version_problems(self, devices: tuple[str, ...]) -> dict[str, str]:
        """Device -> why its worker is refused: its dask/distributed differ from this machine's."""
        versions = self.client.get_versions(check=False)
        mine = versions["client"]["packages"]
        by_address = versions["workers"]
        problems = {}
        for name, info in self.devices().items():
            if name not in devices:
                continue
            packages = by_address.get(info["address"], {}).get("packages", {})
            for package in CHECKED_PACKAGES:
                if packages.get(package) != mine.get(package):
                    problems[name] = (f"device {name} runs {package} {packages.get(package)}, this machine "
                                      f"{mine.get(package)}: install the same dask and distributed on both "
                                      f"(pip install dask=={mine.get('dask')} distributed=={mine.get('distributed')})")
                    break
        return problems

    def close(self) -> None:
        try:
            self.client.close()
        finally:
            for process in self.local_workers.values():
                if process.poll() is None:
                    process.terminate()
            for process in self.local_workers.values():
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
            if self.local_cluster is not None:
                self.local_cluster.close()


def _present(target: str) -> bool:
    from edgebench.bench.targets import check_target

    try:
        check_target(target)
    except UsageError:
        return False
    return True


def check_address(address: str, what: str = "FLEET") -> str:
    """A scheduler address the way Dask takes it (`tcp://host:port`, `tls://host:port`; for a run also `local`),
    or one line naming the forms; checked before anything is written or started."""
    import re

    if what == "FLEET" and address == "local":
        return address
    found = re.fullmatch(r"(tcp|tls)://([^/:\s]+|\[[0-9a-fA-F:]+\]):(\d{1,5})", address.strip())
    if not found or not 0 < int(found.group(3)) < 65536:
        local = "local (a loopback fleet on this machine), or " if what == "FLEET" else ""
        raise UsageError(f"bad {what} {address!r}: expected {local}a scheduler address tcp://host:port or "
                         "tls://host:port (e.g. tcp://192.168.1.10:8786)")
    return address.strip()


def connect(address: str, devices: tuple[str, ...], targets: tuple[str, ...]) -> Fleet:
    """A client on `address`; for `local`, a loopback scheduler and one worker process per device first."""
    import dask
    from distributed import Client, LocalCluster

    # A device that dies fails its task at once rather than passing it to another worker: no other worker
    # has its resource, so the task would only wait. The tick limit keeps the in-process scheduler from
    # logging "event loop unresponsive" while a local device's measurement keeps both cores busy.
    dask.config.set({"distributed.scheduler.allowed-failures": 0, "distributed.admin.tick.limit": "60s"})
    if address == "local":
        targets = tuple(t for t in targets if _present(t))  # a local device offers what this machine has
        cluster = LocalCluster(n_workers=0, host="127.0.0.1", scheduler_port=0, dashboard_address="127.0.0.1:0",
                               processes=True)
        workers = {name: subprocess.Popen(worker_command(cluster.scheduler_address, name, targets), env=project_env(),
                                          cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                   for name in devices}
        return Fleet(Client(cluster), cluster.scheduler_address, cluster, workers)
    tls = security()
    if address.startswith("tls://") and tls is None:
        raise UsageError(f"cannot reach the fleet's scheduler at {address}: it speaks TLS; set "
                         f"{', '.join(TLS_ENV)} to the fleet's PEM files")
    try:
        client = Client(address, security=tls, timeout="20s")
    except OSError as exc:
        raise UsageError(f"cannot reach the fleet's scheduler at {address}: {exc}") from exc
    return Fleet(client, address)
