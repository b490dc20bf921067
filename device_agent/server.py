"""Assemble the gRPC server: DeviceAgent + grpc.health.v1 + reflection, auth, TLS, limits.

Load bounds, so health and GetInfo keep answering under hostile load: the thread pool is
larger than what long calls can hold (queued Profiles and upload streams are capped by the
service), ``maximum_concurrent_rpcs`` turns a flood into RESOURCE_EXHAUSTED instead of an
unbounded backlog, and ``grpc.so_reuseport`` is off so a second agent on a busy port fails
instead of silently sharing it.
"""

from __future__ import annotations

from concurrent import futures
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from device_agent import limits
from device_agent.auth import TokenInterceptor
from device_agent.service import AgentConfig, DeviceAgentService
from protos import hadmc_device_pb2 as pb
from protos import hadmc_device_pb2_grpc as pb_grpc

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["DeviceAgent"].full_name


@dataclass
class ServerOptions:
    host: str = "127.0.0.1"
    port: int = 50051
    token: str | None = None
    tls_cert: bytes | None = None
    tls_key: bytes | None = None
    max_workers: int = 64  # > queued Profiles + upload streams + short calls, so health is free
    max_concurrent_rpcs: int = 256  # beyond: RESOURCE_EXHAUSTED at once, not a backlog


@dataclass
class RunningServer:
    server: grpc.Server
    health: health.HealthServicer
    service: DeviceAgentService
    address: str


def format_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def start_server(config: AgentConfig, opts: ServerOptions) -> RunningServer:
    """Start serving; the returned address carries the real port (``port=0`` picks one)."""
    per_method = limits.method_limits(config.max_model_bytes, config.max_chunk_bytes)
    interceptors: list[grpc.ServerInterceptor] = [limits.MessageLimitInterceptor(per_method)]
    if opts.token:
        interceptors.insert(0, TokenInterceptor(opts.token))  # first: refuse before reading
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=opts.max_workers),
        interceptors=interceptors,
        maximum_concurrent_rpcs=opts.max_concurrent_rpcs,
        options=[
            ("grpc.max_receive_message_length", max(per_method.values())),
            ("grpc.max_send_message_length", limits.send_limit_bytes(config.max_model_bytes)),
            ("grpc.so_reuseport", 0),
            # No BDP probing: the receive window stays at gRPC's 64 KiB per stream instead of
            # growing to MiBs. A caller the token check refuses is never read, but gRPC core
            # buffers up to that window per stream first: 8 refused 38 MiB calls grew the RSS
            # 11-29 MiB quiet and 63 MiB under load with probing, 1.4 MiB without it. A 64 MiB
            # loopback upload took 14.6-17.4 s with probing and 16.5-19.0 s without: the
            # agent's hashing and disk writes, not the window, bound an upload.
            ("grpc.http2.bdp_probe", 0),
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
        raise OSError(
            f"could not bind {bind}: the port is in use or the address is not this machine's"
        )
    server.start()
    for name in ("", SERVICE_NAME):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return RunningServer(server, health_servicer, service, format_address(opts.host, port))


def stop_server(running: RunningServer, grace_s: float) -> None:
    """Health goes NOT_SERVING first, so balancers and hosts stop sending; in-flight calls get
    ``grace_s`` to finish; then they are cancelled and their workers (process groups) and the
    spare worker are killed, so the agent exits within the grace period, leaving no orphans."""
    running.health.enter_graceful_shutdown()
    done = running.server.stop(grace_s)
    done.wait(grace_s + 0.5)
    running.service.close()
    done.wait(2.0)
