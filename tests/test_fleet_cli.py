"""``hadmc-host profile`` / ``devices`` / ``--help`` as subprocesses, against two real agents."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from host.cli import _command_in, main
from host.fleet import artifact_spec_for
from host.local_agent import LocalAgent

FAST_FLAGS = [
    "--num-runs", "20", "--warmup-runs", "2", "--warmup-min-secs", "0.05",
    "--min-secs", "0.1", "--max-secs", "1",
]  # fmt: skip


def hadmc_host(*args: str, timeout_s: float = 120.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "host", *args], capture_output=True, text=True, timeout=timeout_s
    )


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    torch.manual_seed(1)
    torch.set_num_threads(1)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 8, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(8, 10),
    ).eval()
    path = tmp_path_factory.mktemp("fleet") / "tiny.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            model, (torch.randn(1, 1, 16, 16),), str(path), dynamo=False, input_names=["img"]
        )
    return path


@pytest.fixture(scope="module")
def two_agents() -> list[str]:
    with LocalAgent() as a, LocalAgent() as b:
        yield [a.address, b.address]


def test_artifact_spec_reads_input_and_macs_from_onnx(tiny_onnx: Path) -> None:
    spec = artifact_spec_for(tiny_onnx)
    assert (spec.format, spec.runtime, spec.precision) == ("onnx", "onnxruntime", "fp32")
    assert spec.input_name == "img" and spec.input_shape == (1, 1, 16, 16)
    # conv: 16*16 outputs x 8 channels x (1 x 3 x 3) + linear 8 x 10
    assert spec.macs == 16 * 16 * 8 * 9 + 8 * 10
    assert spec.params == 8 * 9 + 8 + 8 * 10 + 10


def test_profile_two_agents_json_and_table(tiny_onnx: Path, two_agents: list[str]) -> None:
    a, b = two_agents
    out = hadmc_host("profile", str(tiny_onnx), "--device", a, "--device", b, "--json", *FAST_FLAGS)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)  # --json: stdout is JSON only
    rows = report["results"]
    assert [r["device"] for r in rows] == [a, b] and report["ok"] is True
    for row in rows:
        m = row["measurement"]
        assert row["ok"] and m["source"] == "device" and m["n_runs"] >= 20
        assert 0 < m["latency_ms_p50"] <= m["latency_ms_p99"]
        assert m["upload_bytes"] == tiny_onnx.stat().st_size  # each agent has its own cache
    assert report["model"]["input_shape"] == [1, 1, 16, 16]

    dead = "127.0.0.1:1"
    out = hadmc_host("profile", str(tiny_onnx), "--device", a, "--device", dead, *FAST_FLAGS)
    assert out.returncode == 1  # one device failed
    assert a in out.stdout and dead in out.stdout and "unreachable" in out.stdout
    assert all(c in out.stdout for c in ("mean ms", "p50 ms", "p99 ms", "first ms"))
    assert "Traceback" not in out.stderr


def test_devices_reports_info_and_health(two_agents: list[str]) -> None:
    out = hadmc_host("devices", "--device", two_agents[0], "--device", two_agents[1], "--json")
    assert out.returncode == 0, out.stderr
    devices = json.loads(out.stdout)["devices"]
    assert len(devices) == 2 and all(d["healthy"] for d in devices)
    assert all(d["info"]["arch"] == platform.machine() for d in devices)
    out = hadmc_host("devices", "--device", two_agents[0], "--device", "sim:raspberry-pi-4")
    assert out.returncode == 0, out.stderr
    assert "serving" in out.stdout and "simulated" in out.stdout


def test_bad_model_file_is_one_line_exit_2(tmp_path: Path) -> None:
    out = hadmc_host("profile", str(tmp_path / "missing.onnx"), "--device", "sim:raspberry-pi-4")
    assert out.returncode == 2
    assert "model file not found" in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_help_exits_zero_and_is_fast_to_build() -> None:
    out = hadmc_host("--help", timeout_s=30)
    assert out.returncode == 0 and all(c in out.stdout for c in ("search", "profile", "devices"))
    imports = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "host", "--help"],
        capture_output=True, text=True, timeout=30,
    ).stderr  # fmt: skip
    assert "host.cli" in imports
    assert not any(heavy in imports for heavy in (" torch", " grpc", " onnx", " rich"))
    out = hadmc_host("search", "--help", timeout_s=60)
    assert out.returncode == 0 and "--device" in out.stdout
    out = hadmc_host("profile", "--help", timeout_s=30)
    assert out.returncode == 0 and "(default: 50)" in out.stdout
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0


def test_command_detection_skips_global_option_values() -> None:
    assert _command_in(["--log-level", "INFO", "profile", "m.onnx"]) == "profile"
    assert _command_in(["--log-level", "DEBUG"]) is None
    assert _command_in([]) is None


def test_bare_command_runs_search_with_defaults(monkeypatch, capsys) -> None:
    import host.search

    seen = {}

    def record(args) -> int:  # stands in for the real (minutes-long) search: dispatch only
        seen.update(vars(args))
        return 7

    monkeypatch.setattr(host.search, "run_search", record)
    assert main([]) == 7
    assert seen["command"] == "search" and seen["device"] is None  # search's own defaults
    assert "running `hadmc-host search`" in capsys.readouterr().err


def test_search_without_its_module_says_so(monkeypatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, "host.search", None)  # import now raises ImportError
    assert main(["search"]) == 2
    assert "host.search cannot be imported" in capsys.readouterr().err


def test_report_of_missing_dir_is_one_line_exit_2(tmp_path: Path, capsys) -> None:
    assert main(["report", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert "run directory not found" in err and len(err.strip().splitlines()) == 1


def test_report_renders_a_run_dir_and_prints_where(tmp_path: Path, capsys) -> None:
    from host.store import ResultsStore

    with ResultsStore(tmp_path):  # an empty run: the report must still render
        pass
    assert main(["report", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert str((tmp_path / "report.html").resolve()) in out
    assert (tmp_path / "report.html").stat().st_size > 0


TFLITE_SCRIPT = """
import sys, torch, litert_torch
torch.manual_seed(0)
m = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(),
                        torch.nn.Flatten(), torch.nn.Linear(4 * 8 * 8, 10)).eval()
litert_torch.convert(m, (torch.randn(1, 1, 8, 8),)).export(sys.argv[1])
"""


@pytest.mark.slow
def test_profile_tflite_on_an_agent(tmp_path: Path, two_agents: list[str]) -> None:
    path = tmp_path / "tiny.tflite"
    # A subprocess keeps the converter (jax, ~1 GB of imports) out of the test process.
    subprocess.run([sys.executable, "-c", TFLITE_SCRIPT, str(path)], check=True, timeout=300)
    spec = artifact_spec_for(path)
    assert (spec.format, spec.runtime, spec.precision) == ("tflite", "litert", "fp32")
    assert spec.input_shape == (1, 1, 8, 8) and spec.input_dtype == "float32"
    out = hadmc_host("profile", str(path), "--device", two_agents[0], "--json", *FAST_FLAGS)
    assert out.returncode == 0, out.stderr
    row = json.loads(out.stdout)["results"][0]
    assert row["ok"] and row["measurement"]["provenance"]["runtime"] == "litert"
    assert row["measurement"]["latency_ms_p50"] > 0
