"""YOLO detectors trained offline with Ultralytics' own trainer and loss: the study's models, cached like the zoo's,
and the short fine-tune every compression method of a detector gets (and its control, `finetune:N`).

What the embedded detection set (`models.shapes`) is measured with: a checkpoint exactly as `yolo train` writes
it (last.pt), so it goes through the same WEIGHTS= path as a user's own best.pt. Training is seeded and
deterministic on the CPU; the checkpoint is kept under models/.cache, keyed by everything that changes it, with
the seconds it took beside it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from torch import nn

from edgebench.models.yolo import yolo_env
from edgebench.models.zoo import CACHE_DIR


@dataclass(frozen=True)
class YoloRecipe:
    """Ultralytics' training arguments that edgebench sets; the rest are Ultralytics' defaults."""

    epochs: int = 15
    batch: int = 32
    warmup_epochs: float = 3.0
    mosaic: float = 1.0
    seed: int = 0


@dataclass(frozen=True)
class TrainedYolo:
    checkpoint: Path
    train_s: float  # how long training took when the checkpoint was made (it is cached after)


def _key(config: str, data_yaml: Path, size: int, recipe: YoloRecipe) -> str:
    import hashlib

    import torch
    import ultralytics

    digest = hashlib.sha256(data_yaml.read_bytes()).hexdigest()[:10]
    return (f"{config}-{data_yaml.parent.name}-{digest}-{size}px-e{recipe.epochs}-b{recipe.batch}"
            f"-w{recipe.warmup_epochs}-m{recipe.mosaic}-s{recipe.seed}-ul{ultralytics.__version__}"
            f"-torch{torch.__version__}")


def trained_yolo(config: str, data_yaml: Path, size: int, recipe: YoloRecipe = YoloRecipe(),
                 cache_dir: Path = CACHE_DIR) -> TrainedYolo:
    """The checkpoint of `config` (e.g. yolov8n) trained on `data_yaml` at `size` pixels, trained once."""
    for name, value in yolo_env().items():  # before Ultralytics is first imported: it reads them then
        os.environ.setdefault(name, value)
    data_yaml = Path(data_yaml).resolve()
    key = _key(config, data_yaml, size, recipe)
    checkpoint, facts = cache_dir / f"{key}.pt", cache_dir / f"{key}.json"
    if checkpoint.is_file() and facts.is_file():
        return TrainedYolo(checkpoint, float(json.loads(facts.read_text())["train_s"]))
    from ultralytics import YOLO

    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir, prefix="yolo-train-") as project:
        start = time.perf_counter()
        YOLO(f"{config}.yaml").train(
            data=str(data_yaml), imgsz=size, epochs=recipe.epochs, batch=recipe.batch, seed=recipe.seed,
            warmup_epochs=recipe.warmup_epochs, mosaic=recipe.mosaic, deterministic=True, device="cpu", workers=0,
            pretrained=False, amp=False, plots=False, val=False, verbose=False, project=project, name="run",
            exist_ok=True)
        train_s = time.perf_counter() - start
        partial = checkpoint.with_suffix(".partial")
        shutil.copyfile(Path(project) / "run" / "weights" / "last.pt", partial)
        partial.replace(checkpoint)
    facts.write_text(json.dumps({"train_s": train_s, "recipe": asdict(recipe), "config": config, "size": size}))
    return TrainedYolo(checkpoint, train_s)


def finetune_yolo(module: nn.Module, data_yaml: Path, epochs: int, size: int, seed: int = 0,
                  batch: int = 32) -> nn.Module:
    """`module` (an Ultralytics DetectionModel, pruned or not) trained `epochs` more by Ultralytics' own trainer on
    the data.yaml's train split; returns the trainer's EMA model (what its checkpoints hold), head in export mode.

    The trainer gets the module itself (it skips building one when handed a module), no learning-rate warm-up (the
    model is trained already; Ultralytics caps warm-up at epochs - 1, so a short fine-tune would be all warm-up),
    Ultralytics' defaults otherwise (optimizer `auto`, mosaic closed for the last 10 epochs, so for any fine-tune
    of 10 or fewer). It trains with this process's threads: Ultralytics sets cpu_count - 1 (1 on 2 cores), which
    took 39 s instead of 21 s for 5 epochs of a pruned YOLOv8n at 128 px here. Nothing is saved."""
    import torch
    import yaml

    from edgebench.models.detection import data_root
    from edgebench.models.yolo import export_mode

    for name, value in yolo_env().items():
        os.environ.setdefault(name, value)
    from ultralytics.models.yolo.detect import DetectionTrainer

    class _Trainer(DetectionTrainer):
        def save_model(self) -> bool:  # the module is what edgebench keeps; no last.pt/best.pt
            return False

    threads = torch.get_num_threads()
    data_yaml = Path(data_yaml)
    spec = yaml.safe_load(data_yaml.read_text())
    spec["path"] = str(data_root(spec, data_yaml).resolve())  # Ultralytics reads a relative path elsewhere
    export_mode(module, on=False)  # the training forward returns raw maps; the decode is put back after
    with tempfile.TemporaryDirectory(prefix="eb-yolo-finetune-") as project:
        resolved = Path(project) / "data.yaml"
        resolved.write_text(yaml.safe_dump(spec))
        trainer = _Trainer(overrides=dict(
            model="yolov8n.yaml", data=str(resolved),  # the constructor wants a model name; it gets the module
            imgsz=size, epochs=epochs, batch=batch, seed=seed, warmup_epochs=0, deterministic=True, device="cpu",
            workers=0, amp=False, plots=False, val=False, verbose=False, project=project, name="run",
            exist_ok=True, pretrained=False))
        torch.set_num_threads(threads)
        trainer.model = module
        trainer.train()
        tuned = trainer.ema.ema
    tuned.criterion = None  # training-only state
    export_mode(tuned)
    for parameter in tuned.parameters():
        parameter.requires_grad_(False)
    return tuned.float().eval()
