"""RemoteDevice / open_device against the real ``device_agent`` process over loopback.

The last block uses a minimal in-test gRPC servicer (``ScriptedServicer``) ONLY to check how
the client maps each failure status + ``hadmc-error-bin`` trailer to a ``DeviceError`` and
how it retries; it is not an agent and measures nothing.
"""

from __future__ import annotations

import socket
import time
import warnings
from concurrent import futures
from pathlib import Path

import grpc
import psutil
import pytest

from hadmc.device.hal import ENERGY_STATUSES, ArtifactSpec, DeviceError, MeasureOptions
from host.device_client import RemoteDevice
from host.devices import open_device, parse_address
from host.local_agent import LocalAgent
from protos import ERROR_TRAILER_KEY
from protos import hadmc_device_pb2 as pb
from protos import hadmc_device_pb2_grpc as pb_grpc

TOKEN = "test-token-123-abcdef"
# Short budgets: these tests check plumbing and sanity, not speed.
FAST = MeasureOptions(
    threads=1,
    warmup_runs=2,
    warmup_min_seconds=0.05,
    min_runs=20,
    min_seconds=0.1,
    max_seconds=1.0,
    timeout_seconds=60.0,
)


def export_tiny_cnn(path: Path, seed: int = 0) -> ArtifactSpec:
    """A 2-conv CNN exported to ONNX (legacy exporter: ~10x faster than dynamo)."""
    import torch

    torch.manual_seed(seed)
    torch.set_num_threads(1)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 8, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Conv2d(8, 16, 3, stride=2, padding=1),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(16, 10),
    ).eval()
    with warnings.catch_warnings():  # the legacy exporter's DeprecationWarning
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            model, (torch.randn(1, 1, 32, 32),), str(path), dynamo=False, input_names=["x"]
        )
    return ArtifactSpec(path, "onnx", "onnxruntime", "x", (1, 1, 32, 32))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> ArtifactSpec:
    return export_tiny_cnn(tmp_path_factory.mktemp("model") / "tiny.onnx")


@pytest.fixture(scope="module")
def agent() -> LocalAgent:
    with LocalAgent(token=TOKEN) as a:
        yield a


def test_measure_real_model_then_second_upload_sends_nothing(agent: LocalAgent, tiny) -> None:
    assert TOKEN not in " ".join(psutil.Process(agent.pid).cmdline())  # not visible in ps
    with RemoteDevice(agent.address, token=TOKEN) as dev:
        assert dev.health() is True
        info = dev.info()
        assert info["token_required"] is True
        assert info["cpu_cores_logical"] >= 1 and info["memory_total_bytes"] > 0
        ort = [r for r in info["runtimes"] if r["runtime"] == "onnxruntime"]
        assert ort and ort[0]["available"] and "onnx" in ort[0]["formats"]

        m = dev.measure(tiny, FAST)
        assert m.source == "device" and m.device == agent.address
        assert m.n_runs >= FAST.min_runs
        assert 0 < m.latency_ms_min <= m.latency_ms_p50 <= m.latency_ms_p90 <= m.latency_ms_p99
        assert m.latency_ms_min <= m.latency_ms_mean and m.latency_ms_std >= 0
        # CV is the agent's std / mean (unbounded on a busy 2-core CI box, so no fixed limit)
        assert m.latency_cv == pytest.approx(m.latency_ms_std / m.latency_ms_mean, rel=1e-6)
        assert m.latency_ms_p99 <= m.provenance["latency_ms_max"]
        assert m.latency_ms_p50 < 1000  # a 2-conv net on 32x32 is far below a second
        assert m.load_ms > 0 and m.first_inference_ms > 0
        assert m.peak_memory_mib > 1  # a process that loaded onnxruntime holds megabytes
        assert m.energy_status in ENERGY_STATUSES and m.energy_status != "simulated"
        if m.energy_status == "unavailable":
            assert m.energy_mj is None
        else:
            assert m.energy_mj is not None and m.energy_mj > 0
        size = tiny.path.stat().st_size
        assert 0 < m.upload_bytes <= size  # fresh cache: every distinct chunk sent
        assert m.provenance["threads"] == 1
        assert m.provenance["inputs"][0]["shape"] == [1, 1, 32, 32]
        assert m.provenance["model_size_bytes"] == size

        again = dev.measure(tiny, FAST)
        assert again.upload_bytes == 0
        assert again.provenance["model_sha256"] == m.provenance["model_sha256"]


def test_the_runtime_travels_by_name_alone(agent: LocalAgent, tiny, monkeypatch) -> None:
    """What a runtime newer than the proto's enums does: no Runtime / ModelFormat value, only
    ProfileRequest.runtime_name. The agent runs it (an old agent would refuse runtime 0)."""
    import host.device_client as dc

    monkeypatch.setitem(dc.RUNTIMES, "onnxruntime", 0)
    monkeypatch.setitem(dc.FORMATS, "onnx", 0)
    with RemoteDevice(agent.address, token=TOKEN) as dev:
        m = dev.measure(tiny, FAST)
    assert m.provenance["runtime"] == "onnxruntime" and m.n_runs >= FAST.min_runs


def test_wrong_or_missing_token_is_unauthenticated(agent: LocalAgent, tiny) -> None:
    for token in ("wrong", None):
        with RemoteDevice(agent.address, token=token, retries=0) as dev:
            with pytest.raises(DeviceError) as err:
                dev.measure(tiny, FAST)
            assert err.value.code == "unauthenticated" and not err.value.retryable
    with pytest.raises(DeviceError) as err:
        open_device(agent.address, token="wrong")
    assert err.value.code == "unauthenticated"


def test_corrupt_model_is_invalid_and_agent_keeps_serving(agent: LocalAgent, tmp_path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"this is not a protobuf model" * 100)
    spec = ArtifactSpec(bad, "onnx", "onnxruntime", "x", (1, 1, 32, 32))
    with RemoteDevice(agent.address, token=TOKEN) as dev:
        with pytest.raises(DeviceError) as err:
            dev.measure(spec, FAST)
        assert err.value.code == "invalid_model"
        assert "\n" not in str(err.value)
        assert dev.health() is True


def test_unreachable_address_fails_fast_with_one_line() -> None:
    address = f"127.0.0.1:{free_port()}"
    start = time.monotonic()
    with pytest.raises(DeviceError) as err:
        open_device(address)
    elapsed = time.monotonic() - start
    assert err.value.code == "unreachable" and err.value.retryable
    assert address in str(err.value) and "\n" not in str(err.value)
    assert elapsed < 5.0


def test_bad_addresses_are_rejected_before_connecting() -> None:
    assert parse_address("[::1]:50051") == ("[::1]", 50051)
    for bad in ("localhost", "host:0", "host:99999", ":50051", "host:port"):
        with pytest.raises(ValueError, match="expected host:port"):
            open_device(bad)


def test_missing_artifact_and_bad_format_fail_before_any_rpc(tmp_path) -> None:
    dev = RemoteDevice(f"127.0.0.1:{free_port()}", retries=0)
    with pytest.raises(FileNotFoundError):
        dev.measure(ArtifactSpec(tmp_path / "none.onnx", "onnx", "onnxruntime", "x", (1,)), FAST)
    f = tmp_path / "m.bin"
    f.write_bytes(b"x")
    with pytest.raises(DeviceError, match="unknown format"):
        dev.measure(ArtifactSpec(f, "pt", "onnxruntime", "x", (1,)), FAST)
    dev.close()


# -- error mapping, with a minimal in-test servicer (NOT an agent) ----------------------------
class ScriptedServicer(pb_grpc.DeviceAgentServicer):
    """Answers Profile from a script of failures; records uploads. For error mapping only."""

    def __init__(self, script: list[tuple[grpc.StatusCode, pb.ProfileError]]) -> None:
        self.script = list(script)
        self.profile_calls = 0
        self.uploaded_bytes = 0

    def MissingChunks(self, request, context):  # noqa: N802 - gRPC method name
        return pb.MissingChunksResponse(missing_sha256=list(request.sha256))

    def UploadChunks(self, request_iterator, context):  # noqa: N802
        for chunk in request_iterator:
            self.uploaded_bytes += len(chunk.data)
        return pb.UploadSummary()

    def Profile(self, request, context):  # noqa: N802
        self.profile_calls += 1
        if self.script:
            status, perr = self.script.pop(0)
            if perr.code == pb.MISSING_CHUNKS:
                perr.missing_sha256.extend(c.sha256 for c in request.model.chunks)
            context.set_trailing_metadata(((ERROR_TRAILER_KEY, perr.SerializeToString()),))
            context.abort(status, perr.message)
        return pb.ProfileResult(
            model_sha256=request.model.sha256,
            latency=pb.LatencyStats(n=1, min_ms=1, p50_ms=1, mean_ms=1, p90_ms=1, p99_ms=1),
            power=pb.PowerResult(status="unavailable"),
        )


@pytest.fixture
def scripted():
    servers = []

    def start(
        script: list[tuple[grpc.StatusCode, pb.ProfileError]],
    ) -> tuple[str, ScriptedServicer]:
        servicer = ScriptedServicer(script)
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        pb_grpc.add_DeviceAgentServicer_to_server(servicer, server)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        servers.append(server)
        return f"127.0.0.1:{port}", servicer

    yield start
    for server in servers:
        server.stop(0)


@pytest.mark.parametrize(
    ("status", "perr_code", "expected", "retryable"),
    [
        (grpc.StatusCode.ABORTED, pb.WORKER_CRASHED, "crashed", False),
        (grpc.StatusCode.DEADLINE_EXCEEDED, pb.WORKER_TIMEOUT, "timeout", False),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, pb.TOO_LARGE, "too_large", False),
        (grpc.StatusCode.INVALID_ARGUMENT, pb.HASH_MISMATCH, "hash_mismatch", False),
        (grpc.StatusCode.INVALID_ARGUMENT, pb.INVALID_REQUEST, "invalid_request", False),
        (grpc.StatusCode.INVALID_ARGUMENT, pb.INVALID_MODEL, "invalid_model", False),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, pb.DISK_FULL, "disk_full", False),
        (grpc.StatusCode.UNAUTHENTICATED, pb.UNAUTHENTICATED_TOKEN, "unauthenticated", False),
        (grpc.StatusCode.UNAVAILABLE, pb.RUNTIME_UNAVAILABLE, "runtime_unavailable", False),
        (grpc.StatusCode.INTERNAL, pb.INTERNAL, "internal", False),
    ],
)
def test_status_and_trailer_map_to_device_error(
    scripted, tiny, status, perr_code, expected, retryable
) -> None:
    address, servicer = scripted([(status, pb.ProfileError(code=perr_code, message="why: x\ny"))])
    with RemoteDevice(address, retries=2, backoff_s=0.01) as dev:
        with pytest.raises(DeviceError) as err:
            dev.measure(tiny, FAST)
    assert err.value.code == expected and err.value.retryable is retryable
    assert "why: x y" in str(err.value)  # the trailer's message, flattened to one line
    assert servicer.profile_calls == 1  # non-retryable: no second attempt


def test_unavailable_is_retried_with_backoff(scripted, tiny) -> None:
    down = (grpc.StatusCode.UNAVAILABLE, pb.ProfileError(message="restarting"))
    address, servicer = scripted([down, down])
    with RemoteDevice(address, retries=2, backoff_s=0.01) as dev:
        m = dev.measure(tiny, FAST)
    assert servicer.profile_calls == 3 and m.n_runs == 1
    address, servicer = scripted([down, down])
    with RemoteDevice(address, retries=1, backoff_s=0.01) as dev:
        with pytest.raises(DeviceError) as err:
            dev.measure(tiny, FAST)
    assert err.value.code == "unreachable" and servicer.profile_calls == 2


def test_missing_chunks_are_reuploaded_once(scripted, tiny) -> None:
    missing = (grpc.StatusCode.FAILED_PRECONDITION, pb.ProfileError(code=pb.MISSING_CHUNKS))
    address, servicer = scripted([missing])
    with RemoteDevice(address) as dev:
        m = dev.measure(tiny, FAST)
    size = tiny.path.stat().st_size
    assert servicer.profile_calls == 2
    assert m.upload_bytes == servicer.uploaded_bytes and size < m.upload_bytes <= 2 * size
    address, servicer = scripted([missing, missing])
    with RemoteDevice(address) as dev:
        with pytest.raises(DeviceError, match="still missing after re-upload"):
            dev.measure(tiny, FAST)
    assert servicer.profile_calls == 2


def test_tls_agent_with_ca_works_and_plaintext_client_is_refused(tmp_path) -> None:
    import shutil
    import subprocess

    if shutil.which("openssl") is None:
        pytest.skip("openssl CLI not installed: cannot make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1",
         "-days", "1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    with LocalAgent(extra_args=("--tls-cert", str(cert), "--tls-key", str(key))) as tls_agent:
        with RemoteDevice(tls_agent.address, tls_ca=cert) as dev:
            assert dev.health() is True and dev.info()["arch"]
        with RemoteDevice(tls_agent.address, retries=0) as plain:
            with pytest.raises(DeviceError) as err:
                plain.info()
            assert err.value.code == "unreachable" and "--tls-ca" in str(err.value)
