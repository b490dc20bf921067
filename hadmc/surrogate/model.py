"""``Surrogate``: predicted objectives and reward of a joint action, from the calibrated parts.

It combines the exact channel arithmetic (``structure``), the device-calibrated latency /
size / memory model (``latency``) and the accuracy proxy (``accuracy``). ``observe`` feeds it
every real candidate; before refitting, the prediction it would have made is kept, so
``report()`` gives *prospective* errors (predicted before the measurement existed): the
latency MAPE and the Spearman rank correlation of proxy vs real artifact accuracy. A
leave-one-out MAPE over all measurements is reported beside it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from hadmc.compress.passes.pruning_pass import KEEP_RATIOS
from hadmc.search.env import JointAction
from hadmc.search.reward import Objectives, RewardConfig, compute_reward
from hadmc.surrogate.accuracy import AccuracyProxy
from hadmc.surrogate.latency import LatencyModel
from hadmc.surrogate.structure import ConfigFeatures, ModelStructure

# The search scores a proposal on its accuracy's lower bound, mean - KAPPA x std (the accuracy
# proxy's GP uncertainty, hadmc.surrogate.accuracy): a pessimistic surrogate, so that a policy
# trained on it cannot profit from the proxy's errors far from anything measured.
KAPPA = 1.0
# Prospective errors count once the latency fit has this many real candidates besides the
# baseline: the first few predictions rest on the prior alone and say nothing of the model.
MIN_FIT_FOR_ERRORS = 4


@dataclass
class Prediction:
    """Predicted objectives (label: predicted) of one joint action. ``objectives`` hold the
    mean accuracy; ``conservative`` the same with accuracy at mean - KAPPA x std, which is what
    ``reward`` (and the choice of what to measure) is computed on."""

    objectives: Objectives
    reward: float
    features: ConfigFeatures
    feasible: bool
    accuracy_std: float = 0.0
    conservative: Objectives | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"predicted": True, **self.objectives.to_dict(), "reward": self.reward,
                "accuracy_std": self.accuracy_std}  # fmt: skip


class Surrogate:
    """Cheap stand-in for build + device during the inner loop (see module docstring)."""

    def __init__(
        self,
        structure: ModelStructure,
        latency: LatencyModel,
        proxy: AccuracyProxy,
        baseline: Objectives,
        reward_config: RewardConfig,
    ) -> None:
        self.structure = structure
        self.latency = latency
        self.proxy = proxy
        self.baseline = baseline
        self.reward_config = reward_config
        self._full = structure.features([1.0] * structure.n_groups, ["fp32"] * structure.n_groups)
        self._errors_latency: list[float] = []
        self._pairs_accuracy: list[tuple[float, float]] = []
        self.observed = 0

    def _proxy_x(self, joint: JointAction, f: ConfigFeatures) -> np.ndarray:
        macs_kept = f.macs / max(self._full.macs, 1.0)
        int8_share = f.macs_int8 / max(f.macs, 1.0)
        return self.proxy.features(joint.keep_ratios, joint.update_scope, macs_kept, int8_share)

    def predict(self, joint: JointAction) -> Prediction:
        f = self.structure.features(joint.keep_ratios, joint.precisions)
        size = max(self.latency.predict_size_bytes(f), 1.0)
        x = self._proxy_x(joint, f)
        std = self.proxy.predict_std(x)
        obj = Objectives(
            accuracy=self.proxy.predict(x),
            latency_ms=max(self.latency.predict_latency_ms(f), 1e-6),
            memory_mib=max(self.latency.predict_memory_mib(size), 1e-3),
            energy_mj=None,
            size_bytes=int(size),
            # An update of a pruned or re-fine-tuned model rewrites nearly every chunk.
            update_bytes=int(size),
        )
        low = dataclasses.replace(obj, accuracy=max(obj.accuracy - KAPPA * std, 0.0))
        rb = compute_reward(low, self.baseline, self.reward_config)
        return Prediction(obj, float(rb.reward), f, rb.feasible, std, low)

    def observe(self, joint: JointAction, metrics: dict[str, Any]) -> None:
        """A real candidate: record the prospective error, then refit both models."""
        f = self.structure.features(joint.keep_ratios, joint.precisions)
        lat = Objectives.from_metrics(metrics).latency_ms  # the paired figure when there is one
        acc = float(metrics["accuracy"])
        x = self._proxy_x(joint, f)
        if self.latency.n_measurements - 1 >= MIN_FIT_FOR_ERRORS:
            self._errors_latency.append(abs(self.latency.predict_latency_ms(f) - lat) / lat)
            self._pairs_accuracy.append((self.proxy.predict(x), acc))
        self.latency.add(f, lat, float(metrics["size_bytes"]), float(metrics["peak_memory_mib"]))
        self.proxy.add(x, acc)
        self.observed += 1

    def report(self) -> dict[str, Any]:
        """Prospective latency MAPE (%), LOO MAPE (%), proxy Spearman rho, counts, terms."""
        rho = None
        if len(self._pairs_accuracy) >= 4:
            from scipy.stats import spearmanr

            pred, real = zip(*self._pairs_accuracy, strict=True)
            if np.std(pred) > 0 and np.std(real) > 0:
                rho = float(spearmanr(pred, real).statistic)
        mape = 100.0 * float(np.mean(self._errors_latency)) if self._errors_latency else None
        return {
            "label": "predicted",
            "latency_mape_prospective_pct": mape,
            "latency_mape_loo_pct": self.latency.loo_mape(),
            "latency_predictions_scored": len(self._errors_latency),
            "proxy_spearman": rho,
            "proxy_pairs_scored": len(self._pairs_accuracy),
            "proxy_kappa": KAPPA,
            "real_candidates_seen": self.observed,
            "latency_terms_ms": self.latency.terms(),
        }

    def keep_bound(self, max_latency_ms: float):
        """AMC-style action bound for ``CompressionEnv``: the largest keep ratio for group
        ``step`` such that, with every later group at the smallest keep ratio and int8, the
        predicted latency still meets ``max_latency_ms``."""
        n = self.structure.n_groups
        lowest = min(KEEP_RATIOS)

        def bound(step: int, keeps: Sequence[float], precisions: Sequence[str]) -> float:
            rest = n - step - 1
            tail_prec = ["int8"] * rest
            for k in KEEP_RATIOS:  # descending
                f = self.structure.features(
                    [*keeps, k, *([lowest] * rest)], [*precisions[: step + 1], *tail_prec]
                )
                if self.latency.predict_latency_ms(f) <= max_latency_ms:
                    return k
            return lowest

        return bound
