"""Adapters that fail the way real backends do (segfault, hang, OOM kill, exception, wrong outputs, a busy
neighbour), to pin the harness's isolation and what it reports.

They wrap the real PyTorch adapter; only the failure is added.
"""

import atexit
import ctypes
import os
import signal
import time

import numpy as np

from edgebench.runtimes.pytorch_eager import PyTorchEager

BALLAST_MB = 400


class SegfaultingRuntime(PyTorchEager):
    name = "segfaulting"
    label = "Segfaulting"
    order = 900

    def run(self, inputs):
        ctypes.string_at(0)  # reads address 0: SIGSEGV, as a broken native backend would


class HangingRuntime(PyTorchEager):
    name = "hanging"
    label = "Hanging"
    order = 901

    def load(self, artifact):
        time.sleep(3600)


class CrashOnLoadRuntime(PyTorchEager):
    """Segfaults before importing anything heavy: a child that fails within a second, for fast isolation tests."""

    name = "crashonload"
    label = "Crash on load"
    order = 908

    def load(self, artifact):
        ctypes.string_at(0)


class MissingPackageRuntime(PyTorchEager):
    name = "missingpkg"
    label = "Missing package"
    order = 902
    packages = {"edgebench_no_such_module": "edgebench-no-such-package"}


class RaisingRuntime(PyTorchEager):
    """Raises in load(), as a backend that rejects the model does; subclasses vary only the message."""

    name = "raising"
    label = "Raising"
    order = 903
    message = "backend refused   the model"

    def load(self, artifact):
        raise RuntimeError(self.message)


class OomKilledRuntime(PyTorchEager):
    """Killed by SIGKILL during the first inference, as the kernel's OOM killer does."""

    name = "oomkilled"
    label = "OOM killed"
    order = 904

    def run(self, inputs):
        os.kill(os.getpid(), signal.SIGKILL)


class MemoryHungryRuntime(PyTorchEager):
    """The real PyTorch adapter plus BALLAST_MB touched before loading: its peak RSS must show that much more."""

    name = "memoryhungry"
    label = "Memory hungry"
    order = 905

    def load(self, artifact):
        self.ballast = np.ones(BALLAST_MB * 2**20 // 8)  # held to the end, under everything the adapter does
        super().load(artifact)


class PerturbedRuntime(PyTorchEager):
    """Outputs scaled by 1%: cosine stays 1, max abs diff is 1% of the output range (fp32 allows 0.1%)."""

    name = "perturbed"
    label = "Perturbed"
    order = 906

    def fetch(self, outputs):
        return [o * 1.01 for o in super().fetch(outputs)]


def _spin_while_asked(until) -> None:
    """A neighbour process: spins a core while `until` (a shared clock time) is in the future, else naps."""
    while True:
        if time.monotonic() < until.value:
            continue
        time.sleep(0.005)


class NoisyNeighbourRuntime(PyTorchEager):
    """A neighbour spins a core whenever this runtime is being timed (and only then): the row must say `noisy`.

    Each inference keeps the neighbour busy for the next 50 ms, so it loads the CPU through this row's
    rounds and their repeats, and leaves the other rows' rounds (interleaved with these) alone.
    """

    name = "noisyneighbour"
    label = "Noisy neighbour"
    order = 907

    def load(self, artifact):
        import multiprocessing

        super().load(artifact)
        context = multiprocessing.get_context("fork")
        self.until = context.Value("d", 0.0, lock=False)
        self.spinner = context.Process(target=_spin_while_asked, args=(self.until,), daemon=True)
        self.spinner.start()
        atexit.register(self.close)

    def run(self, inputs):
        self.until.value = time.monotonic() + 0.05
        return super().run(inputs)

    def close(self):
        spinner = getattr(self, "spinner", None)
        if spinner is not None and spinner.is_alive():
            spinner.kill()
            spinner.join()


class SteadyRuntime(PyTorchEager):
    """The real PyTorch adapter plus 5 ms of sleep per inference: a known lower bound for every timing."""

    name = "steady"
    label = "Steady"
    order = 909
    SLEEP_MS = 5

    def run(self, inputs):
        time.sleep(self.SLEEP_MS / 1e3)
        return super().run(inputs)


class MislabelledRuntime(PyTorchEager):
    """Loads, then admits it computes at another precision than asked (as OpenVINO does on CPUs without bf16)."""

    name = "mislabelled"
    label = "Mislabelled"
    order = 910

    def label_mismatch(self):
        return "computes in f32 when asked for fp32 (test)"


class SilentRaisingRuntime(RaisingRuntime):
    """Raises an exception with no message at all."""

    name = "silentraising"
    label = "Silent raising"
    order = 911
    message = ""


class VerboseRaisingRuntime(RaisingRuntime):
    """Raises an exception whose message runs over many lines."""

    name = "verboseraising"
    label = "Verbose raising"
    order = 912
    message = "word\n  " * 200


class EnvironmentReportingRuntime(PyTorchEager):
    """Says, as its unavailability reason, what its measuring process was started with (imports nothing heavy)."""

    name = "envreporting"
    label = "Environment reporting"
    order = 913

    @classmethod
    def run_unavailable(cls, target):
        keys = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "HF_HUB_OFFLINE", "DO_NOT_TRACK", "NVIDIA_TF32_OVERRIDE",
                "CUDA_DEVICE_ORDER")
        facts = {key: os.environ.get(key) for key in keys}
        facts.update(cwd=os.getcwd(), stdin=os.path.realpath("/proc/self/fd/0"), sid=os.getsid(0))
        return repr(facts)


class ExitsBadlyRuntime(PyTorchEager):
    """Finishes its work, then its process exits with code 3 on the way out (as some native libraries do)."""

    name = "exitsbadly"
    label = "Exits badly"
    order = 914

    @classmethod
    def run_unavailable(cls, target):
        atexit.register(os._exit, 3)
        return "cannot run (test)"


class CopyingRuntime(PyTorchEager):
    """The real PyTorch adapter saying that its prepare() and fetch() do the host-device copies, as a GPU
    adapter's do: on this CPU it stands in for one, so the worker times its copies apart from compute."""

    name = "copying"
    label = "Copying"
    order = 913

    def copies_apart(self) -> bool:
        return True


class QatRecordingRuntime(PyTorchEager):
    """Writes down the quantization-aware training plan the worker handed it, and "trains" by keeping the module
    as it is: what the worker must do with a QAT export, without 45 seconds of real training."""

    name = "qatrecording"
    label = "QAT recording"
    order = 915

    def export(self, model, example, folder):
        import dataclasses
        import json

        (folder / "qat_plan.json").write_text(json.dumps(dataclasses.asdict(self.qat) if self.qat else None))
        if self.qat is not None:
            self.trained = model
        return super().export(model, example, folder)


class DeviceMemoryRuntime(PyTorchEager):
    """Reports a device memory figure even on the CPU: the worker-to-row path of `device_memory()`, without a GPU."""

    name = "devicememory"
    label = "Device memory reporting"
    order = 915

    def device_memory(self):
        return 42.0, "test counter (peak)"
