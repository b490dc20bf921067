"""Typed agent errors: a gRPC status code plus a ProfileError for the trailer."""

from __future__ import annotations

from typing import NoReturn

import grpc

from protos import ERROR_TRAILER_KEY
from protos import hadmc_device_pb2 as pb

STATUS_OF_CODE: dict[int, grpc.StatusCode] = {
    pb.INVALID_MODEL: grpc.StatusCode.INVALID_ARGUMENT,
    pb.HASH_MISMATCH: grpc.StatusCode.INVALID_ARGUMENT,
    pb.INVALID_REQUEST: grpc.StatusCode.INVALID_ARGUMENT,
    pb.TOO_LARGE: grpc.StatusCode.RESOURCE_EXHAUSTED,
    pb.BUSY: grpc.StatusCode.RESOURCE_EXHAUSTED,
    pb.DISK_FULL: grpc.StatusCode.RESOURCE_EXHAUSTED,
    pb.MISSING_CHUNKS: grpc.StatusCode.FAILED_PRECONDITION,
    pb.RUNTIME_UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    pb.WORKER_CRASHED: grpc.StatusCode.ABORTED,
    pb.WORKER_TIMEOUT: grpc.StatusCode.DEADLINE_EXCEEDED,
    pb.UNAUTHENTICATED_TOKEN: grpc.StatusCode.UNAUTHENTICATED,
    pb.INTERNAL: grpc.StatusCode.INTERNAL,
}
# gRPC trailers are capped (16 KiB by default): a full list of missing hashes of a large
# model would replace the typed error with "metadata size exceeds hard limit". The trailer
# carries a sample and the count; the client asks MissingChunks for the full list.
MISSING_SAMPLE = 32


class AgentError(Exception):
    """Raised anywhere in the agent; the service turns it into status + trailer."""

    def __init__(self, code: int, message: str, missing: list[str] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.missing = missing or []

    @property
    def status(self) -> grpc.StatusCode:
        return STATUS_OF_CODE[self.code]

    def to_proto(self) -> pb.ProfileError:
        return pb.ProfileError(
            code=self.code,
            message=self.message[:2000],
            missing_sha256=self.missing[:MISSING_SAMPLE],
            missing_count=len(self.missing),
        )


def abort(context: grpc.ServicerContext, err: AgentError) -> NoReturn:
    """End the call with the error's status and its ProfileError in the trailer."""
    context.set_trailing_metadata(((ERROR_TRAILER_KEY, err.to_proto().SerializeToString()),))
    context.abort(err.status, err.message)
    raise AssertionError("unreachable")  # context.abort always raises
