"""Failed RPCs to ``hadmc-device`` as typed, one-line ``DeviceError``s.

The agent's ``ErrorCode`` maps one to one onto the host's error codes (``CODE_OF_ERROR``);
without a trailer (a proxy, gRPC's own limits) the status code decides (``STATUS_TO_CODE``).
``MISSING_CHUNKS`` is not an error but a signal to re-upload: ``MissingChunksError``.
"""

from __future__ import annotations

import grpc

from hadmc.device.hal import DeviceError
from protos import ERROR_TRAILER_KEY
from protos import hadmc_device_pb2 as pb

STATUS_TO_CODE: dict[grpc.StatusCode, tuple[str, bool]] = {
    grpc.StatusCode.UNAVAILABLE: ("unreachable", True),
    grpc.StatusCode.UNAUTHENTICATED: ("unauthenticated", False),
    grpc.StatusCode.INVALID_ARGUMENT: ("invalid_model", False),
    grpc.StatusCode.RESOURCE_EXHAUSTED: ("too_large", False),
    grpc.StatusCode.ABORTED: ("crashed", False),
    grpc.StatusCode.DEADLINE_EXCEEDED: ("timeout", False),
}

# The agent's ErrorCode, one to one (protos/hadmc_device.proto): (host code, retryable).
# MISSING_CHUNKS is handled apart (re-upload); BUSY is worth a retry after a back-off.
CODE_OF_ERROR: dict[int, tuple[str, bool]] = {
    pb.INVALID_MODEL: ("invalid_model", False),
    pb.HASH_MISMATCH: ("hash_mismatch", False),
    pb.INVALID_REQUEST: ("invalid_request", False),
    pb.TOO_LARGE: ("too_large", False),
    pb.BUSY: ("busy", True),
    pb.DISK_FULL: ("disk_full", False),
    pb.MISSING_CHUNKS: ("internal", False),
    pb.RUNTIME_UNAVAILABLE: ("runtime_unavailable", False),
    pb.WORKER_CRASHED: ("crashed", False),
    pb.WORKER_TIMEOUT: ("timeout", False),
    pb.UNAUTHENTICATED_TOKEN: ("unauthenticated", False),
    pb.INTERNAL: ("internal", False),
}


class MissingChunksError(Exception):
    """Profile said FAILED_PRECONDITION: chunks of the manifest are not in the agent's cache."""

    def __init__(self, missing: list[str], count: int = 0) -> None:
        count = max(count, len(missing))  # agents before missing_count sent the full list
        super().__init__(f"{count} chunks missing on the device")
        self.missing = missing  # a sample
        self.count = count


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def read_profile_error(err: grpc.RpcError) -> pb.ProfileError | None:
    """The ``ProfileError`` from the ``hadmc-error-bin`` trailer, or None when absent."""
    try:
        trailers = err.trailing_metadata() or ()  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001 - some RpcErrors (e.g. from channel setup) carry none
        return None
    for key, value in trailers:
        if key == ERROR_TRAILER_KEY:
            perr = pb.ProfileError()
            try:
                perr.ParseFromString(bytes(value))
            except Exception:  # noqa: BLE001 - a malformed trailer is reported as absent
                return None
            return perr
    return None


def map_rpc_error(err: grpc.RpcError, address: str, what: str) -> DeviceError | MissingChunksError:
    """Turn a failed RPC into a typed, one-line ``DeviceError`` (or ``MissingChunksError``)."""
    status = err.code()  # type: ignore[attr-defined]
    details = _one_line(err.details() or "")  # type: ignore[attr-defined]
    perr = read_profile_error(err)
    message = _one_line(perr.message) if perr is not None and perr.message else details
    if (
        what == "Profile"
        and status == grpc.StatusCode.FAILED_PRECONDITION
        and perr is not None
        and perr.code == pb.MISSING_CHUNKS
    ):
        return MissingChunksError(list(perr.missing_sha256), perr.missing_count)
    if perr is not None and perr.code == pb.RUNTIME_UNAVAILABLE:
        return DeviceError("runtime_unavailable", f"{address}: {what}: {message}")
    if status == grpc.StatusCode.UNAVAILABLE:
        hint = "is hadmc-device running there?"
        lowered = message.lower()
        if "tls" in lowered or "ssl" in lowered or "handshake" in lowered:
            hint = "the agent does not speak TLS: drop --tls-ca"
        elif "socket closed" in lowered:
            hint = "if the agent was started with --tls-cert, pass its CA with --tls-ca"
        return DeviceError(
            "unreachable",
            f"cannot reach device agent at {address} ({message}); {hint}",
            retryable=True,
        )
    if status == grpc.StatusCode.DEADLINE_EXCEEDED and perr is None and what != "Profile":
        # A client-side deadline on a short call means no answer at all, not a slow model.
        return DeviceError(
            "unreachable",
            f"no answer from device agent at {address} ({what}: {message})",
            retryable=True,
        )
    if perr is not None and perr.code in CODE_OF_ERROR:
        code, retryable = CODE_OF_ERROR[perr.code]
    elif status == grpc.StatusCode.RESOURCE_EXHAUSTED and "concurrent rpc limit" in message.lower():
        code, retryable = "busy", True  # gRPC's own flood guard answers without a trailer
    else:
        code, retryable = STATUS_TO_CODE.get(status, ("internal", False))
    if code == "unauthenticated":
        message = f"{message} (pass the agent's token with --token)"
    return DeviceError(code, f"{address}: {what} failed: {message}", retryable=retryable)
