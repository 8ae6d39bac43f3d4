"""Detectors scored like classifiers (issue 21): the data sets read and checked, the shared pre- and
post-processing against Ultralytics' own, the COCO evaluator on hand-checked cases, its bootstrap."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from edgebench.bench.errors import UsageError

pytest.importorskip("ultralytics", reason="detection needs the yolo extra (pip install -e '.[yolo]')")
pytest.importorskip("pycocotools", reason="mAP needs pycocotools (the yolo extra)")

from edgebench.bench.measure import detections  # noqa: E402
from edgebench.models.detection import letterbox, load_detection_task, read_labels  # noqa: E402
from edgebench.models.shapes import ShapesSpec, write_shapes  # noqa: E402
from edgebench.models.yolo import yolo_env  # noqa: E402

for _key, _value in yolo_env().items():
    os.environ.setdefault(_key, _value)

TINY = ShapesSpec(train=24, val=12, size=64, max_objects=3, seed=1)


@pytest.fixture(scope="module")
def tiny_shapes(tmp_path_factory):
    return write_shapes(tmp_path_factory.mktemp("shapes"), TINY)


def test_the_synthetic_set_is_the_same_for_the_same_seed_and_its_labels_are_yolo_format(tmp_path, tiny_shapes):
    again = write_shapes(tmp_path / "again", TINY)
    root, other = tiny_shapes.parent, again.parent
    for split in ("train", "val"):
        names = sorted(p.name for p in (root / "images" / split).iterdir())
        assert names == sorted(p.name for p in (other / "images" / split).iterdir())
        assert len(names) == (TINY.train if split == "train" else TINY.val)
        for name in names:
            assert (root / "images" / split / name).read_bytes() == (other / "images" / split / name).read_bytes()
            label = (root / "labels" / split / name).with_suffix(".txt")
            assert label.read_text() == (other / "labels" / split / name).with_suffix(".txt").read_text()
            assert read_labels(label, 3)  # every image holds at least one object, all lines valid
    assert "synthetic" in tiny_shapes.read_text()


def test_letterbox_is_ultralytics_validators_own(tmp_path):
    """Non-square images of several sizes, down- and up-scaled: the same pixels and the same ratio and padding
    as Ultralytics' YOLODataset gives its validator (rect off: every artifact takes one square shape)."""
    import cv2
    from ultralytics.data.dataset import YOLODataset

    rng = np.random.default_rng(0)
    folder = tmp_path / "images" / "val"
    folder.mkdir(parents=True)
    (tmp_path / "labels" / "val").mkdir(parents=True)
    for i, (h, w) in enumerate([(90, 160), (200, 75), (64, 64), (40, 30)]):
        cv2.imwrite(str(folder / f"{i}.png"), rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8))
        (tmp_path / "labels" / "val" / f"{i}.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    dataset = YOLODataset(img_path=str(folder), imgsz=64, augment=False, rect=False, batch_size=1,
                          data={"names": {0: "thing"}, "channels": 3}, task="detect", cache=False)
    for i, item in enumerate(dataset):
        image, shape, pads = letterbox(folder / f"{i}.png", 64)
        assert np.array_equal(image, item["img"].numpy()), f"image {i} differs from Ultralytics' letterbox"
        assert shape == tuple(item["ori_shape"])
        (gain_h, gain_w), (left, top) = item["ratio_pad"]
        assert pads == pytest.approx((gain_h, gain_w, left, top))


def test_post_processing_is_ultralytics_nms_on_the_candidates_it_would_keep():
    """Dropping anchors under the confidence threshold in the measuring process changes no box: the same boxes
    as Ultralytics' non_max_suppression on the whole output, scaled back by its scale_boxes."""
    import torch
    from ultralytics.utils import nms, ops

    rng = np.random.default_rng(3)
    classes, anchors = 3, 336
    raw = np.zeros((2, 4 + classes, anchors), np.float32)
    raw[:, :2] = rng.uniform(0, 64, size=(2, 2, anchors))
    raw[:, 2:4] = rng.uniform(2, 30, size=(2, 2, anchors))
    raw[:, 4:] = rng.uniform(0, 1, size=(2, classes, anchors)) ** 30  # most under the threshold, some high
    # 100 small boxes apart from each other with scores just over the threshold: NMS keeps every one of them.
    grid = np.stack(np.meshgrid(np.arange(10) * 6.0 + 3, np.arange(10) * 6.0 + 3), 0).reshape(2, 100)
    raw[:, :2, :100], raw[:, 2:4, :100] = grid, 2.0
    raw[:, 4:, :100] = 0.0
    raw[:, 4, :100] = rng.uniform(0.002, 0.009, size=(2, 100))
    raw[:, :2, 100:] += 70  # the others elsewhere
    kept = detections.candidates(raw)
    assert all(k.shape[1] < anchors for k in kept)  # the filter removed something
    pads = (0.5, 0.5, 0.0, 8.0)
    for i in range(2):
        ours = detections.postprocess(kept[i], 64, (96, 128), pads)
        theirs = nms.non_max_suppression(torch.from_numpy(raw[i:i + 1]), detections.CONF, detections.IOU,
                                         multi_label=True, max_det=detections.MAX_DET)[0]
        boxes = ops.scale_boxes((64, 64), theirs[:, :4].clone(), (96, 128), ratio_pad=((0.5, 0.5), (0.0, 8.0)))
        assert len(ours.scores) == len(theirs) > 0
        np.testing.assert_allclose(ours.xyxy, boxes.numpy(), rtol=1e-6)
        np.testing.assert_allclose(ours.scores, theirs[:, 4].numpy(), rtol=1e-6)
        assert np.array_equal(ours.classes, theirs[:, 5].numpy().astype(np.int64))


def _truth(boxes_per_image):
    annotations = [{"id": n + 1, "image_id": i, "category_id": c, "bbox": b, "area": b[2] * b[3], "iscrowd": 0}
                   for n, (i, c, b) in enumerate((i, c, b) for i, boxes in enumerate(boxes_per_image)
                                                 for c, b in boxes)]
    return {"images": [{"id": i, "height": 100, "width": 100} for i in range(len(boxes_per_image))],
            "annotations": annotations, "categories": [{"id": 0, "name": "a"}, {"id": 1, "name": "b"}]}


def test_the_evaluator_on_hand_checked_cases():
    truth = _truth([[(0, [10, 10, 30, 30]), (0, [50, 50, 20, 40])], [(1, [0, 0, 50, 50])]])
    exact = [{"image_id": 0, "category_id": 0, "bbox": [10, 10, 30, 30], "score": 0.9},
             {"image_id": 0, "category_id": 0, "bbox": [50, 50, 20, 40], "score": 0.8},
             {"image_id": 1, "category_id": 1, "bbox": [0, 0, 50, 50], "score": 0.7}]
    perfect = detections.evaluate(json.dumps(truth), exact)
    assert perfect.map50_95 == pytest.approx(1.0) and perfect.map50 == pytest.approx(1.0)
    # Class a: one of its two boxes found, precision 1 up to recall 0.5: COCO's 101 recall points give 51/101.
    # Class b: found. mAP is the mean over classes: (51/101 + 1) / 2, at every IoU threshold.
    half = detections.evaluate(json.dumps(truth), [exact[0], exact[2]])
    assert half.map50_95 == pytest.approx((51 / 101 + 1) / 2) and half.map50 == pytest.approx((51 / 101 + 1) / 2)
    # A box shifted to IoU 0.6 with its object counts at IoU 0.5, 0.55 and 0.6 only: 3 of 10 thresholds.
    shifted = dict(exact[2], bbox=[0, 12.5, 50, 50])  # overlap 50 x 37.5 over union 2 x 2500 - 1875: IoU 0.6
    partial = detections.evaluate(json.dumps(truth), [*exact[:2], shifted])
    assert partial.map50 == pytest.approx(1.0) and partial.map50_95 == pytest.approx((1 + 0.3) / 2)
    assert detections.evaluate(json.dumps(truth), []).map50_95 == 0.0  # no boxes at all: mAP 0, not an error


def test_the_bootstrap_reuses_cocoeval_matches_and_brackets_the_estimate():
    rng = np.random.default_rng(1)
    boxes = [[(int(rng.integers(2)), [float(x) for x in rng.uniform(0, 60, 2)] + [20.0, 20.0])] for _ in range(40)]
    truth = _truth(boxes)
    found = [{"image_id": i, "category_id": c, "bbox": [b[0] + float(rng.normal(0, 3)), b[1], b[2], b[3]],
              "score": float(rng.uniform())} for i, image in enumerate(boxes) for c, b in image if rng.uniform() < 0.8]
    score = detections.evaluate(json.dumps(truth), found)
    everything = np.arange(40)
    assert detections._map_of(score.evaluator, everything) == pytest.approx((score.map50_95, score.map50))
    low, high = detections.bootstrap_interval(score, resamples=100)
    assert low < score.map50_95 < high and high - low > 0.02
    assert detections.evaluate(json.dumps(truth), found).map50_95 == score.map50_95  # the evaluator restored
    same = detections.evaluate(json.dumps(_truth([boxes[0]] * 20)), [dict(f, image_id=i) for i in range(20)
                                                                      for f in found if f["image_id"] == 0])
    low, high = detections.bootstrap_interval(same, resamples=20)
    assert low == pytest.approx(high)  # identical images: nothing to resample


def test_the_paired_difference_resamples_images_jointly():
    """A variant that loses one image's box out of 40. Resampled jointly, only that image's weight varies: the
    difference is never positive, and its interval is narrower than one mAP's own interval (an unpaired
    difference would be about 1.4 times wider than that)."""
    rng = np.random.default_rng(2)
    boxes = [[(int(rng.integers(2)), [float(x) for x in rng.uniform(0, 60, 2)] + [20.0, 20.0])] for _ in range(40)]
    truth = json.dumps(_truth(boxes))
    control = [{"image_id": i, "category_id": c, "bbox": [b[0] + float(rng.normal(0, 2)), b[1], b[2], b[3]],
                "score": float(rng.uniform())} for i, image in enumerate(boxes) for c, b in image]
    assert detections.paired_difference(truth, control, control, resamples=50) == (0.0, 0.0, 0.0)
    variant = [box for box in control if box["image_id"] != 7]
    delta, low, high = detections.paired_difference(truth, variant, control, resamples=100)
    assert low <= delta < 0 and high <= 0
    own_low, own_high = detections.bootstrap_interval(detections.evaluate(truth, control), resamples=100)
    assert high - low < own_high - own_low


def test_a_data_yaml_becomes_a_letterboxed_task_with_coco_truth(tiny_shapes):
    task = load_detection_task(str(tiny_shapes), 64)
    assert task.images.shape == (TINY.val, 3, 64, 64) and task.images.dtype == np.uint8
    assert task.classes == ("square", "disc", "triangle")
    truth = json.loads(task.ground_truth)
    labels = sum(len(read_labels(p, 3)) for p in sorted((tiny_shapes.parent / "labels" / "val").iterdir()))
    assert len(truth["annotations"]) == labels and len(truth["images"]) == TINY.val
    assert task.calibration().shape == (TINY.train, 3, 64, 64)  # all 24 train images: fewer than 128
    assert 0 <= task.timed_input(2).min() and task.timed_input(2).max() <= 1
    assert load_detection_task(str(tiny_shapes.parent), 64).ground_truth == task.ground_truth  # the folder too


def test_a_coco_folder_gives_the_same_truth_as_its_yolo_twin(tmp_path, tiny_shapes):
    yolo = load_detection_task(str(tiny_shapes), 64)
    truth = json.loads(yolo.ground_truth)
    root = tmp_path / "coco"
    (root / "annotations").mkdir(parents=True)
    images = sorted((tiny_shapes.parent / "images" / "val").iterdir())
    (root / "val").mkdir()
    for path in images:
        (root / "val" / path.name).write_bytes(path.read_bytes())
    coco = {"images": [dict(im, id=100 + im["id"], file_name=images[im["id"]].name) for im in truth["images"]],
            "annotations": [dict(a, image_id=100 + a["image_id"], category_id=a["category_id"] + 1)
                            for a in truth["annotations"]],
            "categories": [{"id": c["id"] + 1, "name": c["name"]} for c in truth["categories"]]}
    (root / "annotations" / "instances_val.json").write_text(json.dumps(coco))
    task = load_detection_task(str(root), 64)
    assert task.classes == yolo.classes and np.array_equal(task.images, yolo.images)
    np.testing.assert_allclose([a["bbox"] for a in json.loads(task.ground_truth)["annotations"]],
                               [a["bbox"] for a in truth["annotations"]])
    assert "calibrated on val images" in task.label  # no train split: said


def _copy_set(tiny_shapes, tmp_path):
    import shutil

    shutil.copytree(tiny_shapes.parent, tmp_path / "set")
    data = tmp_path / "set" / "data.yaml"
    data.write_text(data.read_text().replace(str(tiny_shapes.parent.resolve()), str((tmp_path / "set").resolve())))
    return data


@pytest.mark.parametrize("breakage, message", [
    (lambda d: d.unlink(), "does not exist"),
    (lambda d: d.write_text("train: [unclosed"), "not readable YAML"),
    (lambda d: d.write_text("train: images/train\nnames: [a]\n"), "has no val"),
    (lambda d: d.write_text(d.read_text().replace("val: images/val", "val: images/nowhere")), "does not exist"),
    (lambda d: [p.unlink() for p in (d.parent / "images" / "val").iterdir()], "holds no images"),
    (lambda d: (d.parent / "labels" / "val" / "00003.txt").write_text("0 0.5 0.5 0.1 0.1\n7 0.5 0.5 0.1 0.1\n"),
     "00003.txt' line 2: class 7 is outside the data set's classes 0..2"),
    (lambda d: (d.parent / "labels" / "val" / "00001.txt").write_text("0 0.5 0.5 0.1\n"), "line 1: expected"),
    (lambda d: (d.parent / "labels" / "train" / "00002.txt").write_text("1 0.5 1.5 0.1 0.1\n"),
     "00002.txt' line 1: box 0.5 1.5 0.1 0.1 is not normalised"),
    (lambda d: (d.parent / "labels" / "val" / "00000.txt").write_text("x 0.5 0.5 0.1 0.1\n"), "not numbers"),
])
def test_bad_detection_data_is_one_line_naming_the_file(tiny_shapes, tmp_path, breakage, message):
    data = _copy_set(tiny_shapes, tmp_path)
    breakage(data)
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(".", r"\.")):
        load_detection_task(str(data), 64)


def test_bad_coco_folders_are_refused(tmp_path):
    (tmp_path / "coco" / "annotations").mkdir(parents=True)
    with pytest.raises(UsageError, match="has no annotations/instances_val"):
        load_detection_task(str(tmp_path / "coco"), 64)
    (tmp_path / "coco" / "annotations" / "instances_val.json").write_text("{not json")
    with pytest.raises(UsageError, match="not readable JSON"):
        load_detection_task(str(tmp_path / "coco"), 64)
    with pytest.raises(UsageError, match="neither an Ultralytics data set"):
        load_detection_task(str(tmp_path), 64)


# --- A user's checkpoint and data set, end to end ----------------------------------------------------------

USER_SET = ShapesSpec(train=128, val=24, size=64, max_objects=1, seed=1)


@pytest.fixture(scope="module")
def trained_tiny(tmp_path_factory):
    """A tiny data set and a YOLOv8n checkpoint trained on it by Ultralytics' own trainer (about 30 s): a
    real best.pt-style file, with a small but non-zero mAP."""
    from edgebench.models.yolo_training import YoloRecipe, trained_yolo

    root = tmp_path_factory.mktemp("user")
    data = write_shapes(root / "set", USER_SET)
    recipe = YoloRecipe(epochs=30, batch=16, warmup_epochs=1, mosaic=0.0)
    return data, trained_yolo("yolov8n", data, 64, recipe, cache_dir=root / "cache").checkpoint


def _run(tmp_path, **fields):
    import io

    from rich.console import Console

    from edgebench.bench.config import BenchConfig, TimingConfig
    from edgebench.bench.progress import Reporter
    from edgebench.bench.runlog import RunLog
    from edgebench.bench.runner import Runner

    timing = TimingConfig(warmup_iters=2, warmup_s=0.0, min_iters=5, min_s=0.0, max_s=10.0)
    log = RunLog()
    try:
        return Runner(BenchConfig(threads=1, out=tmp_path / "run", timing=timing, repeats=1, export_jobs=2, **fields),
                      Reporter(Console(file=io.StringIO())), log).run()
    finally:
        log.close()


@pytest.mark.slow
def test_a_users_checkpoint_and_data_yaml_get_map_in_each_runtime_as_ultralytics_validates_it(tmp_path, trained_tiny):
    from ultralytics import YOLO

    data, checkpoint = trained_tiny
    summary = _run(tmp_path, model="yolov8n", weights=str(checkpoint), data=str(data),
                   runtimes=("pytorch", "onnxruntime"))
    rows = {row.runtime: row for row in summary.rows}
    for row in rows.values():
        assert row.status == "ok", row.error
        assert row.map_delta is None  # fp32 uncompressed: each is its own runtime's control
        assert row.map_ci_low <= row.map50_95 <= row.map_ci_high and row.postprocess_ms > 0
        assert row.weights.startswith("checkpoint:") and "24 val images" in row.dataset
    pytorch, onnx = rows["pytorch"], rows["onnxruntime"]
    assert pytorch.map50_95 > 0.005 and pytorch.map50 > pytorch.map50_95  # trained: it finds something
    assert abs(onnx.map50_95 - pytorch.map50_95) < 0.005  # fp32 in another runtime: the same boxes
    # Ultralytics' own validator on the same checkpoint and data set (square images: its rectangular batches
    # are our square letterbox): the same mAP within half a point.
    metrics = YOLO(str(checkpoint)).val(data=str(data), imgsz=64, batch=8, device="cpu", workers=0, plots=False,
                                        verbose=False, project=str(tmp_path / "val"), name="val").box
    # mAP50-95, the headline, within half a point. (Its mAP50 can differ by more on a set this small and a model
    # this weak: its metric integrates the curve from precision 1 at recall 0, COCO's reads 101 recall points.)
    assert abs(metrics.map - pytorch.map50_95) < 0.005
    # Without looking at labels: each row's boxes on the timed input, matched to PyTorch's.
    assert pytorch.box_match == 1.0 and pytorch.reference_boxes > 0
    assert onnx.box_match >= 0.95 and onnx.reference_boxes == pytorch.reference_boxes
    table = (tmp_path / "run" / "table.md").read_text()
    assert "mAP50-95 % (95% CI)" in table and "pycocotools" in table and "letterbox to 64x64" in table
    assert "| Boxes vs PyTorch |" in table and f"100.0% of {pytorch.reference_boxes}" in table
    assert len(list((tmp_path / "run" / "detections").glob("*.json"))) == 2  # each row's boxes, COCO's format


@pytest.mark.slow
def test_a_detector_built_by_a_users_model_file_gets_map_from_data(tmp_path, trained_tiny):
    """MODEL=file.py:build DATA=data.yaml: the file builds an Ultralytics detector its own way (here from the
    checkpoint's pickled model); its Detect head makes it a detector, scored as MODEL=yolov8n WEIGHTS= is."""
    data, checkpoint = trained_tiny
    model_file = tmp_path / "my_detector.py"
    model_file.write_text(
        "import torch\n\n\ndef build():\n"
        f"    model = torch.load({str(checkpoint)!r}, map_location='cpu', weights_only=False)['model']\n"
        "    return model.float().eval(), torch.zeros(1, 3, 64, 64)\n")
    summary = _run(tmp_path, model=f"{model_file}:build", data=str(data), runtimes=("pytorch", "onnxruntime"))
    rows = {row.runtime: row for row in summary.rows}
    assert all(row.status == "ok" for row in rows.values()), [row.error for row in rows.values()]
    by_name = _run(tmp_path / "named", model="yolov8n", weights=str(checkpoint), data=str(data),
                   runtimes=("pytorch",)).rows[0]
    assert rows["pytorch"].map50_95 == pytest.approx(by_name.map50_95, abs=1e-9)  # the same boxes, scored alike
    assert abs(rows["onnxruntime"].map50_95 - rows["pytorch"].map50_95) < 0.005
    assert rows["onnxruntime"].box_match >= 0.95 and "24 val images" in rows["pytorch"].dataset


def test_a_checkpoint_that_does_not_fit_is_refused_in_one_line(tmp_path, trained_tiny):
    from edgebench.bench.config import BenchConfig
    from edgebench.bench.runner import plan_run

    data, checkpoint = trained_tiny
    four = data.parent / "four.yaml"
    four.write_text(data.read_text() + "  3: star\n")
    with pytest.raises(UsageError, match="has 4 classes .* but yolov8n detects 3 classes"):
        plan_run(BenchConfig(model="yolov8n", weights=str(checkpoint), data=str(four)))
    with pytest.raises(UsageError, match="is a scale-n model, but MODEL=yolov8s is scale s"):
        plan_run(BenchConfig(model="yolov8s", weights=str(checkpoint), data=str(data)))
    # A method that applies to classifiers only: its rows say so, and the rest of the run is measured.
    summary = _run(tmp_path, model="yolov8n", weights=str(checkpoint), data=str(data), runtimes=("onnxruntime",),
                   compress=("qat",))
    got = [(row.compression, row.precision, row.status) for row in summary.rows]
    assert got == [("none", "fp32", "ok"), ("none", "int8", "ok"), ("qat", "int8", "unavailable")]
    assert "qat applies to classifiers only: detectors take finetune, prune-channels, prune-unstructured" \
        in summary.rows[2].error


@pytest.mark.slow
def test_a_pruned_detector_is_fine_tuned_by_ultralytics_and_compared_with_its_control(tmp_path, trained_tiny):
    """Pruning a detector trains FINETUNE_EPOCHS more with Ultralytics' own trainer on the data.yaml; the run adds
    the control (the checkpoint fine-tuned as long) and the variant's mAP change is paired against that control,
    not against the untrained-further baseline."""
    data, checkpoint = trained_tiny
    summary = _run(tmp_path, model="yolov8n", weights=str(checkpoint), data=str(data), runtimes=("onnxruntime",),
                   compress=("prune-unstructured:0.5",), finetune_epochs=2)
    rows = {row.compression: row for row in summary.rows}
    assert list(rows) == ["none", "finetune:2", "prune-unstructured:0.5"]
    assert all(row.status == "ok" for row in rows.values()), [row.error for row in rows.values()]
    base, control, pruned = rows["none"], rows["finetune:2"], rows["prune-unstructured:0.5"]
    assert control.finetune_epochs == 2 and control.map50_95 != base.map50_95  # it trained
    assert control.map_control == "none fp32" and control.map_delta is not None
    assert pruned.finetune_epochs == 2 and "not fine-tuned" not in pruned.details
    assert pruned.map_control == "finetune:2 fp32"  # its control, not the baseline
    assert pruned.map_delta_ci_low <= pruned.map_delta <= pruned.map_delta_ci_high
    assert pruned.sparsity > 0.45  # the pruned weights stayed zero through training
    table = (tmp_path / "run" / "table.md").read_text()
    assert "| mAP vs its control (95% CI) |" in table and " vs finetune:2 |" in table


def test_channel_pruning_fine_tunes_a_detector_with_ultralytics_trainer(trained_tiny):
    """The pruned module itself (split C2f blocks, fewer channels) goes through the trainer and comes back, a copy
    with its head decoding again and its widths kept."""
    import torch

    from edgebench.compression import CompressionContext, parse_variant
    from edgebench.models import load_model

    data, checkpoint = trained_tiny
    model = load_model("yolov8n", str(checkpoint))
    task = load_detection_task(str(data), 64)
    context = CompressionContext(example=model.example, task=task, finetune_epochs=1)
    method = parse_variant("prune-channels:0.3").methods[0]
    pruned = method.apply(model.module, context)
    assert pruned is not model.module and "not fine-tuned" not in " ".join(context.notes)
    weights = {name: p.clone() for name, p in model.module.state_dict().items()}  # the pruned, untrained ones
    changed = [name for name, p in pruned.state_dict().items() if name in weights and p.shape == weights[name].shape
               and p.is_floating_point() and not torch.equal(p, weights[name])]
    assert changed and all(p.shape == weights[name].shape for name, p in pruned.state_dict().items()
                           if name in weights)
    with torch.no_grad():
        assert pruned(model.example).shape == (1, 7, 84)  # one decoded output again (export mode)


def test_what_a_detector_cannot_be_made_with_is_said_per_method(tmp_path, tiny_shapes):
    """Classifier-only methods name the methods a detector takes; a COCO folder has no labels Ultralytics' trainer
    reads, so the fine-tune control is unavailable there and pruning goes untrained (its notes say so)."""
    from edgebench.bench.runner import variant_unavailable
    from edgebench.compression import parse_variant

    yolo = load_detection_task(str(tiny_shapes), 64)
    assert yolo.training_unavailable() == "" and yolo.data_yaml == str(tiny_shapes.resolve())
    for spec in ("cluster:16", "distill:digits_cnn", "qat", "prune-channels:0.3+qat"):
        assert "applies to classifiers only" in variant_unavailable(parse_variant(spec), yolo), spec
    for spec in ("finetune:2", "prune-channels:0.3", "prune-unstructured:0.5"):
        assert variant_unavailable(parse_variant(spec), yolo) == "", spec
    coco = yolo.__class__(**{**yolo.__dict__, "data_yaml": ""})
    assert "fine-tuning needs DATA=path/to/data.yaml" in variant_unavailable(parse_variant("finetune:2"), coco)
    assert variant_unavailable(parse_variant("prune-channels:0.3"), coco) == ""
    saved = coco.save(tmp_path / "task.npz")
    assert coco.__class__.load(saved).data_yaml == ""
    back = yolo.__class__.load(yolo.save(saved))
    assert back.data_yaml == yolo.data_yaml and back.classes == yolo.classes and back.note == yolo.note
    assert back.ground_truth == yolo.ground_truth and np.array_equal(back.images, yolo.images)
    assert back.images.dtype == np.uint8 and np.array_equal(back.ratio_pads, yolo.ratio_pads)


def test_post_processing_always_runs_torchvisions_nms_kernel():
    """Ultralytics picks torchvision's NMS only when torchvision is already imported (else its own Python NMS,
    10x slower): the post-processing imports it, so `Post ms` does not depend on what else was imported."""
    code = ("import sys, numpy as np; from edgebench.bench.measure.detections import postprocess; "
            "assert 'torchvision' not in sys.modules; "
            "postprocess(np.zeros((7, 0), np.float32), 64, (64, 64), (1.0, 1.0, 0.0, 0.0)); "
            "print('torchvision' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "YOLO_OFFLINE": "1", "YOLO_VERBOSE": "False"})
    assert done.stdout.strip() == "True", done.stderr[-2000:]


def test_box_agreement_counts_each_reference_box_found_once_with_its_class():
    """A detector's fidelity without labels, hand-checked: the same box is found; one moved to IoU 0.8 is not,
    nor one of another class; two reference boxes cannot both claim one found box."""
    from edgebench.bench.measure.detections import Boxes, box_agreement

    reference = Boxes(np.array([[0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50], [0, 0, 10, 10.5]], float),
                      np.array([0.9, 0.8, 0.7, 0.6]), np.array([1, 1, 2, 1]))
    found = Boxes(np.array([[0, 0, 10, 10], [20, 20, 30, 32.5], [40, 40, 50, 50]], float),
                  np.array([0.9, 0.8, 0.7]), np.array([1, 1, 0]))
    assert box_agreement([reference], [found]) == (1, 4)  # IoU 0.8 and class 0 for 2 do not count
    assert box_agreement([reference], [found], iou=0.75) == (2, 4)
    empty = Boxes(np.zeros((0, 4)), np.zeros(0), np.zeros(0, int))
    assert box_agreement([reference, empty], [empty, found]) == (0, 4)


def test_tflite_int8_runs_a_detector_with_its_head_in_float(tmp_path):
    """LiteRT refuses an int8 softmax whose output scale is not 1/256, and the DFL's calibrated one is not:
    the head (decode included) stays float, the rest is int8, and the model still gives class scores."""
    from ai_edge_litert.interpreter import Interpreter

    from edgebench.models import load_model
    from edgebench.runtimes import RuntimeOptions, get_runtime

    model = load_model("yolov8n[nc=3,imgsz=64]")
    rng = np.random.default_rng(0)
    adapter = get_runtime("tflite")(RuntimeOptions(precision="int8", threads=1))
    adapter.calibration = rng.uniform(0, 1, size=(8, 3, 64, 64)).astype(np.float32)
    model.module(model.example)  # as the harness's reference outputs do: the head builds its anchors once
    artifact = adapter.export(model.module, model.example, tmp_path)
    interpreter = Interpreter(model_path=str(artifact))
    interpreter.allocate_tensors()
    ops = interpreter._get_ops_details()
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    softmax = [op for op in ops if op["op_name"] == "SOFTMAX"]
    assert softmax and all(tensors[op["outputs"][0]]["dtype"] == np.float32 for op in softmax)
    convs = [op for op in ops if op["op_name"] == "CONV_2D"]
    assert any(tensors[op["inputs"][1]]["dtype"] == np.int8 for op in convs)  # the backbone is int8
    adapter.load(artifact)
    out = adapter.predict(rng.uniform(0, 1, size=(1, 3, 64, 64)).astype(np.float32))[0]
    assert out.shape == (1, 4 + 3, 84) and out[:, 4:].max() > 1e-3


def test_int8_keeps_a_detectors_decode_in_float(tmp_path):
    """One output tensor holds box coordinates in pixels and class scores in [0, 1]: quantized with one scale,
    every score rounds to zero. The decode (DFL, anchors, sigmoid, concatenations) is found by the module scopes
    the exporter records, and ONNX Runtime's int8 leaves it in float: the scores survive."""
    import onnx
    import onnxruntime as ort

    from edgebench.models import load_model
    from edgebench.models.heads import detection_head
    from edgebench.runtimes._onnx import export_onnx, nodes_in_decode, quantize_onnx

    model = load_model("yolov8n[nc=3,imgsz=64]")
    head = detection_head(model.module)
    assert head == "model.22"
    float_path = export_onnx(model.module, model.example, tmp_path / "float.onnx")
    graph = onnx.load(str(float_path)).graph
    decode = nodes_in_decode(onnx.load(str(float_path)), head)
    ops = {node.name: node.op_type for node in graph.node}
    assert {"Softmax", "Sigmoid", "Concat", "Div"} <= {ops[n] for n in decode}
    assert [ops[n] for n in decode].count("Conv") == 1  # the DFL's fixed convolution; the head's own convs are int8
    assert graph.node[-1].name in decode  # the output's last concatenation
    import openvino as ov

    from edgebench.runtimes.openvino_ir import decode_ops

    names = decode_ops(ov.Core().read_model(str(float_path)), onnx.load(str(float_path)), head)
    assert len(names) >= len(decode) - 2 and "node_softmax" in names  # NNCF ignores them by these names
    rng = np.random.default_rng(0)
    calibration = [rng.uniform(0, 1, size=(1, 3, 64, 64)).astype(np.float32) for _ in range(8)]
    x = model.example.numpy()

    def scores(path):
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return session.run(None, {session.get_inputs()[0].name: x})[0][0, 4:]

    reference = scores(float_path)
    kept = scores(quantize_onnx(float_path, tmp_path / "kept.onnx", calibration, float_nodes=tuple(decode)))
    whole = scores(quantize_onnx(float_path, tmp_path / "whole.onnx", calibration))
    assert np.corrcoef(kept.ravel(), reference.ravel())[0, 1] > 0.9
    assert np.count_nonzero(whole) < 0.1 * whole.size  # quantized with the boxes' scale: scores gone


def test_pytorch_compiled_int8_leaves_the_detection_head_in_float():
    """torchao's X86 quantizer skips by module: every quantize node of the int8 program lies outside the Detect
    head, and some lie in the backbone."""
    from edgebench.models import load_model
    from edgebench.runtimes._torch import quantize_x86

    model = load_model("yolov8n[nc=3,imgsz=64]")
    rng = np.random.default_rng(0)
    batches = [rng.uniform(0, 1, size=(1, 3, 64, 64)).astype(np.float32) for _ in range(4)]
    _, quantized = quantize_x86(model.module, model.example, batches)
    places = []
    for node in quantized.graph.nodes:
        if node.op == "call_function" and "quantize_per" in str(node.target):
            users = [user.meta.get("nn_module_stack", {}) for user in node.users]
            places += [name for stack in users for name, _ in stack.values()]
    assert places and not any(name.startswith("model.22") for name in places)


def test_channel_pruning_leaves_a_detection_head_whole():
    """The backbone and neck lose channels (multiples of 8, about the ratio asked); the Detect head keeps every
    output (box bins and one channel per class), so the model still detects its classes."""
    import copy

    import torch

    from edgebench.compression import CompressionContext, parse_variant
    from edgebench.compression.prune_channels import split_c2f_blocks
    from edgebench.models import load_model

    model = load_model("yolov8n[nc=3,imgsz=64]")
    split = copy.deepcopy(model.module)
    assert split_c2f_blocks(split) == 8  # YOLOv8n's C2f blocks, each now two convolutions instead of a chunk
    with torch.no_grad():
        torch.testing.assert_close(split(model.example), model.module(model.example))  # the same function
    head = model.module.get_submodule("model.22")
    before = {name: m.out_channels for name, m in head.named_modules() if isinstance(m, torch.nn.Conv2d)}
    context = CompressionContext(example=model.example, task=None)
    pruned = parse_variant("prune-channels:0.3").methods[0].apply(model.module, context)
    after = {name: m.out_channels for name, m in pruned.get_submodule("model.22").named_modules()
             if isinstance(m, torch.nn.Conv2d)}
    assert after == before
    assert 0.2 < context.pruned_fraction < 0.4
    assert pruned(model.example).shape == (1, 7, 84)
    assert "not fine-tuned" in " ".join(context.notes)  # the row says its mAP comes without a fine-tune
