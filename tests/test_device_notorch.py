"""The agent runs where torch and hadmc cannot be imported (a board with hadmc[device]).

A ``sitecustomize`` on PYTHONPATH installs a ``sys.meta_path`` finder that makes importing
torch, hadmc (and here also ai_edge_litert, to check the "runtime not installed" path) fail,
in the agent and in every worker it spawns.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import grpc
import pytest
from agent_helpers import REPO, error_of, onnx_cnn, profile_request, start_agent, upload

from protos import hadmc_device_pb2 as pb

BLOCKER = textwrap.dedent(
    """
    import sys

    BLOCKED = ("torch", "hadmc", "ai_edge_litert")

    class Blocker:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"No module named {name!r} (blocked for test)")
            return None

    sys.meta_path.insert(0, Blocker())
    """
)


@pytest.fixture()
def blocked_env(tmp_path: Path) -> dict[str, str]:
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BLOCKER)
    pythonpath = os.pathsep.join([str(site), str(REPO)])
    return {"PYTHONPATH": pythonpath}


def test_blocker_works(blocked_env: dict[str, str]) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", "import torch"],
        env={**os.environ, **blocked_env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0 and "blocked for test" in proc.stderr


def test_agent_serves_without_torch_or_hadmc(tmp_path: Path, blocked_env: dict[str, str]) -> None:
    data = onnx_cnn(seed=11)  # built here, in the test process (onnx, not torch)
    agent = start_agent(tmp_path / "cache", env=blocked_env)
    try:
        info = agent.stub().GetInfo(pb.GetInfoRequest())
        rt = {r.runtime: r for r in info.runtimes}
        assert rt[pb.ONNXRUNTIME].available
        assert not rt[pb.LITERT].available  # proves the blocker is active in the agent
        assert "ai_edge_litert" in rt[pb.LITERT].unavailable_reason
        manifest, _ = upload(agent, data)  # chunks computed by hadmc here, not in the agent
        result = agent.stub().Profile(profile_request(manifest))
        assert result.latency.n >= 10 and result.latency.p50_ms > 0
        with pytest.raises(grpc.RpcError) as exc:
            agent.stub().Profile(profile_request(manifest, runtime=pb.LITERT, format=pb.TFLITE))
        assert exc.value.code() == grpc.StatusCode.UNAVAILABLE
        assert error_of(exc.value).code == pb.RUNTIME_UNAVAILABLE
    finally:
        assert agent.stop() == 0
