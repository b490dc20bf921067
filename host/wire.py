"""Wire messages (``protos``) as JSON-friendly dicts: the one place where proto <-> host
dataclasses are converted (``RemoteDevice``, the fleet commands)."""

from __future__ import annotations

from typing import Any

from protos import hadmc_device_pb2 as pb


def _opt(msg: Any, field: str) -> float | None:
    return getattr(msg, field) if msg.HasField(field) else None


def _tensor_spec_to_dict(t: pb.TensorSpec) -> dict[str, Any]:
    return {"name": t.name, "shape": list(t.shape), "dtype": pb.DataType.Name(t.dtype).lower()}


def provenance_to_dict(p: pb.Provenance) -> dict[str, Any]:
    return {
        "agent_version": p.agent_version,
        "hostname": p.hostname,
        "runtime": p.runtime,
        "runtime_version": p.runtime_version,
        "threads": p.threads,
        "inputs": [_tensor_spec_to_dict(t) for t in p.inputs],
        "cpu_governor": p.cpu_governor,
        "cpu_temperature_c": _opt(p, "cpu_temperature_c"),
        "queue_wait_seconds": p.queue_wait_seconds,
        "window_start_unix": p.window_start_unix,
        "window_end_unix": p.window_end_unix,
        "execution_provider": p.execution_provider,
        "target": p.target,
        "provider_options": dict(p.provider_options),
        "nodes_per_provider": dict(p.nodes_per_provider),
        "cpu_fallback_fraction": p.cpu_fallback_fraction if p.nodes_per_provider else None,
    }


def device_info_to_dict(m: pb.DeviceInfo, address: str) -> dict[str, Any]:
    """DeviceInfo as JSON-friendly types (MessageToDict would turn uint64 into strings)."""
    return {
        "address": address,
        "agent_version": m.agent_version,
        "hostname": m.hostname,
        "arch": m.arch,
        "cpu_model": m.cpu_model,
        "cpu_cores_logical": m.cpu_cores_logical,
        "cpu_cores_physical": m.cpu_cores_physical,
        "memory_total_bytes": m.memory_total_bytes,
        "memory_available_bytes": m.memory_available_bytes,
        "os": m.os,
        "python_version": m.python_version,
        "runtimes": [
            {
                # By name; an agent older than RuntimeInfo.name lists the enum only.
                "runtime": r.name or pb.Runtime.Name(r.runtime).lower(),
                "available": r.available,
                "version": r.version,
                "unavailable_reason": r.unavailable_reason,
                "formats": [pb.ModelFormat.Name(f).lower() for f in r.formats],
            }
            for r in m.runtimes
        ],
        "power_sources": [
            {"kind": s.kind, "path": s.path, "readable": s.readable, "detail": s.detail}
            for s in m.power_sources
        ],
        "max_model_bytes": m.max_model_bytes,
        "max_chunk_bytes": m.max_chunk_bytes,
        "cache_capacity_bytes": m.cache_capacity_bytes,
        "cache_used_bytes": m.cache_used_bytes,
        "cpu_governor": m.cpu_governor,
        "cpu_temperature_c": _opt(m, "cpu_temperature_c"),
        "token_required": m.token_required,
        "device_kind": m.device_kind,
        "targets": [
            {
                "target": t.target,
                "available": t.available,
                "detail": t.detail,
                "precisions": list(t.precisions),
                "options": list(t.options),
            }
            for t in m.targets
        ],
    }
