"""Adapters that fail the way real backends do (segfault, hang, OOM kill, exception, wrong outputs, a busy
neighbour), to pin the harness's isolation and what it reports.

They wrap the real PyTorch adapter; only the failure is added.
"""

import atexit
import ctypes
import os
import signal
import subprocess
import sys
import time

import numpy as np

from runtimes.pytorch_eager import PyTorchEager

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
    name = "raising"
    label = "Raising"
    order = 903

    def load(self, artifact):
        raise RuntimeError("backend refused   the model")


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


class NoisyNeighbourRuntime(PyTorchEager):
    """Starts a process that spins a core while this runtime is measured: the row must say `noisy`."""

    name = "noisyneighbour"
    label = "Noisy neighbour"
    order = 907

    def load(self, artifact):
        super().load(artifact)
        self.spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        atexit.register(self.close)
        time.sleep(0.3)  # let it get going

    def close(self):
        spinner = getattr(self, "spinner", None)
        if spinner is not None and spinner.poll() is None:
            spinner.kill()
            spinner.wait()
