"""Labelled detection data for YOLO detectors: a user's Ultralytics data.yaml or COCO folder, read and checked into
a `tasks.detect.DetectionTask`.

The validation images are letterboxed to the model's input size once, here, with Ultralytics' own LetterBox and
its validator's resize (long side to the input size), and held as uint8 NCHW RGB in one `.npz` every measuring
process reads; the ground truth is kept as a COCO json in the images' original pixels, so a maintained COCO
evaluator scores every runtime's boxes after the one shared post-processing (`bench.measure.detections`).

Bad input fails here, before a run folder exists: one line naming the file (and the line of a label file) and
what is wrong with it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from edgebench.bench.errors import UsageError
from edgebench.tasks.base import CALIBRATION_IMAGES
from edgebench.tasks.detect import DetectionTask

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
MAX_VAL_IMAGES = 500  # a seeded sample of larger validation splits (each image is 1.2 MB at 640x640): stated


def letterbox(path: Path, size: int) -> tuple[np.ndarray, tuple[int, int], tuple[float, float, float, float]]:
    """One image as Ultralytics' validator makes it: (CHW RGB uint8, (h0, w0), (gain_h, gain_w, left, top)).

    Its dataset resizes the long side to `size` (ceil, bilinear) and its LetterBox pads to `size` x `size`
    (never scaling up again); the ratio and padding are what `scale_boxes` needs to map boxes back."""
    import cv2
    from ultralytics.data.augment import LetterBox

    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise UsageError(f"image {str(path)!r} cannot be read (not an image, or damaged)")
    h0, w0 = image.shape[:2]
    r = size / max(h0, w0)
    if r != 1:
        image = cv2.resize(image, (min(math.ceil(w0 * r), size), min(math.ceil(h0 * r), size)),
                           interpolation=cv2.INTER_LINEAR)
    boxer = LetterBox(new_shape=(size, size), scaleup=False)
    params = boxer.get_params({"img": image})
    padded = boxer.apply_image({"img": image}, params)["img"]
    h, w = image.shape[:2]
    ratio = params["ratio"][0]
    pads = (h / h0 * ratio, w / w0 * ratio, float(params["left"]), float(params["top"]))
    return np.ascontiguousarray(padded[:, :, ::-1].transpose(2, 0, 1)), (h0, w0), pads


def _letterboxed(paths: list[Path], size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    images, shapes, pads = [], [], []
    for path in paths:
        image, shape, pad = letterbox(path, size)
        images.append(image)
        shapes.append(shape)
        pads.append(pad)
    if not images:
        return np.zeros((0, 3, size, size), np.uint8), np.zeros((0, 2), np.int64), np.zeros((0, 4))
    return np.stack(images), np.array(shapes, dtype=np.int64), np.array(pads, dtype=np.float64)


def _sample(items: list, count: int, seed: int) -> list:
    if len(items) <= count:
        return items
    pick = np.sort(np.random.default_rng(seed).choice(len(items), size=count, replace=False))
    return [items[i] for i in pick]


# --- Ultralytics layout: data.yaml, images/<split>/, labels/<split>/ -----------------------------------------

def _names(raw: object, where: Path) -> tuple[str, ...]:
    if isinstance(raw, dict) and raw and all(isinstance(k, int) for k in raw):
        if sorted(raw) != list(range(len(raw))):
            raise UsageError(f"{where}: `names` must number its classes 0..{len(raw) - 1}, got {sorted(raw)}")
        return tuple(str(raw[i]) for i in range(len(raw)))
    if isinstance(raw, list) and raw:
        return tuple(str(n) for n in raw)
    raise UsageError(f"{where}: `names` must list the classes (a list, or a mapping 0: name, 1: name, ...)")


def _split_images(entry: object, base: Path, where: Path, split: str) -> list[Path]:
    if not isinstance(entry, str) or not entry:
        raise UsageError(f"{where}: `{split}` must name a folder of images (relative to `path`), got {entry!r}")
    folder = (base / entry) if not Path(entry).is_absolute() else Path(entry)
    if folder.is_file() and folder.suffix == ".txt":  # a list of image paths, one per line
        lines = [line.strip() for line in folder.read_text().splitlines() if line.strip()]
        return [(folder.parent / line) if not Path(line).is_absolute() else Path(line) for line in lines]
    if not folder.is_dir():
        raise UsageError(f"{where}: the `{split}` folder {str(folder)!r} does not exist")
    images = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise UsageError(f"{where}: the `{split}` folder {str(folder)!r} holds no images "
                         f"({', '.join(IMAGE_SUFFIXES)})")
    return images


def label_path(image: Path) -> Path:
    """Ultralytics' rule: the last `images` folder of the path becomes `labels`, the suffix `.txt`."""
    parts = list(image.parts)
    if "images" in parts:
        i = len(parts) - 1 - parts[::-1].index("images")
        parts[i] = "labels"
    return Path(*parts).with_suffix(".txt")


def read_labels(path: Path, classes: int) -> list[tuple[int, float, float, float, float]]:
    """One YOLO label file: `class x_centre y_centre width height`, normalised to [0, 1]; a missing file is an
    image with no objects. A bad line fails with its path and line number."""
    if not path.is_file():
        return []
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        where = f"label file {str(path)!r} line {number}"
        if len(fields) != 5:
            raise UsageError(f"{where}: expected `class x y w h` (5 numbers), got {len(fields)} fields: {line!r}")
        try:
            values = [float(f) for f in fields]
        except ValueError:
            raise UsageError(f"{where}: not numbers: {line!r}") from None
        cls = values[0]
        if cls != int(cls) or not 0 <= cls < classes:
            raise UsageError(f"{where}: class {fields[0]} is outside the data set's classes 0..{classes - 1}")
        box = values[1:]
        if any(not 0.0 <= v <= 1.0 for v in box) or box[2] <= 0 or box[3] <= 0:
            raise UsageError(f"{where}: box {' '.join(fields[1:])} is not normalised to [0, 1] with a positive size")
        rows.append((int(cls), *box))
    return rows


def _coco_from_yolo(labels: list[list[tuple[int, float, float, float, float]]], shapes: np.ndarray,
                    classes: tuple[str, ...]) -> dict:
    annotations = []
    for image_id, (rows, (h0, w0)) in enumerate(zip(labels, shapes, strict=True)):
        for cls, x, y, w, h in rows:
            box = [(x - w / 2) * w0, (y - h / 2) * h0, w * w0, h * h0]
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": cls, "bbox": box,
                                "area": box[2] * box[3], "iscrowd": 0})
    return {"images": [{"id": i, "height": int(h), "width": int(w)} for i, (h, w) in enumerate(shapes)],
            "annotations": annotations, "categories": [{"id": i, "name": n} for i, n in enumerate(classes)]}


def data_root(spec: dict, data_yaml: Path) -> Path:
    """The folder a data.yaml's splits are relative to: its `path`, relative to the yaml's own folder."""
    base = Path(spec.get("path") or data_yaml.parent)
    return base if base.is_absolute() else (data_yaml.parent / base)


def ultralytics_task(data_yaml: Path, size: int, seed: int = 0) -> DetectionTask:
    """A data.yaml as Ultralytics reads it (`path`, `train`, `val`, `names`)."""
    import yaml

    try:
        spec = yaml.safe_load(data_yaml.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise UsageError(f"DATA file {str(data_yaml)!r} is not readable YAML: {exc}".splitlines()[0]) from exc
    if not isinstance(spec, dict):
        raise UsageError(f"DATA file {str(data_yaml)!r} is not a data set description (expected path, train, val, "
                         "names)")
    missing = [key for key in ("train", "val", "names") if key not in spec]
    if missing:
        raise UsageError(f"DATA file {str(data_yaml)!r} has no {', '.join(missing)} (an Ultralytics data.yaml names "
                         "train and val image folders and the class names)")
    base = data_root(spec, data_yaml)
    classes = _names(spec["names"], data_yaml)
    if "nc" in spec and spec["nc"] != len(classes):
        raise UsageError(f"DATA file {str(data_yaml)!r}: nc is {spec['nc']} but `names` lists {len(classes)}")
    val = _split_images(spec["val"], base, data_yaml, "val")
    train = _split_images(spec["train"], base, data_yaml, "train")
    labels_all = [read_labels(label_path(p), len(classes)) for p in val]  # every line checked, sampled or not
    for path in train:
        read_labels(label_path(path), len(classes))
    note = f"{MAX_VAL_IMAGES} of {len(val)}, seeded sample" if len(val) > MAX_VAL_IMAGES else ""
    chosen = _sample(list(range(len(val))), MAX_VAL_IMAGES, seed)
    images, shapes, pads = _letterboxed([val[i] for i in chosen], size)
    train_images, _, _ = _letterboxed(_sample(train, CALIBRATION_IMAGES, seed), size)
    truth = _coco_from_yolo([labels_all[i] for i in chosen], shapes, classes)
    return DetectionTask(str(spec.get("name") or data_yaml.parent.name), train_images, images, pads, shapes,
                         json.dumps(truth), classes, note, str(data_yaml.resolve()))


# --- COCO layout: annotations/instances_<split>.json beside the images ---------------------------------------

def _coco_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UsageError(f"COCO annotations {str(path)!r} are not readable JSON: {exc}".splitlines()[0]) from exc
    if not isinstance(data, dict) or not all(isinstance(data.get(k), list) for k in ("images", "annotations",
                                                                                       "categories")):
        raise UsageError(f"COCO annotations {str(path)!r} lack the images, annotations and categories lists")
    if not data["images"]:
        raise UsageError(f"COCO annotations {str(path)!r} list no images")
    return data


def _coco_image_folder(root: Path, split: str) -> Path:
    for folder in (root / split, root / "images" / split, root / "images", root):
        if folder.is_dir() and any(p.suffix.lower() in IMAGE_SUFFIXES for p in folder.iterdir()):
            return folder
    raise UsageError(f"COCO folder {str(root)!r}: no images for {split} (looked in {split}/, images/{split}/, "
                     "images/)")


def _coco_split(root: Path, annotations: Path, size: int, seed: int, limit: int,
                categories: list[int] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict, list[int]]:
    data = _coco_json(annotations)
    split = annotations.stem.removeprefix("instances_")
    folder = _coco_image_folder(root, split)
    categories = categories or sorted(int(c["id"]) for c in data["categories"])
    index = {c: i for i, c in enumerate(categories)}
    chosen = _sample(sorted(data["images"], key=lambda im: im["id"]), limit, seed)
    paths = []
    for image in chosen:
        path = folder / image["file_name"]
        if not path.is_file():
            raise UsageError(f"COCO annotations {str(annotations)!r} name image {image['file_name']!r}, which is not "
                             f"in {str(folder)!r}")
        paths.append(path)
    images, shapes, pads = _letterboxed(paths, size)
    new_id = {int(image["id"]): i for i, image in enumerate(chosen)}
    kept = []
    for number, ann in enumerate(data["annotations"]):
        if int(ann.get("image_id", -1)) not in new_id:
            continue
        if ann.get("category_id") not in index:
            raise UsageError(f"COCO annotations {str(annotations)!r}: annotation {number} has category "
                             f"{ann.get('category_id')!r}, not among the categories {categories}")
        box = ann.get("bbox")
        if not (isinstance(box, list) and len(box) == 4 and box[2] > 0 and box[3] > 0):
            raise UsageError(f"COCO annotations {str(annotations)!r}: annotation {number} has no valid bbox "
                             f"[x, y, width, height]: {box!r}")
        kept.append({"id": len(kept) + 1, "image_id": new_id[int(ann["image_id"])],
                     "category_id": index[ann["category_id"]], "bbox": [float(v) for v in box],
                     "area": float(ann.get("area", box[2] * box[3])), "iscrowd": int(ann.get("iscrowd", 0))})
    names = {int(c["id"]): str(c.get("name", c["id"])) for c in data["categories"]}
    truth = {"images": [{"id": i, "height": int(h), "width": int(w)} for i, (h, w) in enumerate(shapes)],
             "annotations": kept, "categories": [{"id": i, "name": names.get(c, str(c))}
                                                 for i, c in enumerate(categories)]}
    return images, shapes, pads, truth, categories


def coco_task(root: Path, size: int, seed: int = 0) -> DetectionTask:
    """`root/annotations/instances_val*.json` with its images; `instances_train*.json`, if present, gives the
    calibration images (else they come from the validation split, and the label says so)."""
    found = sorted((root / "annotations").glob("instances_val*.json"))
    if not found:
        raise UsageError(f"COCO folder {str(root)!r} has no annotations/instances_val*.json")
    images, shapes, pads, truth, categories = _coco_split(root, found[0], size, seed, MAX_VAL_IMAGES)
    total = len(_coco_json(found[0])["images"])
    notes = [f"{MAX_VAL_IMAGES} of {total}, seeded sample"] if total > MAX_VAL_IMAGES else []
    train = sorted((root / "annotations").glob("instances_train*.json"))
    if train:
        train_images = _coco_split(root, train[0], size, seed, CALIBRATION_IMAGES, categories)[0]
    else:
        train_images = images
        notes.append("int8 calibrated on val images: no train split")
    classes = tuple(c["name"] for c in truth["categories"])
    return DetectionTask(root.name, train_images, images, pads, shapes, json.dumps(truth), classes,
                         "; ".join(notes))


def load_detection_task(text: str, size: int, seed: int = 0) -> DetectionTask:
    """DATA= for a detector: a data.yaml, a folder with a data.yaml, or a COCO folder."""
    path = Path(text).expanduser()
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise UsageError(f"DATA file {str(path)!r} does not exist (expected an Ultralytics data.yaml)")
        return ultralytics_task(path, size, seed)
    if not path.is_dir():
        raise UsageError(f"DATA {str(path)!r} does not exist (a detector takes an Ultralytics data.yaml or a COCO "
                         "folder with annotations/instances_val*.json)")
    if (path / "data.yaml").is_file():
        return ultralytics_task(path / "data.yaml", size, seed)
    if (path / "annotations").is_dir():
        return coco_task(path, size, seed)
    raise UsageError(f"DATA folder {str(path)!r} is neither an Ultralytics data set (data.yaml) nor a COCO set "
                     "(annotations/instances_val*.json)")
