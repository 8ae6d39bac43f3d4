"""Runtime adapters, one module each; every `Runtime` subclass defined here is registered by name."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
from pathlib import Path

from edgebench.bench.discovery import concrete_subclasses
from edgebench.runtimes.base import Runtime, RuntimeOptions, artifact_size_bytes

__all__ = ["Runtime", "RuntimeOptions", "artifact_size_bytes", "get_runtime", "register", "runtime_names",
           "adapter_ref", "load_adapter"]

_REGISTRY: dict[str, type[Runtime]] = {}
_discovered = False


def _discover() -> None:
    """Import every module in this package (adapters import their libraries lazily, so this is cheap)."""
    global _discovered
    if _discovered:
        return
    _discovered = True
    for cls in concrete_subclasses(__name__, __path__, Runtime, skip=("base",)):
        register(cls)


def register(cls: type[Runtime]) -> type[Runtime]:
    """Add an adapter (adapters under runtimes/ are found automatically; tests and plugins call this)."""
    _REGISTRY[cls.name] = cls
    return cls


def runtime_names() -> list[str]:
    _discover()
    return [cls.name for cls in sorted(_REGISTRY.values(), key=lambda c: (c.order, c.name))]


def get_runtime(name: str) -> type[Runtime]:
    _discover()
    return _REGISTRY[name]


def adapter_ref(cls: type[Runtime]) -> str:
    """How a child process finds the class again: `module:Class`, or `file.py:Class` outside this package."""
    if cls.__module__.startswith(f"{__name__}."):
        return f"{cls.__module__}:{cls.__qualname__}"
    return f"{inspect.getfile(cls)}:{cls.__qualname__}"


def load_adapter(ref: str) -> type[Runtime]:
    where, _, qualname = ref.rpartition(":")
    if where.endswith(".py"):
        name = f"edgebench_adapter_{Path(where).stem}"
        spec = importlib.util.spec_from_file_location(name, where)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    else:
        module = importlib.import_module(where)
    return getattr(module, qualname)
