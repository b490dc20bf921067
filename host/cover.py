"""Proposals that span the whole trade-off curve, for the surrogate's ranking pool.

Why this exists (measured, bench/results/search-2026-12-04-*): the two surrogate strategies
ranked a pool of policy samples and uniform-random samples. Neither reaches the fast end of the
curve. Uniform-random keep ratios over 20 groups average to about 0.65 (the mean of
``KEEP_RATIOS``) with a standard deviation near 0.05, so a random proposal almost never has a
mean keep of 0.3-0.45. The policy converges on the one trade-off its scalar reward prefers, the
fastest model within the accuracy limit. So the greedy hypervolume picks (``_pick_for_front``)
never saw a candidate between the design's keep 0.3 + int8 and keep 0.5. The uniform grid does
measure keep 0.4 int8/fp32 and keep 0.3 fp32. On the 3-seed bench those points are where its
front held volume that the surrogate strategies' fronts lacked (grid HV 2.228, ppo+surrogate
2.193).
With the cover pool (bench 2026-12-07, 3 seeds): ppo+surrogate 2.358, random+surrogate 2.354,
grid 2.323; more than half of each surrogate front is cover-pool configurations.

The cover pool has two parts:

- every uniform configuration, i.e. the grid itself;
- *jittered uniform* configurations: a base keep ratio drawn uniformly from ``KEEP_RATIOS``,
  each group moved one step up or down with probability ``JITTER_P / 2`` each, and one precision
  for the whole model (``UNIFORM_PRECISION_P``) or one per precision stage. The precision is
  uniform most of the time because random int8/float islands pay Q/DQ boundaries
  (docs/results.md).

These are only *candidates for ranking*. The surrogate decides what is sent to the device, and
the archive decides what is on the front. Every strategy that ranks with the surrogate (``ppo``
and ``random``) gets the same cover pool. So ``ppo+surrogate`` minus ``random+surrogate`` in
the bench is still what the learning adds.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from hadmc.compress.passes.pruning_pass import KEEP_RATIOS
from hadmc.search.env import JointAction

JITTER_P = 0.5  # probability that a group's keep ratio moves one step off the base
UNIFORM_PRECISION_P = 0.75  # probability of one precision for the whole model


def uniform_grid(n_groups: int, precisions: Sequence[str], passes: object) -> list[JointAction]:
    """Every (keep, precision) uniform configuration except the baseline itself (keep 1.0,
    fp32), in ``KEEP_RATIOS`` order."""
    return [
        JointAction.uniform(n_groups, keep, prec, passes=passes)
        for keep in KEEP_RATIOS
        for prec in precisions
        if not (keep == 1.0 and prec == "fp32")
    ]


def jittered(
    rng: np.random.Generator,
    n_groups: int,
    stages: Sequence[int],
    precisions: Sequence[str],
    passes: object,
) -> JointAction:
    """One jittered-uniform configuration (module docstring). The other passes stay at their
    defaults, as in the grid. The quantization pass's ``parse`` applies the int8 probe's
    exclusions, the same way it does for the grid."""
    n_keep = len(KEEP_RATIOS)
    base = int(rng.integers(n_keep))
    steps = rng.choice([-1, 0, 1], size=n_groups, p=[JITTER_P / 2, 1 - JITTER_P, JITTER_P / 2])
    keeps = [KEEP_RATIOS[int(np.clip(base + s, 0, n_keep - 1))] for s in steps]
    units = sorted(set(stages))
    if rng.random() < UNIFORM_PRECISION_P:
        one = str(rng.choice(list(precisions)))
        per_stage = dict.fromkeys(units, one)
    else:
        per_stage = {u: str(rng.choice(list(precisions))) for u in units}
    joint = JointAction.uniform(n_groups, 1.0, "fp32", passes=passes)
    values = joint.to_dict()
    values["pruning"] = keeps
    values["quantization"] = [per_stage[u] for u in stages]
    return JointAction.from_dict(values, passes)


def cover_pool(
    rng: np.random.Generator,
    n_jittered: int,
    n_groups: int,
    stages: Sequence[int],
    precisions: Sequence[str],
    passes: object,
) -> list[JointAction]:
    """The uniform grid plus ``n_jittered`` jittered-uniform configurations."""
    out = uniform_grid(n_groups, precisions, passes)
    out += [jittered(rng, n_groups, stages, precisions, passes) for _ in range(n_jittered)]
    return out
