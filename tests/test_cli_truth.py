"""The terminal tells the truth: one clear line (no traceback) and the documented exit code for
the common mistakes with a user's model, data and --resume."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from host.search import EXIT_USAGE, _drop_points, add_search_arguments, run_search
from host.user_model import UserModelError, load_model_and_data, load_user_model

NET = '''
import torch
def make():
    return torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3), torch.nn.ReLU(),
                               torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                               torch.nn.Linear(8, 10))
def boom():
    raise RuntimeError("no weights here")
'''


@pytest.fixture
def files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "mynets.py").write_text(NET)
    (tmp_path / "broken.py").write_text("def make(:\n")
    rng = np.random.default_rng(0)
    x = rng.random((40, 1, 12, 12), dtype=np.float32)
    y = rng.integers(0, 10, 40)
    np.savez(tmp_path / "ok.npz", x_train=x, y_train=y, x_val=x, y_val=y)
    np.savez(tmp_path / "labels.npz", x_train=x, y_train=np.full(40, 42), x_val=x, y_val=y)
    x3 = np.repeat(x, 3, axis=1)
    np.savez(tmp_path / "rgb.npz", x_train=x3, y_train=y, x_val=x3, y_val=y)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_module_in_the_working_directory_and_file_paths_import(files: Path) -> None:
    assert load_user_model("mynets:make")[0].out_channels == 8  # cwd importable, as python -m
    assert load_user_model(str(files / "mynets.py") + ":make")[-1].out_features == 10


@pytest.mark.parametrize(
    ("spec", "sentence"),
    [
        ("mynets:boom", "--model mynets:boom raised RuntimeError: no weights here"),
        ("broken:make", "importing broken raised SyntaxError"),
        ("nosuchmod:make", "PYTHONPATH"),
        ("missing.py:make", "file not found"),
    ],
)
def test_user_code_failures_are_one_line(files: Path, spec: str, sentence: str) -> None:
    with pytest.raises(UserModelError) as exc:
        load_user_model(spec)
    assert sentence in str(exc.value) and "\n" not in str(exc.value)


@pytest.mark.parametrize(
    ("data", "sentence"),
    [
        ("labels.npz", "labels run from 0 to 42 but the model has 10 outputs"),
        ("rgb.npz", "the data has 3 channels but the model's first layer takes 1"),
    ],
)
def test_data_that_cannot_fit_the_model_is_refused_at_setup(
    files: Path, data: str, sentence: str
) -> None:
    with pytest.raises(UserModelError, match=sentence):
        load_model_and_data("mynets:make", data)


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_search_arguments(parser)
    return parser.parse_args(list(argv))


def test_labels_out_of_range_exit_2_with_one_line(
    files: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = run_search(_args("--model", "mynets:make", "--data", "labels.npz",
                            "--device", "sim:raspberry-pi-4", "--out", "r"), {"quiet": True})
    err = capsys.readouterr().err.strip()
    assert code == EXIT_USAGE
    assert len(err.splitlines()) == 1 and "labels run from 0 to 42" in err
    assert "Traceback" not in err


def test_max_accuracy_drop_defaults_to_one_point_and_none_lifts_it() -> None:
    assert _args().max_accuracy_drop == 1.0
    assert _args("--max-accuracy-drop", "none").max_accuracy_drop is None
    assert _drop_points("2.5") == 2.5
    with pytest.raises(argparse.ArgumentTypeError):
        _drop_points("lots")


def test_resume_refuses_flags_that_shape_candidates(
    files: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = files / "old"
    run_dir.mkdir()
    saved = {k: v for k, v in vars(_args()).items()}
    (run_dir / "run_config.json").write_text(json.dumps(saved))
    code = run_search(_args("--resume", str(run_dir), "--finetune-steps", "7"), {"quiet": True})
    err = capsys.readouterr().err.strip()
    assert code == EXIT_USAGE and "--finetune-steps cannot change on resume" in err
    assert len(err.splitlines()) == 1


def test_a_runtime_the_device_lacks_is_refused_before_the_model_loads() -> None:
    from host.search import _runtime_missing

    info = {"address": "pi:50051", "runtimes": [
        {"runtime": "onnxruntime", "available": True},
        {"runtime": "litert", "available": False, "unavailable_reason": "ai-edge-litert missing"},
    ]}  # fmt: skip
    assert _runtime_missing(info, "onnxruntime") == ""
    assert "cannot run --runtime litert: ai-edge-litert missing" in _runtime_missing(info, "litert")
    sim = {"profile": {"runtimes": ["onnxruntime"]}}
    assert "it runs: onnxruntime" in _runtime_missing(sim, "litert")
    assert _runtime_missing({}, "litert") == ""
