"""``CompressionEnv``: one episode compresses the model once (gymnasium-style protocol).

Steps walk the prunable layer groups in forward order (AMC/HAQ style). Which head acts when:

- ``pruning`` (keep ratio) acts at every group;
- ``quantization`` acts once per *precision stage* (``precision_stages``): on onnxruntime the
  groups are cut into at most ``MAX_PRECISION_STAGES`` contiguous stages and every group of a
  stage takes the stage's precision; on LiteRT the converter has no per-layer precision, so the
  head acts once for the whole model (a per-group choice there was a majority vote);
- ``fusion`` acts per group only on a runtime where it changes the artifact
  (``FUSION_CHANGES_ARTIFACT``). On onnxruntime the exporter already folds every BN: the demo
  fully fused and unfused gave the same graph (40 Conv, 27 Clip, 7 Add; only names differ), so
  it is not offered there. On LiteRT it stays: the fused demo converted to a different file
  (7,993,864 against 8,020,372 bytes);
- ``distillation`` (2-D Gaussian, raw) and ``update`` (the update-scope head: which weights
  the fine-tune may change) act once, at the last step.

Why stages for precision: the demo measured all-int8 1.61x, the first half float 1.42x, and a
random half of the groups float 0.95-1.25x, every other group float 0.88x (slower than fp32):
each int8/float boundary adds Quantize/Dequantize nodes. Contiguous stages cap the boundaries
at ``MAX_PRECISION_STAGES - 1`` while keeping the "keep the sensitive end float" choice.

Action bounding (AMC): given ``keep_bound(step, keeps, precisions) -> max keep`` (the
surrogate's latency model under a latency limit), the chosen keep ratio is lowered to the
largest choice the bound allows, so an episode's predicted latency meets the limit.

Rewards are 0 until the terminal step, where the joint action is handed to ``evaluate``. A
candidate that could not be measured comes back ``failed``: its episode is marked
``info["discard_episode"] = True`` so PPO drops it.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from hadmc.compress.distill import UPDATE_SCOPES
from hadmc.compress.fusion import FUSION_PATTERNS
from hadmc.policy import ActionSpec, HeadSpec
from hadmc.state import LastCandidate, StateEncoder

KEEP_RATIOS: tuple[float, ...] = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3)
# Precisions the runtime actually executes on a CPU. fp16 is left out for onnxruntime on CPU:
# its CPU execution provider has no fp16 kernels for most ops and inserts Casts, so fp16 ran
# slower than fp32 here (shared/notes/dependencies.md); offering it would only waste
# measurements. LiteRT's fp16 is a storage format dequantized to fp32 on CPU: same reason.
RUNTIME_PRECISIONS: dict[str, tuple[str, ...]] = {
    "onnxruntime": ("fp32", "int8"),
    "litert": ("fp32", "int8"),
}
# Whether the runtime can execute a different precision per group (onnxruntime's QDQ graph
# can; LiteRT's converter quantizes the whole model).
PER_GROUP_PRECISION: dict[str, bool] = {"onnxruntime": True, "litert": False}
# Whether BN/activation fusion changes the exported artifact (see module docstring).
FUSION_CHANGES_ARTIFACT: dict[str, bool] = {"onnxruntime": False, "litert": True}
MAX_PRECISION_STAGES = 4
T_MIN, T_MAX = 1.0, 20.0
T_GRID, ALPHA_GRID = 0.5, 0.05
DEFAULT_TEMPERATURE, DEFAULT_ALPHA, DEFAULT_SCOPE = 4.0, 0.7, "all"


def heads_for(runtime: str) -> tuple[str, ...]:
    """Names of the heads offered on ``runtime``, in policy order."""
    if runtime not in RUNTIME_PRECISIONS:
        raise ValueError(f"unknown runtime {runtime!r}; known {sorted(RUNTIME_PRECISIONS)}")
    names = ["pruning", "quantization"]
    if FUSION_CHANGES_ARTIFACT[runtime]:
        names.append("fusion")
    return (*names, "distillation", "update")


def make_action_spec(runtime: str) -> ActionSpec:
    """The heads for ``runtime`` (quantization choices are what it executes)."""
    sizes = {
        "pruning": ("categorical", len(KEEP_RATIOS)),
        "quantization": ("categorical", len(RUNTIME_PRECISIONS.get(runtime, ()))),
        "fusion": ("categorical", len(FUSION_PATTERNS)),
        "distillation": ("gaussian", 2),
        "update": ("categorical", len(UPDATE_SCOPES)),
    }
    return ActionSpec(heads=tuple(HeadSpec(n, *sizes[n]) for n in heads_for(runtime)))


def precision_stages(n_groups: int, runtime: str) -> list[int]:
    """Stage index of every group: contiguous, as equal as possible (see module docstring)."""
    if n_groups < 1:
        raise ValueError("the model has no prunable layer groups")
    stages = min(MAX_PRECISION_STAGES, n_groups) if PER_GROUP_PRECISION[runtime] else 1
    return [min(stages - 1, i * stages // n_groups) for i in range(n_groups)]


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


@dataclass
class JointAction:
    """One complete compression configuration (what one episode decides)."""

    keep_ratios: list[float]
    precisions: list[str]
    fusion: list[str]
    temperature: float
    alpha: float
    update_scope: str

    @classmethod
    def uniform(
        cls,
        n_groups: int,
        keep: float,
        precision: str,
        temperature: float = DEFAULT_TEMPERATURE,
        alpha: float = DEFAULT_ALPHA,
        update_scope: str = DEFAULT_SCOPE,
    ) -> JointAction:
        """One keep ratio and one precision for every group: what a user tries by hand."""
        return cls(
            [float(keep)] * n_groups, [precision] * n_groups, ["none"] * n_groups,
            temperature, alpha, update_scope,
        )  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        """Per-agent form, as stored and as ``host.report`` reads it."""
        return {
            "pruning": list(self.keep_ratios),
            "quantization": list(self.precisions),
            "fusion": list(self.fusion),
            "distillation": {"temperature": self.temperature, "alpha": self.alpha},
            "update": self.update_scope,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> JointAction:
        return cls(
            keep_ratios=[float(v) for v in d["pruning"]],
            precisions=list(d["quantization"]),
            fusion=list(d["fusion"]),
            temperature=float(d["distillation"]["temperature"]),
            alpha=float(d["distillation"]["alpha"]),
            update_scope=str(d["update"]),
        )

    def canonical_json(self) -> str:
        """Stable text of the configuration: equal configurations give equal strings."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    def config_key(self, model_hash: str, salt: str = "") -> str:
        """sha256 of model hash + canonical action JSON (+ anything else shaping the artifact)."""
        text = f"{model_hash}\n{self.canonical_json()}\n{salt}"
        return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class EvalOutcome:
    """What ``evaluate`` returns for a joint action (measured, cached, predicted or failed)."""

    status: str  # "measured" | "failed" | "predicted"
    reward: float | None
    metrics: dict[str, Any] = field(default_factory=dict)
    candidate_id: str = ""
    cached: bool = False
    error: str = ""
    last: LastCandidate | None = None  # relative metrics for the next observation


Evaluator = Callable[[JointAction, int], EvalOutcome]  # (action, episode index) -> outcome
KeepBound = Callable[[int, Sequence[float], Sequence[str]], float]


class CompressionEnv:
    """The environment protocol of ``hadmc.ppo`` over a model's prunable layer groups."""

    def __init__(
        self,
        encoder: StateEncoder,
        runtime: str,
        evaluate: Evaluator,
        keep_bound: KeepBound | None = None,
    ) -> None:
        self.encoder = encoder
        self.runtime = runtime
        self.precisions = RUNTIME_PRECISIONS[runtime]
        self.action_spec = make_action_spec(runtime)
        self.heads = heads_for(runtime)
        self.observation_dim = encoder.dim
        self.n_groups = len(encoder.groups)
        self.stages = precision_stages(self.n_groups, runtime)
        self.evaluate = evaluate
        self.keep_bound = keep_bound
        self.episode = 0  # index of the episode in progress (or next)
        self.last: LastCandidate | None = None
        self.last_outcome: EvalOutcome | None = None
        self._step = 0
        self._keep: list[float] = []
        self._prec: list[str] = []
        self._fusion: list[str] = []
        self._started = False

    def acting(self, step: int) -> dict[str, bool]:
        """Which heads act at ``step`` (the ``head_mask`` of the protocol)."""
        last = step == self.n_groups - 1
        stage_start = step == 0 or self.stages[step] != self.stages[step - 1]
        mask = {"pruning": True, "quantization": stage_start}
        if "fusion" in self.heads:
            mask["fusion"] = True
        mask.update(distillation=last, update=last)
        return mask

    head_mask = acting  # the name the PPO protocol documents

    def _obs(self) -> np.ndarray:
        return self.encoder.encode(
            self._step, self._keep, [p == "int8" for p in self._prec], self.last
        )

    def reset(self, seed: int | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """Start an episode. ``seed`` is accepted for the protocol; the env has no randomness."""
        del seed
        self._step = 0
        self._keep, self._prec, self._fusion = [], [], []
        self._started = True
        return self._obs(), {"head_mask": self.acting(0), "episode": self.episode}

    def _need(self, action: dict[str, Any], head: str) -> Any:
        if head not in action:
            raise ValueError(f"step {self._step}: action lacks head {head!r}")
        return action[head]

    def step(self, action: dict[str, Any]) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if not self._started:
            raise RuntimeError("call reset() before step()")
        mask = self.acting(self._step)
        keep = KEEP_RATIOS[int(self._need(action, "pruning"))]
        if mask["quantization"]:
            precision = self.precisions[int(self._need(action, "quantization"))]
        else:
            precision = self._prec[-1]  # the stage's precision
        if self.keep_bound is not None:
            bound = self.keep_bound(self._step, self._keep, [*self._prec, precision])
            allowed = [k for k in KEEP_RATIOS if k <= min(keep, bound) + 1e-9]
            keep = max(allowed) if allowed else min(KEEP_RATIOS)
        self._keep.append(keep)
        self._prec.append(precision)
        fusion = FUSION_PATTERNS[int(self._need(action, "fusion"))] if "fusion" in mask else "none"
        self._fusion.append(fusion)
        self._step += 1
        if self._step < self.n_groups:
            return self._obs(), 0.0, False, False, {"head_mask": self.acting(self._step)}

        temperature, alpha = map_distillation(self._need(action, "distillation"))
        joint = JointAction(
            keep_ratios=list(self._keep),
            precisions=list(self._prec),
            fusion=list(self._fusion),
            temperature=temperature,
            alpha=alpha,
            update_scope=UPDATE_SCOPES[int(self._need(action, "update"))],
        )
        outcome = self.evaluate(joint, self.episode)
        self.last_outcome = outcome
        if outcome.last is not None:
            self.last = outcome.last
        info: dict[str, Any] = {
            "head_mask": self.acting(0),
            "joint_action": joint,
            "outcome": outcome,
            "episode": self.episode,
        }
        reward = 0.0
        if outcome.status == "failed" or outcome.reward is None:
            info["discard_episode"] = True  # never learn from a reward the device did not give
        else:
            reward = float(outcome.reward)
        self.episode += 1
        self._started = False
        obs = self._obs()
        return obs, reward, True, False, info

    # Checkpointing: what the next observation depends on besides the policy.
    def state_dict(self) -> dict[str, Any]:
        return {"episode": self.episode, "last": None if self.last is None else asdict(self.last)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.episode = int(state["episode"])
        self.last = None if state["last"] is None else LastCandidate(**state["last"])
