"""Shared fixtures: a tiny user model, and the path to the test assets."""

from __future__ import annotations

import os

import pytest

from tests_paths import TINY_MODEL


@pytest.fixture(autouse=True)
def _environment_restored():
    """What a test's code sets in this process's environment is undone after it (an ONNX Runtime GPU fp32 load
    sets NVIDIA_TF32_OVERRIDE=0 for its process, as it should): else it reaches the child processes of every
    later test, and which tests see it depends on the order they ran in (and on the worker that ran them)."""
    saved = dict(os.environ)
    yield
    for name in set(os.environ) - set(saved):
        del os.environ[name]
    os.environ.update({name: value for name, value in saved.items() if os.environ.get(name) != value})


@pytest.fixture
def tiny_model_source() -> str:
    return TINY_MODEL


@pytest.fixture
def fast_timing():
    from edgebench.bench.config import TimingConfig

    return TimingConfig(warmup_iters=2, warmup_s=0.0, min_iters=5, min_s=0.0, max_s=10.0)


@pytest.fixture
def tiny_reference(tmp_path):
    """The tiny user model saved as a run saves its reference (module, batch-1 input, eager outputs); and its source."""
    from edgebench.bench.runner import save_reference
    from edgebench.models import load_model

    model = load_model(TINY_MODEL)
    return save_reference(model, (1,), tmp_path / "reference", 0), model.source


@pytest.fixture(autouse=True, scope="session")
def _artifact_cache_of_this_test_session(tmp_path_factory):
    """Whole runs in tests cache their exports in a folder of their own, never in the project's cache."""
    import os

    import edgebench.bench.cache

    folder = tmp_path_factory.mktemp("artifact-cache")
    edgebench.bench.cache.CACHE_DIR = folder
    os.environ["EDGEBENCH_CACHE_DIR"] = str(folder)  # runs started as subprocesses too
    # No A/A floor measured on the developer's machine leaks into a test: every run uses the default.
    os.environ["EDGEBENCH_FLOOR_DIR"] = str(tmp_path_factory.mktemp("aa-floor"))
    # Tests that export in this process build NNCF's C++ extension where the measuring processes do (the project's
    # models/.cache), not in ~/.cache: on a fresh clone it was built twice, about 25 s each.
    from edgebench.bench.isolation import TORCH_EXTENSIONS_DIR

    os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(TORCH_EXTENSIONS_DIR))
    yield
