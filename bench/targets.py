"""Checks that the requested target has a device, before anything is built or written."""

from __future__ import annotations

import importlib.util
import os
import platform
import shutil

from edgebench.bench.errors import UsageError


def tflite_delegates() -> list[str]:
    """NPU delegate libraries for the TFLite interpreter, named by EDGEBENCH_TFLITE_DELEGATE (comma-separated)."""
    paths = [p for p in os.environ.get("EDGEBENCH_TFLITE_DELEGATE", "").split(",") if p]
    return [p for p in paths if os.path.isfile(p)]


def tflite_delegate_options() -> dict[str, str]:
    """Options handed to every delegate, from EDGEBENCH_TFLITE_DELEGATE_OPTIONS (`key=value,key=value`).

    Vendor delegates usually need some (Qualcomm's QNN delegate `backend_type=htp`, for instance); which
    keys exist is the delegate's own business, so they are passed through as strings, unchecked.
    """
    raw = os.environ.get("EDGEBENCH_TFLITE_DELEGATE_OPTIONS", "")
    options = {}
    for item in filter(None, (part.strip() for part in raw.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"EDGEBENCH_TFLITE_DELEGATE_OPTIONS: {item!r} is not key=value "
                             "(write them as key=value,key=value)")
        options[key.strip()] = value.strip()
    return options


def _missing_delegates() -> list[str]:
    paths = [p for p in os.environ.get("EDGEBENCH_TFLITE_DELEGATE", "").split(",") if p]
    return [p for p in paths if not os.path.isfile(p)]


def _gpu_devices() -> tuple[list[str], list[str]]:
    """(device names, what was checked): CUDA devices, or the Apple GPU through CoreML on macOS."""
    import torch

    if torch.cuda.is_available():
        return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())], []
    checked = [f"torch {torch.__version__} (CUDA build {torch.version.cuda or 'none'}): "
               "torch.cuda.is_available() is False"]
    smi = shutil.which("nvidia-smi")
    checked.append("nvidia-smi: " + ("present, but torch sees no device" if smi else "not found"))
    if platform.system() == "Darwin" and importlib.util.find_spec("coremltools"):
        return ["Apple GPU (CoreML)"], checked
    checked.append(f"Apple GPU through CoreML: needs macOS, this is {platform.system()}")
    return [], checked


def _npu_devices() -> tuple[list[str], list[str]]:
    found, checked = [], []
    if importlib.util.find_spec("openvino"):
        import openvino as ov

        devices = ov.Core().available_devices
        npus = [d for d in devices if d.startswith("NPU")]
        found += [f"OpenVINO {d}" for d in npus]
        checked.append(f"OpenVINO NPU (devices: {', '.join(devices)})")
    else:
        checked.append("OpenVINO NPU (openvino not installed)")
    if platform.system() == "Darwin" and platform.machine() == "arm64":
        found.append("Apple Neural Engine (CoreML)")
    checked.append(f"CoreML Neural Engine (needs macOS on Apple silicon; this is {platform.system()} "
                   f"{platform.machine()})")
    delegates = tflite_delegates()
    found += [f"TFLite delegate {d}" for d in delegates]
    checked.append("TFLite delegate libraries (EDGEBENCH_TFLITE_DELEGATE: " + (", ".join(delegates) or "none") + ")")
    return found, checked


def check_target(target: str) -> list[str]:
    """The devices found for `target`; UsageError (exit 2) naming what was looked for when there are none."""
    if target == "cpu":
        return [platform.processor() or platform.machine()]
    if target == "gpu":
        devices, checked = _gpu_devices()
        if not devices:
            raise UsageError("no CUDA device found for TARGET=gpu; checked " + "; ".join(checked))
        return devices
    if target == "npu":
        missing = _missing_delegates()
        if missing:
            raise UsageError(f"EDGEBENCH_TFLITE_DELEGATE names {', '.join(missing)}: no such file "
                             "(give the delegate .so paths, comma-separated)")
        tflite_delegate_options()  # a malformed option string is refused before any work
        devices, checked = _npu_devices()
        if not devices:
            raise UsageError("no NPU found for TARGET=npu; looked for " + "; ".join(checked))
        return devices
    raise UsageError(f"unknown target {target!r}: choose one of cpu, gpu, npu")
