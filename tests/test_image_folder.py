"""Data as users have it: image folders (read with Pillow) and a data factory, with one-line
errors for the usual mistakes, and the split of a one-tree folder saved with the run."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hadmc.data import DataError
from hadmc.image_folder import load_data_factory, load_image_folder


def _tree(root: Path, classes=("cat", "dog", "eel"), n=20, size=(8, 8), mode="L") -> Path:
    rng = np.random.default_rng(0)
    for ci, c in enumerate(classes):
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            shape = (size[1], size[0]) if mode == "L" else (size[1], size[0], 3)
            # Each class has its own brightness, so labels are checkable from pixels.
            arr = np.clip(40 * ci + rng.integers(0, 30, shape), 0, 255).astype(np.uint8)
            Image.fromarray(arr, mode=mode).save(root / c / f"{i:03d}.png")
    return root


def test_one_tree_is_split_seeded_stratified_and_recorded(tmp_path: Path) -> None:
    d = load_image_folder(_tree(tmp_path / "imgs"), seed=3)
    assert d.class_names == ["cat", "dog", "eel"] and d.num_classes == 3
    assert d.x_train.shape[1:] == (1, 8, 8) and d.x_train.dtype == np.float32
    assert 0.0 <= d.x_train.min() and d.x_train.max() <= 1.0
    # 20 per class: 3 val, 3 test, 14 train (15 % / 15 % rounded), in every class.
    assert (len(d.y_train), len(d.y_val), len(d.y_test)) == (42, 9, 9)
    assert all(np.bincount(y, minlength=3).tolist() == [k] * 3
               for y, k in ((d.y_train, 14), (d.y_val, 3), (d.y_test, 3)))  # fmt: skip
    files = d.files
    assert set(files) == {"train", "val", "test"}
    every = [f for split in files.values() for f in split]
    assert len(every) == len(set(every)) == 60  # no image in two splits
    # label = sorted class index; class 2's images are the brightest
    assert all(f.startswith(d.class_names[int(y)] + "/") for f, y in zip(files["val"], d.y_val, strict=True))
    assert d.x_val[d.y_val == 2].mean() > d.x_val[d.y_val == 0].mean() + 0.2
    again = load_image_folder(tmp_path / "imgs", seed=3)
    assert again.files == files and np.array_equal(again.x_test, d.x_test)
    assert load_image_folder(tmp_path / "imgs", seed=4).files != files


def test_given_train_val_folders_are_used_as_they_are(tmp_path: Path) -> None:
    _tree(tmp_path / "ds" / "train", n=6)
    _tree(tmp_path / "ds" / "val", n=2)
    d = load_image_folder(tmp_path / "ds")
    assert (len(d.y_train), len(d.y_val)) == (18, 6)
    assert "test = val" in d.name and np.array_equal(d.x_test, d.x_val)


def test_colour_size_and_normalisation(tmp_path: Path) -> None:
    root = _tree(tmp_path / "mix", classes=("a",), n=10)
    _tree(root, classes=("b",), n=10, mode="RGB")
    d = load_image_folder(root, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    assert d.x_train.shape[1] == 3  # any colour image: all RGB
    assert d.x_train.min() >= -2.0 - 1e-6 and d.x_train.max() <= 2.0 + 1e-6
    raw = load_image_folder(root)
    assert np.allclose(d.x_train, (raw.x_train - 0.5) / 0.25, atol=1e-6)
    big = load_image_folder(root, image_size=16)
    assert big.x_train.shape[2:] == (16, 16)


@pytest.mark.parametrize(
    ("make", "kwargs", "sentence"),
    [
        (lambda r: (_tree(r), (r / "empty").mkdir()), {}, "class folder"),
        (lambda r: (_tree(r), (r / "cat" / "bad.png").write_bytes(b"not a png")), {},
         "cannot read image"),
        (lambda r: (_tree(r, classes=("a",)), _tree(r, classes=("b",), size=(9, 8))), {},
         "--image-size N"),
        (lambda r: _tree(r, classes=("only",)), {}, "at least 2"),
        (lambda r: _tree(r), {"mean": (0.1, 0.2)}, "--mean has 2 values"),
        (lambda r: _tree(r, n=1), {}, "too few to split"),
    ],
)
def test_mistakes_are_one_line(tmp_path: Path, make, kwargs, sentence: str) -> None:
    root = tmp_path / "bad"
    root.mkdir()
    make(root)
    with pytest.raises(DataError) as exc:
        load_image_folder(root, **kwargs)
    assert sentence in str(exc.value) and "\n" not in str(exc.value)


FACTORY = '''
import numpy as np
rng = np.random.default_rng(0)
def arrays():
    x = rng.random((30, 1, 6, 6), dtype=np.float32)
    return {"x_train": x, "y_train": np.arange(30) % 3, "x_val": x[:9], "y_val": np.arange(9) % 3}
def batches():
    def gen(n):
        for i in range(n):
            yield rng.random((4, 1, 6, 6), dtype=np.float32), np.arange(4) % 2
    return {"x_train": gen(5), "x_val": gen(2), "x_test": list(gen(2))}
def boom():
    raise OSError("bucket unreachable")
'''


def test_data_factory_arrays_batches_and_errors(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "mydata.py").write_text(FACTORY)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("mydata", None)
    a = load_data_factory("mydata:arrays")
    assert (len(a.y_train), len(a.y_val), a.num_classes) == (30, 9, 3)
    b = load_data_factory("mydata:batches")
    assert (len(b.y_train), len(b.y_val), len(b.y_test)) == (20, 8, 8)
    with pytest.raises(DataError, match="--data mydata:boom raised OSError: bucket unreachable"):
        load_data_factory("mydata:boom")
    with pytest.raises(DataError, match="cannot load it"):
        load_data_factory("mydata:nothing")


NET = '''
import torch
def make():
    return torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3), torch.nn.ReLU(),
                               torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                               torch.nn.Linear(8, 3))
'''


def test_search_on_an_image_folder_saves_its_split(tmp_path: Path, monkeypatch) -> None:
    import argparse

    from host.search import add_search_arguments, run_search

    (tmp_path / "fnet.py").write_text(NET)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("HADMC_CACHE_DIR", str(tmp_path / "cache"))
    _tree(tmp_path / "imgs", n=12, size=(10, 10))
    parser = argparse.ArgumentParser()
    add_search_arguments(parser)
    args = parser.parse_args([
        "--model", "fnet:make", "--data", "imgs", "--device", "sim:raspberry-pi-4",
        "--out", "run", "--episodes", "1", "--finetune-steps", "1", "--strategy", "grid",
        "--max-accuracy-drop", "none",
    ])  # fmt: skip
    code = run_search(args, {"quiet": True})
    assert code in (0, 3)
    saved = json.loads((tmp_path / "run" / "data_splits.json").read_text())
    assert saved["classes"] == ["cat", "dog", "eel"]
    assert sum(len(v) for v in saved["files"].values()) == 36
    # the folder flags are refused for non-folder data, in one line
    args = parser.parse_args(["--model", "fnet:make", "--data", "x.npz", "--image-size", "8",
                              "--device", "sim:raspberry-pi-4", "--out", "run2"])  # fmt: skip
    assert run_search(args, {"quiet": True}) == 2
    assert not (tmp_path / "run2").exists()
