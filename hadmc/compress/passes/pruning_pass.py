"""``pruning``: the keep ratio of every layer group (physical channel removal, torch-pruning).

The head acts at every group. With an action bound (AMC: the surrogate's latency model under
a latency limit), the chosen keep ratio is lowered to the largest choice the bound allows, so
an episode's predicted latency meets the limit; the bound sees this group's precision, which
is why it runs in ``refine``, after every head of the step decoded.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from hadmc.compress.registry import Build, CompressionPass, Feature, StepContext

KEEP_RATIOS: tuple[float, ...] = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3)


def _mean_keep(keeps: Sequence[float], macs_share: Sequence[float]) -> float:
    return float(np.mean(keeps)) if len(keeps) else 1.0


def _macs_kept(keeps: Sequence[float], macs_share: Sequence[float]) -> float:
    """Fraction of the group MACs kept so far, as a budget used (sum of share x keep)."""
    return sum(s * k for s, k in zip(macs_share, keeps, strict=False))


class PruningPass(CompressionPass):
    name = "pruning"
    order = 10
    phase = "model"
    default_choice = 1.0
    optuna_name = "keep"
    timing = "prune"
    plot_label = "keep ratio"

    def choices(self, runtime: str) -> tuple[float, ...]:
        return KEEP_RATIOS

    def parse(self, stored: Any) -> list[float]:
        return [float(v) for v in stored]

    def refine(self, value: float, ctx: StepContext) -> float:
        bound = ctx.bounds.get(self.name)
        if bound is None:
            return value
        precisions = list(ctx.history.get("quantization", ()))
        if "quantization" in ctx.current:
            precisions.append(ctx.current["quantization"])
        limit = bound(ctx.step, list(ctx.history.get(self.name, ())), precisions)
        allowed = [k for k in KEEP_RATIOS if k <= min(value, limit) + 1e-9]
        return max(allowed) if allowed else min(KEEP_RATIOS)

    def features(self) -> tuple[Feature, ...]:
        return (Feature("mean_keep", _mean_keep, slot=1), Feature("macs_kept", _macs_kept, slot=3))

    def apply(self, value: list[float], build: Build) -> None:
        from hadmc.compress.pruning import prune_model

        build.student = prune_model(build.student, value, build.example)  # a pruned copy
