"""Scalar reward for one compressed candidate, relative to the uncompressed baseline.

Formula: MnasNet's soft-constraint reward against targets (Tan et al. 2019), inside tiers whose
value ranges do not overlap, so the ordering guarantees below hold by construction::

    tier        condition                                reward              range
    feasible    not collapsed, every hard limit met      base                (0, inf)
    infeasible  not collapsed, some hard limit violated  -s / (1 + s)        [-1, 0)
    collapsed   accuracy <= floor                        -2 - (1 - a/floor)  [-3, -2]

    floor = COLLAPSE_FRACTION * baseline accuracy
    base  = a * prod_i r_i ** w_i,   r_i = clip(m_i / T_i, RATIO_MIN, RATIO_MAX)
            w_i = w_below_i (``weights``)       when m_i <= T_i
            w_i = w_above_i (``weights_above``) when m_i >  T_i     (w_above_i <= w_below_i <= 0)
    s     = penalty * sum_j (violation_offset + v_j)      over the violated limits j
    v_j   = relative excess over user limit j:
              latency:  latency_ms / max_latency_ms - 1
              memory:   memory_mib / max_memory_mib - 1
              accuracy: (drop_points - max_accuracy_drop) / max(max_accuracy_drop, 1),
                        drop_points = 100 * (baseline accuracy - a)

``a`` is the candidate's accuracy, ``m_i`` its measured objectives (same device as the
baseline). Targets ``T_i``: latency ``max_latency_ms``, memory ``max_memory_mib`` when the user
gave them, otherwise the baseline's value; size and energy: the baseline's (energy only when
candidate and baseline both have it); update: see below. Ratios are clipped to [0.01, 100] so
a degenerate measurement cannot send the reward to 0 or infinity.

Guarantees (tests/test_reward.py checks each one):

(a) Infeasible < feasible, whatever the magnitudes: base > 0 (a > floor > 0 and every factor
    is positive) while -s/(1+s) < 0 (s > 0 because ``penalty > 0`` and every v_j > 0). So a
    candidate beyond ``max_accuracy_drop`` scores below every candidate meeting all limits,
    also below a feasible one that is slower or larger than the baseline; likewise for the
    latency and memory limits.
(b) Collapsed < everything else: <= -2 < -1 <= the infeasible tier. A collapsed model (at most
    half the baseline's accuracy, the same bound as ``ParetoArchive.min_accuracy``) is broken
    however fast it is, so it scores below the baseline (whose reward against itself is about
    its accuracy) even when no accuracy limit is set. Speed does not enter this tier, only
    accuracy, so the search still gets a gradient out of it (towards a higher accuracy).
(c) Within the infeasible tier a smaller violation scores higher (-s/(1+s) is strictly
    decreasing in s), a gradient back towards feasibility; the v/(1+v)-type squashing keeps it
    inside [-1, 0) so it never reaches the feasible tier. ``violation_offset`` makes each
    violated limit cost a fixed step, so violating two limits slightly is worse than one.

Soft constraint at the target: below its target an objective is rewarded gently (w_below),
above it penalised ABOVE_TARGET_FACTOR = 4 times as steeply (w_above); the two meet at
r = 1, so the reward is continuous and decreasing in every cost. With the baseline as target
this means "slower than the uncompressed model" costs much more than "faster" gains. Above a
*user limit* the candidate is in the infeasible tier, so there w_above only shows in ``terms``.

Default weights (w_below; w_above = 4 x w_below), and why:
- latency -0.25 (above -1.0): the primary deployment goal. Halving latency multiplies the
  reward by 1.19, worth about a 16 % relative accuracy loss, so accuracy still dominates small
  speed gains (MnasNet's -0.07 pushed too weakly for a compression search with 5 agents).
  Above the target -1.0 is MnasNet's hard-constraint exponent: 10 % too slow costs 9 %.
- size -0.10 (above -0.40): flash/storage and download cost; pruning and int8 both shrink it.
- memory -0.05 (above -0.20): peak RSS is dominated by the runtime's fixed footprint on small
  models, so its ratio moves little; a small weight avoids rewarding noise.
- energy -0.10 (above -0.40): mostly proportional to latency already; small so it is not
  counted twice, but it still separates candidates where utilisation differs.
- update_size -0.05 (above -0.20): secondary goal (cheap OTA updates).

Size and update bytes are not counted twice. The bytes an OTA update sends, relative to
shipping the baseline, factor exactly as::

    update_bytes / b_size = (size_bytes / b_size) * (update_bytes / size_bytes)

The size term takes the first factor. The update term takes only the second, the fraction of
the candidate's own bytes that the update must send: ``m = update_bytes + 1`` against
``T = size_bytes + 1`` (+1 guards empty files and update_bytes == 0). For a pruned or
re-quantised model nearly every chunk changes, update_bytes ~= size_bytes, so the fraction is
~1 and the update factor ~1: that saving is already in the size term (the previous formula,
update_bytes / b_size, counted it a second time). The update term rewards only what
content-defined chunking adds on top: chunks left unchanged, e.g. by a BN+bias update scope.
A delta never exceeds the file (``hadmc.device.chunking.delta_bytes`` counts the new file's chunks),
so the update ratio is <= 1 and w_above of the update term is a formality. The deployed
baseline itself (update_bytes 0, as the search stores it) gets the largest update factor,
RATIO_MIN ** -0.05 = 1.259: sending nothing is the cheapest possible update.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

RATIO_MIN = 0.01
RATIO_MAX = 100.0
# At or below this fraction of the baseline's accuracy a model is broken (collapsed), not a
# trade-off. hadmc.search.pareto derives the archive's front floor from the same constant.
COLLAPSE_FRACTION = 0.5
# Accuracies are fractions (e.g. 0.975), so 100 * (0.985 - 0.975) = 1.0000000000000009 points:
# a drop exactly at the limit must not count as a violation because of float rounding.
DROP_EPSILON_POINTS = 1e-9
# w_above = ABOVE_TARGET_FACTOR * w_below by default (see module docstring).
ABOVE_TARGET_FACTOR = 4.0

DEFAULT_WEIGHTS: dict[str, float] = {
    "latency": -0.25,
    "size": -0.10,
    "memory": -0.05,
    "energy": -0.10,
    "update_size": -0.05,
}
DEFAULT_WEIGHTS_ABOVE: dict[str, float] = {
    k: ABOVE_TARGET_FACTOR * w for k, w in DEFAULT_WEIGHTS.items()
}

TIER_FEASIBLE = "feasible"
TIER_INFEASIBLE = "infeasible"
TIER_COLLAPSED = "collapsed"


@dataclass
class Objectives:
    """The measured objectives of one model (accuracy in [0, 1])."""

    accuracy: float
    latency_ms: float
    memory_mib: float
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
            memory_mib=float(d["memory_mib"]),
            energy_mj=None if d.get("energy_mj") is None else float(d["energy_mj"]),
            size_bytes=int(d["size_bytes"]),
            update_bytes=int(d.get("update_bytes", 0)),
        )

    @classmethod
    def from_metrics(cls, metrics: Mapping[str, Any]) -> Objectives:
        """From a candidate metrics dict (``accuracy``, ``latency_ms_p50`` or, when paired,
        ``latency_ms_p50_paired``, ``peak_memory_mib``, ``energy_mj``, ``size_bytes``,
        ``update_bytes``) as the search stores it."""
        missing = [
            k
            for k in ("accuracy", "latency_ms_p50", "peak_memory_mib", "size_bytes")
            if metrics.get(k) is None
        ]
        if missing:
            raise ValueError(f"metrics lack {missing}")
        # A paired measurement's latency is on the baseline's time base (host.search_eval):
        # the figure the search compares; latency_ms_p50 stays the window's raw reading.
        latency = metrics.get("latency_ms_p50_paired") or metrics["latency_ms_p50"]
        return cls(
            accuracy=float(metrics["accuracy"]),
            latency_ms=float(latency),
            memory_mib=float(metrics["peak_memory_mib"]),
            energy_mj=None if metrics.get("energy_mj") is None else float(metrics["energy_mj"]),
            size_bytes=int(metrics["size_bytes"]),
            update_bytes=int(metrics.get("update_bytes") or 0),
        )


@dataclass
class Limits:
    """User hard constraints; ``None`` = unconstrained. Accuracy drop is in points (0-100)."""

    max_latency_ms: float | None = None
    max_accuracy_drop: float | None = None
    max_memory_mib: float | None = None

    def __post_init__(self) -> None:
        for name in ("max_latency_ms", "max_memory_mib"):
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
    if limits.max_memory_mib is not None and candidate.memory_mib > limits.max_memory_mib:
        out["memory"] = candidate.memory_mib / limits.max_memory_mib - 1.0
    if limits.max_accuracy_drop is not None:
        drop_points = 100.0 * (baseline.accuracy - candidate.accuracy)
        if drop_points > limits.max_accuracy_drop + DROP_EPSILON_POINTS:
            out["accuracy"] = (drop_points - limits.max_accuracy_drop) / max(
                limits.max_accuracy_drop, 1.0
            )
    return out


def is_collapsed(candidate: Objectives, baseline: Objectives) -> bool:
    """At or below ``COLLAPSE_FRACTION`` of the baseline's accuracy (the lowest tier)."""
    return candidate.accuracy <= COLLAPSE_FRACTION * baseline.accuracy


def _check_weights(weights: Mapping[str, float], what: str) -> None:
    unknown = sorted(set(weights) - set(DEFAULT_WEIGHTS))
    if unknown:
        raise ValueError(f"unknown reward {what} {unknown}; known: {sorted(DEFAULT_WEIGHTS)}")
    positive = sorted(k for k, w in weights.items() if not w <= 0)
    if positive:
        # A positive exponent would reward a larger cost.
        raise ValueError(f"reward {what} must be <= 0 (smaller is better), got {positive}")


@dataclass
class RewardConfig:
    """Exponents per objective (<= 0; ``weights`` below the target, ``weights_above`` above
    it, default ``ABOVE_TARGET_FACTOR`` x ``weights``), user limits, and violation scale."""

    weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    limits: Limits = field(default_factory=Limits)
    penalty: float = 1.0
    violation_offset: float = 0.1
    weights_above: dict[str, float] | None = None

    def __post_init__(self) -> None:
        _check_weights(self.weights, "weights")
        if self.weights_above is None:
            self.weights_above = {k: ABOVE_TARGET_FACTOR * w for k, w in self.weights.items()}
        _check_weights(self.weights_above, "weights_above")
        shallower = sorted(
            k for k in DEFAULT_WEIGHTS if self.weights_above.get(k, 0.0) > self.weights.get(k, 0.0)
        )
        if shallower:
            # Otherwise exceeding the target would cost less than meeting it gains.
            raise ValueError(f"weights_above must be <= weights (steeper), not for {shallower}")
        # penalty > 0 keeps s > 0 for any violation, so infeasible stays strictly below 0 < base.
        if self.penalty <= 0 or self.violation_offset < 0:
            raise ValueError("penalty must be > 0 and violation_offset >= 0")


@dataclass
class RewardBreakdown:
    """``reward`` and how it was made: ``terms`` (factors, targets, penalty), ``violations``.

    ``feasible`` means "meets the user's hard limits" (as before); ``collapsed`` and ``tier``
    say which tier of the module docstring the reward is in.
    """

    reward: float
    terms: dict[str, float]
    violations: dict[str, float]
    collapsed: bool = False

    @property
    def feasible(self) -> bool:
        return not self.violations

    @property
    def tier(self) -> str:
        if self.collapsed:
            return TIER_COLLAPSED
        return TIER_FEASIBLE if self.feasible else TIER_INFEASIBLE


def _ratio(value: float, target: float, name: str) -> float:
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"candidate {name} must be finite and >= 0, got {value}")
    return min(max(value / target, RATIO_MIN), RATIO_MAX)


def _targets(
    candidate: Objectives, baseline: Objectives, limits: Limits
) -> dict[str, tuple[float, float]]:
    """Per objective: (measured value m_i, target T_i) as in the module docstring."""
    lat_t = limits.max_latency_ms if limits.max_latency_ms is not None else baseline.latency_ms
    mem_t = limits.max_memory_mib if limits.max_memory_mib is not None else baseline.memory_mib
    out: dict[str, tuple[float, float]] = {
        "latency": (candidate.latency_ms, lat_t),
        "memory": (candidate.memory_mib, mem_t),
        "size": (float(candidate.size_bytes), float(baseline.size_bytes)),
        "update_size": (candidate.update_bytes + 1.0, candidate.size_bytes + 1.0),
    }
    if (
        candidate.energy_mj is not None
        and baseline.energy_mj is not None
        and baseline.energy_mj > 0
    ):
        out["energy"] = (candidate.energy_mj, baseline.energy_mj)
    return out


def compute_reward(
    candidate: Objectives, baseline: Objectives, config: RewardConfig | None = None
) -> RewardBreakdown:
    """Reward of ``candidate`` against ``baseline`` (formula in the module docstring)."""
    config = config or RewardConfig()
    if not 0.0 <= candidate.accuracy <= 1.0:
        raise ValueError(f"accuracy must be in [0, 1], got {candidate.accuracy}")
    for name in ("latency_ms", "memory_mib", "size_bytes"):
        if getattr(baseline, name) <= 0:
            raise ValueError(f"baseline {name} must be > 0, got {getattr(baseline, name)}")
    if candidate.update_bytes < 0:
        raise ValueError(f"candidate update_bytes must be >= 0, got {candidate.update_bytes}")
    above = config.weights_above or {}

    terms: dict[str, float] = {"accuracy": candidate.accuracy}
    base = candidate.accuracy
    for name, (value, target) in _targets(candidate, baseline, config.limits).items():
        ratio = _ratio(value, target, name)
        weight = config.weights.get(name, 0.0) if value <= target else above.get(name, 0.0)
        factor = ratio**weight
        terms[name] = factor
        terms[f"{name}_target"] = target
        base *= factor
    terms["base"] = base

    violations = limit_violations(candidate, baseline, config.limits)
    s = config.penalty * sum(config.violation_offset + v for v in violations.values())
    terms["penalty"] = s / (1.0 + s)
    floor = COLLAPSE_FRACTION * baseline.accuracy
    collapsed = candidate.accuracy <= floor
    terms["collapsed"] = 1.0 if collapsed else 0.0
    if collapsed:
        # floor == 0 only for a 0-accuracy baseline; then a 0-accuracy candidate gets -3.
        reward = -2.0 - (1.0 - (candidate.accuracy / floor if floor > 0 else 0.0))
    elif violations:
        reward = -terms["penalty"]
    else:
        reward = base
    return RewardBreakdown(reward=reward, terms=terms, violations=violations, collapsed=collapsed)
