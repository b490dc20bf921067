"""The agent process stays small at idle: GetInfo looks runtimes up without importing them
(the runtimes are imported in the measuring worker only). Importing ``ai_edge_litert`` maps
libLiteRt.so into the agent and cost +3.5 MiB of idle RSS (bench/agent.py)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from agent_helpers import start_agent

from device_agent import runtimes
from protos import hadmc_device_pb2 as pb

RUNTIME_LIBS = ("libLiteRt", "onnxruntime_pybind11_state", "libonnxruntime")


def _mapped(pid: int) -> set[str]:
    return {
        line.split()[-1]
        for line in Path(f"/proc/{pid}/maps").read_text().splitlines()
        if "/" in line
    }


def test_getinfo_imports_no_runtime_into_the_agent(tmp_path: Path) -> None:
    if importlib.util.find_spec("ai_edge_litert") is None:
        pytest.skip("ai_edge_litert not installed: nothing to import")
    agent = start_agent(tmp_path / "cache")
    try:
        info = agent.stub().GetInfo(pb.GetInfoRequest())
        by_name = {r.name: r for r in info.runtimes}
        assert by_name["litert"].available and by_name["litert"].version
        assert by_name["onnxruntime"].available
        loaded = [p for p in _mapped(agent.proc.pid) if any(k in p for k in RUNTIME_LIBS)]
        assert loaded == []
    finally:
        assert agent.stop() == 0


def test_find_reports_missing_parts_without_importing() -> None:
    assert runtimes._find("ai_edge_litert.no_such_module") == (
        "No module named 'ai_edge_litert.no_such_module'"
    )
    assert runtimes._find("no_such_pkg.interpreter") == "No module named 'no_such_pkg'"
    assert runtimes._find("json.decoder") is None
    assert "is not a package" in runtimes._find("json.decoder.x")
