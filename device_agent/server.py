"""Assemble the gRPC server: DeviceAgent + grpc.health.v1 + reflection, auth, TLS, limits."""

from __future__ import annotations

from concurrent import futures
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from device_agent.auth import TokenInterceptor
from device_agent.service import AgentConfig, DeviceAgentService
from protos import hadmc_device_pb2 as pb
from protos import hadmc_device_pb2_grpc as pb_grpc

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["DeviceAgent"].full_name
MANIFEST_BYTES_PER_CHUNK = 80  # a ChunkRef on the wire: 64-char hash + size + framing
MIN_CHUNK_BYTES = 1024  # smallest chunk the host's chunker makes (hadmc.chunking)


@dataclass
class ServerOptions:
    host: str = "127.0.0.1"
    port: int = 50051
    token: str | None = None
    tls_cert: bytes | None = None
    tls_key: bytes | None = None
    max_workers: int = 32  # queued Profile calls each hold a thread; health must stay free


@dataclass
class RunningServer:
    server: grpc.Server
    health: health.HealthServicer
    service: DeviceAgentService
    address: str


def max_message_bytes(config: AgentConfig) -> int:
    """Largest message accepted: a chunk, or a Profile manifest of the largest model."""
    manifest = config.max_model_bytes // MIN_CHUNK_BYTES * MANIFEST_BYTES_PER_CHUNK
    return max(4 * 1024 * 1024, config.max_chunk_bytes + 64 * 1024, manifest)


def format_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def start_server(config: AgentConfig, opts: ServerOptions) -> RunningServer:
    """Start serving; the returned address carries the real port (``port=0`` picks one)."""
    limit = max_message_bytes(config)
    interceptors = [TokenInterceptor(opts.token)] if opts.token else []
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=opts.max_workers),
        interceptors=interceptors,
        options=[
            ("grpc.max_receive_message_length", limit),
            ("grpc.max_send_message_length", 4 * 1024 * 1024),
        ],
    )
    service = DeviceAgentService(config)
    pb_grpc.add_DeviceAgentServicer_to_server(service, server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    bind = format_address(opts.host, opts.port)
    if opts.tls_cert is not None and opts.tls_key is not None:
        creds = grpc.ssl_server_credentials([(opts.tls_key, opts.tls_cert)])
        port = server.add_secure_port(bind, creds)
    else:
        port = server.add_insecure_port(bind)
    if port == 0:
        raise OSError(f"could not bind {bind}")
    server.start()
    for name in ("", SERVICE_NAME):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return RunningServer(server, health_servicer, service, format_address(opts.host, port))


def stop_server(running: RunningServer, grace_s: float) -> None:
    """Health goes NOT_SERVING first, so balancers and hosts stop sending, then drain."""
    running.health.enter_graceful_shutdown()
    running.server.stop(grace_s).wait()
    running.service.close()
