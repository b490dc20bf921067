"""Validation of a ProfileRequest, and the worker request built from it.

Every field a client sends is checked against a range before the agent acts on it: enums
must name a known value, time budgets must be finite and at most ``MAX_SECONDS``, shapes
concrete, input bytes bounded, threads capped at the board's cores. A request that fails gets
INVALID_REQUEST or TOO_LARGE with a sentence saying which field; nothing reaches the worker
unchecked.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from device_agent import runtimes, sysinfo, targets
from device_agent.errors import AgentError
from device_agent.storage import max_manifest_chunks
from protos import hadmc_device_pb2 as pb
from protos import runtimes as runtime_table

DTYPE_BYTES = runtime_table.DTYPE_BYTES  # the shared table (protos.runtimes)
DTYPE_NAMES = {pb.DataType.Value(name.upper()): name for name in DTYPE_BYTES}
DTYPE_ENUMS = {v: k for k, v in DTYPE_NAMES.items()}
MAX_SECONDS = 2_147_483.0  # 2**31 ms (24.8 days): longer overflows int32 milliseconds
MAX_INPUTS = 64


@dataclass(frozen=True)
class Limits:
    """The agent's own limits, which no request can raise."""

    max_model_bytes: int
    cache_capacity_bytes: int
    max_input_bytes: int
    worker_timeout_s: float
    default_max_seconds: float


def check_request(
    req: pb.ProfileRequest, limits: Limits
) -> tuple[runtimes.RuntimeStatus, str, targets.Target]:
    """The runtime's status, its model format (the table's word) and the execution target,
    or AgentError naming the bad field."""
    runtime = runtimes.requested(req.runtime_name, req.runtime)
    if runtime is None:
        asked = f"{req.runtime_name!r}" if req.runtime_name else f"{req.runtime}"
        if req.runtime_name and req.runtime:
            asked += f" with runtime enum {req.runtime}"
        raise AgentError(
            pb.INVALID_REQUEST,
            f"unknown runtime {asked}; this agent runs {', '.join(sorted(runtimes.RUNTIMES))}",
        )
    known = runtimes.RUNTIMES[runtime]
    if req.format and req.format not in pb.ModelFormat.values():
        raise AgentError(pb.INVALID_REQUEST, f"unknown model format {req.format}")
    # The format follows from the runtime; a client that also sends one must agree.
    if req.format and req.format not in known.formats:
        raise AgentError(
            pb.INVALID_REQUEST,
            f"{runtime} does not run {pb.ModelFormat.Name(req.format)} models",
        )
    _check_manifest(req.model, limits, "model")
    if req.HasField("reference"):
        _check_manifest(req.reference, limits, "reference model")
        if req.model.size_bytes + req.reference.size_bytes > limits.cache_capacity_bytes:
            raise AgentError(pb.TOO_LARGE, "model and reference together exceed the chunk cache")
    budgets = {
        "warmup_min_seconds": req.warmup_min_seconds,
        "min_seconds": req.min_seconds,
        "max_seconds": req.max_seconds,
        "timeout_seconds": req.timeout_seconds,
    }
    for name, value in budgets.items():
        if not (math.isfinite(value) and 0 <= value <= MAX_SECONDS):
            raise AgentError(
                pb.INVALID_REQUEST, f"{name} must be between 0 and {MAX_SECONDS:.0f} s: {value}"
            )
    if len(req.inputs) > MAX_INPUTS:
        raise AgentError(pb.INVALID_REQUEST, f"{len(req.inputs)} inputs (at most {MAX_INPUTS})")
    total = 0
    for spec in req.inputs:
        if spec.dtype and spec.dtype not in DTYPE_NAMES:
            raise AgentError(pb.INVALID_REQUEST, f"unsupported input dtype {spec.dtype}")
        if not spec.shape or any(d <= 0 for d in spec.shape):
            raise AgentError(pb.INVALID_REQUEST, f"input shape must be concrete: {spec.shape}")
        total += math.prod(spec.shape) * DTYPE_BYTES[DTYPE_NAMES.get(spec.dtype, "float32")]
    if total > limits.max_input_bytes:
        raise AgentError(
            pb.TOO_LARGE,
            f"inputs of {total} B in all over the agent's {limits.max_input_bytes} B limit",
        )
    target = targets.resolve(req.target, runtime)
    targets.check_options(target, dict(req.provider_options))
    status = runtimes.detect(runtime)
    if not status.available:
        raise AgentError(
            pb.RUNTIME_UNAVAILABLE,
            f"{status.spec.name} is not available on this board: {status.unavailable_reason}",
        )
    return status, known.format, target


def _check_manifest(manifest: pb.ModelManifest, limits: Limits, what: str) -> None:
    if manifest.size_bytes > limits.max_model_bytes:
        raise AgentError(
            pb.TOO_LARGE,
            f"{what} of {manifest.size_bytes} B over the {limits.max_model_bytes} B limit",
        )
    if manifest.size_bytes > limits.cache_capacity_bytes:
        raise AgentError(pb.TOO_LARGE, f"{what} larger than the chunk cache")
    if len(manifest.chunks) > max_manifest_chunks(limits.max_model_bytes):
        raise AgentError(pb.TOO_LARGE, f"{what}: manifest names {len(manifest.chunks)} chunks")


def timeout_s(req: pb.ProfileRequest, limits: Limits) -> float:
    """The worker's wall-clock limit: the request's, never above the agent's."""
    return min(req.timeout_seconds or limits.worker_timeout_s, limits.worker_timeout_s)


def threads(req: pb.ProfileRequest) -> int:
    """Intra-op threads, capped at the board's logical cores (0 keeps the runtime default)."""
    logical, _ = sysinfo.cores()
    return min(req.threads, max(1, logical))


def worker_request(
    req: pb.ProfileRequest,
    limits: Limits,
    path: Path,
    target: targets.Target,
    sysfs_root: Path,
    fault: str = "",
    reference_path: Path | None = None,
) -> dict[str, Any]:
    max_s = req.max_seconds or limits.default_max_seconds
    return {
        "model_path": str(path),
        "reference_path": str(reference_path) if reference_path else "",
        "runtime": target.runtime,
        "target": target.name,
        "backend": target.backend,
        "provider_options": dict(req.provider_options),
        "threads": threads(req),
        "inputs": [
            {"name": s.name, "shape": list(s.shape), "dtype": DTYPE_NAMES.get(s.dtype, "")}
            for s in req.inputs
        ],
        "max_input_bytes": limits.max_input_bytes,
        "budget": {
            "warmup_runs": req.warmup_runs,
            "warmup_min_seconds": req.warmup_min_seconds,
            "min_runs": max(1, req.min_runs),
            "min_seconds": req.min_seconds,
            "max_seconds": max(max_s, req.min_seconds),
        },
        "read_power": req.read_power,
        "sysfs_root": str(sysfs_root),
        "fault": fault,
    }
