"""Reference models and user models, built the same way for every runtime.

The names below load on first use, so a light module of this package (`heads`, read by the runtimes' measuring
processes) does not bring torch with it."""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {"LoadedModel": "loading", "load_model": "loading", "make_input": "loading", "rebuild_model": "loading",
          "REFERENCE_MODELS": "sources", "ModelSource": "sources", "resolve_source": "sources"}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
