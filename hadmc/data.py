"""Data for compression: scikit-learn's digits as the built-in demo, or a user's .npz.

Everything is returned as float32 NCHW images and int64 labels in a :class:`DataSplits`,
with four disjoint, seeded, stratified splits: train (fit / fine-tune), validation (accuracy
of candidates during search), calibration (int8 activation ranges) and test (final report).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

# Bump when the digits splits or their augmentation change: it is part of the demo's weights
# cache key (hadmc.models.DemoConfig), so weights trained on other splits are never reused.
DIGITS_DATA_VERSION = 3
# Fractions / counts of the 1797 *source* images; every split is stratified by label.
DIGITS_TEST_FRACTION = 0.25
DIGITS_VAL_FRACTION = 0.15
DIGITS_CALIB_SIZE = 128
# Augmented copies per source image, on top of the original. Test: 450 sources x 5 = 2250
# images, enough to resolve about a 1-point accuracy difference. Validation has as many copies
# per source (270 x 5 = 1350), so that validation and test are drawn alike: with 2 copies
# (540 images) the chosen model's drop on validation missed its drop on test by 1.4-2.7 points
# in the 2026-12-01 bench (selecting the best of 20 on a small split overfits it). Every
# search candidate is evaluated on it: ~2-4 s per candidate on a 2-core VM, 10 % of its cost.
# Train: 949 x 2 = 1898.
DIGITS_TEST_COPIES = 4
DIGITS_VAL_COPIES = 4
DIGITS_TRAIN_COPIES = 1
# Augmentation ranges: shift up to 1 pixel of the 8x8 original (1/8 of the side at any
# size), rotation up to 10 degrees, isotropic scale 0.9-1.1. Small enough that every copy
# is still clearly the same digit.
DIGITS_MAX_SHIFT = 1.0 / 8.0
DIGITS_MAX_ROTATION_DEG = 10.0
DIGITS_SCALE_RANGE = (0.9, 1.1)
DIGITS_SPLITS = ("train", "val", "calib", "test")
REQUIRED_NPZ_KEYS = ("x_train", "y_train", "x_val", "y_val")


class DataError(ValueError):
    """Input data is missing a key or has the wrong shape / dtype; the message says which."""


@dataclass
class DataSplits:
    """Images float32 NCHW (digits: in [0, 1]), labels int64, for each split.

    ``*_sources`` (digits only, else None): for each image of that split, the index of the
    source image in ``sklearn.datasets.load_digits()`` it was made from (augmented copies
    share their original's index); no index is in two splits.
    """

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
    train_sources: np.ndarray | None = None
    val_sources: np.ndarray | None = None
    calib_sources: np.ndarray | None = None
    test_sources: np.ndarray | None = None
    # Image folders: relative paths of each split's images, and the class of each label.
    files: dict[str, list[str]] | None = None
    class_names: list[str] | None = None

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        c, h, w = self.x_train.shape[1:]
        return int(c), int(h), int(w)


def digits_source_split(seed: int = 0) -> dict[str, np.ndarray]:
    """Sorted indices into ``load_digits()`` of the source images of each split.

    Keys :data:`DIGITS_SPLITS`. Stratified by label: 25% test (450), 15% validation (270),
    ``DIGITS_CALIB_SIZE`` calibration (128), the rest (949) train. Disjoint and covering all
    1797 images; deterministic for a seed.
    """
    from sklearn.datasets import load_digits

    return _source_split(load_digits().target, seed)


def _source_split(y: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(y))
    rest, test = train_test_split(
        idx, test_size=DIGITS_TEST_FRACTION, stratify=y, random_state=seed
    )
    val_frac = DIGITS_VAL_FRACTION / (1.0 - DIGITS_TEST_FRACTION)
    rest, val = train_test_split(rest, test_size=val_frac, stratify=y[rest], random_state=seed + 1)
    train, calib = train_test_split(
        rest, test_size=DIGITS_CALIB_SIZE, stratify=y[rest], random_state=seed + 2
    )
    return {k: np.sort(v) for k, v in zip(DIGITS_SPLITS, (train, val, calib, test), strict=True)}


def random_affine(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One small random affine copy of each image of ``x`` (N x C x H x W float32).

    Per image: shift up to ``DIGITS_MAX_SHIFT`` of the side on each axis, rotation up to
    ``DIGITS_MAX_ROTATION_DEG``, scale in ``DIGITS_SCALE_RANGE``; bilinear resampling, zero
    (background) outside. Parameters are drawn in resolution-free units, so a seed gives the
    same transforms at every image size.
    """
    import torch
    import torch.nn.functional as F

    n = len(x)
    angle = np.deg2rad(rng.uniform(-DIGITS_MAX_ROTATION_DEG, DIGITS_MAX_ROTATION_DEG, n))
    scale = rng.uniform(*DIGITS_SCALE_RANGE, n)
    # affine_grid's coordinates span [-1, 1] over the side, so a shift of f * side is 2f.
    shift = rng.uniform(-2 * DIGITS_MAX_SHIFT, 2 * DIGITS_MAX_SHIFT, (n, 2))
    # theta maps output to input coordinates: the inverse of "scale up by s, rotate".
    cos, sin = np.cos(angle) / scale, np.sin(angle) / scale
    theta = np.stack(
        [np.stack([cos, -sin, shift[:, 0]], 1), np.stack([sin, cos, shift[:, 1]], 1)], 1
    )
    with torch.no_grad():
        t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        grid = F.affine_grid(
            torch.from_numpy(theta.astype(np.float32)), list(t.shape), align_corners=False
        )
        out = F.grid_sample(t, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return np.ascontiguousarray(out.clamp_(0.0, 1.0).numpy())


def _expand(
    x_all: np.ndarray, y_all: np.ndarray, sources: np.ndarray, copies: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The originals of ``sources`` plus ``copies`` augmented copies of each, shuffled.

    Shuffled so that any prefix (x_val[:256], x_train[:k] for BN recalibration) mixes
    classes, originals and copies."""
    xs = [x_all[sources]] + [random_affine(x_all[sources], rng) for _ in range(copies)]
    src = np.tile(sources, copies + 1)
    order = rng.permutation(len(src))
    x = np.ascontiguousarray(np.concatenate(xs)[order])
    return x, y_all[src[order]], src[order]


def load_digits_splits(image_size: int = 32, seed: int = 0) -> DataSplits:
    """scikit-learn's 8x8 digits (1797 images), bilinearly upsampled, split and augmented.

    32x32 by default: a size at which a MobileNet-style net has real work to do (the 8x8
    originals make any CNN trivially fast, so compression would have nothing to show).
    Pixel values 0..16 are scaled to [0, 1].

    Split rule: the 1797 *source* images are split first (:func:`digits_source_split`,
    stratified by label) into 450 test, 270 validation, 128 calibration and 949 train
    sources; only then is each split augmented with :func:`random_affine` copies of its
    own sources. So no test image is, or is a transform of, an image of another split.
    Sizes: test 450 x (original + 4 copies) = 2250, validation 270 x 5 = 1350, calibration
    128 originals, train 949 x 2 = 1898. 2250 test images give a 95% interval of about
    +-0.7 points at 97% accuracy (the 5 images of one source are correlated, so the honest
    interval is somewhat wider). Deterministic for a seed: the split, the transforms and the
    shuffled order. Each image's source index is in ``DataSplits.*_sources``.
    """
    import torch
    import torch.nn.functional as F
    from sklearn.datasets import load_digits

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
    sources = _source_split(y, seed)
    copies = {"train": DIGITS_TRAIN_COPIES, "val": DIGITS_VAL_COPIES, "calib": 0,
              "test": DIGITS_TEST_COPIES}  # fmt: skip
    split: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    for i, name in enumerate(DIGITS_SPLITS):
        # One generator per split, so changing one split's copies leaves the others as they are.
        rng = np.random.default_rng([seed, DIGITS_DATA_VERSION, i])
        split[name] = _expand(x, y, sources[name], copies[name], rng)
    (xtr, ytr, s_tr), (xv, yv, s_v), (xc, yc, s_c), (xte, yte, s_te) = (
        split[k] for k in DIGITS_SPLITS
    )
    return DataSplits(
        xtr, ytr, xv, yv, xc, yc, xte, yte,
        num_classes=10,
        name=f"digits{image_size}",
        train_sources=s_tr, val_sources=s_v, calib_sources=s_c, test_sources=s_te,
    )  # fmt: skip


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


NPZ_HOW_TO_SAVE = "save arrays with numpy.savez"
ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # an .npz is a zip archive (empty: end record only)


def _check_npz_magic(path: Path) -> None:
    """Refuse, in one line, a file that is not a zip archive: numpy would try to unpickle it and
    say so (``allow_pickle``), which is the wrong advice for a CSV renamed .npz."""
    with path.open("rb") as f:
        head = f.read(512)
    if head.startswith(ZIP_MAGIC):
        return
    if head.startswith(b"\x93NUMPY"):
        kind = "it is a single .npy array"
    elif head.startswith(b"\x80"):
        kind = "it looks like a Python pickle"
    elif not head:
        kind = "it is empty"
    else:
        try:
            head.decode("utf-8")
            kind = "it looks like text" if b"\x00" not in head else "it looks like binary data"
        except UnicodeDecodeError as exc:
            # A multi-byte character cut at the 512th byte is still text.
            text = exc.start >= len(head) - 3 and b"\x00" not in head
            kind = "it looks like text" if text else "it looks like binary data"
    raise DataError(f"{path} is not an .npz archive ({kind}); {NPZ_HOW_TO_SAVE}")


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
    _check_npz_magic(path)
    try:
        npz = np.load(path, allow_pickle=False)
    except Exception as exc:  # np.load raises several types for a corrupt / non-npz file
        # Never numpy's own text: for a non-archive it suggests unpickling (allow_pickle=True).
        raise DataError(
            f"{path} is not a readable .npz archive ({type(exc).__name__}); "
            f"{NPZ_HOW_TO_SAVE}"
        ) from exc
    with npz:
        missing = [k for k in REQUIRED_NPZ_KEYS if k not in npz.files]
        if missing:
            raise DataError(f"{path} is missing key(s) {missing}; found {sorted(npz.files)}")
        arrays = {}
        for k in npz.files:
            try:
                arrays[k] = np.asarray(npz[k])
            except ValueError:  # an object array: loading it would unpickle
                raise DataError(
                    f"{path}: {k} holds Python objects, not numbers; {NPZ_HOW_TO_SAVE} "
                    "from numeric arrays"
                ) from None
    return splits_from_arrays(arrays, f"npz:{path.name}", seed=seed, calib_size=calib_size)


def splits_from_arrays(
    arrays: dict[str, np.ndarray], name: str, *, seed: int = 0, calib_size: int = 256
) -> DataSplits:
    """``DataSplits`` from x_train, y_train, x_val, y_val (x_test, y_test optional) arrays, as
    an .npz holds them (see ``load_npz``); shared by the folder and factory loaders."""
    missing = [k for k in REQUIRED_NPZ_KEYS if k not in arrays]
    if missing:
        raise DataError(f"{name} is missing {missing}; found {sorted(arrays)}")
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
        name=name + ("" if has_test else " (test = val)"),
    )  # fmt: skip
