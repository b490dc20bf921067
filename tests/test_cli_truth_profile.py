"""The terminal tells the truth, for ``profile`` and ``devices`` and what every command shares:
stable error codes (never a Python class name), JSON for every outcome under --json, '-' where a
simulated row has nothing timed, one exit-code table, one name per flag, the same words in
every table."""

from __future__ import annotations

import argparse
import json
import logging
import re
import warnings
from pathlib import Path

import numpy as np
import pytest

from host.cli import EPILOG, main
from host.errors import ERROR_CODES, EXIT_CODES_TEXT

ROOT = Path(__file__).resolve().parents[1]
SIM = ["--device", "sim:raspberry-pi-4"]


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert not any(line.startswith("Traceback") for line in err.splitlines()), err
    return code, out, err


def _net() -> object:
    import torch

    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Conv2d(4, 4, 3), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 10),
    ).eval()  # fmt: skip


@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    path = tmp_path_factory.mktemp("profile") / "x.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(_net(), (torch.zeros(1, 1, 10, 10),), str(path), dynamo=False)
    return path


def test_onnx_for_litert_is_a_usage_error_before_any_upload(
    onnx_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # No --device: a local agent would be started if the check came after opening devices.
    code, out, err = _cli(capsys, "profile", str(onnx_file), "--runtime", "litert")
    assert code == 2
    assert "--runtime litert does not run ONNX models: x.onnx needs --runtime onnxruntime" in err
    assert out == ""


@pytest.mark.parametrize(
    ("argv", "code", "error_code", "sentence"),
    [
        (["--runtime", "litert"], 2, "bad_input", "--runtime litert does not run ONNX models"),
        (["--num-runs", "0"], 2, "bad_input", "need --num-threads >= 1, --num-runs >= 1"),
        (["--input-shape", "1,a"], 2, "bad_input", "expected integers like 1,1,32,32"),
        (["--num-runs", "many"], 2, "bad_input", "argument --num-runs: invalid int value"),
    ],
)
def test_profile_json_answers_local_errors_in_json(
    onnx_file: Path,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    code: int,
    error_code: str,
    sentence: str,
) -> None:
    try:
        got, out, err = _cli(capsys, "profile", str(onnx_file), *SIM, "--json", *argv)
    except SystemExit as exc:  # argparse's own errors
        got = int(exc.code or 0)
        out, err = capsys.readouterr()
    answer = json.loads(out)  # stdout is JSON, whatever happened
    assert got == code and answer["ok"] is False and answer["error_code"] == error_code
    assert sentence in answer["error"] and sentence in err


def test_missing_model_file_is_not_found_in_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _cli(capsys, "profile", "nope.onnx", "--json")
    assert code == 2 and json.loads(out)["error_code"] == "not_found"
    assert "not_found: model file not found: nope.onnx" in err


@pytest.mark.parametrize(
    ("device", "error_code"), [("nonsense", "bad_address"), ("sim:nope", "unknown_profile")]
)
def test_devices_error_codes_are_stable_words_in_table_and_json(
    capsys: pytest.CaptureFixture[str], device: str, error_code: str
) -> None:
    code, out, _ = _cli(capsys, "devices", "--device", device, *SIM)
    assert code == 2  # a device named wrongly is a usage error
    assert f"{error_code}:" in out and "Error" not in out  # no ValueError / ProfileError
    code, out, _ = _cli(capsys, "devices", "--device", device, "--json")
    row = json.loads(out)["devices"][0]
    assert code == 2 and row["error_code"] == error_code and error_code in ERROR_CODES


def test_a_simulated_profile_row_says_so_and_fakes_nothing(
    onnx_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = _cli(capsys, "profile", str(onnx_file), *SIM)
    assert code == 0 and "simulated rows are analytic estimates" in out
    row = next(line for line in out.splitlines() if "sim:raspberry-pi-4" in line)
    cells = [c.strip() for c in row.strip("│ ").split("│")]
    assert cells[2:10] == ["-", cells[3], "-", "-", "-", "-", "-", "-"]  # mean p50 p90 p99 ...
    assert float(cells[3]) > 0 and cells[-1] == "simulated" and cells[-2] == "-"
    code, out, _ = _cli(capsys, "profile", str(onnx_file), *SIM, "--json")
    report = json.loads(out)
    result = report["results"][0]
    assert report["simulated"] is True and result["simulated"] is True
    m = result["measurement"]
    assert m["latency_ms_p50"] > 0 and m["peak_memory_mib"] > 0
    for key in ("n_runs", "latency_cv", "load_ms", "latency_ms_p90", "latency_ms_p99",
                "first_inference_ms", "latency_ms_mean", "upload_bytes"):  # fmt: skip
        assert m[key] is None, key


def test_a_measured_row_shows_mean_and_first_inference() -> None:
    from hadmc.device.hal import ArtifactSpec
    from host.fleet import FleetRow
    from host.fleet_tables import PROFILE_COLUMNS, _profile_cells

    m = {
        "latency_ms_mean": 1.25, "latency_ms_p50": 1.2, "latency_ms_p90": 1.5,
        "latency_ms_p99": 1.9, "first_inference_ms": 7.5, "latency_cv": 0.1, "n_runs": 50,
        "load_ms": 12.0, "peak_memory_mib": 30.0, "energy_mj": None,
        "energy_status": "unavailable", "upload_bytes": 1000, "source": "device",
        "provenance": {"runtime_version": "1.2"},
    }  # fmt: skip
    row = FleetRow("pi:1", "pi:1", True, 0.1, measurement=m)
    art = ArtifactSpec(path=Path("x.onnx"), format="onnx", runtime="onnxruntime",
                       input_name="x", input_shape=(1,))  # fmt: skip
    cells = dict(zip(PROFILE_COLUMNS, _profile_cells(art, row), strict=True))
    assert cells["mean ms"] == "1.250" and cells["first ms"] == "7.500"
    assert (cells["p50 ms"], cells["p90 ms"], cells["p99 ms"]) == ("1.200", "1.500", "1.900")
    assert cells["runs"] == "50" and cells["status"] == "[green]ok"


def test_same_words_and_units_in_every_table(tmp_path: Path) -> None:
    from hadmc.compress.onnx_export import export_onnx
    from host.fleet import artifact_spec_for
    from host.fleet_tables import DEVICE_COLUMNS, PROFILE_COLUMNS
    from host.search_table import COLUMNS

    assert "peak mem MiB" in COLUMNS and "peak mem MiB" in PROFILE_COLUMNS
    assert "memory MiB free/total" in DEVICE_COLUMNS
    assert not any("MB" in c for c in (*COLUMNS, *PROFILE_COLUMNS, *DEVICE_COLUMNS))
    # The search labels a partly quantized model "mixed"; profile must call it the same.
    import torch

    calib = np.random.default_rng(0).random((4, 1, 10, 10), dtype=np.float32)
    for float_modules in ([], ["2"]):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            built = export_onnx(_net(), tmp_path / f"q{len(float_modules)}.onnx",
                                torch.zeros(1, 1, 10, 10), precision="int8", calib_x=calib,
                                float_modules=float_modules)  # fmt: skip
        assert artifact_spec_for(built.path).precision == built.precision


def test_old_flag_names_work_with_one_warning(
    onnx_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from host.search import add_search_arguments

    parser = argparse.ArgumentParser()
    add_search_arguments(parser)
    new = parser.parse_args(["--num-runs", "7", "--min-secs", "0.2", "--warmup-min-secs", "0",
                             "--num-threads", "2"])  # fmt: skip
    assert capsys.readouterr().err == ""
    old = parser.parse_args(["--measure-runs", "7", "--measure-seconds", "0.2",
                             "--warmup-seconds", "0", "--threads", "2"])  # fmt: skip
    assert vars(old) == vars(new)
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 4 and "--measure-runs is deprecated, use --num-runs" in err[0]
    code, out, err = _cli(capsys, "profile", str(onnx_file), *SIM, "--runs", "5", "--json")
    assert code == 0 and json.loads(out)["options"]["min_runs"] == 5
    assert err.strip() == (
        "hadmc-host: warning: --runs is deprecated, use --num-runs (the old name goes in the "
        "next release)"
    )


def test_one_exit_code_table_in_help_and_readme() -> None:
    assert f"exit codes: {EXIT_CODES_TEXT}." in " ".join(EPILOG.split())
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert EXIT_CODES_TEXT in readme
    for code in ("bad_address", "unknown_profile", "unreachable", "unauthenticated"):
        assert re.search(rf"\b{code}\b", EPILOG) and f"`{code}`" in readme


def test_third_party_log_noise_is_off_unless_debug(caplog: pytest.LogCaptureFixture) -> None:
    from host.logs import _OwnOrError

    keep = _OwnOrError()

    def record(name: str, level: int) -> logging.LogRecord:
        return logging.LogRecord(name, level, __file__, 1, "m", None, None)

    assert keep.filter(record("host.search", logging.INFO))
    assert keep.filter(record("hadmc.compress", logging.WARNING))
    assert not keep.filter(record("torchao", logging.WARNING))
    assert not keep.filter(record("absl", logging.INFO))
    assert keep.filter(record("torchao", logging.ERROR))
