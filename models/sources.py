"""Where a model comes from: a named torchvision classifier or a user's `file.py:function`."""

from __future__ import annotations

import importlib.util
import sys
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from edgebench.bench.errors import UsageError

# The reference classifiers and their input resolution; any other torchvision classifier also works at 224.
REFERENCE_MODELS: dict[str, int] = {
    "resnet18": 224,
    "mobilenet_v2": 224,
    "mobilenet_v3_small": 224,
    "efficientnet_b0": 224,
    "inception_v3": 299,
}


class ModelSource(ABC):
    """Builds an architecture and an example input (batch 1); weights are applied by `models.loading`."""

    name: str
    random_init: bool  # True when build() gives untrained weights that need realistic activations
    task: str | None = None  # the labelled task it is scored on by default (zoo models); None: fidelity only

    @property
    @abstractmethod
    def spec(self) -> str:
        """The MODEL text that resolves to this source from any working directory."""

    @abstractmethod
    def build(self, seed: int, pretrained: bool = False) -> tuple[nn.Module, torch.Tensor]:
        """Return (module, example input with batch dimension 1)."""

    def declared_preprocess(self) -> object:
        """How images become this model's inputs, as the model declares it: a `models.preprocess` choice, a
        function (PIL image -> tensor), or None when it declares nothing (then it is guessed, and said so)."""
        return None


@dataclass
class TorchvisionSource(ModelSource):
    arch: str
    input_size: int

    random_init = True

    @property
    def name(self) -> str:  # type: ignore[override]
        return self.arch

    @property
    def spec(self) -> str:
        return self.arch

    def build(self, seed: int, pretrained: bool = False) -> tuple[nn.Module, torch.Tensor]:
        import torchvision

        torch.manual_seed(seed)
        kwargs = {"init_weights": True} if self.arch in ("inception_v3", "googlenet") else {}
        module = torchvision.models.get_model(self.arch, weights="DEFAULT" if pretrained else None, **kwargs)
        generator = torch.Generator().manual_seed(seed)
        example = torch.randn(1, 3, self.input_size, self.input_size, generator=generator)
        return module, example

    def declared_preprocess(self) -> object:
        return "imagenet"  # every torchvision classifier's weights are trained on ImageNet's statistics


def _put_first_on_path(folder: Path) -> None:
    """Import the model file as `python file.py` would: its folder first on sys.path, for as long as the process
    lives, so `from models.common import Net` finds the user's own packages (edgebench's are `edgebench.*`)."""
    entry = str(folder.resolve())
    if entry in sys.path:
        sys.path.remove(entry)
    sys.path.insert(0, entry)


@dataclass
class UserFileSource(ModelSource):
    """`path/to/file.py:function`, where function() returns (nn.Module, example input tensor)."""

    path: Path
    function: str

    random_init = False

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"{self.path.stem}:{self.function}"

    @property
    def spec(self) -> str:
        return f"{self.path}:{self.function}"

    def _function(self):
        module_name = f"edgebench_user_{self.path.stem}"
        loaded = sys.modules.get(module_name)
        if loaded is not None and getattr(loaded, "__file__", None) == str(self.path):
            # Imported once per process: a second import would make new classes, and the model built
            # from the first could no longer be pickled for the child processes.
            return self._lookup(loaded, module_name)
        _put_first_on_path(self.path.parent)
        spec = importlib.util.spec_from_file_location(module_name, self.path)
        if spec is None or spec.loader is None:
            raise UsageError(f"cannot import model file {self.path}: not a Python file")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as exc:  # the user's code: report its failure in one line
            sys.modules.pop(module_name, None)
            raise UsageError(f"importing model file {self.path} failed: {type(exc).__name__}: {exc}") from exc
        return self._lookup(module, module_name)

    def _lookup(self, module, module_name: str):
        fn = getattr(module, self.function, None)
        if not callable(fn):
            found = sorted(n for n, v in vars(module).items() if callable(v) and not n.startswith("_")
                           and getattr(v, "__module__", None) == module_name)
            raise UsageError(
                f"model file {self.path} defines no function {self.function!r}: "
                f"functions there: {', '.join(found) or 'none'}"
            )
        return fn

    def check(self) -> None:
        """Fail early, before a run folder exists, when the file or function is missing."""
        self._function()

    def declared_preprocess(self) -> object:
        """The model file's `preprocess`: a named choice ("unit", "imagenet", ...) or a function."""
        from edgebench.models.preprocess import HOOK

        self._function()
        return getattr(sys.modules[f"edgebench_user_{self.path.stem}"], HOOK, None)

    def build(self, seed: int, pretrained: bool = False) -> tuple[nn.Module, torch.Tensor]:
        torch.manual_seed(seed)
        result = self._function()()
        if not (isinstance(result, tuple) and len(result) == 2):
            raise UsageError(f"{self.path}:{self.function} must return (nn.Module, example input tensor)")
        module, example = result
        if not isinstance(module, nn.Module):
            raise UsageError(f"{self.path}:{self.function} returned {type(module).__name__}, not an nn.Module")
        if not isinstance(example, torch.Tensor):
            raise UsageError(
                f"{self.path}:{self.function} returned an example input of type {type(example).__name__}: "
                "edgebench takes one input tensor"
            )
        if example.dim() == 0:
            raise UsageError(f"{self.path}:{self.function}: the example input needs a batch dimension")
        return module, example[:1]


def _torchvision_classifiers() -> list[str]:
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models))


def resolve_source(text: str) -> ModelSource:
    """Turn a MODEL value into a source, or raise UsageError naming the valid choices."""
    if ":" in text or text.endswith(".py"):
        file_part, _, function = text.rpartition(":") if ":" in text else (text, "", "")
        path = Path(file_part).expanduser()
        if not function:
            raise UsageError(f"model file {text!r} needs a function: use path/to/file.py:function")
        if not path.is_file():
            raise UsageError(f"model file {str(path)!r} does not exist (expected path/to/file.py:function)")
        source = UserFileSource(path=path.resolve(), function=function)
        source.check()
        return source
    from edgebench.models.yolo import yolo_source
    from edgebench.models.zoo import ZOO

    if text in ZOO:
        return ZOO[text]
    yolo = yolo_source(text)
    if yolo is not None:
        return yolo
    if text in REFERENCE_MODELS:
        return TorchvisionSource(text, REFERENCE_MODELS[text])
    if text in _torchvision_classifiers():
        return TorchvisionSource(text, 224)
    raise UsageError(
        f"unknown model {text!r}: choose one of {', '.join([*REFERENCE_MODELS, *ZOO])}, "
        "yolov8n..yolo11x (the yolo extra), another torchvision classifier (edgebench --list), "
        "or path/to/file.py:function"
    )
