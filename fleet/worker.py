"""`edgebench worker SCHEDULER --name NAME`: this machine serves as one device of a fleet.

It is the plain `dask worker` with what a device needs: one thread (one measurement at a time), a resource
naming the device (`device-NAME=1`) and one per target it has (`cpu=1`, `gpu=1`, `npu=1`), and this checkout
on PYTHONPATH so the tasks it is sent find the harness. The worker runs the model code it is sent: keep a
fleet on a private network, with TLS (EDGEBENCH_TLS_CA/_CERT/_KEY) beyond a trusted LAN.
"""

from __future__ import annotations

import argparse
import os
import sys

from edgebench.bench.config import TARGETS
from edgebench.bench.errors import UsageError
from edgebench.bench.isolation import project_env
from edgebench.fleet.cluster import TLS_ENV, check_address, security, worker_command


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="edgebench worker", description=__doc__.splitlines()[0])
    p.add_argument("scheduler", help="the fleet scheduler's address, e.g. tcp://192.168.1.10:8786")
    p.add_argument("--name", required=True, help="this device's name, as DEVICES= names it (e.g. jetson01)")
    p.add_argument("--targets", default="cpu", help="comma-separated targets this device has [cpu]")
    p.add_argument("--host", default=None, help="address to listen on [Dask's choice; 127.0.0.1 for a local test]")
    return p


def command(args: argparse.Namespace) -> list[str]:
    targets = tuple(t.strip() for t in args.targets.split(",") if t.strip())
    unknown = [t for t in targets if t not in TARGETS]
    if unknown or not targets:
        raise UsageError(f"unknown target {(unknown or [''])[0]!r} in --targets: choose from {', '.join(TARGETS)}")
    if not args.name.replace("-", "").replace("_", "").isalnum():
        raise UsageError(f"bad device name {args.name!r}: letters, digits, - and _ only")
    argv = worker_command(check_address(args.scheduler, "scheduler address"), args.name, targets, args.host)
    if security() is not None:  # the run's own check: all three PEM files, or one line naming what is missing
        ca, cert, key = (os.environ[name] for name in TLS_ENV)
        argv += ["--tls-ca-file", ca, "--tls-cert", cert, "--tls-key", key]
    return argv


def main(argv: list[str]) -> int:
    try:
        worker = command(build_parser().parse_args(argv))
    except UsageError as exc:
        print(f"edgebench worker: error: {exc}", file=sys.stderr)
        return 2
    os.execvpe(worker[0], worker, project_env())
    return 0  # not reached: the process is the worker now
