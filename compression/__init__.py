"""Compression methods, one module each; every `CompressionMethod` subclass defined here is registered.

A variant is a chain of methods joined by `+` (`prune-channels:0.5+qat`); a run takes comma-separated
variants. `parse_variants` refuses unknown methods, bad arguments and impossible orders in one line.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgebench.bench.discovery import concrete_subclasses
from edgebench.bench.errors import UsageError
from edgebench.compression.base import CompressionContext, CompressionMethod

__all__ = ["CompressionContext", "CompressionMethod", "Variant", "method_names", "get_method", "parse_variant",
           "parse_variants"]

_REGISTRY: dict[str, type[CompressionMethod]] = {}
_discovered = False


def _discover() -> None:
    """Import every method module in this package once."""
    global _discovered
    if _discovered:
        return
    _discovered = True
    for cls in concrete_subclasses(__name__, __path__, CompressionMethod, skip=("base", "measures")):
        _REGISTRY[cls.name] = cls


def method_names() -> list[str]:
    _discover()
    return sorted(_REGISTRY)


def get_method(name: str) -> type[CompressionMethod]:
    _discover()
    return _REGISTRY[name]


def _choices() -> str:
    _discover()
    return ", ".join(f"{cls.name}:{cls.argument}" if cls.argument else cls.name for cls in
                     sorted(_REGISTRY.values(), key=lambda c: c.name))


@dataclass
class Variant:
    """One compressed version of the model: a chain of methods applied in order ('none' is the empty chain)."""

    methods: tuple[CompressionMethod, ...]

    @property
    def spec(self) -> str:
        return "+".join(m.spec for m in self.methods) or "none"

    @property
    def quantizes(self) -> bool:
        return any(m.quantizes for m in self.methods)

    @property
    def needs_task(self) -> bool:
        return any(m.needs_task for m in self.methods)

    def training_epochs(self, per_method: int, has_task: bool) -> int:
        """Epochs the whole chain trains for (each fine-tuning method `per_method`): its control's length."""
        return sum(m.training_epochs(per_method, has_task) for m in self.methods)


NONE = Variant(())


def parse_variant(text: str) -> Variant:
    text = text.strip()
    if text == "none":
        return NONE
    _discover()
    methods = []
    for part in text.split("+"):
        name, sep, arg = part.strip().partition(":")
        if name not in _REGISTRY:
            raise UsageError(f"unknown compression method {name!r} in {text!r}: choose from {_choices()}, "
                             "chained with + (e.g. prune-channels:0.5+qat)")
        methods.append(_REGISTRY[name](arg if sep else None))
    for i, method in enumerate(methods):
        if method.position == "first" and i != 0:
            raise UsageError(f"impossible order {text!r}: {method.name} replaces the model, so it must come first")
        if method.position == "last" and i != len(methods) - 1:
            raise UsageError(f"impossible order {text!r}: {method.name} quantizes the model, so it must come last")
    names = [m.name for m in methods]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise UsageError(f"{text!r} applies {repeated[0]} twice: give it once with the amount you want")
    return Variant(tuple(methods))


def parse_variants(text: str | tuple[str, ...]) -> tuple[Variant, ...]:
    """Comma-separated variants; the baseline `none` always comes first, once."""
    parts = text.split(",") if isinstance(text, str) else list(text)
    variants = [NONE]
    for part in parts:
        if not part.strip():
            continue
        variant = parse_variant(part)
        if variant.spec not in [v.spec for v in variants]:
            variants.append(variant)
    return tuple(variants)
