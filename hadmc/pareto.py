"""Pareto archive of measured candidates and the hypervolume progress metric.

Directions: accuracy is maximised; latency, memory, size, energy and update bytes are
minimised. Dominance uses all six objectives, except energy, which is used only while every
archived point (and the baseline) has it, so a board without a power sensor still gets a front.

Measured objectives are noisy, so the front also drops members that another member beats by a
clear margin while being no worse than measurement noise everywhere else (epsilon-dominance,
Laumanns et al. 2002; tolerances in ``NOISE_TOLERANCE``). Why: with five objectives, a
candidate that collapsed to 10 % accuracy stayed "non-dominated" because its peak memory was
1 MB (1.6 %) below a 95 %-accurate one; that is run-to-run noise of peak RSS, not a trade-off.
A member is removed only by one that is strictly better beyond tolerance somewhere, so two
near-identical candidates both stay.

Hypervolume (exact, ``moocore.hypervolume``) is computed over normalised objectives, all turned
into "smaller is better" ratios against the uncompressed baseline::

    accuracy   -> 1 - accuracy / baseline_accuracy   (0 = baseline accuracy, 1 = accuracy 0)
    latency    -> latency_ms / baseline_latency_ms    (1 = as slow as the baseline)
    size       -> size_bytes / baseline_size_bytes
    memory     -> memory_mb / baseline_memory_mb

Objectives in the HV by default: accuracy, latency, size, memory (4-D, HV4D+ is exact and
O(n^2)); energy is left out because it is often unavailable and mostly tracks latency; update
bytes are left out because they depend on the deployed base, not on the model alone.

Reference point (fixed, so values are comparable across a run and between runs):
``0.5`` for the accuracy term and ``2.0`` for every cost ratio (a model twice as slow / large /
hungry as the baseline adds nothing). The baseline itself therefore has
HV = 0.5 x 1 x 1 x 1 = 0.5 (the product of the distances to the reference point).

Why 0.5 for accuracy, and why it also bounds the front: a model that keeps half of the
baseline's accuracy or less is broken, not a trade-off, yet a broken model is exactly as small
and fast as a working one of the same shape, so it is non-dominated on latency and size. In
real runs about half the candidates of a short search collapsed (over-pruned, or fine-tuned
with a narrow update scope) to 10-40 % on 10 classes and filled the front and the hypervolume.
Such candidates stay in the archive (and in the results database) but are never front members
and add no hypervolume: ``min_accuracy = (1 - 0.5) x baseline accuracy``, exclusive.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import moocore
import numpy as np

from hadmc.reward import Limits, Objectives, limit_violations

DEFAULT_HV_OBJECTIVES: tuple[str, ...] = ("accuracy", "latency", "size", "memory")
# Reference point per normalised objective (see module docstring).
REFERENCE_POINT: dict[str, float] = {
    "accuracy": 0.5,
    "latency": 2.0,
    "size": 2.0,
    "memory": 2.0,
    "energy": 2.0,
    "update": 2.0,
}
# Relative noise per minimised objective, used only for epsilon-dominance on the front.
# Latency and peak memory vary by a few percent between identical measurements; size and update
# bytes are exact; accuracy (fixed validation split) is exact, so it gets no tolerance.
NOISE_TOLERANCE: dict[str, float] = {
    "accuracy": 0.0,
    "latency": 0.03,
    "memory": 0.03,
    "size": 0.0,
    "update": 0.0,
    "energy": 0.05,
}
_ATTR = {
    "accuracy": "accuracy",
    "latency": "latency_ms",
    "memory": "memory_mb",
    "size": "size_bytes",
    "energy": "energy_mj",
    "update": "update_bytes",
}


@dataclass
class ArchiveEntry:
    candidate_id: int | str
    objectives: Objectives


def normalise(obj: Objectives, baseline: Objectives, names: Sequence[str]) -> list[float]:
    """Objectives as minimised ratios against ``baseline`` (see module docstring)."""
    out: list[float] = []
    for name in names:
        if name == "accuracy":
            out.append(1.0 - obj.accuracy / baseline.accuracy)
        elif name == "update":
            out.append((obj.update_bytes + 1.0) / (baseline.size_bytes + 1.0))
        else:
            value = getattr(obj, _ATTR[name])
            base = getattr(baseline, _ATTR[name])
            if value is None or base is None:
                raise ValueError(f"objective {name} is missing; cannot enter the hypervolume")
            out.append(float(value) / float(base))
    return out


def _epsilon_dominated(m: np.ndarray, names: Sequence[str], among: np.ndarray) -> np.ndarray:
    """Rows of ``m`` (all minimised) that some row in ``among`` beats beyond tolerance.

    ``a`` removes ``b`` when a is within tolerance of b or better on every objective and beyond
    tolerance better on at least one. Tolerances are relative to ``|b|`` (accuracy enters as
    -accuracy, with tolerance 0). Two rows can never remove each other: being beyond tolerance
    better on one objective contradicts being within tolerance there the other way round.
    """
    tol = np.asarray([NOISE_TOLERANCE[n] for n in names], dtype=float) * np.abs(m)
    out = np.zeros(len(m), dtype=bool)
    idx = np.flatnonzero(among)
    for b in idx:
        others = idx[idx != b]
        if not len(others):
            continue
        within = np.all(m[others] <= m[b] + tol[b], axis=1)
        clearly = np.any(m[others] < m[b] - tol[b], axis=1)
        out[b] = bool(np.any(within & clearly))
    return out


class ParetoArchive:
    """Every measured candidate goes in; ``front()`` is the non-dominated subset."""

    def __init__(
        self,
        baseline: Objectives,
        hv_objectives: Sequence[str] = DEFAULT_HV_OBJECTIVES,
        reference_point: Sequence[float] | None = None,
    ) -> None:
        unknown = [n for n in hv_objectives if n not in _ATTR]
        if unknown or not hv_objectives:
            raise ValueError(f"hv_objectives must be a non-empty subset of {list(_ATTR)}")
        if baseline.accuracy <= 0:
            raise ValueError("baseline accuracy must be > 0 to normalise against it")
        for name in hv_objectives:
            if name not in ("accuracy", "update"):
                base = getattr(baseline, _ATTR[name])
                if base is None or base <= 0:
                    raise ValueError(f"baseline {name} must be > 0 to normalise against it")
        self.baseline = baseline
        self.hv_objectives = tuple(hv_objectives)
        ref = reference_point or [REFERENCE_POINT[n] for n in self.hv_objectives]
        if len(ref) != len(self.hv_objectives):
            raise ValueError("reference_point needs one value per hv objective")
        self.reference_point = np.asarray(ref, dtype=float)
        ref_accuracy = (
            ref[self.hv_objectives.index("accuracy")]
            if "accuracy" in self.hv_objectives
            else REFERENCE_POINT["accuracy"]
        )
        # Front floor (see module docstring): at or below it a candidate is broken, not a
        # trade-off. Same bound as the reference point, so front and hypervolume agree.
        self.min_accuracy = (1.0 - float(ref_accuracy)) * baseline.accuracy
        self.entries: list[ArchiveEntry] = []
        self._ids: set[int | str] = set()
        self.history: list[tuple[int, int | str, float]] = []  # (evaluations, id, hv)

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, candidate_id: object) -> bool:
        """True when ``candidate_id`` was already added (resume / cache hits)."""
        return candidate_id in self._ids

    def _use_energy(self) -> bool:
        return self.baseline.energy_mj is not None and all(
            e.objectives.energy_mj is not None for e in self.entries
        )

    def _working(self) -> np.ndarray:
        """Per entry: above the front floor ``min_accuracy`` (see module docstring)."""
        return np.asarray([e.objectives.accuracy > self.min_accuracy for e in self.entries])

    def _names(self) -> list[str]:
        names = ["accuracy", "latency", "memory", "size", "update"]
        if self._use_energy():
            names.append("energy")
        return names

    def _matrix(self) -> np.ndarray:
        """Rows = entries, columns = dominance objectives, all as 'minimise'."""
        names = self._names()
        rows = []
        for e in self.entries:
            o = e.objectives
            row = [
                -o.accuracy,
                o.latency_ms,
                o.memory_mb,
                float(o.size_bytes),
                float(o.update_bytes),
            ]
            if "energy" in names:
                row.append(float(o.energy_mj))  # type: ignore[arg-type]
            rows.append(row)
        return np.asarray(rows, dtype=float).reshape(len(rows), len(names))

    def _front_mask(self) -> np.ndarray:
        if not self.entries:
            return np.zeros(0, dtype=bool)
        # keep_weakly: two candidates with identical objectives both stay on the front.
        m = self._matrix()
        working = self._working()
        mask = np.zeros(len(m), dtype=bool)
        if working.any():
            mask[working] = moocore.is_nondominated(m[working], keep_weakly=True)
        return mask & ~_epsilon_dominated(m, self._names(), mask)

    def add(self, candidate_id: int | str, objectives: Objectives) -> bool:
        """Archive a measured candidate; True when it is on the front after adding."""
        if candidate_id in self._ids:
            raise ValueError(f"candidate {candidate_id!r} is already in the archive")
        self.entries.append(ArchiveEntry(candidate_id, objectives))
        self._ids.add(candidate_id)
        self.history.append((len(self.entries), candidate_id, self.hypervolume()))
        return bool(self._front_mask()[-1])

    def front(self) -> list[ArchiveEntry]:
        """Non-dominated entries, in insertion order."""
        mask = self._front_mask()
        return [e for e, keep in zip(self.entries, mask, strict=True) if keep]

    def front_ids(self) -> list[int | str]:
        return [e.candidate_id for e in self.front()]

    def normalised(self, obj: Objectives) -> list[float]:
        return normalise(obj, self.baseline, self.hv_objectives)

    def hypervolume(self) -> float:
        """Exact hypervolume of the archive's normalised points against the reference point.

        Points that do not strictly dominate the reference point contribute nothing (filtered
        here explicitly so that behaviour does not depend on the library's handling).
        """
        if not self.entries:
            return 0.0
        pts = np.asarray([self.normalised(e.objectives) for e in self.entries], dtype=float)
        inside = np.all(pts < self.reference_point, axis=1) & self._working()
        if not inside.any():
            return 0.0
        return float(moocore.hypervolume(pts[inside], ref=self.reference_point))

    def best_under(
        self,
        limits: Limits,
        score: Callable[[ArchiveEntry], float] | None = None,
    ) -> ArchiveEntry | None:
        """The chosen model: among feasible front members, the highest ``score``.

        Default score: highest accuracy, ties broken by lower latency. Pass e.g.
        ``lambda e: rewards[e.candidate_id]`` to choose by reward instead. None if no front
        member satisfies ``limits``.
        """
        feasible = [
            e for e in self.front() if not limit_violations(e.objectives, self.baseline, limits)
        ]
        if not feasible:
            return None
        if score is None:
            return max(feasible, key=lambda e: (e.objectives.accuracy, -e.objectives.latency_ms))
        return max(feasible, key=score)
