"""Execution targets from the host: --target on profile and search, checked against the
device's GetInfo, and fp16 refused on CPU targets before any upload."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from host.cli import main
from host.targets import parse_target, target_problem

sys.path.insert(0, str(Path(__file__).resolve().parent))
from agent_helpers import onnx_cnn  # noqa: E402


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert not any(line.startswith("Traceback") for line in err.splitlines()), err
    return code, out, err


@pytest.fixture()
def models(tmp_path: Path) -> dict[str, Path]:
    import onnx
    from onnxconverter_common import float16

    fp32 = tmp_path / "fp32.onnx"
    fp32.write_bytes(onnx_cnn(seed=60))
    half = float16.convert_float_to_float16(onnx.load(str(fp32)), keep_io_types=True)
    fp16 = tmp_path / "fp16.onnx"
    onnx.save(half, str(fp16))
    return {"fp32": fp32, "fp16": fp16}


def test_fp16_on_a_cpu_target_is_refused_before_any_device(capsys, models) -> None:  # noqa: ANN001
    # 127.0.0.1:9 answers nothing: the refusal must come before any device is asked.
    code, _, err = _cli(capsys, "profile", str(models["fp16"]), "--device", "127.0.0.1:9",
                        "--target", "onnxruntime:cpu")  # fmt: skip
    assert code == 2
    assert "fp16.onnx is an fp16 model, and onnxruntime:cpu does not execute fp16" in err
    code, _, err = _cli(capsys, "profile", str(models["fp16"]), "--device", "127.0.0.1:9")
    assert code == 2 and "does not execute fp16" in err  # the default target is the CPU


def test_target_of_another_runtime_is_a_usage_error(capsys, models) -> None:  # noqa: ANN001
    code, _, err = _cli(capsys, "profile", str(models["fp32"]), "--device", "127.0.0.1:9",
                        "--target", "litert:gpu")  # fmt: skip
    assert code == 2 and "is not a onnxruntime target" in err


def test_unavailable_target_names_what_the_board_has(capsys, models) -> None:  # noqa: ANN001
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this machine has the CUDA EP")
    code, out, _ = _cli(capsys, "profile", str(models["fp32"]), "--target", "cuda", "--json",
                        "--num-runs", "5", "--min-secs", "0.05")  # fmt: skip
    assert code == 1
    row = json.loads(out)["results"][0] if "results" in json.loads(out) else json.loads(out)
    text = json.dumps(row)
    assert "onnxruntime:cuda is not available" in text and "onnxruntime:cpu" in text


def test_devices_json_lists_targets(capsys) -> None:  # noqa: ANN001
    code, out, _ = _cli(capsys, "devices", "--json")
    assert code == 0
    info = json.loads(out)["devices"][0]
    targets = {t["target"]: t for t in info["info"]["targets"]}
    assert targets["onnxruntime:cpu"]["available"]
    assert targets["onnxruntime:cpu"]["precisions"] == ["fp32", "int8"]


def test_target_parsing_and_checks() -> None:
    assert parse_target(None, "onnxruntime") == "onnxruntime:cpu"
    assert parse_target("cuda", "onnxruntime") == "onnxruntime:cuda"
    assert parse_target(None, "litert") == "litert:xnnpack"
    info = {
        "targets": [
            {"target": "onnxruntime:cpu", "available": True, "precisions": ["fp32", "int8"]},
            {"target": "onnxruntime:cuda", "available": False, "detail": "no CUDA EP"},
        ]
    }
    assert target_problem(info, "onnxruntime:cpu") == ""
    assert "no CUDA EP" in target_problem(info, "onnxruntime:cuda")
    assert "available: onnxruntime:cpu" in target_problem(info, "onnxruntime:cuda")
    assert target_problem({}, "onnxruntime:cuda") == ""  # an older agent: the run will say


def test_devices_target_check(capsys) -> None:  # noqa: ANN001
    import onnxruntime as ort

    code, out, _ = _cli(capsys, "devices", "--json", "--target", "onnxruntime:cpu")
    assert code == 0 and json.loads(out)["devices"][0]["ok"]
    code, _, err = _cli(capsys, "devices", "--target", "cuda")
    assert code == 2 and "name the runtime too, e.g. onnxruntime:cuda" in err
    if "CUDAExecutionProvider" in ort.get_available_providers():
        return
    code, out, _ = _cli(capsys, "devices", "--json", "--target", "onnxruntime:cuda")
    row = json.loads(out)["devices"][0]
    assert code == 1 and not row["ok"] and row["healthy"]  # serving, but not that target
    assert row["error_code"] == "runtime_unavailable"
    assert "onnxruntime:cuda is not available" in row["error"] and "onnxruntime:cpu" in row["error"]
