"""Digits splits and user .npz loading."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hadmc.data import DataError, load_digits_splits, load_npz


def test_digits_splits_shapes_ranges_and_disjointness() -> None:
    d = load_digits_splits(image_size=32, seed=0)
    assert d.input_shape == (1, 32, 32)
    assert d.num_classes == 10
    sizes = [len(d.x_train), len(d.x_val), len(d.x_calib), len(d.x_test)]
    assert sum(sizes) == 1797  # every digit in exactly one split
    assert len(d.x_test) == 360 and len(d.x_calib) == 128
    for x, y in ((d.x_train, d.y_train), (d.x_val, d.y_val), (d.x_test, d.y_test)):
        assert x.dtype == np.float32 and y.dtype == np.int64 and x.ndim == 4
        assert 0.0 <= x.min() and x.max() <= 1.0
        # stratified: every class present in roughly its share (digits is ~10% per class)
        counts = np.bincount(y, minlength=10)
        assert counts.min() >= 0.08 * len(y) and counts.max() <= 0.12 * len(y)
    # no image appears in two splits (digits has no exact duplicates at 8x8 -> upsampled)
    rows = {x.tobytes() for x in d.x_train}
    assert not any(x.tobytes() in rows for x in d.x_test)
    assert not any(x.tobytes() in rows for x in d.x_val)


def test_digits_seeded_and_size() -> None:
    a, b = load_digits_splits(16, seed=3), load_digits_splits(16, seed=3)
    c = load_digits_splits(16, seed=4)
    assert a.input_shape == (1, 16, 16)
    assert np.array_equal(a.x_train, b.x_train) and np.array_equal(a.y_test, b.y_test)
    assert not np.array_equal(a.y_train, c.y_train)
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
