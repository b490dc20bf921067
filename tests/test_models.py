"""Demo models: shapes, deterministic training, the cached demo and its accuracy."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from hadmc.data import DIGITS_DATA_VERSION, load_digits_splits
from hadmc.models import (
    DEMO_MODEL,
    DEMOS,
    DemoConfig,
    build_model,
    default_cache_dir,
    evaluate_accuracy,
    load_demo,
    train_classifier,
)


@pytest.mark.parametrize("name", ["mobilenetv2_small", "resnet_small"])
def test_build_model_shapes(name: str) -> None:
    model = build_model(name, num_classes=7, in_channels=3).eval()
    with torch.no_grad():
        assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 7)
        assert model(torch.zeros(1, 3, 16, 16)).shape == (1, 7)
    with pytest.raises(ValueError, match="unknown model"):
        build_model("vgg")


def test_mobilenet_is_inverted_residual_with_depthwise() -> None:
    model = build_model(DEMO_MODEL)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    depthwise = [c for c in convs if c.groups > 1 and c.groups == c.in_channels]
    pointwise = [c for c in convs if c.kernel_size == (1, 1)]
    assert len(depthwise) == 13 and len(pointwise) == 26
    assert any(isinstance(m, torch.nn.ReLU6) for m in model.modules())
    assert sum(getattr(m, "use_residual", False) for m in model.modules()) == 7


def test_training_is_deterministic_and_learns() -> None:
    data = load_digits_splits(image_size=16, seed=0)
    small = dataclasses.replace(data, x_train=data.x_train[:256], y_train=data.y_train[:256])
    weights = []
    for _ in range(2):
        torch.manual_seed(0)
        model = build_model("resnet_small", 10, 1)
        acc = train_classifier(model, small, epochs=4, lr=3e-3, batch_size=32, seed=0)
        weights.append({k: v.clone() for k, v in model.state_dict().items()})
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    assert acc > 0.5  # 4 epochs on 256 images: far above chance (0.1); validation is 80 % augmented
    assert not model.training
    with pytest.raises(ValueError):
        train_classifier(model, small, epochs=0, lr=1e-3, batch_size=32, seed=0)


def test_evaluate_accuracy_counts_correctly() -> None:
    class Pick(torch.nn.Module):  # predicts the class stored in pixel [0, 0, 0]
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.one_hot(x[:, 0, 0, 0].long(), 3).float()

    x = np.zeros((4, 1, 2, 2), np.float32)
    x[:, 0, 0, 0] = [0, 1, 2, 2]
    assert evaluate_accuracy(Pick(), x, np.array([0, 1, 2, 0]), batch_size=3) == 0.75


def test_default_cache_dir_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HADMC_CACHE_DIR", str(tmp_path))
    assert default_cache_dir() == tmp_path
    monkeypatch.delenv("HADMC_CACHE_DIR")
    assert default_cache_dir() == Path.home() / ".cache" / "hadmc"


def test_demo_cache_key_tracks_the_data_splits() -> None:
    cfg = DemoConfig(seed=0)
    assert cfg.data_version == DIGITS_DATA_VERSION
    # Weights cached under the key of the earlier, non-augmented splits (whose train split
    # holds today's test sources) must never be found: the key has to differ.
    assert cfg.key() != "mobilenetv2_small-cc9d6b1db3e9c981"
    bumped = dataclasses.replace(cfg, data_version=cfg.data_version + 1)
    assert bumped.key() != cfg.key() and bumped.key().startswith(f"{DEMO_MODEL}-")
    assert DemoConfig(seed=1).key() != cfg.key()


def test_demo_accuracy_and_cache(demo) -> None:
    model, data = demo
    assert data.input_shape == (1, 32, 32)
    assert len(data.x_test) >= 2000  # the augmented, source-disjoint digits test split
    val_acc = evaluate_accuracy(model, data.x_val, data.y_val)
    test_acc = evaluate_accuracy(model, data.x_test, data.y_test)
    # Measured 97.96% val / 96.93% test (98.7% on the test originals, 96.5% on the copies);
    # a point of slack for other CPUs' kernels.
    assert val_acc >= 0.96 and test_acc >= 0.95
    key = DemoConfig(seed=0, image_size=DEMOS["tiny"]).key()
    weights = default_cache_dir() / f"{key}.pt"
    assert weights.is_file()
    meta = json.loads(weights.with_suffix(".json").read_text())
    assert meta["model"] == DEMO_MODEL and meta["data_version"] == DIGITS_DATA_VERSION
    assert meta["val_accuracy"] == pytest.approx(val_acc, abs=1e-9)
    assert meta["test_accuracy"] == pytest.approx(test_acc, abs=1e-9)
    assert meta["split_sizes"] == {"train": 1898, "val": 1350, "calib": 128, "test": 2250}
    lo, hi = meta["test_accuracy_ci95"]
    assert lo < test_acc < hi and hi - lo < 0.03  # 2,250 images: a tight interval
    again, _ = load_demo(progress=False, demo="tiny")  # from the cache: same weights, no training
    a, b = model.state_dict(), again.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_demos_differ_in_input_size_and_cache_key() -> None:
    assert DEMOS == {"standard": 48, "tiny": 32}
    keys = {DemoConfig(seed=0, image_size=size).key() for size in DEMOS.values()}
    assert len(keys) == 2  # never one demo's weights for the other
    assert DemoConfig(seed=0).key() == DemoConfig(seed=0, image_size=DEMOS["tiny"]).key()
    with pytest.raises(ValueError, match="unknown demo 'huge'"):
        load_demo(demo="huge")
