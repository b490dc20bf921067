"""A worker that crashes or hangs fails that call only; the agent keeps serving.

Uses the documented test hook (HADMC_DEVICE_TEST_FAULTS=1 + manifest name fault:crash /
fault:hang): the worker really aborts (SIGABRT) or really hangs after loading the model.
"""

from __future__ import annotations

import time

import grpc
import pytest
from agent_helpers import Agent, error_of, onnx_cnn, profile_request, start_agent, upload

from protos import hadmc_device_pb2 as pb


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Agent:
    a = start_agent(tmp_path_factory.mktemp("cache"), env={"HADMC_DEVICE_TEST_FAULTS": "1"})
    yield a
    a.stop()


def test_crash_then_next_call_succeeds(agent: Agent) -> None:
    data = onnx_cnn(seed=7)
    manifest, _ = upload(agent, data, name="fault:crash")
    with pytest.raises(grpc.RpcError) as exc:
        agent.stub().Profile(profile_request(manifest))
    assert exc.value.code() == grpc.StatusCode.ABORTED
    err = error_of(exc.value)
    assert err.code == pb.WORKER_CRASHED and "SIGABRT" in err.message
    manifest.name = "ok"
    assert agent.stub().Profile(profile_request(manifest)).latency.n >= 10


def test_hang_is_killed_at_timeout(agent: Agent) -> None:
    manifest, _ = upload(agent, onnx_cnn(seed=8), name="fault:hang")
    t0 = time.perf_counter()
    with pytest.raises(grpc.RpcError) as exc:
        agent.stub().Profile(profile_request(manifest, timeout_seconds=3.0))
    elapsed = time.perf_counter() - t0
    assert exc.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert error_of(exc.value).code == pb.WORKER_TIMEOUT
    assert 3.0 <= elapsed < 15.0
    manifest.name = "ok"
    assert agent.stub().Profile(profile_request(manifest)).latency.n >= 10


def test_hook_is_inert_without_env(tmp_path) -> None:  # noqa: ANN001
    a = start_agent(tmp_path, ["--no-prewarm"])  # also covers the no-spare-worker path
    try:
        manifest, _ = upload(a, onnx_cnn(seed=9), name="fault:crash")
        assert a.stub().Profile(profile_request(manifest)).latency.n >= 10
    finally:
        a.stop()


def test_fault_switch_is_refused_on_a_non_loopback_bind(monkeypatch, capsys) -> None:  # noqa: ANN001
    from device_agent.cli import main
    from device_agent.worker import FAULT_ENV

    monkeypatch.setenv(FAULT_ENV, "1")
    assert main(["--host", "0.0.0.0", "--token", "t" * 16, "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert FAULT_ENV in err and "refusing to bind 0.0.0.0" in err
