"""Pareto archive of measured candidates and the hypervolume progress metric.

Directions: accuracy is maximised; latency, memory, size, energy and update bytes are
minimised. Dominance uses all six objectives, except energy, which is used only while every
archived point (and the baseline) has it, so a board without a power sensor still gets a front.

Front = a noise-robust Pareto front. Measured objectives are noisy, so besides plain Pareto
dominance a member also goes when another one beats it by a clear margin while being no worse
than measurement noise everywhere else (epsilon-dominance, Laumanns et al. 2002). Why: with
five objectives, a candidate that collapsed to 10 % accuracy stayed "non-dominated" because its
peak memory was 1 MiB (1.6 %) below a 95 %-accurate one; that is run-to-run noise of peak RSS,
not a trade-off. The relation, for minimised values (accuracy enters as -accuracy)::

    a removes b  <=>  a_k <= b_k + tol_k(b) for every k
                      and (a_k < b_k - tol_k(b) for some k  or  a Pareto-dominates b)
    tol_k(b) = NOISE_TOLERANCE[k] * |b_k|           (latency, memory, size, update_size, energy)
    tol_acc  = accuracy_tolerance_points / 100      (absolute; default 0: the validation split
                                                     is fixed, so accuracy is exact)

Two near-identical candidates both stay (neither is clearly better anywhere).

Removal is not transitive: a (90 %, 5.0 ms) removes b (89 %, 4.9 ms), b removes c (88 %,
4.8 ms), but a does not remove c (5.0 ms is more than 3 % slower than 4.8 ms). Pruning every
point that any point removes would leave [a] and lose the real trade-off c. The rule is instead:
a point stays exactly when no FRONT MEMBER removes it, and no front member removes another (a
kernel of the "removes" graph). It is built layer by layer: the working points that no remaining
point removes join the front, the points they remove are dropped, repeat. For the example: a
joins, b is dropped, then c joins: the front is [a, c]. With accuracy tolerance 0 a remover is
at least as accurate as what it removes, so for distinct accuracies this is the greedy pass in
accuracy-descending order that keeps a point unless an already-kept member removes it; the
layers also settle ties in accuracy, where no fixed secondary order is consistent with the
relation. Why the result is well-defined: when the relation has no cycle, exactly one set
satisfies both rules, whatever order the points came in. Cycles (a removes b removes c removes
a) need at least three objectives with a non-zero tolerance (latency, memory, and energy or an
accuracy tolerance); then no set satisfies both rules, and when no remaining point is
unremoved the first remaining point in the order (accuracy descending, then latency, memory,
size, update, energy ascending, then insertion) joins: every non-front point is still removed
by a front member, but a member can remove one that joined before it. Pareto-dominated points
are filtered first (moocore); this changes nothing, as a point that removes the dominating point
also removes the dominated one, but it keeps the layered pass small.

Hypervolume (exact, ``moocore.hypervolume``) is computed over exactly the front's members, in
normalised objectives, all turned into "smaller is better" ratios against the uncompressed
baseline::

    accuracy   -> 1 - accuracy / baseline_accuracy   (0 = baseline accuracy, 1 = accuracy 0)
    latency    -> latency_ms / baseline_latency_ms    (1 = as slow as the baseline)
    size       -> size_bytes / baseline_size_bytes
    memory     -> memory_mib / baseline_memory_mib

Because members can be removed by a newcomer that is within noise of them, the hypervolume can
dip when a point is added, by at most what the removed members covered within their noise
tolerance of the newcomer; with zero tolerances the front is the Pareto front and the
hypervolume never decreases.

Objectives in the HV by default: accuracy, latency, size, memory (4-D, HV4D+ is exact and
O(n^2)); energy is left out because it is often unavailable and mostly tracks latency; update
bytes are left out because they depend on the deployed base, not on the model alone.

Reference point (fixed, so values are comparable across a run and between runs):
``1 - COLLAPSE_FRACTION = 0.5`` for the accuracy term and ``2.0`` for every cost ratio (a model
twice as slow / large / hungry as the baseline adds nothing). The baseline itself therefore has
HV = 0.5 x 1 x 1 x 1 = 0.5 (the product of the distances to the reference point).

Why 0.5 for accuracy, and why it also bounds the front: a model that keeps half of the
baseline's accuracy or less is broken, not a trade-off, yet a broken model is exactly as small
and fast as a working one of the same shape, so it is non-dominated on latency and size. In
real runs about half the candidates of a short search collapsed (over-pruned, or fine-tuned
with a narrow update scope) to 10-40 % on 10 classes and filled the front and the hypervolume.
Such candidates stay in the archive (and in the results database) but are never front members
and add no hypervolume: ``min_accuracy = (1 - 0.5) x baseline accuracy``, exclusive. The bound
is ``hadmc.search.reward.COLLAPSE_FRACTION``, so the reward's lowest tier and the front floor agree.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import moocore
import numpy as np

from hadmc.search.reward import COLLAPSE_FRACTION, Limits, Objectives, limit_violations

DEFAULT_HV_OBJECTIVES: tuple[str, ...] = ("accuracy", "latency", "size", "memory")
# Reference point per normalised objective (see module docstring).
REFERENCE_POINT: dict[str, float] = {
    "accuracy": 1.0 - COLLAPSE_FRACTION,
    "latency": 2.0,
    "size": 2.0,
    "memory": 2.0,
    "energy": 2.0,
    "update_size": 2.0,
}
# Relative noise per minimised objective, used only for epsilon-dominance on the front.
# Latency and peak memory vary by a few percent between identical measurements; size and update
# bytes are exact. Accuracy's tolerance is absolute, in points: the archive's
# ``accuracy_tolerance_points`` (default ACCURACY_TOLERANCE_POINTS = 0, because the validation
# split is fixed, so the same model always scores the same accuracy).
NOISE_TOLERANCE: dict[str, float] = {
    "latency": 0.03,
    "memory": 0.03,
    "size": 0.0,
    "update_size": 0.0,
    "energy": 0.05,
}
ACCURACY_TOLERANCE_POINTS = 0.0
_ATTR = {
    "accuracy": "accuracy",
    "latency": "latency_ms",
    "memory": "memory_mib",
    "size": "size_bytes",
    "energy": "energy_mj",
    "update_size": "update_bytes",
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
        elif name == "update_size":
            out.append((obj.update_bytes + 1.0) / (baseline.size_bytes + 1.0))
        else:
            value = getattr(obj, _ATTR[name])
            base = getattr(baseline, _ATTR[name])
            if value is None or base is None:
                raise ValueError(f"objective {name} is missing; cannot enter the hypervolume")
            out.append(float(value) / float(base))
    return out


def removes_matrix(m: np.ndarray, tol: np.ndarray) -> np.ndarray:
    """``out[a, b]``: row ``a`` removes row ``b`` (relation in the module docstring).

    ``m``: rows = points, columns = objectives, all minimised. ``tol``: per-row, per-column
    absolute tolerance (same shape as ``m``), taken at the removed point ``b``.
    """
    a = m[:, None, :]
    b = m[None, :, :]
    t = tol[None, :, :]
    within = np.all(a <= b + t, axis=2)
    clearly = np.any(a < b - t, axis=2)
    pareto = np.all(a <= b, axis=2) & np.any(a < b, axis=2)
    return within & (clearly | pareto)


def kernel(removes: np.ndarray, order: Sequence[int] | np.ndarray) -> np.ndarray:
    """Front mask: points no front member removes, and (without cycles) no member removes another.

    Layer by layer (module docstring): points that no remaining point removes join, the points
    they remove leave. ``order`` (a permutation of the rows) is used only to break a cycle.
    """
    n = len(removes)
    front = np.zeros(n, dtype=bool)
    alive = np.ones(n, dtype=bool)
    rank = np.empty(n, dtype=int)
    rank[np.asarray(order, dtype=int)] = np.arange(n)
    while alive.any():
        joining = alive & ~np.any(removes & alive[:, None], axis=0)
        if not joining.any():
            # Every remaining point is removed by another remaining one: a cycle (no set meets
            # both rules); admit the first in the order so the pass terminates.
            first = np.flatnonzero(alive)[np.argmin(rank[alive])]
            joining = np.zeros(n, dtype=bool)
            joining[first] = True
        front |= joining
        alive &= ~joining & ~np.any(removes[joining], axis=0)
    return front


class ParetoArchive:
    """Every measured candidate goes in; ``front()`` is the noise-robust non-dominated subset."""

    def __init__(
        self,
        baseline: Objectives,
        hv_objectives: Sequence[str] = DEFAULT_HV_OBJECTIVES,
        reference_point: Sequence[float] | None = None,
        accuracy_tolerance_points: float = ACCURACY_TOLERANCE_POINTS,
    ) -> None:
        unknown = [n for n in hv_objectives if n not in _ATTR]
        if unknown or not hv_objectives:
            raise ValueError(f"hv_objectives must be a non-empty subset of {list(_ATTR)}")
        if baseline.accuracy <= 0:
            raise ValueError("baseline accuracy must be > 0 to normalise against it")
        for name in hv_objectives:
            if name not in ("accuracy", "update_size"):
                base = getattr(baseline, _ATTR[name])
                if base is None or base <= 0:
                    raise ValueError(f"baseline {name} must be > 0 to normalise against it")
        if not 0.0 <= accuracy_tolerance_points <= 100.0:
            raise ValueError(
                f"accuracy_tolerance_points is in points (0-100), got {accuracy_tolerance_points}"
            )
        self.baseline = baseline
        self.hv_objectives = tuple(hv_objectives)
        self.accuracy_tolerance_points = float(accuracy_tolerance_points)
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
        # trade-off. Same bound as the reference point, so front and hypervolume agree; with
        # the default reference it is COLLAPSE_FRACTION x baseline accuracy, the reward's floor.
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
        return np.asarray(
            [e.objectives.accuracy > self.min_accuracy for e in self.entries], dtype=bool
        )

    def _names(self) -> list[str]:
        names = ["accuracy", "latency", "memory", "size", "update_size"]
        if self._use_energy():
            names.append("energy")
        return names

    def _matrix(self) -> np.ndarray:
        """Rows = entries, columns = dominance objectives (``_names``), all as 'minimise'."""
        names = self._names()
        rows = []
        for e in self.entries:
            o = e.objectives
            row = [
                -o.accuracy,
                o.latency_ms,
                o.memory_mib,
                float(o.size_bytes),
                float(o.update_bytes),
            ]
            if "energy" in names:
                row.append(float(o.energy_mj))  # type: ignore[arg-type]
            rows.append(row)
        return np.asarray(rows, dtype=float).reshape(len(rows), len(names))

    def _tolerance(self, m: np.ndarray) -> np.ndarray:
        """Absolute tolerance per cell: relative NOISE_TOLERANCE, accuracy in points / 100."""
        names = self._names()
        rel = np.asarray([NOISE_TOLERANCE.get(n, 0.0) for n in names], dtype=float)
        tol = rel * np.abs(m)
        tol[:, names.index("accuracy")] = self.accuracy_tolerance_points / 100.0
        return tol

    def _front_mask(self) -> np.ndarray:
        mask = np.zeros(len(self.entries), dtype=bool)
        if not self.entries:
            return mask
        m = self._matrix()
        # Only working, Pareto non-dominated points can be on the front (module docstring);
        # keep_weakly: two candidates with identical objectives both stay.
        cand = np.flatnonzero(self._working())
        if not len(cand):
            return mask
        cand = cand[moocore.is_nondominated(m[cand], keep_weakly=True)]
        sub = m[cand]
        # Cycle tie-break order: accuracy descending (column 0 is -accuracy), then the other
        # columns ascending, then insertion (lexsort's last key is the primary one).
        keys = [np.arange(len(cand))] + [sub[:, j] for j in range(sub.shape[1] - 1, -1, -1)]
        order = np.lexsort(keys)
        mask[cand[kernel(removes_matrix(sub, self._tolerance(sub)), order)]] = True
        return mask

    def add(self, candidate_id: int | str, objectives: Objectives) -> bool:
        """Archive a measured candidate; True when it is on the front after adding."""
        if candidate_id in self._ids:
            raise ValueError(f"candidate {candidate_id!r} is already in the archive")
        self.entries.append(ArchiveEntry(candidate_id, objectives))
        self._ids.add(candidate_id)
        self.history.append((len(self.entries), candidate_id, self.hypervolume()))
        return bool(self._front_mask()[-1])

    def front(self) -> list[ArchiveEntry]:
        """Front members (module docstring), in insertion order."""
        mask = self._front_mask()
        return [e for e, keep in zip(self.entries, mask, strict=True) if keep]

    def front_ids(self) -> list[int | str]:
        return [e.candidate_id for e in self.front()]

    def normalised(self, obj: Objectives) -> list[float]:
        return normalise(obj, self.baseline, self.hv_objectives)

    def hypervolume(self) -> float:
        """Exact hypervolume of the front members' normalised points against the reference.

        Members that do not strictly dominate the reference point contribute nothing (filtered
        here explicitly so that behaviour does not depend on the library's handling).
        """
        members = self.front()
        if not members:
            return 0.0
        pts = np.asarray([self.normalised(e.objectives) for e in members], dtype=float)
        inside = np.all(pts < self.reference_point, axis=1)
        if not inside.any():
            return 0.0
        return float(moocore.hypervolume(pts[inside], ref=self.reference_point))

    def best_under(
        self,
        limits: Limits,
        score: Callable[[ArchiveEntry], float] | None = None,
    ) -> ArchiveEntry | None:
        """The chosen model: among feasible front members, the highest ``score``.

        Feasible = within ``limits`` *and* faster than the baseline (the uncompressed fp32
        model, whose latency every candidate's is paired against). Why the second rule: a
        compressed model slower than the original is never what a user ships, even when it is
        smaller (mixed int8 layouts can be, on a runtime whose int8 kernels lose for some ops);
        without it, an accurate but slower front member was chosen by the default score.

        Default score: highest accuracy, ties broken by lower latency. Pass e.g.
        ``lambda e: rewards[e.candidate_id]`` to choose by reward instead. None if no front
        member is feasible.
        """
        feasible = [
            e for e in self.front()
            if not limit_violations(e.objectives, self.baseline, limits)
            and e.objectives.latency_ms < self.baseline.latency_ms
        ]  # fmt: skip
        if not feasible:
            return None
        if score is None:
            return max(feasible, key=lambda e: (e.objectives.accuracy, -e.objectives.latency_ms))
        return max(feasible, key=score)
