"""The device agent over loopback: a real ``python -m device_agent`` process, real models."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
from agent_helpers import Agent, error_of, onnx_cnn, profile_request, start_agent, upload
from grpc_health.v1 import health_pb2, health_pb2_grpc

from protos import hadmc_device_pb2 as pb

TFLITE_SCRIPT = textwrap.dedent(
    """
    import sys, torch, litert_torch
    torch.set_num_threads(1)
    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(),
                            torch.nn.Linear(4 * 6 * 6, 3)).eval()
    litert_torch.convert(m, (torch.randn(1, 1, 8, 8),)).export(sys.argv[1])
    """
)


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Agent:
    cache = tmp_path_factory.mktemp("agent-cache")
    a = start_agent(cache, ["--max-model-mib", "1", "--max-chunk-kib", "64"])
    yield a
    assert a.stop() == 0  # SIGTERM -> graceful stop, exit status 0


@pytest.fixture(scope="session")
def tflite_model(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A real .tflite converted once from a tiny torch model (slow: ~10 s)."""
    path = tmp_path_factory.mktemp("tflite") / "tiny.tflite"
    subprocess.run([sys.executable, "-c", TFLITE_SCRIPT, str(path)], check=True, timeout=300)
    return path.read_bytes()


def healthy(agent: Agent) -> bool:
    stub = health_pb2_grpc.HealthStub(agent.channel())
    status = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=5).status
    return status == health_pb2.HealthCheckResponse.SERVING


def check_stats(result: pb.ProfileResult, min_runs: int = 10) -> None:
    lat = result.latency
    assert lat.n >= min_runs
    assert 0 < lat.min_ms <= lat.p50_ms <= lat.p90_ms <= lat.p99_ms <= lat.max_ms
    assert lat.cv >= 0 and lat.std_ms >= 0 and lat.mean_ms > 0
    assert result.load_ms > 0 and result.first_inference_ms > 0
    assert result.warmup_runs >= 2
    assert result.peak_memory_bytes > 10 * 1024 * 1024 and result.peak_memory_method
    prov = result.provenance
    assert prov.window_end_unix > prov.window_start_unix
    assert prov.runtime_version and prov.hostname and prov.agent_version


def test_get_info_lists_runtimes(agent: Agent) -> None:
    info = agent.stub().GetInfo(pb.GetInfoRequest())
    runtimes = {r.runtime: r for r in info.runtimes}
    assert runtimes[pb.ONNXRUNTIME].available and runtimes[pb.ONNXRUNTIME].version
    assert info.cpu_cores_logical >= 1 and info.memory_total_bytes > 0
    assert info.max_model_bytes == 1024 * 1024 and info.max_chunk_bytes == 64 * 1024
    assert not info.token_required


def test_profile_onnx_and_dedup_upload(agent: Agent) -> None:
    data = onnx_cnn(seed=1)
    manifest, sent = upload(agent, data)
    assert sent == len(data)
    result = agent.stub().Profile(profile_request(manifest, read_power=True))
    check_stats(result)
    assert result.model_sha256 == hashlib.sha256(data).hexdigest()
    assert list(result.provenance.inputs[0].shape) == [1, 3, 16, 16]  # dynamic N -> 1
    assert result.provenance.execution_provider == "CPUExecutionProvider"
    # this machine has no power sensor: unavailable, never a 0 W "measurement"
    assert result.power.status == "unavailable" and not result.power.HasField("mean_power_w")
    _, again = upload(agent, data)
    assert again == 0
    changed = onnx_cnn(seed=1, bump_layer=2)
    manifest2, delta = upload(agent, changed)
    layer_bytes = 32 * 32 * 3 * 3 * 4  # the one conv whose weights changed
    assert 0 < delta < layer_bytes + 2 * 16384  # + at most a max-size chunk either side
    assert delta < len(changed) // 2
    check_stats(
        agent.stub().Profile(
            profile_request(
                manifest2, inputs=[pb.TensorSpec(shape=[2, 3, 16, 16], dtype=pb.FLOAT32)]
            )
        )
    )


def test_profile_tflite(agent: Agent, tflite_model: bytes) -> None:
    manifest, _ = upload(agent, tflite_model, "tiny.tflite")
    result = agent.stub().Profile(profile_request(manifest, runtime=pb.LITERT))
    check_stats(result)
    assert result.provenance.runtime == "litert"
    assert list(result.provenance.inputs[0].shape) == [1, 1, 8, 8]


def unknown_op_model() -> bytes:
    """Valid ONNX protobuf (passes the agent's pre-check) that onnxruntime refuses to load."""
    from onnx import TensorProto, helper

    node = helper.make_node("NoSuchOp", ["x"], ["y"])
    vi = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 4]) for n in ("x", "y")]
    graph = helper.make_graph([node], "g", vi[:1], vi[1:])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return model.SerializeToString()


@pytest.mark.parametrize("kind", ["random", "truncated", "tflite_as_onnx", "unknown_op"])
def test_corrupt_models_are_invalid_argument(agent: Agent, kind: str) -> None:
    good = onnx_cnn(seed=2)
    data = {
        "random": os.urandom(20000),
        "truncated": good[: len(good) // 2],
        "tflite_as_onnx": b"\x00\x00\x00\x00TFL3" + bytes(100),
        "unknown_op": unknown_op_model(),
    }[kind]
    manifest, _ = upload(agent, data)
    with pytest.raises(grpc.RpcError) as exc:
        agent.stub().Profile(profile_request(manifest))
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_of(exc.value).code == pb.INVALID_MODEL
    assert healthy(agent)


def test_bad_hashes_and_sizes(agent: Agent) -> None:
    stub = agent.stub()
    with pytest.raises(grpc.RpcError) as exc:
        stub.UploadChunks(iter([pb.Chunk(sha256="0" * 64, data=b"abc")]))
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_of(exc.value).code == pb.HASH_MISMATCH
    big = os.urandom(64 * 1024 + 1)
    with pytest.raises(grpc.RpcError) as exc:
        stub.UploadChunks(iter([pb.Chunk(sha256=hashlib.sha256(big).hexdigest(), data=big)]))
    assert exc.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    manifest, _ = upload(agent, onnx_cnn(seed=3))
    manifest.sha256 = "f" * 64
    with pytest.raises(grpc.RpcError) as exc:
        stub.Profile(profile_request(manifest))
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_of(exc.value).code == pb.HASH_MISMATCH
    huge = pb.ModelManifest(name="huge", sha256="a" * 64, size_bytes=2 * 1024 * 1024)
    with pytest.raises(grpc.RpcError) as exc:
        stub.Profile(profile_request(huge))
    assert exc.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert healthy(agent)


def test_missing_chunks_is_failed_precondition(agent: Agent) -> None:
    from agent_helpers import manifest_of

    manifest = manifest_of(onnx_cnn(seed=4))  # never uploaded
    hashes = [c.sha256 for c in manifest.chunks]
    missing = agent.stub().MissingChunks(pb.MissingChunksRequest(sha256=hashes + hashes[:1]))
    assert list(missing.missing_sha256) == hashes  # request order, no duplicates
    with pytest.raises(grpc.RpcError) as exc:
        agent.stub().Profile(profile_request(manifest))
    assert exc.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert sorted(error_of(exc.value).missing_sha256) == sorted(set(hashes))


def test_concurrent_profiles_do_not_overlap(agent: Agent) -> None:
    manifest, _ = upload(agent, onnx_cnn(seed=5))
    stub = agent.stub()
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: stub.Profile(profile_request(manifest)), range(8)))
    windows = sorted(
        (r.provenance.window_start_unix, r.provenance.window_end_unix) for r in results
    )
    for (_, end), (start, _) in zip(windows, windows[1:], strict=False):
        assert start >= end
    assert max(r.provenance.queue_wait_seconds for r in results) > 0.1
    for r in results:
        check_stats(r)


def test_reflection_lists_services(agent: Agent) -> None:
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
        ProtoReflectionDescriptorDatabase,
    )

    services = ProtoReflectionDescriptorDatabase(agent.channel()).get_services()
    assert "hadmc.device.v1.DeviceAgent" in services and "grpc.health.v1.Health" in services


def test_power_measured_end_to_end_from_fake_sysfs(tmp_path) -> None:  # noqa: ANN001
    """A board with a battery sensor (fake tree at 5 W): the worker reads it over the window."""
    bat = tmp_path / "root/sys/class/power_supply/BAT0"
    bat.mkdir(parents=True)
    (bat / "power_now").write_text("5000000\n")  # uW
    a = start_agent(tmp_path / "cache", ["--sysfs-root", str(tmp_path / "root")])
    try:
        info = a.stub().GetInfo(pb.GetInfoRequest())
        assert [(s.kind, s.readable) for s in info.power_sources] == [("power_supply", True)]
        manifest, _ = upload(a, onnx_cnn(seed=12))
        p = a.stub().Profile(profile_request(manifest, read_power=True)).power
        assert p.status == "measured" and p.source.endswith("BAT0")
        assert p.mean_power_w == pytest.approx(5.0) and p.idle_power_w == pytest.approx(5.0)
        assert p.window_seconds > 0.04
        r = a.stub().Profile(profile_request(manifest, read_power=True))
        assert r.power.energy_per_inference_mj == pytest.approx(5.0 * r.latency.mean_ms)
    finally:
        a.stop()


def test_bad_inputs(agent: Agent) -> None:
    manifest, _ = upload(agent, onnx_cnn(seed=13))
    stub = agent.stub()
    wrong = [pb.TensorSpec(shape=[1, 5, 16, 16], dtype=pb.FLOAT32)]  # model wants 3 channels
    with pytest.raises(grpc.RpcError) as exc:
        stub.Profile(profile_request(manifest, inputs=wrong))
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_of(exc.value).code == pb.INVALID_REQUEST
    huge = [pb.TensorSpec(shape=[1 << 20, 3, 16, 16], dtype=pb.FLOAT32)]
    with pytest.raises(grpc.RpcError) as exc:
        stub.Profile(profile_request(manifest, inputs=huge))
    assert exc.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert stub.Profile(profile_request(manifest)).latency.n >= 10
