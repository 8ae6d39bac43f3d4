"""A fleet on this machine, loopback only: devices are local Dask workers with their own resources."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch

from edgebench.bench.cli import main
from edgebench.bench.errors import UsageError
from edgebench.fleet.cluster import connect, worker_command
from edgebench.fleet.run import DEVICE_LEFT, device_argv

from image_folders import image_folder
from live_processes import processes_mentioning
from tests_paths import TINY_MODEL

FAST = ["--threads", "1", "--warmup", "1", "--iters", "5", "--duration", "0", "--repeats", "2"]
RUN = [sys.executable, "-m", "edgebench.bench",
       "--fleet", "local", "--model", TINY_MODEL, "--runtimes", "pytorch,onnxruntime"]
linux = pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")


@pytest.fixture(autouse=True)
def _no_device_folders_left():
    """A device killed outright cannot remove its job folder (a TemporaryDirectory): the test does, so repeated
    runs leave nothing in the temporary directory."""
    base = Path(tempfile.gettempdir())
    before = set(base.glob("edgebench-*"))
    yield
    for folder in set(base.glob("edgebench-*")) - before:
        shutil.rmtree(folder, ignore_errors=True)


def _rows(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "rows.jsonl").read_text().splitlines()]


def test_the_model_file_and_weights_travel_with_the_arguments(tmp_path):
    weights = tmp_path / "w.pt"
    weights.write_bytes(b"weights")
    argv, files = device_argv(("--model", TINY_MODEL, "--weights", str(weights), "--fleet", "local",
                               "--devices", "a,b", "--batch", "1"))
    assert argv == ("--model", "@file:tiny_cnn.py:build", "--weights", "@file:w.pt", "--batch", "1")
    assert files["tiny_cnn.py"] == Path(TINY_MODEL.rpartition(":")[0]).read_bytes() and files["w.pt"] == b"weights"


def test_a_data_folder_travels_and_is_the_same_task_on_the_device(tmp_path):
    from edgebench.fleet.device import _rewrite
    from edgebench.models.tasks import load_task

    data = image_folder(tmp_path / "shapes", classes=3)
    (data / "notes.txt").write_text("not read: only train/ and val/ travel")
    argv, files = device_argv(("--data", str(data), "--batch", "1"))
    assert argv == ("--data", "@file:shapes", "--batch", "1")
    assert sorted(files) == [f"shapes/{split}/class{c}/{i}.png" for split in ("train", "val")
                             for c in range(3) for i in range(2)]
    device = tmp_path / "device"
    device.mkdir()
    rewritten = _rewrite(argv, device, files)
    assert rewritten == ["--data", str(device.resolve() / "shapes"), "--batch", "1"]
    here, there = load_task(str(data), (1, 8, 8)), load_task(rewritten[1], (1, 8, 8))
    assert there.name == here.name == "shapes" and there.classes == here.classes
    assert (there.x_test == here.x_test).all() and (there.y_train == here.y_train).all()
    with pytest.raises(ValueError, match="outside the job's folder"):
        _rewrite((), device, {"../escaped.py": b"code"})
    assert not (tmp_path / "escaped.py").exists()


@pytest.mark.parametrize("make,message", [
    (lambda root: image_folder(root, 2, splits=("train",)), "has no val/ folder"),
    (lambda root: image_folder(root, 2), "MB of images is more than a fleet run sends to each device"),
])
def test_a_data_folder_that_cannot_travel_is_one_line(tmp_path, monkeypatch, make, message):
    monkeypatch.setattr("edgebench.fleet.run.MAX_DATA_MB", 0.0001)
    with pytest.raises(UsageError, match=message):
        device_argv(("--data", str(make(tmp_path / "d"))))


@pytest.mark.parametrize("args,message", [
    (["--devices", "a,b"], "--devices names the devices of a fleet: add --fleet"),
    (["worker", "tcp://127.0.0.1:1", "--name", "a", "--targets", "tpu"], "unknown target 'tpu' in --targets"),
    (["worker", "tcp://127.0.0.1:1", "--name", "a b"], "bad device name 'a b'"),
])
def test_bad_fleet_input_is_one_line_and_exit_2(capsys, args, message):
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_a_worker_with_half_its_tls_files_is_refused_rather_than_started_in_plain_text(capsys, monkeypatch,
                                                                                       tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("not read before the check")
    monkeypatch.setenv("EDGEBENCH_TLS_CA", str(ca))
    for name in ("EDGEBENCH_TLS_CERT", "EDGEBENCH_TLS_KEY"):
        monkeypatch.delenv(name, raising=False)
    assert main(["worker", "tls://127.0.0.1:1", "--name", "a"]) == 2
    err = capsys.readouterr().err.strip()
    assert "missing or not a file: EDGEBENCH_TLS_CERT, EDGEBENCH_TLS_KEY" in err and len(err.splitlines()) == 1


@pytest.mark.slow
@linux
def test_two_devices_each_measure_their_own_rows_in_turn_into_one_table(tmp_path):
    out = tmp_path / "run"
    done = subprocess.run([*RUN, "--devices", "boardA,boardB", "--target", "cpu,gpu", *FAST, "--out", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    rows = _rows(out)
    if not torch.cuda.is_available():  # a device measures only the targets its worker offers
        gpu = [r for r in rows if r["target"] == "gpu"]
        assert len(gpu) == 4 and {r["error"] for r in gpu} == {
            f"device {d} has no gpu target (its worker offers cpu)" for d in ("boardA", "boardB")}
        rows = [r for r in rows if r["target"] == "cpu"]
    assert sorted((r["host"], r["runtime"], r["status"]) for r in rows) == [
        ("boardA", "onnxruntime", "ok"), ("boardA", "pytorch", "ok"),
        ("boardB", "onnxruntime", "ok"), ("boardB", "pytorch", "ok")]
    record = {d: json.loads((out / "devices" / d / "device.json").read_text()) for d in ("boardA", "boardB")}
    assert {d: r["worker"] for d, r in record.items()} == {"boardA": "boardA", "boardB": "boardB"}
    first, second = sorted(record.values(), key=lambda r: r["started"])
    assert first["ended"] <= second["started"]  # one machine: the devices took turns (the machine lock)
    table = (out / "table.md").read_text()
    assert "CPU ms [boardA]" in table and "CPU ms [boardB]" in table
    environment = json.loads((out / "environment.json").read_text())
    assert set(environment["fleet"]["devices"]) == {"boardA", "boardB"}
    assert "CPU ms [boardA]" in done.stdout
    # the workstation's poll of the rows queue logs nothing (a `get` that timed out was an ERROR every 0.5 s)
    assert " ERROR " not in (out / "run.log").read_text()
    from edgebench.reports.runs import load_run, samples_of  # the devices' samples came back, apart though keys repeat

    run = load_run(out)
    measured = [r for r in run.rows if r.status == "ok"]
    assert len(measured) == 4 and all(samples_of(run.samples, r) for r in measured)
    assert {k.split("|")[0] for k in run.samples} == {"boardA", "boardB"}
    assert {run.machine_of(r).split(":")[0] for r in measured} == {"boardA", "boardB"}


def _parent(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def _descendants(pid: int) -> list[int]:
    found, frontier = [], [pid]
    while frontier:
        parent = frontier.pop()
        children = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and _parent(int(p.name)) == parent]
        found += children
        frontier += children
    return found


@pytest.mark.slow
@linux
def test_a_device_killed_mid_run_becomes_error_rows_and_no_other_row_is_lost(tmp_path):
    out = tmp_path / "run"
    # The lost device held the machine's lock (devices on one machine take turns): Dask frees a dead holder's
    # lease after `lease-timeout` (30 s by default, all of it waited here before); 5 s, checked every second.
    env = {**os.environ, "EDGEBENCH_FLEET_WAIT_S": "5", "DASK_DISTRIBUTED__SCHEDULER__LOCKS__LEASE_TIMEOUT": "5s",
           "DASK_DISTRIBUTED__SCHEDULER__LOCKS__LEASE_VALIDATION_INTERVAL": "1s"}
    # Short rounds: when `keep` goes first, the waiting worker and the scheduler (~4% of a core each, idle) may flag
    # its rounds noisy, and each is measured up to three times (76 s with rounds of 1 s).
    proc = subprocess.Popen([*RUN, "--devices", "keep,lose", "--threads", "1", "--warmup", "1", "--iters", "5",
                             "--duration", "0.3", "--repeats", "6", "--out", str(out)], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    everything: list[int] = []
    try:
        harness: list[int] = []
        deadline = time.monotonic() + 180
        while not harness and time.monotonic() < deadline:  # the device measuring, after the other's turn
            everything = _descendants(proc.pid)
            harness = [p for p in everything if "edgebench-lose-" in _cmdline(p) and "--resume" in _cmdline(p)]
            time.sleep(0.2)
        assert harness, "the device never started measuring"
        time.sleep(2.0)
        worker = _parent(harness[0])  # the device's Dask worker (its title no longer shows its name)
        assert _parent(worker) == proc.pid
        os.kill(worker, signal.SIGKILL)
        stdout, stderr = proc.communicate(timeout=600)
        # The device's harness ends itself with its worker. Once in a full-suite run on the 2-core host, 5 processes
        # were still there 5 s after the run ended (not reproduced alone or beside two busy cores): 10 s, and the
        # failure names them, so the next one says what they were.
        deadline = time.monotonic() + 10
        while processes_mentioning("edgebench-lose-") and time.monotonic() < deadline:
            time.sleep(0.2)
        orphans = [(pid, _cmdline(pid)[:300]) for pid in processes_mentioning("edgebench-lose-")]
    finally:
        proc.kill()
        for pid in everything + processes_mentioning("edgebench-lose-") + processes_mentioning("edgebench-keep-"):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                continue
    assert orphans == [], "the lost device's harness outlived its worker"
    assert proc.returncode == 0, stderr
    rows = _rows(out)
    kept = [r for r in rows if r["host"] == "keep"]
    lost = [r for r in rows if r["host"] == "lose"]
    assert sorted(r["status"] for r in kept) == ["ok", "ok"]
    assert len(lost) == 2 and all(r["error"].startswith(DEVICE_LEFT) for r in lost if r["status"] != "ok")
    assert any(r["status"] == "error" for r in lost)


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").replace("\0", " ")
    except OSError:
        return ""


@pytest.mark.slow
@linux
def test_a_worker_of_another_distributed_version_is_refused_naming_both(tmp_path):
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(
        "import distributed.versions as v\n"
        "_real = v._version_cached\n"
        "v._version_cached = lambda name: '2000.1.0' if name == 'distributed' else _real(name)\n")
    fleet = connect("local", (), ("cpu",))
    worker = None
    try:
        root = Path(__file__).resolve().parent.parent
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(shim), str(root)])}
        worker = subprocess.Popen(worker_command(fleet.address, "old", ("cpu",)), env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        assert fleet.wait_for(("old",), 60) == []
        import distributed

        assert fleet.version_problems(("old",)) == {"old": (
            f"device old runs distributed 2000.1.0, this machine {distributed.__version__}: install the same dask "
            f"and distributed on both (pip install dask=={distributed.__version__} "
            f"distributed=={distributed.__version__})")}
    finally:
        if worker is not None:
            worker.kill()
        fleet.close()


def _listening(pids: set[int]) -> list[str]:
    """Local addresses (hex, as /proc/net/tcp writes them) of the TCP sockets these processes listen on."""
    inodes = set()
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            parts = line.split()
            if parts[3] == "0A" and parts[9] in inodes:  # 0A: LISTEN
                found.append(parts[1].rsplit(":", 1)[0])
    return found


@pytest.mark.slow
@linux
def test_a_local_fleet_listens_on_loopback_only():
    fleet = connect("local", ("a",), ("cpu",))
    try:
        assert fleet.wait_for(("a",), 60) == []
        pids = {os.getpid(), *(p.pid for p in fleet.local_workers.values())}
        addresses = _listening(pids)
        assert addresses, "found no listening socket: the check would prove nothing"
        loopback = {"0100007F", "00000000000000000000000001000000"}  # 127.0.0.1, ::1
        assert set(addresses) <= loopback, addresses
    finally:
        fleet.close()


@pytest.mark.slow
@linux
def test_a_fleet_run_killed_with_9_resumes_to_the_rows_of_an_uninterrupted_one(tmp_path):
    devices = ["--devices", "resA,resB"]
    cut = tmp_path / "cut"
    proc = subprocess.Popen([*RUN, *devices, *FAST, "--out", str(cut)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    rows = cut / "rows.jsonl"
    deadline = time.monotonic() + 300
    while not (rows.exists() and rows.read_text().count("\n") >= 2) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = _descendants(proc.pid)  # what a killed workstation leaves on this machine: its workers, their harness
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    for pid in left + processes_mentioning("edgebench-resA-") + processes_mentioning("edgebench-resB-"):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            continue
    assert 2 <= rows.read_text().count("\n") < 4, "the kill did not land inside the run"
    before = {(r["host"], r["runtime"]): r["p50_ms"] for r in _rows(cut)}
    resumed = subprocess.run([sys.executable, "-m", "edgebench.bench",
                              "--resume", str(cut)], capture_output=True, text=True,
                             timeout=600)
    assert resumed.returncode == 0, resumed.stderr

    def keys(run_dir):
        return sorted((r["host"], r["runtime"], r["precision"], r["target"], r["batch"], r["status"])
                      for r in _rows(run_dir))

    # what the uninterrupted run writes (every row of both devices, ok), as the two-device test above measures it
    assert keys(cut) == sorted((host, runtime, "fp32", "cpu", 1, "ok") for host in ("resA", "resB")
                               for runtime in ("pytorch", "onnxruntime"))
    after = {(r["host"], r["runtime"]): r["p50_ms"] for r in _rows(cut)}
    finished = {host for host, _ in before if sum(h == host for h, _ in before) == 2}
    assert finished and all(after[k] == v for k, v in before.items() if k[0] in finished)  # kept, not re-timed


def _self_made_certificates(folder: Path) -> tuple[Path, Path, Path]:
    """A CA and one certificate it signed for 127.0.0.1, made with the openssl command."""
    ca_key, ca, key, request, cert = (folder / n for n in ("ca.key", "ca.pem", "tls.key", "tls.csr", "tls.pem"))
    extensions = folder / "san.ext"
    extensions.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for command in (
        ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key, "-out", ca, "-days", "2",
         "-subj", "/CN=edgebench test CA"],
        ["req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", request, "-subj", "/CN=127.0.0.1"],
        ["x509", "-req", "-in", request, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-out", cert, "-days", "2",
         "-extfile", extensions],
    ):
        subprocess.run(["openssl", *map(str, command)], check=True, capture_output=True)
    return ca, cert, key


@pytest.mark.slow
@linux
@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command to make certificates")
def test_a_fleet_over_tls_with_self_made_certificates(tmp_path):
    ca, cert, key = _self_made_certificates(tmp_path)
    env = {**os.environ, "EDGEBENCH_TLS_CA": str(ca), "EDGEBENCH_TLS_CERT": str(cert), "EDGEBENCH_TLS_KEY": str(key)}
    scheduler_file = tmp_path / "scheduler.json"
    scheduler = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--protocol", "tls",
                                  "--host", "127.0.0.1", "--port", "0", "--dashboard-address", "127.0.0.1:0",
                                  "--tls-ca-file", str(ca), "--tls-cert", str(cert), "--tls-key", str(key),
                                  "--scheduler-file", str(scheduler_file)],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    worker = None
    try:
        deadline = time.monotonic() + 60
        while not scheduler_file.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        address = json.loads(scheduler_file.read_text())["address"]
        assert address.startswith("tls://127.0.0.1:")
        worker = subprocess.Popen([sys.executable, "-m", "edgebench.bench",
                                   "worker", address, "--name", "tlsdev", "--host",
                                   "127.0.0.1"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        out = tmp_path / "run"
        done = subprocess.run([sys.executable, "-m", "edgebench.bench",
                               "--fleet", address, "--devices", "tlsdev", "--model",
                               TINY_MODEL, "--runtimes", "onnxruntime", *FAST, "--out", str(out)], env=env,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        assert [(r["host"], r["status"]) for r in _rows(out)] == [("tlsdev", "ok")]
        without = {k: v for k, v in env.items() if not k.startswith("EDGEBENCH_TLS_")}
        refused = subprocess.run([sys.executable, "-m", "edgebench.bench", "--fleet", address, "--devices", "tlsdev",
                                  "--model", TINY_MODEL, "--runtimes", "onnxruntime", *FAST,
                                  "--out", str(tmp_path / "plain")], env=without, capture_output=True, text=True,
                                 timeout=300)
        assert refused.returncode == 2 and "Traceback" not in refused.stderr
        assert f"cannot reach the fleet's scheduler at {address}: it speaks TLS" in refused.stderr
    finally:
        for process in (worker, scheduler):
            if process is not None:
                process.kill()
