"""Build the reference model once with its weights; rebuild it identically in child processes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from edgebench.bench.errors import UsageError
from edgebench.models.calibrate import recalibrate_batchnorm
from edgebench.models.heads import detection_head
from edgebench.models.sources import ModelSource, resolve_source
from edgebench.models.zoo import CACHE_DIR


@dataclass
class LoadedModel:
    name: str
    source: str  # how a child process finds the same architecture (absolute path for user files)
    module: nn.Module
    example: torch.Tensor  # batch 1
    weights: str  # what the row's `weights` column says


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise UsageError(f"weights file {str(path)!r} does not exist (expected a PyTorch state_dict .pt/.pth)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise UsageError(f"weights file {str(path)!r} {_what_it_holds(str(exc))}") from exc
    for key in ("state_dict", "model_state_dict", "model"):  # common checkpoint wrappers
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise UsageError(f"weights file {str(path)!r} holds a {type(state).__name__}, not a state_dict")
    return state


def _what_it_holds(error: str) -> str:
    """What torch's weights-only loader found instead of a state_dict, said without its advice to unpickle the
    file (which runs whatever code it holds)."""
    import re

    found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", error)
    if found:
        return (f"pickles a {found.group(1)} object, not only tensors: edgebench reads weights without running code "
                "from the file; save the model's state_dict (torch.save(model.state_dict(), path)) and pass that")
    first = error.strip().splitlines()[0] if error.strip() else "unreadable"
    return f"is not a PyTorch state_dict file ({first[:200]})"


def _apply_state_dict(module: nn.Module, state: dict[str, torch.Tensor], what: str, name: str) -> None:
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        detail = " ".join(line.strip() for line in str(exc).splitlines()[:2])[:300]
        raise UsageError(f"{what} does not fit model {name}: {detail}") from exc


def _ultralytics_checkpoint(path: Path) -> bool:
    from edgebench.models.yolo import is_ultralytics_checkpoint

    return path.is_file() and is_ultralytics_checkpoint(path)


def _from_checkpoint(source, path: Path, seed: int):
    """A YOLO model from an Ultralytics training checkpoint: its class count and image size make the source
    (so child processes rebuild the same architecture), its weights the module."""
    from edgebench.models.yolo import YoloSource, read_checkpoint

    checkpoint = read_checkpoint(path)
    scale = source.config[-2] if source.config.endswith("u") else source.config[-1]
    if checkpoint.scale and checkpoint.scale != scale:
        raise UsageError(f"weights file {str(path)!r} is a scale-{checkpoint.scale} model, but MODEL={source.config} "
                         f"is scale {scale}: use the MODEL it was trained as")
    source = YoloSource(source.config, len(checkpoint.classes), checkpoint.size)
    module, example = source.build(seed)
    _apply_state_dict(module, checkpoint.state_dict, f"weights file {str(path)!r}", source.name)
    return source, module, example, (f"checkpoint:{path.name} ({len(checkpoint.classes)} classes, "
                                     f"{checkpoint.size} px)")


def load_model(source_text: str, weights: str | None = None, seed: int = 0) -> LoadedModel:
    """The reference model in eval mode, with the weights the user asked for."""
    source = resolve_source(source_text)
    if weights == "pretrained":
        if not source.random_init:
            raise UsageError("WEIGHTS=pretrained applies to torchvision models; give a state_dict path instead")
        try:
            module, example = source.build(seed, pretrained=True)
        except Exception as exc:
            raise UsageError(
                f"could not get pretrained weights for {source.name} ({type(exc).__name__}; no network or cache?): "
                "pass WEIGHTS=path/to/state_dict.pt instead"
            ) from exc
        label = "pretrained (torchvision DEFAULT)"
    elif weights and getattr(source, "detects", False) and _ultralytics_checkpoint(Path(weights).expanduser()):
        source, module, example, label = _from_checkpoint(source, Path(weights).expanduser(), seed)
    else:
        module, example = source.build(seed)
        if weights:
            path = Path(weights).expanduser()
            _apply_state_dict(module, _read_state_dict(path), f"weights file {str(path)!r}", source.name)
            label = f"file:{path.name}"
        elif source.random_init:
            count = recalibrate_batchnorm(module, example, seed=seed, cache_dir=CACHE_DIR)
            label = f"random-init, BN recalibrated (seed {seed})" if count else f"random-init (seed {seed})"
        elif source.task:
            label = f"trained on {source.task}, {source.epochs} epochs (seed {seed})"
        else:
            label = f"as built by {source.name}"
    module.eval()
    if detection_head(module) is not None:  # a user's file may build an Ultralytics detector: one decoded output,
        from edgebench.models.yolo import export_mode  # as its exporter gives and every detector row is scored on

        export_mode(module)
    return LoadedModel(name=source.name, source=source.spec, module=module, example=example, weights=label)


def rebuild_model(source: ModelSource | str, state_dict_path: Path, seed: int = 0) -> tuple[nn.Module, torch.Tensor]:
    """The same model in another process: architecture from the source, weights from the saved reference."""
    if isinstance(source, str):
        source = resolve_source(source)
    module, example = source.build(seed)
    module.load_state_dict(torch.load(state_dict_path, map_location="cpu", weights_only=True), strict=True)
    return module.eval(), example


def make_input(example: torch.Tensor, batch: int, seed: int) -> torch.Tensor:
    """A batch of inputs shaped like the example: seeded noise with the example's statistics, or tiled ints."""
    shape = (batch, *example.shape[1:])
    if example.is_floating_point():
        generator = torch.Generator().manual_seed(seed + 1)
        noise = torch.randn(shape, generator=generator, dtype=example.dtype)
        std = float(example.std()) if example.numel() > 1 else 1.0
        return noise * (std or 1.0) + float(example.mean())
    return example.expand(shape).contiguous()
