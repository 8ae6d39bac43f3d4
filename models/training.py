"""Training and evaluation on a task's arrays: one recipe for reference models, fine-tuning and distillation.

The same function trains a student with or without a teacher, so a distilled student and its control see
identical batches in identical order (a seeded generator), and only the loss differs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from edgebench.tasks.classify import Task


@dataclass(frozen=True)
class Recipe:
    """How a model is trained: the reference recipe, or a short fine-tune at a lower learning rate."""

    epochs: int
    lr: float = 3e-3
    batch_size: int = 64
    temperature: float = 4.0  # distillation only
    alpha: float = 0.7  # distillation: weight of the teacher's soft targets


def batch_order(count: int, recipe: Recipe, seed: int) -> list[torch.Tensor]:
    """The index batches of every epoch, from a seeded generator: the same for every model trained with it."""
    generator = torch.Generator().manual_seed(seed)
    order = []
    for _ in range(recipe.epochs):
        perm = torch.randperm(count, generator=generator)
        order += [perm[i:i + recipe.batch_size] for i in range(0, count, recipe.batch_size)]
    return order


def fit(model: nn.Module, task: Task, recipe: Recipe, seed: int = 0, teacher: nn.Module | None = None,
        on_batch: Callable[[torch.Tensor], None] | None = None) -> nn.Module:
    """Train `model` in place on the task's training split (AdamW, one-cycle schedule); return it in eval mode.

    With a teacher, the loss is alpha * T^2 * KL(student/T || teacher/T) + (1 - alpha) * cross-entropy
    (Hinton et al.); without, plain cross-entropy. `on_batch` sees every index batch (tests use it).
    """
    if recipe.epochs == 0:
        return model.eval()
    torch.manual_seed(seed)
    x = torch.from_numpy(task.x_train)
    y = torch.from_numpy(task.y_train)
    batches = batch_order(len(x), recipe, seed)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=recipe.lr,
                                  weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=recipe.lr, total_steps=len(batches))
    if teacher is not None:
        teacher.eval()
    model.train()
    for idx in batches:
        if on_batch is not None:
            on_batch(idx)
        logits = model(x[idx])
        loss = F.cross_entropy(logits, y[idx])
        if teacher is not None:
            with torch.no_grad():
                soft = F.softmax(teacher(x[idx]) / recipe.temperature, dim=1)
            kd = F.kl_div(F.log_softmax(logits / recipe.temperature, dim=1), soft, reduction="batchmean")
            loss = recipe.alpha * recipe.temperature ** 2 * kd + (1 - recipe.alpha) * loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    return model.eval()


def predict_labels(model: nn.Module, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    with torch.no_grad():
        return np.concatenate([model(torch.from_numpy(x[i:i + batch_size])).argmax(1).numpy()
                               for i in range(0, len(x), batch_size)])


def accuracy(model: nn.Module, task: Task) -> float:
    """Top-1 on the test split, in PyTorch (the runtimes score their own artifacts in their own process)."""
    model.eval()
    return float(np.mean(predict_labels(model, task.x_test) == task.y_test))


def finetune_recipe(epochs: int) -> Recipe:
    """What every compression method fine-tunes with, and what the control gets for the same epochs."""
    return Recipe(epochs=epochs, lr=1e-3)
