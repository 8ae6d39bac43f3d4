"""Shared fixtures: a tiny user model, and the path to the test assets."""

from __future__ import annotations

import pytest

from tests_paths import TINY_MODEL


@pytest.fixture
def tiny_model_source() -> str:
    return TINY_MODEL


@pytest.fixture
def fast_timing():
    from bench.config import TimingConfig

    return TimingConfig(warmup_iters=2, warmup_s=0.0, min_iters=5, min_s=0.0, max_s=10.0)
