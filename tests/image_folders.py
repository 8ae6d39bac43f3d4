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
