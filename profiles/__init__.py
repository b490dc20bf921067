"""Device profiles: static facts about edge boards, one TOML file per device.

Each ``<name>.toml`` beside this module holds the keys of :class:`DeviceProfile`, every
number with its source in a comment (datasheet, well-known benchmark, or "approximate").
Profiles feed the simulated device (``hadmc.device.hal_sim``) and the hardware part of the search
state; a real board's live ``GetInfo`` always takes precedence where both exist.
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, fields
from importlib import resources
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised only on 3.10
    import tomli as tomllib

__all__ = ["DeviceProfile", "ProfileError", "list_profiles", "load_profile"]


class ProfileError(ValueError):
    """An unknown profile name or a malformed profile file."""


@dataclass(frozen=True)
class DeviceProfile:
    """Static description of one device. Units are in the field names."""

    name: str
    description: str
    arch: str  # "aarch64" | "x86_64"
    cpu: str
    cores: int
    peak_gflops_fp32: float  # whole CPU, all cores, theoretical
    int8_speedup: float  # int8 throughput / fp32 throughput on this CPU
    fp16_speedup: float  # fp16 throughput / fp32 throughput (1.0 = no fp16 arithmetic)
    memory_bandwidth_gbs: float  # theoretical peak DRAM bandwidth
    ram_mib: int
    idle_power_w: float
    max_power_w: float
    runtimes: tuple[str, ...]
    gpu: str = ""  # informational only; the runtimes measured here use the CPU

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["runtimes"] = list(self.runtimes)
        return d


_NUMERIC_POSITIVE = (
    "cores",
    "peak_gflops_fp32",
    "int8_speedup",
    "fp16_speedup",
    "memory_bandwidth_gbs",
    "ram_mib",
    "max_power_w",
)


def list_profiles() -> list[str]:
    """Names of the bundled profiles, sorted."""
    root = resources.files(__name__)
    return sorted(
        p.name[: -len(".toml")] for p in root.iterdir() if p.name.endswith(".toml") and p.is_file()
    )


def _validate(data: dict[str, Any], source: str) -> DeviceProfile:
    if "ram_mb" in data and "ram_mib" not in data:  # the key's name before it said MiB
        data = {("ram_mib" if k == "ram_mb" else k): v for k, v in data.items()}
    known = {f.name for f in fields(DeviceProfile)}
    required = {f.name for f in fields(DeviceProfile) if f.name != "gpu"}
    missing = sorted(required - data.keys())
    if missing:
        raise ProfileError(f"profile {source}: missing keys {missing}")
    unknown = sorted(data.keys() - known)
    if unknown:
        raise ProfileError(f"profile {source}: unknown keys {unknown}")
    for key in _NUMERIC_POSITIVE:
        value = data[key]
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise ProfileError(f"profile {source}: {key} must be a positive number, got {value!r}")
    if not isinstance(data["idle_power_w"], int | float) or data["idle_power_w"] < 0:
        raise ProfileError(f"profile {source}: idle_power_w must be >= 0")
    if data["idle_power_w"] > data["max_power_w"]:
        raise ProfileError(f"profile {source}: idle_power_w exceeds max_power_w")
    runtimes = data["runtimes"]
    if (
        not isinstance(runtimes, list)
        or not runtimes
        or not all(isinstance(r, str) for r in runtimes)
    ):
        raise ProfileError(f"profile {source}: runtimes must be a non-empty list of strings")
    values = dict(data)
    values["runtimes"] = tuple(runtimes)
    values["cores"] = int(data["cores"])
    values["ram_mib"] = int(data["ram_mib"])
    for key in ("peak_gflops_fp32", "int8_speedup", "fp16_speedup", "memory_bandwidth_gbs"):
        values[key] = float(data[key])
    values["idle_power_w"] = float(data["idle_power_w"])
    values["max_power_w"] = float(data["max_power_w"])
    return DeviceProfile(**values)


def load_profile(name: str) -> DeviceProfile:
    """Load a bundled profile by name (e.g. ``"raspberry-pi-4"``).

    Raises ``ProfileError`` listing the available names when ``name`` is unknown.
    """
    available = list_profiles()
    if name not in available:
        raise ProfileError(f"unknown device profile {name!r}; available: {', '.join(available)}")
    resource = resources.files(__name__).joinpath(f"{name}.toml")
    try:
        data = tomllib.loads(resource.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"profile {name}: invalid TOML: {exc}") from exc
    profile = _validate(data, name)
    if profile.name != name:
        raise ProfileError(f"profile file {name}.toml declares name {profile.name!r}")
    return profile
