"""State encoder of the compression environment: every feature normalised to about [0, 1].

The observation at step ``t`` (layer group ``t``) is the concatenation of three parts.

Layer-group features (``GROUP_FEATURES``), of the group the agents act on now:

==================  ==========================================================================
kind_conv/pointwise/depthwise/linear   one-hot of ``LayerGroup.kind``
out_channels        ``log2(out_channels) / log2(max out_channels over groups)``
kernel_size         ``kernel_size / max kernel size over groups``
stride              ``(stride - 1) / max(1, max stride - 1)`` (0 = stride 1)
log_macs            ``log10(1 + macs) / log10(1 + max macs over groups)``
params_share        ``params / sum(params over groups)``
position            ``LayerGroup.position`` (index / (n - 1))
sensitivity         accuracy drop (fraction, clipped to [0, 1]) on a validation subset when
                    this group alone is pruned to keep-ratio 0.5, BN re-estimated, no
                    fine-tuning; the keep-0.5 column of the table measured once at the start
                    of a search (``hadmc.surrogate.accuracy.measure_sensitivity_table``)
==================  ==========================================================================

Hardware features (``HARDWARE_FEATURES``), constant during a search:

==================  ==========================================================================
cores               ``min(cores, 16) / 16``
memory              ``log2(memory MiB) / log2(65536)`` (64 GiB = 1)
baseline_latency    ``log10(1 + baseline latency p50 ms) / 3`` (1 s = 1)
int8_available      1 when the runtime executes int8 kernels on this device, else 0
==================  ==========================================================================

Compression state (``COMPRESSION_FEATURES``), what the episode did so far and how the last
candidate fared. Between ``progress`` and the ``last_*`` features come the ``features()`` of
the per-group compression passes (``hadmc.compress.registry``), ordered by their ``slot``;
the built-in ones are:

==================  ==========================================================================
progress            ``t / n`` steps done in this episode
mean_keep           (pruning) mean keep-ratio chosen so far (1.0 before the first choice)
frac_int8           (quantization) fraction of groups so far quantized to int8 (0 before the
                    first choice)
macs_kept           (pruning) estimated fraction of the group MACs kept so far, as a budget
                    used: sum over done groups of ``macs_i * keep_i`` / total group MACs
last_acc_ratio      last candidate's accuracy / baseline accuracy (clipped to [0, 1.5]) / 1.5
last_lat_ratio      last candidate's latency / baseline latency (clipped to [0, 2]) / 2
last_size_ratio     last candidate's size / baseline size (clipped to [0, 2]) / 2
last_feasible       1 when the last candidate met the user's limits (0 before any)
==================  ==========================================================================
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from hadmc.compress.registry import CompressionPass, Feature, resolve_passes

KINDS = ("conv", "pointwise", "depthwise", "linear")
GROUP_FEATURES = tuple(f"kind_{k}" for k in KINDS) + (
    "out_channels",
    "kernel_size",
    "stride",
    "log_macs",
    "params_share",
    "position",
    "sensitivity",
)
HARDWARE_FEATURES = ("cores", "memory", "baseline_latency", "int8_available")
LAST_FEATURES = ("last_acc_ratio", "last_lat_ratio", "last_size_ratio", "last_feasible")


def choice_features(passes: Sequence[CompressionPass] | None = None) -> list[tuple[str, Feature]]:
    """(pass name, feature) of every per-group pass's observation features, by ``slot``."""
    found = [(p.name, f) for p in resolve_passes(passes) if p.per_group for f in p.features()]
    return sorted(found, key=lambda pf: pf[1].slot)  # stable: pass order within a slot


def feature_names(passes: Sequence[CompressionPass] | None = None) -> tuple[str, ...]:
    comp = ("progress", *(f.name for _, f in choice_features(passes)), *LAST_FEATURES)
    names = GROUP_FEATURES + HARDWARE_FEATURES + comp
    if len(set(names)) != len(names):
        raise ValueError(f"observation feature names must be unique, got {names}")
    return names


# The layout with the registered passes (the built-ins: mean_keep, frac_int8, macs_kept).
FEATURE_NAMES = feature_names()
COMPRESSION_FEATURES = FEATURE_NAMES[len(GROUP_FEATURES) + len(HARDWARE_FEATURES) :]


@dataclass(frozen=True)
class HardwareFeatures:
    """Raw hardware facts (units in the names) before normalisation."""

    cores: int
    memory_mib: float
    baseline_latency_ms: float
    int8_available: bool

    @classmethod
    def from_device_info(
        cls, info: Mapping[str, Any], baseline_latency_ms: float, runtime: str
    ) -> HardwareFeatures:
        """From ``Device.info()``; tolerant of the keys local, remote and simulated devices use."""
        profile = info.get("profile") or {}
        # Agents report cpu_cores_* / memory_total_bytes (GetInfo); sim: reports a profile.
        cores = int(
            info.get("cpu_cores_physical")
            or info.get("cpu_cores_logical")
            or info.get("cores")
            or profile.get("cores")
            or 1
        )
        if info.get("memory_total_bytes"):
            memory_mib = float(info["memory_total_bytes"]) / 2**20
        else:
            memory_mib = float(info.get("ram_mib") or profile.get("ram_mib") or 1024)
        # int8: onnxruntime on CPU and LiteRT (XNNPACK) both run int8 kernels when the
        # runtime is available; a profile whose int8_speedup <= 1 says int8 brings nothing.
        int8 = False
        for r in info.get("runtimes") or profile.get("runtimes") or []:
            if isinstance(r, str):
                int8 = int8 or r == runtime
            else:
                int8 = int8 or (r.get("runtime") == runtime and bool(r.get("available", True)))
        if profile.get("int8_speedup") is not None:
            int8 = int8 and float(profile["int8_speedup"]) > 1.0
        return cls(cores, memory_mib, baseline_latency_ms, int8)

    def vector(self) -> np.ndarray:
        return np.array(
            [
                min(self.cores, 16) / 16.0,
                min(math.log2(max(self.memory_mib, 1.0)) / 16.0, 1.0),
                min(math.log10(1.0 + max(self.baseline_latency_ms, 0.0)) / 3.0, 1.0),
                1.0 if self.int8_available else 0.0,
            ],
            dtype=np.float32,
        )


@dataclass(frozen=True)
class GroupInfo:
    """The fields of ``hadmc.compress.pruning.LayerGroup`` the encoder reads."""

    kind: str
    out_channels: int
    kernel_size: int
    stride: int
    macs: int
    params: int
    position: float

    @classmethod
    def from_group(cls, g: Any) -> GroupInfo:
        return cls(
            g.kind, g.out_channels, g.kernel_size, g.stride, int(g.macs), int(g.params), g.position
        )


@dataclass
class LastCandidate:
    """Metrics of the last candidate relative to the baseline (ratios)."""

    accuracy_ratio: float
    latency_ratio: float
    size_ratio: float
    feasible: bool


class ObservationEncoder:
    """Encodes (group index, choices so far, last candidate) into a float32 vector."""

    def __init__(
        self,
        groups: Sequence[Any],
        sensitivity: Sequence[float],
        hardware: HardwareFeatures,
        passes: Sequence[CompressionPass] | None = None,
    ) -> None:
        if not groups:
            raise ValueError("the model has no prunable layer groups")
        if len(sensitivity) != len(groups):
            raise ValueError(f"{len(sensitivity)} sensitivities for {len(groups)} groups")
        self.groups = [GroupInfo.from_group(g) for g in groups]
        for g in self.groups:
            if g.kind not in KINDS:
                raise ValueError(f"unknown layer-group kind {g.kind!r}; known {KINDS}")
        self.sensitivity = [min(max(float(s), 0.0), 1.0) for s in sensitivity]
        self.hardware = hardware
        self._group_vectors = self._encode_groups()
        self._hw = hardware.vector()
        total_macs = sum(g.macs for g in self.groups)
        self._macs_share = [g.macs / total_macs if total_macs else 0.0 for g in self.groups]
        self._choice_features = choice_features(passes)
        self.feature_names = feature_names(passes)

    @property
    def dim(self) -> int:
        return len(self.feature_names)

    def _encode_groups(self) -> list[np.ndarray]:
        max_ch = max(g.out_channels for g in self.groups)
        max_k = max(g.kernel_size for g in self.groups)
        max_s = max(g.stride for g in self.groups)
        max_macs = max(g.macs for g in self.groups)
        total_params = sum(g.params for g in self.groups) or 1
        out = []
        for g, sens in zip(self.groups, self.sensitivity, strict=True):
            onehot = [1.0 if g.kind == k else 0.0 for k in KINDS]
            out.append(
                np.array(
                    onehot
                    + [
                        math.log2(max(g.out_channels, 1)) / max(math.log2(max(max_ch, 2)), 1.0),
                        g.kernel_size / max(max_k, 1),
                        (g.stride - 1) / max(1, max_s - 1),
                        math.log10(1 + g.macs) / max(math.log10(1 + max_macs), 1e-9),
                        g.params / total_params,
                        float(g.position),
                        sens,
                    ],
                    dtype=np.float32,
                )
            )
        return out

    def encode(
        self,
        step: int,
        choices: Mapping[str, Sequence[Any]],
        last: LastCandidate | None,
    ) -> np.ndarray:
        """Observation for acting on group ``step`` (clamped to the last group when == n).

        ``choices``: the per-group values decided so far, by pass name (a pass not there has
        decided nothing yet).
        """
        n = len(self.groups)
        g = self._group_vectors[min(step, n - 1)]
        comp = [step / n]
        for name, f in self._choice_features:
            comp.append(f.compute(choices.get(name, ()), self._macs_share))
        if last is None:
            comp += [0.0, 0.0, 0.0, 0.0]
        else:
            comp += [
                min(max(last.accuracy_ratio, 0.0), 1.5) / 1.5,
                min(max(last.latency_ratio, 0.0), 2.0) / 2.0,
                min(max(last.size_ratio, 0.0), 2.0) / 2.0,
                1.0 if last.feasible else 0.0,
            ]
        return np.concatenate([g, self._hw, np.asarray(comp, dtype=np.float32)])
