"""Execution targets: discovery in GetInfo, refusal of what the board lacks (with what it
has), provider-option validation, and node-placement accounting on the CPU EP."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from agent_helpers import Agent, error_of, onnx_cnn, profile_request, start_agent, upload

from device_agent import measure, targets
from device_agent.errors import AgentError
from protos import hadmc_device_pb2 as pb


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Agent:
    a = start_agent(tmp_path_factory.mktemp("cache"))
    yield a
    a.stop()


def test_getinfo_lists_every_target_with_what_it_executes(agent: Agent) -> None:
    info = agent.stub().GetInfo(pb.GetInfoRequest(), timeout=30)
    found = {t.target: t for t in info.targets}
    assert set(found) == set(targets.TARGETS)
    cpu = found["onnxruntime:cpu"]
    assert cpu.available and cpu.detail == "CPUExecutionProvider"
    assert list(cpu.precisions) == ["fp32", "int8"]
    assert "fp16" in found["onnxruntime:cuda"].precisions
    import onnxruntime as ort  # the truth, from this very onnxruntime build

    for name, t in found.items():
        if t.target.startswith("onnxruntime:"):
            assert t.available == (targets.TARGETS[name].backend in ort.get_available_providers())
            if not t.available:
                assert "not in this onnxruntime build" in t.detail
    assert "backend_path" in found["onnxruntime:qnn"].options


def test_unavailable_target_is_refused_with_the_available_list(agent: Agent) -> None:
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this machine has the CUDA EP")
    manifest, _ = upload(agent, onnx_cnn(seed=50))
    with pytest.raises(grpc.RpcError) as exc:
        agent.stub().Profile(profile_request(manifest, target="onnxruntime:cuda"), timeout=60)
    assert exc.value.code() == grpc.StatusCode.UNAVAILABLE
    err = error_of(exc.value)
    assert err.code == pb.RUNTIME_UNAVAILABLE
    assert "onnxruntime:cuda is not available" in err.message
    assert "available: onnxruntime:cpu" in err.message


@pytest.mark.parametrize(
    ("target", "options", "why"),
    [
        ("onnxruntime:warp9", {}, "unknown target"),
        ("litert:xnnpack", {}, "not a onnxruntime target"),
        ("onnxruntime:cpu", {"device_id": "0"}, "takes no provider option"),
    ],
)
def test_bad_targets_and_options_are_invalid_requests(
    agent: Agent, target: str, options: dict[str, str], why: str
) -> None:
    manifest, _ = upload(agent, onnx_cnn(seed=51))
    req = profile_request(manifest, target=target, provider_options=options)
    with pytest.raises(grpc.RpcError) as exc:
        agent.stub().Profile(req, timeout=60)
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert why in error_of(exc.value).message


def test_explicit_cpu_target_is_recorded(agent: Agent) -> None:
    manifest, _ = upload(agent, onnx_cnn(seed=52))
    r = agent.stub().Profile(profile_request(manifest, target="onnxruntime:cpu"), timeout=60)
    assert r.provenance.target == "onnxruntime:cpu"
    assert r.provenance.execution_provider == "CPUExecutionProvider"
    assert r.provenance.cpu_fallback_fraction == 0.0
    default = agent.stub().Profile(profile_request(manifest), timeout=60)
    assert default.provenance.target == "onnxruntime:cpu"


def test_provider_option_values_are_validated() -> None:
    qnn, trt = targets.TARGETS["onnxruntime:qnn"], targets.TARGETS["onnxruntime:tensorrt"]
    assert targets.check_options(qnn, {"backend_path": "libQnnHtp.so"})
    assert targets.check_options(trt, {"trt_fp16_enable": "1", "device_id": "0"})
    for target, options in [
        (qnn, {"backend_path": "/tmp/evil.so"}),  # a client must not pick a library to load
        (qnn, {"backend_path": "../libQnnHtp.so"}),
        (trt, {"trt_fp16_enable": "maybe"}),
        (trt, {"device_id": "-1"}),
    ]:
        with pytest.raises(AgentError) as exc:
            targets.check_options(target, options)
        assert exc.value.code == pb.INVALID_REQUEST


def test_node_placement_on_the_cpu_ep_has_no_fallback(tmp_path: Path) -> None:
    import tempfile

    traces = lambda: set(Path(tempfile.gettempdir()).glob("hadmc-placement*"))  # noqa: E731
    before = traces()
    path = tmp_path / "m.onnx"
    path.write_bytes(onnx_cnn(seed=53))
    specs = [measure.InputSpec("x", [1, 3, 16, 16], "float32")]
    placement = measure.node_placement(str(path), "CPUExecutionProvider", {}, specs)
    assert set(placement) == {"CPUExecutionProvider"}
    assert placement["CPUExecutionProvider"] >= 4  # at least the 4 convs (ORT fuses Relu)
    assert traces() == before  # the profiling trace was removed
