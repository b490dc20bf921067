"""Data as users have it: an image-folder tree (``--data DIR``) or a Python factory
(``--data pkg.module:factory``), turned into the same ``DataSplits`` as the demo and .npz.

Folder layout (torchvision's ImageFolder convention, read with Pillow, no torchvision):

    DIR/<class>/<image>                    one tree: split here, seeded and stratified
    DIR/train/<class>/..., DIR/val/<class>/... [, DIR/test/<class>/...]   splits as given

Classes are the sorted subfolder names (label = index). Images are decoded once into memory:
the search evaluates every candidate on the whole validation split, so streaming from disk
would cost more than it saves at the sizes a search can afford. Gray images stay 1-channel;
if any image has colour, all are converted to RGB. Pixels scale to [0, 1], then ``(x - mean)
/ std`` per channel when given. Without ``image_size`` every image must have the same size.

The split made for a one-tree folder is recorded (``DataSplits.files``: relative paths per
split), and the search writes it to the run directory, so a run can be reproduced and the
test images audited.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hadmc.data import DataError, DataSplits, splits_from_arrays

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
# One-tree folders: shares of each class's images (stratified), the rest trains.
FOLDER_VAL_FRACTION = 0.15
FOLDER_TEST_FRACTION = 0.15
SPLIT_DIRS = ("train", "val", "test")


def _class_tree(root: Path) -> dict[str, list[Path]]:
    """{class name: sorted image paths}; every class folder must hold at least one image."""
    classes = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataError(f"{root} has no class subfolders (expected {root}/<class>/<image>)")
    tree = {}
    for c in classes:
        files = sorted(
            p for p in c.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
        )
        if not files:
            raise DataError(
                f"class folder {c} has no images ({', '.join(IMAGE_SUFFIXES[:4])}, ...); "
                "remove it or add images"
            )
        tree[c.name] = files
    return tree


def _decode(paths: Sequence[Path], image_size: int | None) -> tuple[list[np.ndarray], bool]:
    """Decode with Pillow: (HxWxC uint8 arrays, any colour image)."""
    from PIL import Image, UnidentifiedImageError

    out, colour, first = [], False, None
    for p in paths:
        try:
            with Image.open(p) as im:
                im.load()
                mode = "L" if im.mode in ("1", "L", "I;16", "I", "F") else "RGB"
                im = im.convert(mode)
                if image_size is not None:
                    im = im.resize((image_size, image_size), Image.BILINEAR)
                elif first is None:
                    first = (p, im.size)
                elif im.size != first[1]:
                    raise DataError(
                        f"images have different sizes ({first[0].name}: {first[1][0]}x"
                        f"{first[1][1]}, {p.name}: {im.size[0]}x{im.size[1]}); pass "
                        "--image-size N to resize them all to N x N"
                    )
                arr = np.asarray(im, dtype=np.uint8)
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            if isinstance(exc, DataError):
                raise
            raise DataError(
                f"cannot read image {p} ({type(exc).__name__}: {str(exc)[:120]}); "
                "delete or re-save it"
            ) from None
        colour = colour or arr.ndim == 3
        out.append(arr)
    return out, colour


def _to_nchw(
    arrays: list[np.ndarray], colour: bool, mean: Sequence[float] | None,
    std: Sequence[float] | None,
) -> np.ndarray:  # fmt: skip
    chans = 3 if colour else 1
    x = np.stack(
        [np.repeat(a[..., None], 3, axis=2) if colour and a.ndim == 2 else a.reshape(*a.shape[:2], -1)
         for a in arrays]
    ).astype(np.float32) / 255.0  # fmt: skip
    x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    for name, v in (("mean", mean), ("std", std)):
        if v is not None and len(v) not in (1, chans):
            raise DataError(f"--{name} has {len(v)} values; the images have {chans} channel(s)")
    if mean is not None:
        x -= np.asarray(mean, dtype=np.float32).reshape(1, -1, 1, 1)
    if std is not None:
        s = np.asarray(std, dtype=np.float32).reshape(1, -1, 1, 1)
        if np.any(s <= 0):
            raise DataError("--std values must be > 0")
        x /= s
    return x


def _stratified(labels: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """Seeded per-class split of indices into train / val / test: every class in every split
    (at least one image each), so accuracy on each split covers every class."""
    rng = np.random.default_rng(seed)
    parts: dict[str, list[int]] = {k: [] for k in SPLIT_DIRS}
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        if len(idx) < 3:
            raise DataError(
                f"class {int(c)} has {len(idx)} image(s): too few to split into train, val "
                "and test (at least 3); add images or give DIR/train and DIR/val folders"
            )
        n_val = max(1, int(round(FOLDER_VAL_FRACTION * len(idx))))
        n_test = max(1, int(round(FOLDER_TEST_FRACTION * len(idx))))
        parts["val"] += idx[:n_val].tolist()
        parts["test"] += idx[n_val : n_val + n_test].tolist()
        parts["train"] += idx[n_val + n_test :].tolist()
    return {k: np.asarray(sorted(v), dtype=np.int64) for k, v in parts.items()}


def load_image_folder(
    root: str | Path,
    *,
    image_size: int | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    seed: int = 0,
    calib_size: int = 256,
) -> DataSplits:
    """An image-folder tree as ``DataSplits`` (see the module docstring)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"data folder not found: {root}")
    if image_size is not None and not 4 <= int(image_size) <= 1024:
        raise DataError(f"--image-size must be in [4, 1024], got {image_size}")
    given = [d for d in SPLIT_DIRS if (root / d).is_dir()]
    if given and not {"train", "val"} <= set(given):
        raise DataError(f"{root} has {'/'.join(given)}/ but needs both train/ and val/ folders")
    if given:
        trees = {d: _class_tree(root / d) for d in given}
        classes = sorted(trees["train"])
        for d, t in trees.items():
            extra = sorted(set(t) - set(classes))
            if extra:
                raise DataError(f"{root / d} has classes {extra} that train/ does not have")
        paths = {d: [p for c in classes for p in t.get(c, [])] for d, t in trees.items()}
        labels = {
            d: np.asarray([i for i, c in enumerate(classes) for _ in t.get(c, [])], dtype=np.int64)
            for d, t in trees.items()
        }
    else:
        tree = _class_tree(root)
        classes = sorted(tree)
        flat = [p for c in classes for p in tree[c]]
        y = np.asarray([i for i, c in enumerate(classes) for _ in tree[c]], dtype=np.int64)
        split = _stratified(y, seed)
        paths = {d: [flat[i] for i in split[d]] for d in SPLIT_DIRS}
        labels = {d: y[split[d]] for d in SPLIT_DIRS}
    if len(classes) < 2:
        raise DataError(f"{root} has one class ({classes[0]}); a classifier needs at least 2")
    decoded = {d: _decode(paths[d], image_size) for d in paths}
    colour = any(c for _, c in decoded.values())
    shapes = {d: arrs[0].shape[:2] for d, (arrs, _) in decoded.items() if arrs}
    if image_size is None and len(set(shapes.values())) > 1:
        raise DataError(
            f"splits have different image sizes {shapes}; pass --image-size N to resize them"
        )
    arrays = {}
    for d, (arrs, _) in decoded.items():
        if arrs:
            arrays[f"x_{d}"] = _to_nchw(arrs, colour, mean, std)
            arrays[f"y_{d}"] = labels[d]
    files = {d: [str(p.relative_to(root)) for p in paths[d]] for d in paths}
    data = splits_from_arrays(arrays, f"folder:{root.name}", seed=seed, calib_size=calib_size)
    data.files = files
    data.class_names = classes
    return data


def load_data_factory(spec: str, *, seed: int = 0, calib_size: int = 256) -> DataSplits:
    """``pkg.module:factory``: a zero-argument callable that returns ``DataSplits``, or a dict
    with x_train, y_train, x_val, y_val (x_test, y_test optional) whose values are arrays or
    iterables of (x, y) batches (concatenated here)."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise DataError(f"--data {spec}: expected pkg.module:factory")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise DataError(f"--data {spec}: cannot load it ({type(exc).__name__}: {exc})") from None
    try:
        out: Any = factory()
    except Exception as exc:  # the user's code: say whose error it is, in one line
        raise DataError(f"--data {spec} raised {type(exc).__name__}: {str(exc)[:200]}") from None
    if isinstance(out, DataSplits):
        return out
    if not isinstance(out, dict):
        raise DataError(
            f"--data {spec} returned {type(out).__name__}; return DataSplits or a dict with "
            "x_train, y_train, x_val, y_val"
        )
    arrays = dict(out)
    for split in SPLIT_DIRS:
        key = f"x_{split}"
        if key in arrays and f"y_{split}" not in arrays and not isinstance(arrays[key], np.ndarray):
            batches = list(arrays.pop(key))  # an iterable of (x, y) batches
            if not batches or not all(len(b) == 2 for b in batches):
                raise DataError(f"--data {spec}: {key} must be an array or (x, y) batches")
            arrays[key] = np.concatenate([np.asarray(b[0]) for b in batches])
            arrays[f"y_{split}"] = np.concatenate([np.asarray(b[1]) for b in batches])
    return splits_from_arrays(
        {k: np.asarray(v) for k, v in arrays.items()}, f"factory:{spec}", seed=seed,
        calib_size=calib_size,
    )  # fmt: skip
