import os

import numpy as np
import pytest
import torch

from edgebench.bench.errors import UsageError
from edgebench.models import load_model, make_input, rebuild_model, resolve_source

from tests_paths import ASSETS


@pytest.mark.parametrize("name", ["mobilenet_v2", "resnet18"])
def test_random_init_models_get_realistic_activations(name):
    """Without BN recalibration mobilenet_v2's outputs are ~1e-9 (denormals); with it they are O(0.1-1)."""
    model = load_model(name)
    x = make_input(model.example, 2, seed=0)
    with torch.inference_mode():
        out = model.module(x)
    assert out.shape == (2, 1000)
    assert out.abs().max() > 1e-2
    assert (out.abs()[out != 0] > 1e-30).all()
    assert "BN recalibrated" in model.weights


def test_inception_uses_its_299_input():
    source = resolve_source("inception_v3")
    assert source.input_size == 299


def test_user_model_file(tiny_model_source):
    model = load_model(tiny_model_source)
    assert model.name == "tiny_cnn:build"
    assert tuple(model.example.shape) == (1, 3, 32, 32)
    assert model.weights.startswith("as built by")


def test_weights_file_round_trip_and_mismatch(tmp_path, tiny_model_source):
    model = load_model(tiny_model_source)
    for p in model.module.parameters():
        p.data.fill_(0.5)
    path = tmp_path / "w.pt"
    torch.save(model.module.state_dict(), path)
    loaded = load_model(tiny_model_source, weights=str(path))
    assert all(torch.all(p == 0.5) for p in loaded.module.parameters())
    assert loaded.weights == "file:w.pt"
    with pytest.raises(UsageError, match="does not fit model resnet18"):
        load_model("resnet18", weights=str(path))
    with pytest.raises(UsageError, match="does not exist"):
        load_model(tiny_model_source, weights=str(tmp_path / "missing.pt"))


def test_rebuild_in_another_process_gives_identical_outputs(tmp_path, tiny_model_source):
    model = load_model("mobilenet_v3_small")
    torch.save(model.module.state_dict(), tmp_path / "sd.pt")
    again, _ = rebuild_model("mobilenet_v3_small", tmp_path / "sd.pt")
    x = make_input(model.example, 1, 0)
    with torch.inference_mode():
        np.testing.assert_array_equal(model.module(x).numpy(), again(x).numpy())


def test_make_input_is_seeded_and_batched():
    example = torch.randn(1, 3, 8, 8)
    a, b = make_input(example, 4, seed=1), make_input(example, 4, seed=1)
    assert a.shape == (4, 3, 8, 8) and torch.equal(a, b)
    ints = make_input(torch.tensor([[1, 2, 3]]), 2, seed=0)
    assert ints.tolist() == [[1, 2, 3], [1, 2, 3]]


@pytest.mark.parametrize("text,message", [
    ("resnet19", "unknown model 'resnet19': choose one of resnet18"),
    (f"{ASSETS}/nope.py:build", "does not exist"),
    (f"{ASSETS}/tiny_cnn.py:missing", "defines no function 'missing': functions there: build, not_a_model"),
    (f"{ASSETS}/tiny_cnn.py", "needs a function"),
])
def test_bad_model_sources(text, message):
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        resolve_source(text)


def test_user_function_returning_wrong_things():
    with pytest.raises(UsageError, match="not an nn.Module"):
        load_model(f"{ASSETS}/tiny_cnn.py:not_a_model")


def test_yolo_builds_offline_from_its_yaml_with_one_decoded_output(tmp_path):
    pytest.importorskip("ultralytics", reason="the yolo extra is not installed")
    import torch

    from edgebench.bench.variants import load_module, save_variant

    model = load_model("yolov8n")
    assert model.weights == "random-init, BN recalibrated (seed 0)" and tuple(model.example.shape) == (1, 3, 640, 640)
    with torch.no_grad():
        out = model.module(model.example)
    assert isinstance(out, torch.Tensor) and tuple(out.shape) == (1, 84, 8400)  # export-mode head: boxes + 80 classes
    np.save(tmp_path / "x.npy", model.example.numpy())
    info = save_variant(model.module, tmp_path / "v", {1: tmp_path / "x.npy"}, 0, "")
    assert 3_000_000 < info.params < 3_300_000  # yolov8n: 3.2 M parameters
    again = load_module(tmp_path / "v" / "model.pt", "yolov8n")  # what every child process unpickles
    with torch.no_grad():
        assert torch.equal(again(model.example), out)


def test_a_yolo_name_without_the_extra_says_how_to_install_it(monkeypatch):
    import importlib.util

    from edgebench.bench.errors import UsageError

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ultralytics" else real(name, *a))
    with pytest.raises(UsageError, match=r"MODEL=yolo11s needs the yolo extra: .*pip install -e '\.\[yolo\]'"):
        resolve_source("yolo11s")
    with pytest.raises(UsageError, match="unknown model 'yolov9n'"):
        resolve_source("yolov9n")


def _yolov5_style_repository(root):
    """A research repository laid out as YOLOv5's: its own `models` and `utils` packages, and a file that
    builds the network from them. Those names are generic; edgebench's own code must not take them."""
    (root / "models").mkdir(parents=True)
    (root / "utils").mkdir()
    (root / "models" / "__init__.py").write_text("")
    (root / "utils" / "__init__.py").write_text("")
    (root / "utils" / "general.py").write_text("def make_divisible(x, d):\n    return int(-(-x // d) * d)\n")
    (root / "models" / "common.py").write_text(
        "import torch\nfrom torch import nn\nfrom utils.general import make_divisible\n\n\n"
        "class Net(nn.Module):\n"
        "    def __init__(self, classes=10):\n"
        "        super().__init__()\n"
        "        width = make_divisible(12, 8)\n"
        "        self.features = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),\n"
        "                                      nn.AdaptiveAvgPool2d(1), nn.Flatten())\n"
        "        self.head = nn.Linear(width, classes)\n\n"
        "    def forward(self, x):\n"
        "        return self.head(self.features(x))\n")
    (root / "export_me.py").write_text(
        "import torch\nfrom models.common import Net\n\n\n"
        "def build():\n"
        "    torch.manual_seed(0)\n"
        "    return Net().eval(), torch.randn(1, 3, 32, 32)\n")
    return f"{root / 'export_me.py'}:build"


def test_no_edgebench_module_takes_a_generic_top_level_name(tmp_path):
    """The harness, its runtimes and its compression methods, imported in a fresh process outside the repository
    (as an installed edgebench runs), leave `models`, `utils`, `bench`... free for the user's code. (Inside the
    repository its folders are importable by those names too, which a library probing for Python 3.14's
    `compression` package can trip over; nothing of edgebench's imports them so.)"""
    import subprocess
    import sys

    probe = ("import sys, edgebench.bench.runner, edgebench.bench.worker, edgebench.runtimes, edgebench.compression, "
             "edgebench.reports.build; edgebench.runtimes.runtime_names(); edgebench.compression.method_names(); "
             "print(sorted(n for n in ('bench', 'models', 'runtimes', 'compression', 'reports', 'fleet', 'utils') "
             "if n in sys.modules))")
    done = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]", f"edgebench imported generic top-level names: {done.stdout}"


@pytest.mark.slow
def test_a_model_file_from_its_own_repository_is_measured_in_every_cpu_runtime(tmp_path):
    """`MODEL=repo/export_me.py:build` where export_me.py does `from models.common import Net`: the user's
    `models` and `utils` load in the harness and in every measuring process."""
    import io

    from rich.console import Console

    from edgebench.bench.config import BenchConfig, TimingConfig
    from edgebench.bench.progress import Reporter
    from edgebench.bench.runlog import RunLog
    from edgebench.bench.runner import Runner

    spec = _yolov5_style_repository(tmp_path / "yolov5")
    names = ("pytorch", "pytorch-compiled", "torchscript", "onnxruntime", "openvino", "tflite")  # CoreML: macOS
    timing = TimingConfig(warmup_iters=2, warmup_s=0.0, min_iters=5, min_s=0.0, max_s=10.0)
    log = RunLog()
    try:
        summary = Runner(BenchConfig(model=spec, runtimes=names, threads=1, out=tmp_path / "run", timing=timing,
                                     repeats=1, export_jobs=2), Reporter(Console(file=io.StringIO())), log).run()
    finally:
        log.close()
    rows = {row.runtime: row for row in summary.rows}
    assert set(rows) == set(names)
    for name, row in rows.items():
        assert row.status == "ok", f"{name}: {row.error}"
        assert row.fidelity_ok and row.p50_ms > 0


def test_recalibrated_statistics_are_kept_and_read_back_unchanged(tmp_path, monkeypatch):
    """A random-init model's BatchNorm statistics are computed once per weights, seed and torch version, then
    read back (0.7 s of every resnet18 run): the same statistics as computing them again."""
    import torchvision

    from edgebench.models.calibrate import recalibrate_batchnorm

    def built():
        torch.manual_seed(0)
        return torchvision.models.resnet18(num_classes=10).eval()

    example = torch.zeros(1, 3, 64, 64)
    fresh = built()
    assert recalibrate_batchnorm(fresh, example, seed=3) == 20
    first = built()
    recalibrate_batchnorm(first, example, seed=3, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("bn-stats-*.pt"))) == 1
    again = built()
    monkeypatch.setattr(again, "forward", lambda *a: pytest.fail("read back, not computed"))
    assert recalibrate_batchnorm(again, example, seed=3, cache_dir=tmp_path) == 20
    assert not again.training
    for name, value in fresh.state_dict().items():
        assert torch.equal(value, again.state_dict()[name]), name
    recalibrate_batchnorm(built(), example, seed=4, cache_dir=tmp_path)  # another seed: its own statistics
    assert len(list(tmp_path.glob("bn-stats-*.pt"))) == 2
