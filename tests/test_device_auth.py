"""Token auth, bind policy and TLS of the agent."""

from __future__ import annotations

import subprocess
import sys

import grpc
import pytest
from agent_helpers import REPO, Agent, error_of, start_agent
from grpc_health.v1 import health_pb2, health_pb2_grpc

from protos import hadmc_device_pb2 as pb
from protos import hadmc_device_pb2_grpc as pb_grpc

TOKEN = "s3cret-token-0123456789"


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Agent:
    a = start_agent(tmp_path_factory.mktemp("cache"), token=TOKEN)
    yield a
    a.stop()


@pytest.mark.parametrize("metadata", [(), (("authorization", "Bearer wrong"),)])
def test_missing_or_wrong_token_is_unauthenticated(agent: Agent, metadata: tuple) -> None:
    stub = agent.stub()
    with pytest.raises(grpc.RpcError) as exc:
        stub.GetInfo(pb.GetInfoRequest(), metadata=metadata)
    assert exc.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert error_of(exc.value).code == pb.UNAUTHENTICATED_TOKEN
    with pytest.raises(grpc.RpcError) as exc:  # client-streaming calls too
        stub.UploadChunks(iter([pb.Chunk(sha256="0" * 64, data=b"x")]), metadata=metadata)
    assert exc.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_right_token_and_health_without_token(agent: Agent) -> None:
    info = agent.stub().GetInfo(pb.GetInfoRequest(), metadata=agent.metadata())
    assert info.token_required
    health = health_pb2_grpc.HealthStub(agent.channel())
    resp = health.Check(health_pb2.HealthCheckRequest(service="hadmc.device.v1.DeviceAgent"))
    assert resp.status == health_pb2.HealthCheckResponse.SERVING


def test_refuses_public_bind_without_token() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "device_agent", "--host", "0.0.0.0", "--port", "0"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=30,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 2 and "--token" in proc.stderr


def test_tls(tmp_path) -> None:  # noqa: ANN001
    """Serve with a self-signed cert (made by openssl) and call GetInfo over TLS."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    made = subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
         "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        capture_output=True,
        timeout=60,
    )  # fmt: skip
    if made.returncode != 0:
        pytest.skip("openssl not available")
    a = start_agent(tmp_path / "c", ["--tls-cert", str(cert), "--tls-key", str(key)])
    try:
        creds = grpc.ssl_channel_credentials(root_certificates=cert.read_bytes())
        stub = pb_grpc.DeviceAgentStub(grpc.secure_channel(a.address, creds))
        assert stub.GetInfo(pb.GetInfoRequest(), timeout=10).agent_version
        with pytest.raises(grpc.RpcError):  # plaintext client cannot talk to a TLS server
            pb_grpc.DeviceAgentStub(grpc.insecure_channel(a.address)).GetInfo(
                pb.GetInfoRequest(), timeout=3
            )
    finally:
        a.stop()
