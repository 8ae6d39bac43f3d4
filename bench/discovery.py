"""Plug-ins by dropping a file: the concrete classes of one base type defined in a package's modules."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import Iterable


def concrete_subclasses(package: str, path: Iterable[str], base: type, skip: tuple[str, ...] = ()) -> list[type]:
    """Import every module of `package` (not private ones, not `skip`) and return the public, non-abstract
    subclasses of `base` each one defines. Plug-ins import their heavy libraries lazily, so this is cheap."""
    found = []
    for info in pkgutil.iter_modules(path):
        if info.name.startswith("_") or info.name in skip:
            continue
        module = importlib.import_module(f"{package}.{info.name}")
        found += [obj for obj in vars(module).values()
                  if inspect.isclass(obj) and issubclass(obj, base) and not inspect.isabstract(obj)
                  and obj.__module__ == module.__name__ and not obj.__name__.startswith("_")]
    return found
