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
def wide():  # enough MACs that pruning shows in a simulated latency (make's does not)
    return torch.nn.Sequential(torch.nn.Conv2d(1, 64, 3), torch.nn.ReLU(),
                               torch.nn.Conv2d(64, 64, 3), torch.nn.ReLU(),
                               torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                               torch.nn.Linear(64, 10))
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


# -- the rows through the command line (host.cli.main, in process) -------------------
# Every failing row: the documented exit code, the sentence on stderr, no traceback, and
# no run directory left behind by a validation failure.
SIM = ["--device", "sim:raspberry-pi-4"]
TINY = ["--episodes", "1", "--episodes-per-update", "1", "--finetune-steps", "0",
        "--strategy", "grid", "--host-threads", "1"]  # fmt: skip


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    from host.cli import main

    code = main(list(argv))
    out, err = capsys.readouterr()
    assert not any(line.startswith("Traceback") for line in err.splitlines()), err
    return code, out, err


def test_a_csv_renamed_npz_is_one_line_and_never_a_hint_to_unpickle(
    files: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (files / "data.npz").write_text("x,y\n0.1,3\n0.2,4\n")
    code, out, err = _cli(capsys, "search", "--model", "mynets:make", "--data", "data.npz",
                          *SIM, "--out", "r")  # fmt: skip
    assert code == 2
    assert "data.npz is not an .npz archive (it looks like text); save arrays with numpy.savez" in err
    assert "pickle" not in err.lower()
    assert not (files / "r").exists()  # a validation failure leaves no run directory


def test_validation_failures_leave_no_run_directory(
    files: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for data, sentence in (("labels.npz", "labels run from 0 to 42"),
                           ("rgb.npz", "the data has 3 channels")):  # fmt: skip
        code, _, err = _cli(capsys, "search", "--model", "mynets:make", "--data", data, *SIM,
                            "--out", "r")  # fmt: skip
        assert code == 2 and sentence in err and not (files / "r").exists()
    (files / "mine").mkdir()
    (files / "mine" / "notes.txt").write_text("mine")  # an --out that already held a file
    code, _, err = _cli(capsys, "search", "--model", "mynets:boom", "--data", "ok.npz", *SIM,
                        "--out", "mine")  # fmt: skip
    assert code == 2 and "raised RuntimeError" in err
    assert sorted(p.name for p in (files / "mine").iterdir()) == ["notes.txt"]


def test_search_json_answers_a_usage_error_in_json(
    files: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _cli(capsys, "search", "--device", "nonsense", "--json")
    assert code == 2 and "bad_address: bad device address 'nonsense'" in err
    answer = json.loads(out)
    assert answer["ok"] is False and answer["error_code"] == "bad_address"
    assert answer["error"].startswith("bad device address 'nonsense'")


def test_a_simulated_search_with_no_member_in_the_limits(
    files: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Exit 3 with the limit and the closest candidate; 'simulated' in the progress lines and
    the JSON; the untrained factory's near-chance baseline is warned about; yes/no cells."""
    import torch

    torch.manual_seed(0)  # the factory's random init: a baseline near chance, every time
    code, out, err = _cli(capsys, "search", "--model", "mynets:make", "--data", "ok.npz", *SIM,
                          *TINY, "--max-latency-ms", "0.001", "--out", "r", "--json")  # fmt: skip
    assert code == 3
    assert "no front member meets the limits (max accuracy drop 1 points, max latency 0.001 ms);" \
        " closest: candidate 1, 0.0" in err  # fmt: skip
    assert "1/1 grid" in err and "[simulated]" in err
    assert "near chance (10.0 % for 10 classes): --model must return the trained model" in err
    summary = json.loads(out)
    assert summary["simulated"] is True and summary["ok"] is False
    assert summary["error_code"] == "none_within_limits"
    table = err[err.index("Pareto front (1 simulated"):]
    assert " no " in table and "True" not in table and "False" not in table
    assert "peak mem MiB" in table


def test_best_by_reward_without_limits_then_resume_with_overrides(
    files: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _cli(capsys, "search", "--model", "mynets:wide", "--data", "ok.npz", *SIM,
                          *TINY, "--max-accuracy-drop", "none", "--out", "r")  # fmt: skip
    assert code == 0 and "best by reward (no limits): r/best.onnx" in out
    assert "best under limits" not in out and " yes " in out
    code, out, err = _cli(capsys, "search", "--resume", "r", "--episodes", "2",
                          "--device", "sim:raspberry-pi-5")  # fmt: skip
    assert code == 0 and "resuming: 1 candidates restored from r" in err
    saved = json.loads((files / "r" / "run_config.json").read_text())
    assert saved["device"] == "sim:raspberry-pi-5" and saved["episodes"] == 2
    code, out, err = _cli(capsys, "search", "--resume", "r", "--device", "nonsense")
    assert code == 2 and "bad_address" in err
    assert json.loads((files / "r" / "run_config.json").read_text())["device"] == saved["device"]


def test_ctrl_c_says_how_to_resume(files: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def interrupt(record: object) -> None:
        raise KeyboardInterrupt

    args = _args("--model", "mynets:make", "--data", "ok.npz", *SIM, *TINY, "--out", "r")
    assert run_search(args, {"quiet": True, "on_measured": interrupt}) == 130
    err = capsys.readouterr().err
    assert "hadmc-host: interrupted; resume with: hadmc-host search --resume r" in err
    assert (files / "r" / "run_config.json").is_file()  # kept: the run can be resumed


def test_weights_pair_a_factory_with_a_state_dict(files: Path) -> None:
    import torch

    from host.user_model import load_weights, near_chance

    trained = load_user_model("mynets:make")
    torch.save(trained.state_dict(), files / "w.pt")
    fresh = load_weights(load_user_model("mynets:make"), str(files / "w.pt"), "mynets:make")
    pairs = zip(fresh.state_dict().values(), trained.state_dict().values(), strict=True)
    assert all(torch.equal(a, b) for a, b in pairs)
    torch.save({"other.weight": torch.zeros(1)}, files / "bad.pt")
    with pytest.raises(UserModelError, match="does not fit --model mynets:make") as exc:
        load_weights(load_user_model("mynets:make"), str(files / "bad.pt"), "mynets:make")
    assert "\n" not in str(exc.value)
    assert near_chance(0.1, 1000, 10) and near_chance(0.15, 40, 10)
    assert not near_chance(0.9, 1000, 10) and not near_chance(0.6, 400, 2)


def test_help_says_the_factory_returns_the_trained_model() -> None:
    parser = argparse.ArgumentParser()
    add_search_arguments(parser)
    text = " ".join(parser.format_help().split())
    assert "returning the *trained* model (or pair it with --weights)" in text


def test_a_model_no_faster_than_the_baseline_is_not_chosen(
    files: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The grid's mildest candidate (keep 0.9) keeps all 8 channels of ``make``'s tiny net:
    within every limit, but no faster than fp32, so nothing is chosen (exit 3, one line)."""
    code, out, err = _cli(capsys, "search", "--model", "mynets:make", "--data", "ok.npz", *SIM,
                          *TINY, "--max-accuracy-drop", "none", "--out", "r")  # fmt: skip
    assert code == 3 and "best by reward" not in out and " yes " in out
    assert "no front member within the limits is faster than the fp32 baseline" in err
    assert not (files / "r" / "best.onnx").exists()


def test_no_model_says_when_the_only_models_within_the_limits_are_slower() -> None:
    """Every front member is within the 1-point limit but slower than fp32 (best_under chooses
    none): the line says so and names the fastest of them, not 'no front member meets'."""
    from types import SimpleNamespace

    from hadmc.search.reward import Limits, Objectives
    from host.search_outputs import _no_model

    base = Objectives(0.95, 2.0, 10.0, None, 40_000, 0)
    run = SimpleNamespace(limits=Limits(max_accuracy_drop=1.0), baseline=base)
    row = {"accuracy": 0.95, "memory_mib": 8.0, "energy_mj": None, "size_bytes": 20_000,
           "update_bytes": 0}  # fmt: skip
    front = [{**row, "id": 4, "latency_ms": 2.4}, {**row, "id": 7, "latency_ms": 2.1},
             {**row, "id": 9, "accuracy": 0.90, "latency_ms": 1.0}]  # fmt: skip
    line = _no_model(run, {"front": front})
    assert line.startswith("no front member within the limits is faster than the fp32 baseline")
    assert "(2.000 ms); the closest is candidate 7 at 2.100 ms: keep the original model" in line
    # One within the limits and faster: that is not this case (best_under would choose it).
    assert _no_model(run, {"front": front[2:]}).startswith("no front member meets the limits")
