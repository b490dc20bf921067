"""Bearer-token check on every call except the health service."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Any

import grpc

from device_agent.errors import AgentError
from protos import AUTH_METADATA_KEY, ERROR_TRAILER_KEY
from protos import hadmc_device_pb2 as pb

HEALTH_PREFIX = "/grpc.health.v1.Health/"


def _denier(message: str) -> Callable[[Any, grpc.ServicerContext], Any]:
    err = AgentError(pb.UNAUTHENTICATED_TOKEN, message).to_proto().SerializeToString()

    def deny(request: Any, context: grpc.ServicerContext) -> Any:
        context.set_trailing_metadata(((ERROR_TRAILER_KEY, err),))
        context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    return deny


def _ignore(raw: bytes) -> None:
    return None


class TokenInterceptor(grpc.ServerInterceptor):
    """Rejects calls without ``authorization: Bearer <token>`` (UNAUTHENTICATED)."""

    def __init__(self, token: str) -> None:
        self._expected = f"Bearer {token}".encode()

    def _authorized(self, metadata: tuple[tuple[str, Any], ...] | None) -> bool:
        for key, value in metadata or ():
            if key == AUTH_METADATA_KEY:
                got = value.encode() if isinstance(value, str) else bytes(value)
                return hmac.compare_digest(got, self._expected)  # constant time
        return False

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        if handler is None or handler_call_details.method.startswith(HEALTH_PREFIX):
            return handler
        if self._authorized(handler_call_details.invocation_metadata):
            return handler
        deny = _denier("missing or wrong token in 'authorization' metadata (Bearer <token>)")
        # The denial takes the request as a *stream* it never reads, whatever the method's
        # shape: gRPC reads a unary request in full before calling the handler, so a
        # unary denier would let an unauthenticated caller make the agent buffer (and parse)
        # a message of the full receive limit. The client still sees an ordinary reply.
        kw = {
            "request_deserializer": _ignore,
            "response_serializer": handler.response_serializer,
        }
        if handler.response_streaming:
            return grpc.stream_stream_rpc_method_handler(deny, **kw)
        return grpc.stream_unary_rpc_method_handler(deny, **kw)
