"""Accuracy proxy: per-group pruning sensitivity (BN re-estimated, no fine-tune) + a learned
correction towards the real post-fine-tune artifact accuracy.

Setup (AMC's proxy, per group instead of per candidate so that a proposal costs microseconds):
each group alone is pruned to every keep ratio of ``SENSITIVITY_KEEPS``, BatchNorm statistics
are re-estimated on calibration images, and the accuracy drop on a validation subset is
recorded. A configuration's raw proxy is the sum over groups of the drop interpolated at its
keep ratio (0 at keep 1.0).

Correction (ridge regression towards prior coefficients, refit after every real candidate)::

    drop = b0 + b1 * raw + b2 * macs_removed + b3 * int8_mac_share
           + b_scope[update scope]            (bn_bias / last_1 / last_3; "all" is the reference)
    accuracy = clip(baseline_accuracy - drop, 0, 1)

Priors: a 50-step distillation fine-tune recovers most of the no-fine-tune drop (b1 = 0.3), a
narrow update scope cannot (bn_bias 0.5, last_1 0.3, last_3 0.15), int8 costs little. Every
figure is *predicted*; ``proxy_spearman`` in the report says how well it ranks real results.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

SENSITIVITY_KEEPS = (0.75, 0.5, 0.3)
SCOPES = ("bn_bias", "last_1", "last_3")
FEATURES = ("const", "raw_drop", "macs_removed", "int8_mac_share", *(f"scope_{s}" for s in SCOPES))
PRIOR = np.array([0.0, 0.3, 0.02, 0.003, 0.5, 0.3, 0.15])
RIDGE = 0.05


def measure_sensitivity_table(
    model,
    groups: Sequence,
    example_input,
    x_calib: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    keeps: Sequence[float] = SENSITIVITY_KEEPS,
    device: Any = "cpu",
) -> list[list[float]]:
    """Accuracy drop (fraction, >= 0) per group per keep ratio, BN re-estimated, no fine-tune.
    Pruning traces on the CPU; re-estimation and evaluation run on ``device``."""
    from hadmc.compress.pruning import prune_model
    from hadmc.models import evaluate_accuracy
    from hadmc.models.train import recalibrate_bn

    base = evaluate_accuracy(model, x_val, y_val)
    table = []
    for i in range(len(groups)):
        row = []
        for k in keeps:
            ratios = [1.0] * len(groups)
            ratios[i] = float(k)
            pruned = prune_model(model, ratios, example_input).to(device)
            recalibrate_bn(pruned, x_calib)
            row.append(max(0.0, base - evaluate_accuracy(pruned, x_val, y_val)))
        table.append(row)
    return table


def interpolate_drop(row: Sequence[float], keep: float, keeps: Sequence[float]) -> float:
    """Drop at ``keep``: linear between the measured keeps, 0 at keep 1.0."""
    xs = [1.0, *keeps]
    ys = [0.0, *row]
    order = np.argsort(xs)
    return float(np.interp(keep, np.asarray(xs)[order], np.asarray(ys)[order]))


@dataclass
class AccuracyProxy:
    """Predicts a candidate's artifact accuracy (see module docstring)."""

    table: list[list[float]]
    baseline_accuracy: float
    keeps: tuple[float, ...] = SENSITIVITY_KEEPS
    x: list[np.ndarray] = field(default_factory=list)
    drops: list[float] = field(default_factory=list)
    coef: np.ndarray = field(default_factory=lambda: PRIOR.copy())

    def raw_drop(self, keep_ratios: Sequence[float]) -> float:
        return sum(
            interpolate_drop(row, k, self.keeps)
            for row, k in zip(self.table, keep_ratios, strict=True)
        )

    def features(
        self, keep_ratios: Sequence[float], scope: str, macs_kept: float, int8_share: float
    ) -> np.ndarray:
        scope_onehot = [1.0 if scope == s else 0.0 for s in SCOPES]
        return np.array(
            [1.0, self.raw_drop(keep_ratios), 1.0 - macs_kept, int8_share, *scope_onehot]
        )

    def predict(self, x: np.ndarray) -> float:
        return float(np.clip(self.baseline_accuracy - x @ self.coef, 0.0, 1.0))

    def add(self, x: np.ndarray, accuracy: float) -> None:
        """One real candidate's artifact accuracy; refit the ridge correction."""
        self.x.append(np.asarray(x, dtype=float))
        self.drops.append(self.baseline_accuracy - float(accuracy))
        a = np.vstack([np.array(self.x), np.sqrt(RIDGE) * np.eye(len(PRIOR))])
        b = np.concatenate([np.array(self.drops), np.sqrt(RIDGE) * PRIOR])
        self.coef = np.linalg.lstsq(a, b, rcond=None)[0]
