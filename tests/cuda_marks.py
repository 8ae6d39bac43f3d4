"""The mark of a GPU test (importable because pytest puts tests/ on sys.path)."""

import pytest
import torch


def cuda(test):
    """A GPU test: skipped without CUDA, and selected by `pytest -m gpu` (what `bench.gpu_check` runs)."""
    skip = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none visible to torch)")
    return pytest.mark.gpu(skip(test))
