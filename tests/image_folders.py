"""A tiny ImageFolder (train/<class>/*.png, val/<class>/*.png) for tests of DATA folders."""

from pathlib import Path


def image_folder(root: Path, classes: int, splits=("train", "val")) -> Path:
    """`classes` classes of two 12x12 grey images each, under each of `splits`."""
    from PIL import Image

    for split in splits:
        for c in range(classes):
            (root / split / f"class{c}").mkdir(parents=True)
            for i in range(2):
                Image.new("L", (12, 12), color=20 * c + i).save(root / split / f"class{c}" / f"{i}.png")
    return root


def colour_folder(root: Path, classes: int = 3, per_class: tuple[int, int] = (40, 20), size: int = 32,
                  seed: int = 0) -> Path:
    """RGB images whose class is their brightness (a tinted level on noise): learnable from pixels in [0, 1],
    and lost when the pixels are shifted and scaled otherwise than in training."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    for split, count in zip(("train", "val"), per_class, strict=True):
        for c in range(classes):
            (root / split / f"class{c}").mkdir(parents=True)
            for i in range(count):
                level = (c + 1) / (classes + 1)
                pixels = level + rng.uniform(-0.12, 0.12, (size, size, 3)) + rng.uniform(-0.05, 0.05, 3)
                Image.fromarray((np.clip(pixels, 0, 1) * 255).astype(np.uint8)).save(
                    root / split / f"class{c}" / f"{i}.png")
    return root
