"""Digits splits and user .npz loading."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hadmc.data import (
    DataError,
    DataSplits,
    digits_source_split,
    load_digits_splits,
    load_npz,
    random_affine,
)

SPLITS = ("train", "val", "calib", "test")


@pytest.fixture(scope="module")
def digits32() -> DataSplits:
    return load_digits_splits(image_size=32, seed=0)


def test_digits_splits_shapes_ranges_and_sizes(digits32: DataSplits) -> None:
    d = digits32
    assert d.input_shape == (1, 32, 32)
    assert d.num_classes == 10
    # 450 test sources x (original + 4 copies), 270 val x 5, 128 calib originals, 949 train x 2
    assert [len(d.x_train), len(d.x_val), len(d.x_calib), len(d.x_test)] == [1898, 1350, 128, 2250]
    assert len(d.x_test) >= 2000  # enough to resolve about a 1-point accuracy difference
    # Validation is drawn like test (same copies per source), large enough to select on.
    assert len(d.x_val) / 270 == len(d.x_test) / 450 and len(d.x_val) >= 1000
    for k in SPLITS:
        x, y = getattr(d, f"x_{k}"), getattr(d, f"y_{k}")
        assert x.dtype == np.float32 and y.dtype == np.int64 and x.ndim == 4
        assert x.flags.c_contiguous and len(x) == len(y) == len(getattr(d, f"{k}_sources"))
        assert 0.0 <= x.min() and x.max() <= 1.0
        # stratified: every class present in roughly its share (digits is ~10% per class)
        counts = np.bincount(y, minlength=10)
        assert counts.min() >= 0.08 * len(y) and counts.max() <= 0.12 * len(y), (k, counts)


def test_no_test_source_in_any_other_split(digits32: DataSplits) -> None:
    d = digits32
    sources = {k: set(getattr(d, f"{k}_sources").tolist()) for k in SPLITS}
    assert [len(sources[k]) for k in SPLITS] == [949, 270, 128, 450]
    for a in SPLITS:
        for b in SPLITS:
            if a < b:
                assert not sources[a] & sources[b], (a, b)
    assert set().union(*sources.values()) == set(range(1797))  # every digit used once
    # the exposed source split is the one the images were made from
    split = digits_source_split(seed=0)
    for k in SPLITS:
        assert np.array_equal(split[k], np.unique(getattr(d, f"{k}_sources")))
    # labels follow the source: each image has its source digit's label
    target = _digits_target()
    for k in SPLITS:
        assert np.array_equal(getattr(d, f"y_{k}"), target[getattr(d, f"{k}_sources")])


def _digits_target() -> np.ndarray:
    from sklearn.datasets import load_digits

    return load_digits().target


def _originals(image_size: int) -> np.ndarray:
    """load_digits images upsampled exactly as load_digits_splits does."""
    import torch
    import torch.nn.functional as F
    from sklearn.datasets import load_digits

    x = torch.from_numpy((load_digits().images.astype(np.float32) / 16.0)[:, None])
    return F.interpolate(x, size=(image_size,) * 2, mode="bilinear", align_corners=False).numpy()


def test_each_source_has_its_original_and_distinct_augmented_copies(digits32: DataSplits) -> None:
    d = digits32
    orig = _originals(32)
    for k, copies in (("train", 1), ("val", 4), ("calib", 0), ("test", 4)):
        x, src = getattr(d, f"x_{k}"), getattr(d, f"{k}_sources")
        assert np.all(np.bincount(src, minlength=1797)[np.unique(src)] == copies + 1)
        # exactly one image per source equals its (upsampled) original; the rest differ
        same = np.abs(x - orig[src]).max(axis=(1, 2, 3)) < 1e-6
        assert same.sum() == len(np.unique(src)), k
        if copies:
            diff = np.abs(x[~same] - orig[src[~same]]).mean(axis=(1, 2, 3))
            # a real transform (the mean pixel is ~0.3), yet still close to the source
            assert diff.min() > 0.005 and np.median(diff) > 0.03, k
            assert np.median(diff) < 0.25, k
    # the 5 test images of one source are all different from each other
    one = d.x_test[d.test_sources == d.test_sources[0]]
    assert len({im.tobytes() for im in one}) == 5
    # shuffled: a prefix (e.g. x_val[:256] for a quick check) mixes originals and copies
    head = np.abs(d.x_val[:64] - orig[d.val_sources[:64]]).max(axis=(1, 2, 3)) < 1e-6
    assert 10 < head.sum() < 54


def test_no_test_image_equals_or_is_a_training_image(digits32: DataSplits) -> None:
    d = digits32
    rows = {x.tobytes() for x in np.concatenate([d.x_train, d.x_val, d.x_calib])}
    assert not any(x.tobytes() in rows for x in d.x_test)


def test_random_affine_is_seeded_and_resolution_free() -> None:
    x = _originals(8)[:16]
    a = random_affine(x, np.random.default_rng(1))
    b = random_affine(x, np.random.default_rng(1))
    c = random_affine(x, np.random.default_rng(2))
    assert a.shape == x.shape and a.dtype == np.float32
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    # the same draws at 32x32 move the digit the same way: the 32x32 copy, shrunk to 8x8,
    # is close to the 8x8 copy (up to resampling blur), and much closer than the original
    import torch
    import torch.nn.functional as F

    big = random_affine(_originals(32)[:16], np.random.default_rng(1))
    small = F.adaptive_avg_pool2d(torch.from_numpy(big), 8).numpy()
    assert np.abs(small - a).mean() < 0.5 * np.abs(small - x).mean()


def test_digits_seeded_and_size() -> None:
    a, b = load_digits_splits(16, seed=3), load_digits_splits(16, seed=3)
    c = load_digits_splits(16, seed=4)
    assert a.input_shape == (1, 16, 16)
    for k in SPLITS:
        for f in (f"x_{k}", f"y_{k}", f"{k}_sources"):
            assert np.array_equal(getattr(a, f), getattr(b, f)), f
    assert not np.array_equal(a.test_sources, c.test_sources)
    assert not np.array_equal(a.x_train, c.x_train)
    with pytest.raises(DataError):
        load_digits_splits(image_size=4)


def _save(path: Path, **arrays: np.ndarray) -> Path:
    np.savez(path, **arrays)
    return path


def test_npz_nhwc_uint8_and_calibration(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(40, 12, 12, 3), dtype=np.uint8)
    y = np.arange(40) % 4
    p = _save(tmp_path / "d.npz", x_train=x, y_train=y, x_val=x[:10], y_val=y[:10])
    d = load_npz(p, calib_size=16)
    assert d.input_shape == (3, 12, 12)
    assert d.num_classes == 4
    assert np.allclose(d.x_train[5, 2], x[5, :, :, 2] / 255.0)  # channel 2 moved to axis 1
    assert len(d.x_calib) == 16
    assert "test = val" in d.name and np.array_equal(d.x_test, d.x_val)


def test_npz_gray_hw_and_explicit_test(tmp_path: Path) -> None:
    x = np.random.default_rng(1).random((20, 8, 8)).astype(np.float32)
    y = np.arange(20) % 2
    p = _save(
        tmp_path / "g.npz", x_train=x, y_train=y, x_val=x[:4], y_val=y[:4],
        x_test=x[4:9], y_test=y[4:9],
    )  # fmt: skip
    d = load_npz(p)
    assert d.input_shape == (1, 8, 8)
    assert np.array_equal(d.x_train[:, 0], x)  # float data used as given
    assert len(d.x_test) == 5


def test_npz_errors_name_the_problem(tmp_path: Path) -> None:
    x = np.zeros((10, 1, 8, 8), np.float32)
    y = np.zeros(10, np.int64)
    with pytest.raises(DataError, match="y_val"):
        load_npz(_save(tmp_path / "a.npz", x_train=x, y_train=y, x_val=x))
    with pytest.raises(DataError, match="x_train.*shape"):
        load_npz(_save(tmp_path / "b.npz", x_train=np.zeros((10, 64)), y_train=y, x_val=x, y_val=y))
    with pytest.raises(DataError, match="y_train"):
        load_npz(_save(tmp_path / "c.npz", x_train=x, y_train=y[:5], x_val=x, y_val=y))
    with pytest.raises(DataError, match="x_val images have shape"):
        load_npz(
            _save(tmp_path / "d.npz", x_train=x, y_train=y, x_val=np.zeros((10, 1, 9, 9)), y_val=y)
        )
    with pytest.raises(DataError, match="not found"):
        load_npz(tmp_path / "missing.npz")
