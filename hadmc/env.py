"""``CompressionEnv``: one episode compresses the model once (gymnasium-style protocol).

Steps walk the prunable layer groups in forward order (AMC/HAQ style). At every step the
``pruning``, ``quantization`` and ``fusion`` heads choose for the current group; at the last
step the ``distillation`` (2-D Gaussian, raw) and ``update`` heads act once. Heads that do not
act at the next step are masked in ``info["head_mask"]``. Rewards are 0 until the terminal
step, where the joint action is handed to ``evaluate`` (prune -> fuse -> distil-finetune ->
export -> accuracy of the exported artifact -> device measurement -> reward, see
``hadmc.candidate`` and ``host.search``). A candidate that could not be measured comes back
``failed``: its episode is marked ``info["discard_episode"] = True`` so PPO drops it.
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
PER_GROUP_HEADS = ("pruning", "quantization", "fusion")
ONCE_HEADS = ("distillation", "update")
T_MIN, T_MAX = 1.0, 20.0
T_GRID, ALPHA_GRID = 0.5, 0.05


def make_action_spec(runtime: str) -> ActionSpec:
    """The five heads for ``runtime`` (quantization choices are what it executes)."""
    if runtime not in RUNTIME_PRECISIONS:
        raise ValueError(f"unknown runtime {runtime!r}; known {sorted(RUNTIME_PRECISIONS)}")
    return ActionSpec(
        heads=(
            HeadSpec("pruning", "categorical", len(KEEP_RATIOS)),
            HeadSpec("quantization", "categorical", len(RUNTIME_PRECISIONS[runtime])),
            HeadSpec("fusion", "categorical", len(FUSION_PATTERNS)),
            HeadSpec("distillation", "gaussian", 2),
            HeadSpec("update", "categorical", len(UPDATE_SCOPES)),
        )
    )


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
    """What ``evaluate`` returns for a joint action (measured, cached, or failed)."""

    status: str  # "measured" | "failed"
    reward: float | None
    metrics: dict[str, Any] = field(default_factory=dict)
    candidate_id: str = ""
    cached: bool = False
    error: str = ""
    last: LastCandidate | None = None  # relative metrics for the next observation


Evaluator = Callable[[JointAction, int], EvalOutcome]  # (action, episode index) -> outcome


class CompressionEnv:
    """The environment protocol of ``hadmc.ppo`` over a model's prunable layer groups."""

    def __init__(self, encoder: StateEncoder, runtime: str, evaluate: Evaluator) -> None:
        self.encoder = encoder
        self.runtime = runtime
        self.precisions = RUNTIME_PRECISIONS[runtime]
        self.action_spec = make_action_spec(runtime)
        self.observation_dim = encoder.dim
        self.n_groups = len(encoder.groups)
        self.evaluate = evaluate
        self.episode = 0  # index of the episode in progress (or next)
        self.last: LastCandidate | None = None
        self.last_outcome: EvalOutcome | None = None
        self._step = 0
        self._keep: list[float] = []
        self._prec: list[str] = []
        self._fusion: list[str] = []
        self._started = False

    def head_mask(self, step: int) -> dict[str, bool]:
        last = step == self.n_groups - 1
        mask = dict.fromkeys(PER_GROUP_HEADS, True)
        mask.update(dict.fromkeys(ONCE_HEADS, last))
        return mask

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
        return self._obs(), {"head_mask": self.head_mask(0), "episode": self.episode}

    def step(self, action: dict[str, Any]) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if not self._started:
            raise RuntimeError("call reset() before step()")
        for head in PER_GROUP_HEADS:
            if head not in action:
                raise ValueError(f"action lacks head {head!r}")
        self._keep.append(KEEP_RATIOS[int(action["pruning"])])
        self._prec.append(self.precisions[int(action["quantization"])])
        self._fusion.append(FUSION_PATTERNS[int(action["fusion"])])
        self._step += 1
        if self._step < self.n_groups:
            return self._obs(), 0.0, False, False, {"head_mask": self.head_mask(self._step)}

        for head in ONCE_HEADS:
            if head not in action:
                raise ValueError(f"last step: action lacks head {head!r}")
        temperature, alpha = map_distillation(action["distillation"])
        joint = JointAction(
            keep_ratios=list(self._keep),
            precisions=list(self._prec),
            fusion=list(self._fusion),
            temperature=temperature,
            alpha=alpha,
            update_scope=UPDATE_SCOPES[int(action["update"])],
        )
        outcome = self.evaluate(joint, self.episode)
        self.last_outcome = outcome
        if outcome.last is not None:
            self.last = outcome.last
        info: dict[str, Any] = {
            "head_mask": self.head_mask(0),
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
