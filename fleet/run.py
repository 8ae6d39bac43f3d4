"""The workstation's side of a fleet run: plan, send each device its share, write rows as they come back.

Every device gets the same run (model, runtimes, precisions, batches, compression) as one Dask task that
needs its device resource and is never merged with another (`pure=False`). The run folder here receives
each row as the device writes it, with the device's name in `host`; the table has a column per device and
target. A device with no worker, or whose worker leaves, gets `error` rows naming why after a bounded wait,
never a hang; `--resume` re-measures those rows (and whatever was not finished) when the device is back.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from dataclasses import asdict
from pathlib import Path
from typing import Any

from edgebench.bench.config import TARGETS, BenchConfig
from edgebench.bench.errors import UsageError
from edgebench.bench.results import ResultRow, RunWriter, read_rows, split_row_key
from edgebench.bench.resume import finished_variant_rows, keep_rows, save_command, without_options
from edgebench.bench.runlog import logger
from edgebench.fleet.cluster import Fleet, check_address, connect
from edgebench.fleet.device import DEVICE_RESOURCE, DeviceJob, DeviceResult, measure_on_device, stop_event
from edgebench.models.tasks import check_image_folder

DEVICE_LEFT = "device left the fleet"  # rows with this error are measured again by --resume
MAX_DATA_MB = float(os.environ.get("EDGEBENCH_FLEET_MAX_DATA_MB", "512"))  # a DATA folder sent to each device
FLEET_OPTIONS = ("--fleet", "--devices", "--out", "--resume")
POLL_S = 0.5  # how often the workstation takes the rows the devices sent and checks on them


def wait_s() -> float:
    """How long a missing device is waited for: EDGEBENCH_FLEET_WAIT_S seconds (30), or one line naming it."""
    text = os.environ.get("EDGEBENCH_FLEET_WAIT_S", "30")
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        raise UsageError(f"bad EDGEBENCH_FLEET_WAIT_S {text!r}: expected a number of seconds >= 0 (default 30)")
    return value


def device_argv(command: tuple[str, ...]) -> tuple[tuple[str, ...], dict[str, bytes]]:
    """The run's arguments as a device takes them, and the local files they name, which travel with them."""
    argv = without_options(command, FLEET_OPTIONS)
    files: dict[str, bytes] = {}
    out = []
    for flag, value in zip(["", *argv[:-1]], argv, strict=True):
        # Files keep their names: rows name the model after its file (`tiny_cnn:build`), on every device alike.
        if flag == "--model" and ".py:" in value:
            path, _, function = value.rpartition(":")
            files[Path(path).name] = Path(path).read_bytes()
            value = f"@file:{Path(path).name}:{function}"
        elif flag == "--weights" and value != "pretrained" and Path(value).is_file():
            files[Path(value).name] = Path(value).read_bytes()
            value = f"@file:{Path(value).name}"
        elif flag == "--data" and Path(value).expanduser().is_dir():
            folder = Path(value).expanduser().resolve()
            files.update(_data_files(folder))
            value = f"@file:{folder.name}"
        out.append(value)
    return tuple(out), files


def _data_files(folder: Path) -> dict[str, bytes]:
    """An ImageFolder's train/ and val/ files, keyed `<folder name>/<relative path>` so the device rebuilds the
    same folder (its name is the task's name in the rows). Bounded: every device gets its own copy."""
    check_image_folder(folder)
    paths = [path for part in ("train", "val") for path in sorted((folder / part).rglob("*")) if path.is_file()]
    size_mb = sum(path.stat().st_size for path in paths) / 1e6
    if size_mb > MAX_DATA_MB:
        raise UsageError(f"--data {str(folder)!r}: {size_mb:.0f} MB of images is more than a fleet run sends to "
                         f"each device (EDGEBENCH_FLEET_MAX_DATA_MB={MAX_DATA_MB:g}); raise it, or give a path "
                         "that exists on the devices only")
    return {f"{folder.name}/{path.relative_to(folder).as_posix()}": path.read_bytes() for path in paths}


def _error_rows(template: dict[tuple[str, str], set[str]], device: str, error: str, status: str = "error",
                done: set[str] = frozenset()) -> list[ResultRow]:
    """A row per planned key of `device` not in `done`, marked with why it was not measured."""
    rows = []
    for keys in template.values():
        for key in sorted(keys - done):
            model, compression, runtime, precision, target, batch = split_row_key(key)
            rows.append(ResultRow(model=model, weights="", compression=compression, runtime=runtime, format=runtime,
                                  precision=precision, target=target, device=target, batch=batch,
                                  threads=0, status=status, error=error, host=device))
    return rows


class FleetRun:
    """One fleet run into `run_dir`: devices' rows appended as they arrive, error rows for those that fail."""

    def __init__(self, config: BenchConfig, address: str, devices: tuple[str, ...], run_dir: Path,
                 planned: dict[tuple[str, str], set[str]], reporter: Any, wait_s: float) -> None:
        self.config, self.address, self.devices, self.run_dir = config, address, devices, run_dir
        self.planned, self.reporter = planned, reporter
        self.wait_s = wait_s  # how long a missing device is waited for
        self.writer = RunWriter(run_dir)
        self.run_id = f"edgebench-{uuid.uuid4().hex[:12]}"
        self.futures: dict[str, Any] = {}  # device -> its task, while it runs

    def _write(self, row: ResultRow) -> None:
        self.writer.append(row)
        self.reporter.row_done(row)

    def run(self, fleet: Fleet, argv: tuple[str, ...], files: dict[str, bytes]) -> list[ResultRow]:
        """Measure on the devices of `fleet` with the devices' command line and files (`device_argv`), closing
        the fleet in the end."""
        finished = False
        try:
            previous = [row for row in read_rows(self.run_dir) if not row.error.startswith(DEVICE_LEFT)]
            kept = [row for device in self.devices
                    for row in finished_variant_rows([r for r in previous if r.host == device], self.planned)]
            keep_rows(self.run_dir, kept, sample_key=lambda r: f"{r.host}|{r.key}")
            self.writer.rows = list(kept)
            rows = self._run(fleet, argv, files, kept)
            finished = True
            return rows
        finally:
            if not finished:  # interrupted or failed here: the devices stop too, keeping what they wrote
                self._stop_devices(fleet)
            fleet.close()

    def _stop_devices(self, fleet: Fleet, wait_s: float = 20.0) -> None:
        from distributed import Event

        try:
            Event(stop_event(self.run_id), client=fleet.client).set()
            deadline = time.monotonic() + wait_s
            while self.futures and time.monotonic() < deadline and \
                    any(f.status == "pending" for f in self.futures.values()):
                time.sleep(0.2)
        except Exception as exc:  # the scheduler may be gone already: nothing more to tell the devices
            logger.info("could not tell the devices to stop: %s", exc)

    def _run(self, fleet: Fleet, argv: tuple[str, ...], files: dict[str, bytes],
             kept: list[ResultRow]) -> list[ResultRow]:
        from distributed import Queue

        missing = fleet.wait_for(self.devices, self.wait_s)
        refused = fleet.version_problems(self.devices)
        if refused:
            raise UsageError(next(iter(refused.values())))
        self.write_environment(fleet)
        for device in missing:
            logger.info("device %s: no worker after %.0f s", device, self.wait_s)
            for row in _error_rows(self.planned, device, f"{DEVICE_LEFT}: no worker for device {device} joined "
                                   f"{fleet.address} within {self.wait_s:.0f} s",
                                   done={r.key for r in kept if r.host == device}):
                self._write(row)
        rows_in = Queue(self.run_id, client=fleet.client)
        futures = self.futures
        offered = {name: info.get("resources", {}) for name, info in fleet.devices().items()}
        for device in self.devices:
            if device in missing:
                continue
            done = [r for r in kept if r.host == device]
            targets = [t for t in self.config.targets if t in offered[device]]
            lacking = [t for t in self.config.targets if t not in targets]
            if lacking:
                has = ", ".join(t for t in TARGETS if t in offered[device]) or "none"
                for row in _error_rows({v: {k for k in keys if split_row_key(k)[4] in lacking}
                                        for v, keys in self.planned.items()}, device,
                                       f"device {device} has no {'/'.join(lacking)} target (its worker offers {has})",
                                       status="unavailable", done={r.key for r in done}):
                    self._write(row)
                    done.append(row)
            if not targets:
                continue
            job = DeviceJob(device=device, run_id=self.run_id,
                            argv=(*without_options(argv, ("--target",)), "--target", ",".join(targets)), files=files,
                            finished_rows=tuple(json.dumps(asdict(r)) for r in done if r.target in targets))
            futures[device] = fleet.client.submit(measure_on_device, job, resources={DEVICE_RESOURCE.format(device): 1},
                                                  pure=False, key=f"{self.run_id}-{device}")
        received: dict[str, set[str]] = {d: {r.key for r in self.writer.rows if r.host == d} for d in self.devices}
        absent_since: dict[str, float] = {}
        while futures:
            time.sleep(POLL_S)
            self._drain(rows_in, received)
            present = fleet.devices()
            for device, future in list(futures.items()):
                if future.status == "finished":
                    self._drain(rows_in, received)
                    self._finish(device, future.result(), received)
                    del futures[device]
                elif future.status in ("error", "cancelled"):
                    self._drain(rows_in, received)
                    reason = future.exception() if future.status == "error" else "cancelled"
                    self._left(device, f"{DEVICE_LEFT} during the run ({type(reason).__name__}: {reason})",
                               received)
                    del futures[device]
                elif device not in present:  # gone: give it the bounded wait to come back, then stop waiting
                    absent_since.setdefault(device, time.monotonic())
                    if time.monotonic() - absent_since[device] > self.wait_s:
                        future.cancel()
                        self._drain(rows_in, received)
                        self._left(device, f"{DEVICE_LEFT} during the run (no worker for {self.wait_s:.0f} s)",
                                   received)
                        del futures[device]
                else:
                    absent_since.pop(device, None)
        return self.writer.rows

    def _drain(self, rows_in: Any, received: dict[str, set[str]]) -> None:
        """Write every row waiting in the queue. Taken as a batch: a `get` with a timeout on an empty queue raised
        in the scheduler, which logged an ERROR traceback into run.log every poll while a device ran."""
        for item in rows_in.get(batch=True):
            self._take(item["device"], item["row"], received)

    def _take(self, device: str, line: str, received: dict[str, set[str]]) -> None:
        """Write a row a device sent (rows.jsonl line), under the device's name, unless it came already."""
        row = ResultRow(**json.loads(line))
        row.host = device
        if row.key not in received[device]:
            received[device].add(row.key)
            self._write(row)

    def _finish(self, device: str, result: DeviceResult, received: dict[str, set[str]]) -> None:
        """The device's whole run: rows the queue did not bring are written now; its environment is kept."""
        for line in result.rows:
            self._take(device, line, received)
        with open(self.run_dir / "samples.jsonl", "a") as samples:  # keyed by device too: keys repeat across devices
            for line in result.samples:
                entry = json.loads(line)
                samples.write(json.dumps({**entry, "key": f"{device}|{entry['key']}"}) + "\n")
        folder = self.run_dir / "devices" / device
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "environment.json").write_text(result.environment or "{}")
        (folder / "device.json").write_text(json.dumps({k: v for k, v in asdict(result).items() if k != "rows"},
                                                       indent=2))
        logger.info("device %s (worker %s on %s): harness exit %d, %.1f s", device, result.worker, result.hostname,
                    result.returncode, result.ended - result.started)
        if result.returncode not in (0, 1):
            self._left(device, f"the harness on device {device} ended with exit {result.returncode}: "
                               f"{result.stderr_tail.splitlines()[-1] if result.stderr_tail else ''}", received)

    def _left(self, device: str, error: str, received: dict[str, set[str]]) -> None:
        for row in _error_rows(self.planned, device, error, done=received[device]):
            received[device].add(row.key)
            self._write(row)

    def write_environment(self, fleet: Fleet) -> None:
        from edgebench.bench.environment import capture

        workers = fleet.devices()
        config = self.config  # the devices measure with these; each device's own environment is in devices/<name>/
        environment = capture({"targets": list(config.targets), "mode": config.mode, "threads": config.threads,
                               "timing": asdict(config.timing), "repeats": config.repeats})
        environment["fleet"] = {"scheduler": "local" if fleet.local_cluster is not None else fleet.address,
                                "devices": {d: {"worker": workers[d].get("name"), "address": workers[d].get("address"),
                                                "resources": workers[d].get("resources")}
                                            for d in self.devices if d in workers}}
        self.writer.write_environment(environment)


def run_fleet(config: BenchConfig, address: str, devices: tuple[str, ...], reporter: Any,
              log: Any) -> tuple[Path, list]:
    """Plan here (bad models or methods fail before any device is asked), then measure on the devices."""
    from edgebench.bench.runner import make_run_dir, plan_run, planned_keys

    if not devices:
        raise UsageError("a fleet run needs its devices: --devices jetson01,mac-m2 (DEVICES=...)")
    check_address(address)  # these, like the plan and the connection, fail before the run folder is written
    waiting = wait_s()
    models, _, plans = plan_run(config)
    argv, files = device_argv(config.command)  # a data folder too large to send: one line, nothing written
    fleet = connect(address, devices, config.targets)  # an unreachable scheduler: the same
    try:
        run_dir = make_run_dir(config, "+".join(m.name for m in models))
    except BaseException:
        fleet.close()
        raise
    log.attach(run_dir / "run.log")
    if not config.resume:
        save_command(run_dir, config.command)
    planned = planned_keys(models, plans)
    total = sum(len(keys) for keys in planned.values()) * len(devices)
    reporter.name_hosts = True
    reporter.start(total, f"edgebench fleet: {len(devices)} devices ({', '.join(devices)}) on {address}, "
                          f"{total} measurements -> {run_dir}")
    try:
        rows = FleetRun(config, address, devices, run_dir, planned, reporter, waiting).run(fleet, argv, files)
    finally:
        reporter.finish()
    return run_dir, rows
