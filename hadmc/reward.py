"""Scalar reward for one compressed candidate, relative to the uncompressed baseline.

Formula (MnasNet-style multiplicative reward, Tan et al. 2019, plus hard-constraint penalties)::

    r_i      = clip(m_i / b_i, RATIO_MIN, RATIO_MAX)         for i in latency, memory, size, energy
    r_update = clip((update_bytes + 1) / (b_size_bytes + 1), RATIO_MIN, RATIO_MAX)
    base     = accuracy * prod_i r_i ** w_i                  (all w_i <= 0: smaller is better)
    v_j      = relative excess over user limit j (0 when within it):
                 latency:  latency_ms / max_latency_ms - 1
                 memory:   memory_mb / max_memory_mb - 1
                 accuracy: (drop_points - max_accuracy_drop) / max(max_accuracy_drop, 1)
                           with drop_points = 100 * (baseline accuracy - accuracy)
    reward   = base - penalty * sum_j (violation_offset + v_j)   over violated limits j

``m`` is the candidate and ``b`` the baseline measured on the same device. The update term
compares the bytes an over-the-air update must send with shipping the whole baseline model
(+1 on both sides guards update_bytes == 0). Energy enters only when both candidate and
baseline have it. Ratios are clipped to [0.01, 100] so a degenerate measurement cannot send the
reward to infinity.

Default weights, and why:
- latency -0.25: the primary deployment goal; halving latency multiplies the reward by 1.19,
  worth about a 16 % relative accuracy loss, so accuracy still dominates small speed gains
  (MnasNet's soft-constraint -0.07 pushed too weakly for a compression search with 5 agents).
- size -0.10: flash/storage and download cost; pruning and int8 both shrink it.
- memory -0.05: peak RSS is dominated by the runtime's fixed footprint on small models, so
  its ratio moves little; a small weight avoids rewarding noise.
- energy -0.10: mostly proportional to latency already; a small weight so it is not counted
  twice, but it still separates candidates where utilisation differs.
- update_bytes -0.05: secondary goal (cheap OTA updates); a small weight because the ratio can
  be very small (an update scope of BN+bias changes few bytes).

Penalties are linear in the violation size, so an infeasible candidate that is closer to
feasibility scores higher (a gradient back), and ``violation_offset`` (default 0.1) makes even a
tiny violation cost a fixed step, so a marginally infeasible candidate rarely beats a feasible one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

RATIO_MIN = 0.01
RATIO_MAX = 100.0

DEFAULT_WEIGHTS: dict[str, float] = {
    "latency": -0.25,
    "size": -0.10,
    "memory": -0.05,
    "energy": -0.10,
    "update": -0.05,
}


@dataclass
class Objectives:
    """The measured objectives of one model (accuracy in [0, 1])."""

    accuracy: float
    latency_ms: float
    memory_mb: float
    energy_mj: float | None
    size_bytes: int
    update_bytes: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Objectives:
        """Inverse of :meth:`to_dict`."""
        return cls(
            accuracy=float(d["accuracy"]),
            latency_ms=float(d["latency_ms"]),
            memory_mb=float(d["memory_mb"]),
            energy_mj=None if d.get("energy_mj") is None else float(d["energy_mj"]),
            size_bytes=int(d["size_bytes"]),
            update_bytes=int(d.get("update_bytes", 0)),
        )

    @classmethod
    def from_metrics(cls, metrics: Mapping[str, Any]) -> Objectives:
        """From a candidate metrics dict (``accuracy``, ``latency_ms_p50``, ``peak_memory_mb``,
        ``energy_mj``, ``size_bytes``, ``update_bytes``) as the search stores it."""
        missing = [
            k
            for k in ("accuracy", "latency_ms_p50", "peak_memory_mb", "size_bytes")
            if metrics.get(k) is None
        ]
        if missing:
            raise ValueError(f"metrics lack {missing}")
        return cls(
            accuracy=float(metrics["accuracy"]),
            latency_ms=float(metrics["latency_ms_p50"]),
            memory_mb=float(metrics["peak_memory_mb"]),
            energy_mj=None if metrics.get("energy_mj") is None else float(metrics["energy_mj"]),
            size_bytes=int(metrics["size_bytes"]),
            update_bytes=int(metrics.get("update_bytes") or 0),
        )


@dataclass
class Limits:
    """User hard constraints; ``None`` = unconstrained. Accuracy drop is in points (0-100)."""

    max_latency_ms: float | None = None
    max_accuracy_drop: float | None = None
    max_memory_mb: float | None = None

    def __post_init__(self) -> None:
        for name in ("max_latency_ms", "max_memory_mb"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be > 0, got {value}")
        if self.max_accuracy_drop is not None and not 0 <= self.max_accuracy_drop <= 100:
            raise ValueError(
                f"max_accuracy_drop is in points (0-100), got {self.max_accuracy_drop}"
            )


def limit_violations(
    candidate: Objectives, baseline: Objectives, limits: Limits
) -> dict[str, float]:
    """Relative excess over each violated limit (see module docstring); empty = feasible."""
    out: dict[str, float] = {}
    if limits.max_latency_ms is not None and candidate.latency_ms > limits.max_latency_ms:
        out["latency"] = candidate.latency_ms / limits.max_latency_ms - 1.0
    if limits.max_memory_mb is not None and candidate.memory_mb > limits.max_memory_mb:
        out["memory"] = candidate.memory_mb / limits.max_memory_mb - 1.0
    if limits.max_accuracy_drop is not None:
        drop_points = 100.0 * (baseline.accuracy - candidate.accuracy)
        if drop_points > limits.max_accuracy_drop:
            out["accuracy"] = (drop_points - limits.max_accuracy_drop) / max(
                limits.max_accuracy_drop, 1.0
            )
    return out


@dataclass
class RewardConfig:
    """Weights (exponents, <= 0) per objective, user limits, and penalty scale."""

    weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    limits: Limits = field(default_factory=Limits)
    penalty: float = 1.0
    violation_offset: float = 0.1

    def __post_init__(self) -> None:
        unknown = sorted(set(self.weights) - set(DEFAULT_WEIGHTS))
        if unknown:
            raise ValueError(f"unknown reward weights {unknown}; known: {sorted(DEFAULT_WEIGHTS)}")
        if self.penalty < 0 or self.violation_offset < 0:
            raise ValueError("penalty and violation_offset must be >= 0")


@dataclass
class RewardBreakdown:
    """``reward`` and how it was made: ``terms`` (factors and penalty), ``violations``."""

    reward: float
    terms: dict[str, float]
    violations: dict[str, float]

    @property
    def feasible(self) -> bool:
        return not self.violations


def _ratio(value: float, base: float, name: str) -> float:
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"candidate {name} must be finite and >= 0, got {value}")
    return min(max(value / base, RATIO_MIN), RATIO_MAX)


def compute_reward(
    candidate: Objectives, baseline: Objectives, config: RewardConfig | None = None
) -> RewardBreakdown:
    """Reward of ``candidate`` against ``baseline`` (formula in the module docstring)."""
    config = config or RewardConfig()
    if not 0.0 <= candidate.accuracy <= 1.0:
        raise ValueError(f"accuracy must be in [0, 1], got {candidate.accuracy}")
    for name in ("latency_ms", "memory_mb", "size_bytes"):
        if getattr(baseline, name) <= 0:
            raise ValueError(f"baseline {name} must be > 0, got {getattr(baseline, name)}")

    ratios: dict[str, float] = {
        "latency": _ratio(candidate.latency_ms, baseline.latency_ms, "latency_ms"),
        "memory": _ratio(candidate.memory_mb, baseline.memory_mb, "memory_mb"),
        "size": _ratio(candidate.size_bytes, baseline.size_bytes, "size_bytes"),
        "update": _ratio(candidate.update_bytes + 1.0, baseline.size_bytes + 1.0, "update_bytes"),
    }
    if (
        candidate.energy_mj is not None
        and baseline.energy_mj is not None
        and baseline.energy_mj > 0
    ):
        ratios["energy"] = _ratio(candidate.energy_mj, baseline.energy_mj, "energy_mj")

    terms: dict[str, float] = {"accuracy": candidate.accuracy}
    base = candidate.accuracy
    for name, ratio in ratios.items():
        factor = ratio ** config.weights.get(name, 0.0)
        terms[name] = factor
        base *= factor
    terms["base"] = base

    violations = limit_violations(candidate, baseline, config.limits)
    penalty = config.penalty * sum(config.violation_offset + v for v in violations.values())
    terms["penalty"] = penalty
    return RewardBreakdown(reward=base - penalty, terms=terms, violations=violations)
