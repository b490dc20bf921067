"""``distillation``: temperature T and weight alpha of the knowledge-distillation fine-tune.

A 2-D Gaussian head acting once, at the last step. The policy samples raw values; they map to
T = clip(u0, 1, 20) and alpha = sigmoid(u1), each rounded to a grid (``map_distillation``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from hadmc.compress.registry import Build, CompressionPass

T_MIN, T_MAX = 1.0, 20.0
T_GRID, ALPHA_GRID = 0.5, 0.05
DEFAULT_TEMPERATURE, DEFAULT_ALPHA = 4.0, 0.7
# Where the PPO distillation head starts (raw Gaussian mean): T = 4, alpha = sigmoid(0.85) = 0.7,
# Hinton et al.'s usual range. Why: a zero mean maps to T = 1 (the clip floor), where the soft
# targets carry almost nothing beyond the labels, and half of all early samples would sit there.
DISTILLATION_INIT_RAW = (4.0, 0.85)


def map_distillation(raw: Sequence[float]) -> tuple[float, float]:
    """Raw Gaussian sample -> (T, alpha) on a grid, so equal configurations are recognised.

    T = clip(u0, 1, 20) rounded to 0.5; alpha = sigmoid(u1) rounded to 0.05 and kept in
    [0.05, 0.95] (alpha of exactly 0 or 1 would switch a loss term off entirely).
    """
    u = np.asarray(raw, dtype=np.float64).reshape(-1)
    if u.shape[0] != 2 or not np.all(np.isfinite(u)):
        raise ValueError(f"distillation action must be 2 finite numbers, got {raw!r}")
    t = min(max(float(u[0]), T_MIN), T_MAX)
    t = round(round(t / T_GRID) * T_GRID, 2)
    alpha = 1.0 / (1.0 + math.exp(-float(u[1])))
    alpha = round(min(max(round(alpha / ALPHA_GRID) * ALPHA_GRID, 0.05), 0.95), 2)
    return t, alpha


class DistillationPass(CompressionPass):
    name = "distillation"
    order = 40
    kind = "gaussian"
    dims = 2
    per_group = False
    phase = "finetune"
    default_choice = {"temperature": DEFAULT_TEMPERATURE, "alpha": DEFAULT_ALPHA}
    init_mean = DISTILLATION_INIT_RAW
    plot_fields = {"temperature": "temperature T", "alpha": "alpha"}

    def decode(self, raw: Any, runtime: str) -> dict[str, float]:
        t, alpha = map_distillation(raw)
        return {"temperature": t, "alpha": alpha}

    def parse(self, stored: Any) -> dict[str, float]:
        return {"temperature": float(stored["temperature"]), "alpha": float(stored["alpha"])}

    def suggest(self, trial: Any, runtime: str, units: Sequence[int] | None) -> dict[str, float]:
        t = trial.suggest_float("temperature", T_MIN, T_MAX, step=T_GRID)
        alpha = round(trial.suggest_float("alpha", 0.05, 0.95, step=ALPHA_GRID), 2)
        return {"temperature": t, "alpha": alpha}

    def apply(self, value: dict[str, float], build: Build) -> None:
        build.finetune.update(temperature=value["temperature"], alpha=value["alpha"])
