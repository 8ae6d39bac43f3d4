"""A model is scored with its own preprocessing: declared by the model file or PREPROCESS=, else named as a guess.

A user's CNN trained on [0, 1] pixels (torchvision ToTensor, no normalization) scored 17.5% in edgebench against
91.4% in the user's own evaluation, because ImageNet's statistics were applied silently.
"""

from __future__ import annotations

import textwrap

import numpy as np
import pytest
import torch
from torch import nn

from edgebench.bench.config import BenchConfig
from edgebench.bench.errors import UsageError
from edgebench.bench.measure.stats import at_chance
from edgebench.bench.runner import resolve_task, table_header
from edgebench.models import load_model
from edgebench.models.preprocess import resolve
from edgebench.models.training import accuracy

from image_folders import colour_folder

MODEL_FILE = '''
import torch
from torch import nn


def build():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4), nn.Flatten(),
                         nn.Linear(128, 3)), torch.zeros(1, 3, 32, 32)
'''


@pytest.fixture(scope="module")
def users_model(tmp_path_factory):
    """The user's side: an ImageFolder, a model trained on ToTensor() images, its weights, its own accuracy."""
    from torchvision import datasets, transforms

    root = tmp_path_factory.mktemp("user")
    data = colour_folder(root / "data")
    (root / "declared.py").write_text(MODEL_FILE + '\npreprocess = "unit"\n')
    (root / "silent.py").write_text(MODEL_FILE)
    namespace: dict = {}
    exec(MODEL_FILE, namespace)
    model, _ = namespace["build"]()
    plain = transforms.ToTensor()
    train = datasets.ImageFolder(str(data / "train"), transform=plain)
    x = torch.stack([train[i][0] for i in range(len(train))])
    y = torch.tensor([train[i][1] for i in range(len(train))])
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(60):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    torch.save(model.state_dict(), root / "weights.pt")
    val = datasets.ImageFolder(str(data / "val"), transform=plain)
    with torch.no_grad():
        predicted = model.eval()(torch.stack([val[i][0] for i in range(len(val))])).argmax(1)
    own = float((predicted == torch.tensor([val[i][1] for i in range(len(val))])).float().mean())
    assert own > 0.8, own  # the user's model works, in the user's evaluation
    return root, data, own


def _scored(root, data, file: str, preprocess: str | None = None):
    model = load_model(f"{root / file}:build", str(root / "weights.pt"))
    config = BenchConfig(model=model.source, data=str(data), preprocess=preprocess)
    task = resolve_task(config, model)
    return model, task, accuracy(model.module, task)


def test_a_model_that_declares_its_preprocessing_scores_what_it_scores_for_its_user(users_model):
    root, data, own = users_model
    _, task, score = _scored(root, data, "declared.py")
    assert abs(score - own) <= 0.005, (score, own)
    assert task.preprocessing.startswith("pixels in [0, 1], no normalization") and "declared by the model" in \
        task.preprocessing


def test_preprocess_overrides_and_an_undeclared_guess_is_named_in_the_header(users_model):
    root, data, own = users_model
    _, _, score = _scored(root, data, "silent.py", preprocess="unit")
    assert abs(score - own) <= 0.005
    model, task, guessed = _scored(root, data, "silent.py")
    assert "guessed from 3 channels" in task.preprocessing and "set PREPROCESS=" in task.preprocessing
    environment = {"packages": {}, "cpu": "c", "cpu_logical_cores": 2, "ram_gib": 1, "os": "o", "python": "3",
                   "git_commit": "x", "harness_overhead_us": 0.0, "gemm_peak_gflops": {}, "date": "d"}
    header = table_header(BenchConfig(model=model.source, data=str(data)), [model], [task], environment)
    assert "preprocessing: ImageNet mean/std (torchvision's weights), guessed from 3 channels" in header
    assert guessed < own - 0.2  # what the guess costs this model: why it must be said


def test_a_preprocessing_function_and_bad_names(users_model, tmp_path):
    root, data, own = users_model
    (tmp_path / "pre.py").write_text(textwrap.dedent('''
        from torchvision import transforms
        def to_unit(image):
            return transforms.ToTensor()(image)
    '''))
    _, _, score = _scored(root, data, "silent.py", preprocess=f"{tmp_path / 'pre.py'}:to_unit")
    assert abs(score - own) <= 0.005
    with pytest.raises(UsageError, match="unknown preprocessing 'imagenette' .*choose imagenet, unit, signed"):
        resolve("imagenette", None, 3)
    with pytest.raises(UsageError, match="PREPROCESS file .* does not exist"):
        resolve(str(tmp_path / "missing.py:f"), None, 3)
    model = load_model(f"{root / 'silent.py'}:build", str(root / "weights.pt"))
    with pytest.raises(UsageError, match="PREPROCESS=unit applies to labelled images, .* give DATA="):
        resolve_task(BenchConfig(model=model.source, preprocess="unit"), model)


def test_accuracy_at_chance_is_flagged_only_when_the_predictions_vary():
    labels = np.arange(1000) % 10
    rng = np.random.default_rng(0)
    assert at_chance(rng.integers(0, 10, 1000), labels, 10)  # about 10%: chance
    assert not at_chance(np.zeros(1000, dtype=int), labels, 10)  # constant output: another problem
    assert not at_chance(np.where(rng.random(1000) < 0.5, labels, 0), labels, 10)  # about 55%: learned something
