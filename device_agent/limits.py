"""Message-size limits per method.

gRPC's Python server has one receive limit for all methods, so it must admit the largest
legitimate message: a Profile manifest of the largest model (many 1 KiB chunks). That limit
is set on the transport; on top, ``MessageLimitInterceptor`` checks each request's size
against its own method's limit *before* it is parsed, so a 38 MiB GetInfo is refused as
TOO_LARGE without building a 38 MiB message (and without any parsing). Unauthenticated calls
are refused before their message is even read (see ``auth.TokenInterceptor``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import grpc

from device_agent.errors import AgentError, abort
from device_agent.storage import max_manifest_chunks
from protos import hadmc_device_pb2 as pb

BYTES_PER_CHUNK_REF = 80  # a ChunkRef / hash entry on the wire: 64-char hash + size + framing
FRAMING_BYTES = 64 * 1024
SMALL_BYTES = 64 * 1024  # GetInfo, health, reflection
SERVICE_PREFIX = "/hadmc.device.v1.DeviceAgent/"


def method_limits(max_model_bytes: int, max_chunk_bytes: int) -> dict[str, int]:
    """Largest request each DeviceAgent method needs, in bytes."""
    hashes = max_manifest_chunks(max_model_bytes) * BYTES_PER_CHUNK_REF + FRAMING_BYTES
    return {
        "GetInfo": SMALL_BYTES,
        "MissingChunks": hashes,
        "UploadChunks": max_chunk_bytes + FRAMING_BYTES,  # per message of the stream
        "Profile": hashes,  # the manifest dominates; inputs are bounded (validation.MAX_INPUTS)
    }


def receive_limit_bytes(max_model_bytes: int, max_chunk_bytes: int) -> int:
    return max(method_limits(max_model_bytes, max_chunk_bytes).values())


def send_limit_bytes(max_model_bytes: int) -> int:
    """Largest reply: a MissingChunks list naming every chunk of the largest model."""
    return max(4 * 1024 * 1024, max_manifest_chunks(max_model_bytes) * BYTES_PER_CHUNK_REF)


class _Oversized:
    def __init__(self, size: int, limit: int) -> None:
        self.size, self.limit = size, limit


def _limited(deserialize: Callable[[bytes], Any], limit: int) -> Callable[[bytes], Any]:
    def check(raw: bytes) -> Any:
        return _Oversized(len(raw), limit) if len(raw) > limit else deserialize(raw)

    return check


def _refuse(context: grpc.ServicerContext, big: _Oversized, method: str) -> None:
    abort(
        context,
        AgentError(pb.TOO_LARGE, f"{method} request of {big.size} B over its {big.limit} B limit"),
    )


class MessageLimitInterceptor(grpc.ServerInterceptor):
    def __init__(self, limits: dict[str, int]) -> None:
        self.limits = limits

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(details)
        if handler is None or not details.method.startswith(SERVICE_PREFIX):
            return handler
        method = details.method[len(SERVICE_PREFIX) :]
        limit = self.limits.get(method)
        if limit is None:
            return handler
        kw = {
            "request_deserializer": _limited(handler.request_deserializer, limit),
            "response_serializer": handler.response_serializer,
        }
        if handler.request_streaming and not handler.response_streaming:
            inner_stream = handler.stream_unary

            def stream(requests: Iterator[Any], context: grpc.ServicerContext) -> Any:
                def checked() -> Iterator[Any]:
                    for r in requests:
                        if isinstance(r, _Oversized):
                            _refuse(context, r, method)
                        yield r

                return inner_stream(checked(), context)

            return grpc.stream_unary_rpc_method_handler(stream, **kw)
        if not handler.request_streaming and not handler.response_streaming:
            inner = handler.unary_unary

            def unary(request: Any, context: grpc.ServicerContext) -> Any:
                if isinstance(request, _Oversized):
                    _refuse(context, request, method)
                return inner(request, context)

            return grpc.unary_unary_rpc_method_handler(unary, **kw)
        return handler  # no streaming-response methods in this service
