"""Which inference runtimes this board has, without importing them in the agent process.

The agent only looks runtimes up (``importlib.util.find_spec`` + package metadata): importing
onnxruntime or LiteRT would add tens of MB to the idle agent's RSS, and a runtime that imports
but crashes must take down a worker, not the agent. The worker imports the runtime for real
and reports its own ``__version__``.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from dataclasses import dataclass, field

from protos import hadmc_device_pb2 as pb
from protos import runtimes as runtime_table


@dataclass(frozen=True)
class RuntimeSpec:
    """A runtime the agent knows: its wire enum, import name, distributions, formats."""

    runtime: int
    name: str  # provenance label
    module: str
    distributions: tuple[str, ...]
    formats: tuple[int, ...]


@dataclass
class RuntimeStatus:
    spec: RuntimeSpec
    available: bool
    version: str = ""
    unavailable_reason: str = ""
    formats: tuple[int, ...] = field(default_factory=tuple)


# Built from the runtime table shared with the host (protos.runtimes), keyed by wire enum.
RUNTIMES: dict[int, RuntimeSpec] = {
    pb.Runtime.Value(r.wire): RuntimeSpec(
        pb.Runtime.Value(r.wire),
        r.name,
        r.module,
        r.distributions,
        (pb.ModelFormat.Value(r.format_wire),),
    )
    for r in runtime_table.TABLE
}

FORMAT_OF_RUNTIME = {k: spec.formats[0] for k, spec in RUNTIMES.items()}


def _find(module: str) -> str | None:
    """None when ``module`` can be imported, else the reason it cannot."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError) as exc:  # a parent package missing, or blocked
        return str(exc) or f"No module named {module!r}"
    return None if spec is not None else f"No module named {module!r}"


def _version(dists: tuple[str, ...]) -> str:
    for dist in dists:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return ""


def detect(runtime: int) -> RuntimeStatus:
    spec = RUNTIMES[runtime]
    reason = _find(spec.module)
    if reason is not None:
        return RuntimeStatus(spec, False, "", reason, spec.formats)
    return RuntimeStatus(spec, True, _version(spec.distributions), "", spec.formats)


def detect_all() -> list[RuntimeStatus]:
    return [detect(r) for r in RUNTIMES]
