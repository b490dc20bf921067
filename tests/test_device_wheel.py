"""The board's install as the README gives it: a wheel built here, its ``[device]`` extra
installed into a fresh venv (no torch), and the agent started from that venv serves and
profiles an ONNX model. Needs the package registry (as CI has); ~1 minute."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from agent_helpers import REPO, Agent, onnx_cnn, profile_request, upload

pytestmark = pytest.mark.slow


def _run(*cmd: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    return proc


def test_wheel_device_extra_serves_without_torch(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", str(REPO), "-w", str(dist))
    (wheel,) = dist.glob("hadmc-*-py3-none-any.whl")
    venv = tmp_path / "board"
    _run(sys.executable, "-m", "venv", str(venv))
    py = venv / "bin" / "python"
    _run(str(py), "-m", "pip", "install", "-q", f"{wheel}[device]")
    torch = subprocess.run([str(py), "-c", "import torch"], capture_output=True, text=True)
    assert torch.returncode != 0 and "No module named 'torch'" in torch.stderr
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [str(venv / "bin" / "hadmc-device"), "--port", "0", "--cache-dir", str(tmp_path / "c")],
        stdout=subprocess.PIPE,
        text=True,
        cwd=tmp_path,  # not the repo: the venv's own copy must be what runs
    )
    line = proc.stdout.readline()
    agent = Agent(proc, line.split()[1], None, time.perf_counter() - t0)
    try:
        assert line.startswith("HADMC_DEVICE_LISTENING"), line
        manifest, _ = upload(agent, onnx_cnn(seed=40))
        result = agent.stub().Profile(profile_request(manifest), timeout=120)
        assert result.latency.n >= 10 and result.provenance.runtime == "onnxruntime"
    finally:
        agent.stop()
