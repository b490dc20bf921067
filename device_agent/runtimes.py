"""Which inference runtimes this board has, without importing them in the agent process.

The agent only looks runtimes up (``importlib.util.find_spec`` + package metadata): importing
onnxruntime or LiteRT would add tens of MB to the idle agent's RSS, and a runtime that imports
but crashes must take down a worker, not the agent. The worker imports the runtime for real
and reports its own ``__version__``.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
from dataclasses import dataclass, field

from protos import hadmc_device_pb2 as pb
from protos import runtimes as runtime_table


@dataclass(frozen=True)
class RuntimeSpec:
    """A runtime the agent knows: its table name, wire enums, import name, distributions."""

    name: str  # the runtime table's name: what travels (runtime_name) and provenance says
    runtime: int  # its Runtime enum value, for clients older than runtime_name; 0 if none
    module: str
    distributions: tuple[str, ...]
    formats: tuple[int, ...]  # ModelFormat enum values; empty for a runtime newer than them
    format: str  # the table's format word ("onnx", "tflite"): what security checks by


@dataclass
class RuntimeStatus:
    spec: RuntimeSpec
    available: bool
    version: str = ""
    unavailable_reason: str = ""
    formats: tuple[int, ...] = field(default_factory=tuple)


def _enum(enum: object, name: str) -> int:
    return enum.Value(name) if name else 0  # type: ignore[attr-defined]


# Built from the runtime table shared with the host (protos.runtimes), keyed by name.
RUNTIMES: dict[str, RuntimeSpec] = {
    r.name: RuntimeSpec(
        r.name,
        _enum(pb.Runtime, r.wire),
        r.module,
        r.distributions,
        (_enum(pb.ModelFormat, r.format_wire),) if r.format_wire else (),
        r.format,
    )
    for r in runtime_table.TABLE
}
_BY_ENUM = {spec.runtime: name for name, spec in RUNTIMES.items() if spec.runtime}


def requested(runtime_name: str, runtime: int) -> str | None:
    """The runtime a request names: ``runtime_name`` when set (a client since that field),
    else the name of the ``runtime`` enum (an older client); None when neither is known or
    the two disagree."""
    by_enum = _BY_ENUM.get(runtime) if runtime else None
    if runtime_name:
        if runtime_name not in RUNTIMES or (runtime and by_enum != runtime_name):
            return None
        return runtime_name
    return by_enum


def _find(module: str) -> str | None:
    """None when ``module`` can be imported, else the reason it cannot; imports nothing.

    ``importlib.util.find_spec("a.b")`` imports the parent package ``a``, and
    ``ai_edge_litert/__init__`` loads libLiteRt.so (+3.5 MiB of agent RSS from the first
    GetInfo on, measured with bench/agent.py). So each dotted part is looked up with
    ``PathFinder`` in its parent's search locations, which reads directories only."""
    parts = module.split(".")
    path = None
    for depth in range(len(parts)):
        name = ".".join(parts[: depth + 1])
        try:
            if depth == 0:
                spec = importlib.util.find_spec(name)
            else:
                spec = importlib.machinery.PathFinder.find_spec(name, path)
        except (ImportError, ValueError) as exc:  # a blocked module (sys.modules[x] = None)
            return str(exc) or f"No module named {name!r}"
        if spec is None:
            return f"No module named {name!r}"
        path = spec.submodule_search_locations
        if depth < len(parts) - 1 and path is None:
            return f"No module named {module!r}; {name!r} is not a package"
    return None


def _version(dists: tuple[str, ...]) -> str:
    # Imported on the first GetInfo, not at start-up: importlib.metadata costs ~18 ms of the
    # agent's cold start (bench/agent.py), and nothing before LISTENING needs a version.
    import importlib.metadata

    for dist in dists:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return ""


def detect(name: str) -> RuntimeStatus:
    spec = RUNTIMES[name]
    reason = _find(spec.module)
    if reason is not None:
        return RuntimeStatus(spec, False, "", reason, spec.formats)
    return RuntimeStatus(spec, True, _version(spec.distributions), "", spec.formats)


def detect_all() -> list[RuntimeStatus]:
    return [detect(r) for r in RUNTIMES]
