"""A detector's mAP from a runtime's raw outputs: one post-processing and one maintained evaluator for all.

The measuring process keeps, per image, only the anchors whose best class score passes the confidence threshold
(`candidates`: NumPy only, nothing loaded that its runtime does not need). The harness then runs Ultralytics' own
validation post-processing on them (its `non_max_suppression` with the validator's defaults, and `scale_boxes`
back to the original pixels) and scores the boxes with pycocotools' COCOeval. The threshold is the first filter
of Ultralytics' own NMS, so dropping those anchors early changes nothing but the bytes moved.

The mAP interval is a bootstrap over images (mAP is not a proportion): COCOeval's per-image matches are kept and
only its accumulation is repeated over resampled image lists, so 200 resamples cost seconds, not minutes.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import time
from dataclasses import dataclass

import numpy as np

# Ultralytics' validation defaults (`yolo val`): what its mAP figures are computed with.
CONF = 0.001
IOU = 0.7
MAX_DET = 300
BOOTSTRAP = 200
FIDELITY_IOU = 0.9  # a box "found again" by another runtime: same class, this much overlap
POSTPROCESSING = f"confidence >= {CONF}, class-aware NMS at IoU {IOU}, multi-label, at most {MAX_DET} boxes " \
                 "(Ultralytics' validation defaults)"


def candidates(raw: np.ndarray) -> list[np.ndarray]:
    """Per image of a batch of decoded YOLO outputs (B x (4 + classes) x anchors): the anchors whose best class
    score exceeds CONF, as (4 + classes) x K float32 arrays."""
    raw = np.asarray(raw, dtype=np.float32)
    keep = raw[:, 4:].max(axis=1) > CONF
    return [np.ascontiguousarray(raw[i][:, keep[i]]) for i in range(raw.shape[0])]


def pack(per_image: list[np.ndarray]) -> dict[str, np.ndarray]:
    """Candidates of every image as two arrays (for one .npz)."""
    counts = np.array([c.shape[1] for c in per_image], dtype=np.int64)
    rows = per_image[0].shape[0] if per_image else 0
    joined = np.concatenate(per_image, axis=1) if per_image else np.zeros((rows, 0), np.float32)
    return {"candidates": joined, "counts": counts}


def unpack(packed: dict[str, np.ndarray]) -> list[np.ndarray]:
    edges = np.concatenate([[0], np.cumsum(packed["counts"])])
    return [packed["candidates"][:, edges[i]:edges[i + 1]] for i in range(len(packed["counts"]))]


@dataclass
class Boxes:
    """One image's detections after post-processing, in its original pixels."""

    xyxy: np.ndarray  # K x 4
    scores: np.ndarray  # K
    classes: np.ndarray  # K ints


def postprocess(candidate: np.ndarray, size: int, original_shape: tuple[int, int],
                ratio_pad: tuple[float, float, float, float]) -> Boxes:
    """Ultralytics' own validation post-processing of one image's candidates (see the module's docstring)."""
    # Ultralytics' NMS uses torchvision's kernel only when torchvision is already imported, else its own Python
    # NMS: the same boxes, 10x slower (4.5-5.2 ms per image against 0.35-0.44 ms on the shapes set), which made
    # `Post ms` depend on what else the harness had imported. A deployment with torchvision runs the kernel.
    import torch
    import torchvision  # noqa: F401
    from ultralytics.utils import nms, ops

    prediction = torch.from_numpy(np.ascontiguousarray(candidate))[None]
    kept = nms.non_max_suppression(prediction, CONF, IOU, multi_label=True, max_det=MAX_DET)[0]
    gain_h, gain_w, left, top = ratio_pad
    boxes = ops.scale_boxes((size, size), kept[:, :4].clone(), tuple(int(v) for v in original_shape),
                            ratio_pad=((gain_h, gain_w), (left, top)))
    return Boxes(boxes.numpy().astype(np.float64), kept[:, 4].numpy().astype(np.float64),
                 kept[:, 5].numpy().astype(np.int64))


def boxes_on_input(per_image_candidates: list[np.ndarray], size: int) -> list[Boxes]:
    """The same post-processing on the timed input itself (`size` square, no letterbox to undo)."""
    return [postprocess(c, size, (size, size), (1.0, 1.0, 0.0, 0.0)) for c in per_image_candidates]


def box_agreement(reference: list[Boxes], found: list[Boxes], iou: float = FIDELITY_IOU) -> tuple[int, int]:
    """(matched, total): how many of the reference's boxes `found` has too, of the same class at IoU >= `iou`,
    each found box matched once (the reference's boxes in order of score, each to its best remaining overlap).
    A detector's fidelity without labels: raw outputs can differ in ways that move no box, or the reverse."""
    import torch
    from torchvision.ops import box_iou

    matched = total = 0
    for ref, got in zip(reference, found, strict=True):
        total += len(ref.scores)
        if not len(ref.scores) or not len(got.scores):
            continue
        overlaps = box_iou(torch.from_numpy(ref.xyxy), torch.from_numpy(got.xyxy)).numpy()
        overlaps[ref.classes[:, None] != got.classes[None, :]] = 0.0
        free = np.ones(len(got.scores), dtype=bool)
        for i in np.argsort(-ref.scores, kind="stable"):
            candidates = np.where(free, overlaps[i], 0.0)
            best = int(np.argmax(candidates))
            if candidates[best] >= iou:
                free[best] = False
                matched += 1
    return matched, total


def coco_results(per_image: list[Boxes]) -> list[dict]:
    """COCO's results format (image id = index, category id = class index, bbox x, y, width, height)."""
    results = []
    for image_id, boxes in enumerate(per_image):
        for (x0, y0, x1, y1), score, cls in zip(boxes.xyxy, boxes.scores, boxes.classes, strict=True):
            results.append({"image_id": image_id, "category_id": int(cls),
                            "bbox": [float(x0), float(y0), float(x1 - x0), float(y1 - y0)], "score": float(score)})
    return results


@dataclass
class MapScore:
    map50_95: float
    map50: float
    evaluator: object | None = None  # the COCOeval with its per-image matches (for paired comparisons)


def _quiet():
    return contextlib.redirect_stdout(io.StringIO())  # pycocotools prints its progress and its table


def evaluate(ground_truth: str | dict, results: list[dict]) -> MapScore:
    """mAP@0.5:0.95 and mAP@0.5 by pycocotools' COCOeval (COCO's rules: each image's best 100 boxes, precision
    read at 101 recall points; Ultralytics' own metric integrates its curve from precision 1 at recall 0, which
    lifts a weak model's mAP50 on a small set by a point or two)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    truth = json.loads(ground_truth) if isinstance(ground_truth, str) else ground_truth
    with _quiet():
        gt = COCO()
        gt.dataset = copy.deepcopy(truth)
        gt.createIndex()
        dt = gt.loadRes(results) if results else COCO()
        if not results:  # loadRes refuses an empty list: no detections at all is mAP 0
            dt.dataset = {"images": truth["images"], "annotations": [], "categories": truth["categories"]}
            dt.createIndex()
        evaluator = COCOeval(gt, dt, "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return MapScore(max(float(evaluator.stats[0]), 0.0), max(float(evaluator.stats[1]), 0.0), evaluator=evaluator)


def _mean_defined(precision: np.ndarray) -> float:
    defined = precision[precision > -1]
    return float(defined.mean()) if defined.size else 0.0


def _map_of(evaluator, images: np.ndarray) -> tuple[float, float]:
    """mAP50-95 and mAP50 over the image list `images` (indices into the evaluated images, repeats allowed):
    COCOeval's per-image matches re-used, only its accumulation redone, for the one area range (all) and the one
    detection cap (100) the headline mAP reads."""
    params = evaluator._paramsEval  # noqa: SLF001 (the evaluated images' order, which evalImgs follows)
    count, areas = len(params.imgIds), len(params.areaRng)
    cats = len(params.catIds) if params.useCats else 1
    picked = []
    for k in range(cats):
        block = k * areas * count  # area range 0 is "all"
        picked += [evaluator.evalImgs[block + int(i)] for i in images]
    resampled = copy.copy(params)
    resampled.imgIds = list(range(len(images)))
    resampled.areaRng, resampled.areaRngLbl, resampled.maxDets = [params.areaRng[0]], ["all"], [params.maxDets[-1]]
    saved = evaluator.evalImgs, evaluator.params, evaluator._paramsEval, evaluator.eval  # noqa: SLF001
    evaluator.evalImgs, evaluator.params, evaluator._paramsEval = picked, resampled, resampled  # noqa: SLF001
    try:
        with _quiet():
            evaluator.accumulate()
        precision = evaluator.eval["precision"][:, :, :, 0, 0]  # IoU x recall x class
        return _mean_defined(precision), _mean_defined(precision[0])  # as COCOeval.summarize averages
    finally:
        evaluator.evalImgs, evaluator.params, evaluator._paramsEval, evaluator.eval = saved  # noqa: SLF001


def bootstrap_interval(score: MapScore, resamples: int = BOOTSTRAP, seed: int = 0) -> tuple[float, float]:
    """95% percentile interval of mAP50-95 over images resampled with replacement."""
    evaluator = score.evaluator
    count = len(evaluator._paramsEval.imgIds)  # noqa: SLF001
    rng = np.random.default_rng(seed)
    values = [_map_of(evaluator, rng.integers(0, count, size=count))[0] for _ in range(resamples)]
    low, high = np.percentile(values, [2.5, 97.5])
    return float(low), float(high)


def paired_difference(ground_truth: str, results: list[dict], control: list[dict], resamples: int = BOOTSTRAP,
                      seed: int = 0) -> tuple[float, float, float]:
    """mAP50-95 of `results` minus that of `control` on the same images, with a 95% interval from resampling
    the images jointly (both sides see the same resampled images, so what the images share cancels)."""
    ours, theirs = evaluate(ground_truth, results), evaluate(ground_truth, control)
    count = len(ours.evaluator._paramsEval.imgIds)  # noqa: SLF001
    rng = np.random.default_rng(seed)
    differences = []
    for _ in range(resamples):
        images = rng.integers(0, count, size=count)
        differences.append(_map_of(ours.evaluator, images)[0] - _map_of(theirs.evaluator, images)[0])
    low, high = np.percentile(differences, [2.5, 97.5])
    return ours.map50_95 - theirs.map50_95, float(low), float(high)


@dataclass
class DetectionScore:
    """What a row records of a detector's accuracy."""

    map50_95: float
    map50: float
    map_ci_low: float
    map_ci_high: float
    postprocess_ms: float  # median per image: NMS and rescaling, which a deployment pays too
    detections: list[dict]  # COCO results, kept in the run folder


def score_detections(task, per_image_candidates: list[np.ndarray], seed: int = 0) -> DetectionScore:
    """The post-processing and COCO evaluation of one row's candidates on `task` (a models.detection task)."""
    size = int(task.images.shape[-1])
    boxes, times = [], []
    for candidate, shape, pads in zip(per_image_candidates, task.original_shapes, task.ratio_pads, strict=True):
        start = time.perf_counter()
        boxes.append(postprocess(candidate, size, tuple(shape), tuple(pads)))
        times.append(time.perf_counter() - start)
    results = coco_results(boxes)
    score = evaluate(task.ground_truth, results)
    low, high = bootstrap_interval(score, seed=seed)
    return DetectionScore(score.map50_95, score.map50, low, high, float(np.median(times) * 1e3), results)
