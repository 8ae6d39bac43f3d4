"""Adapters that fail the way real backends do (segfault, hang), to pin the harness's isolation.

They wrap the real PyTorch adapter; only the failure is added.
"""

import ctypes
import time

from runtimes.pytorch_eager import PyTorchEager


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


class MissingPackageRuntime(PyTorchEager):
    name = "missingpkg"
    label = "Missing package"
    order = 902
    packages = {"edgebench_no_such_module": "edgebench-no-such-package"}
