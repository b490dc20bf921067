"""Data for compression: scikit-learn's digits as the built-in demo, or a user's .npz.

Everything is returned as float32 NCHW images and int64 labels in a :class:`DataSplits`,
with four disjoint, seeded, stratified splits: train (fit / fine-tune), validation (accuracy
of candidates during search), calibration (int8 activation ranges) and test (final report).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

DIGITS_TEST_FRACTION = 0.2
DIGITS_VAL_FRACTION = 0.15
DIGITS_CALIB_SIZE = 128
REQUIRED_NPZ_KEYS = ("x_train", "y_train", "x_val", "y_val")


class DataError(ValueError):
    """Input data is missing a key or has the wrong shape / dtype; the message says which."""


@dataclass
class DataSplits:
    """Images float32 NCHW (digits: in [0, 1]), labels int64, for each split."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_calib: np.ndarray
    y_calib: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    name: str

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        c, h, w = self.x_train.shape[1:]
        return int(c), int(h), int(w)


def load_digits_splits(image_size: int = 32, seed: int = 0) -> DataSplits:
    """scikit-learn's 8x8 digits (1797 images, shipped with sklearn), bilinearly upsampled.

    32x32 by default: a size at which a MobileNet-style net has real work to do (the 8x8
    originals make any CNN trivially fast, so compression would have nothing to show).
    Pixel values 0..16 are scaled to [0, 1]. Splits: 20% test, 15% validation,
    ``DIGITS_CALIB_SIZE`` calibration images, the rest train; all stratified by label.
    """
    import torch
    import torch.nn.functional as F
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    if not 8 <= int(image_size) <= 256:
        raise DataError(f"image_size must be in [8, 256], got {image_size}")
    digits = load_digits()
    x = (digits.images.astype(np.float32) / 16.0)[:, None, :, :]
    if image_size != 8:
        with torch.no_grad():
            t = F.interpolate(
                torch.from_numpy(x),
                size=(image_size, image_size),
                mode="bilinear",
                align_corners=False,
            )
        x = t.clamp_(0.0, 1.0).numpy()
    y = digits.target.astype(np.int64)

    x_rest, x_test, y_rest, y_test = train_test_split(
        x, y, test_size=DIGITS_TEST_FRACTION, stratify=y, random_state=seed
    )
    val_frac = DIGITS_VAL_FRACTION / (1.0 - DIGITS_TEST_FRACTION)
    x_rest, x_val, y_rest, y_val = train_test_split(
        x_rest, y_rest, test_size=val_frac, stratify=y_rest, random_state=seed + 1
    )
    x_train, x_calib, y_train, y_calib = train_test_split(
        x_rest, y_rest, test_size=DIGITS_CALIB_SIZE, stratify=y_rest, random_state=seed + 2
    )
    return DataSplits(
        *(np.ascontiguousarray(a) for a in (x_train, y_train, x_val, y_val)),
        *(np.ascontiguousarray(a) for a in (x_calib, y_calib, x_test, y_test)),
        num_classes=10,
        name=f"digits{image_size}",
    )


def _images(arr: np.ndarray, key: str) -> np.ndarray:
    """N x H x W (gray), N x C x H x W, or N x H x W x C (C in 1/3/4) -> float32 NCHW."""
    if arr.ndim == 3:
        arr = arr[:, None, :, :]
    elif arr.ndim == 4:
        # Channels-last when the last axis looks like channels and axis 1 does not.
        if arr.shape[-1] in (1, 3, 4) and arr.shape[1] not in (1, 3, 4):
            arr = arr.transpose(0, 3, 1, 2)
    else:
        raise DataError(
            f"{key} must be images N x H x W, N x C x H x W or N x H x W x C; got shape {arr.shape}"
        )
    if arr.shape[0] == 0:
        raise DataError(f"{key} is empty")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise DataError(f"{key} must be numeric, got dtype {arr.dtype}")
    out = arr.astype(np.float32)
    if arr.dtype == np.uint8:
        out /= 255.0  # 8-bit images to [0, 1], like the demo data
    if not np.isfinite(out).all():
        raise DataError(f"{key} contains NaN or infinity")
    return np.ascontiguousarray(out)


def _labels(arr: np.ndarray, key: str, n: int) -> np.ndarray:
    if arr.ndim != 1 or arr.shape[0] != n:
        raise DataError(f"{key} must be a 1-D array of {n} labels, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer):
        if not (np.issubdtype(arr.dtype, np.floating) and np.all(arr == np.round(arr))):
            raise DataError(f"{key} must hold integer class labels, got dtype {arr.dtype}")
    labels = arr.astype(np.int64)
    if labels.min() < 0:
        raise DataError(f"{key} has negative labels")
    return labels


def load_npz(path: str | Path, seed: int = 0, calib_size: int = 256) -> DataSplits:
    """A user's data: an .npz with x_train, y_train, x_val, y_val (x_test, y_test optional).

    Calibration images are a seeded random subset (``calib_size``) of the training images;
    without x_test/y_test the validation split doubles as test (the report says so via
    ``name``). Images may be N x H x W (gray), NCHW or NHWC; uint8 is scaled to [0, 1],
    float is used as given.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file not found: {path}")
    try:
        npz = np.load(path, allow_pickle=False)
    except Exception as exc:  # np.load raises several types for a corrupt / non-npz file
        raise DataError(f"cannot read {path} as .npz: {exc}") from exc
    with npz:
        missing = [k for k in REQUIRED_NPZ_KEYS if k not in npz.files]
        if missing:
            raise DataError(f"{path} is missing key(s) {missing}; found {sorted(npz.files)}")
        arrays = {k: np.asarray(npz[k]) for k in npz.files}
    has_test = "x_test" in arrays and "y_test" in arrays
    x_train = _images(arrays["x_train"], "x_train")
    y_train = _labels(arrays["y_train"], "y_train", len(x_train))
    x_val = _images(arrays["x_val"], "x_val")
    y_val = _labels(arrays["y_val"], "y_val", len(x_val))
    if has_test:
        x_test = _images(arrays["x_test"], "x_test")
        y_test = _labels(arrays["y_test"], "y_test", len(x_test))
    else:
        x_test, y_test = x_val, y_val
    for key, xs in (("x_val", x_val), ("x_test", x_test)):
        if xs.shape[1:] != x_train.shape[1:]:
            raise DataError(
                f"{key} images have shape {xs.shape[1:]} but x_train images have {x_train.shape[1:]}"
            )
    if calib_size < 1:
        raise DataError(f"calib_size must be >= 1, got {calib_size}")
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.permutation(len(x_train))[: min(calib_size, len(x_train))])
    num_classes = int(max(y_train.max(), y_val.max(), y_test.max())) + 1
    if num_classes < 2:
        raise DataError("labels must cover at least 2 classes")
    return DataSplits(
        x_train, y_train, x_val, y_val,
        x_train[idx], y_train[idx], x_test, y_test,
        num_classes=num_classes,
        name=f"npz:{path.name}" + ("" if has_test else " (test = val)"),
    )  # fmt: skip
