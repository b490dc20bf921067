"""``CompressionEnv``: one episode compresses the model once (gymnasium-style protocol).

Steps walk the prunable layer groups in forward order (AMC/HAQ style). The heads are the
compression passes of ``hadmc.compress.registry`` (default: every registered pass), in their
``order``; a pass the runtime does not offer has no head and takes its ``default_choice``.
Which head acts when:

- a per-group pass acts at the first group of each of its decision units (``units``), and
  the unit's other groups repeat that choice: ``pruning`` and ``fusion`` (where offered) at
  every group, ``quantization`` once per precision stage (``precision_stages``);
- any other pass (``distillation``, ``update``) acts once, at the last step.

Action bounding (AMC): given ``keep_bound(step, keeps, precisions) -> max keep`` (the
surrogate's latency model under a latency limit), the pruning pass lowers the chosen keep
ratio to the largest choice the bound allows, so an episode's predicted latency meets it.

Rewards are 0 until the terminal step, where the joint action is handed to ``evaluate``. A
candidate that could not be measured comes back ``failed``: its episode is marked
``info["discard_episode"] = True`` so PPO drops it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from hadmc.compress.passes.distillation_pass import DISTILLATION_INIT_RAW, map_distillation
from hadmc.compress.passes.pruning_pass import KEEP_RATIOS
from hadmc.compress.passes.quantization_pass import RUNTIME_PRECISIONS, precision_stages
from hadmc.compress.registry import (
    LEGACY_PASS_NAMES,
    CompressionPass,
    StepContext,
    renamed_pass_names,
    resolve_passes,
)
from hadmc.rl.policy import ActionSpec, HeadSpec
from hadmc.search.observation import LastCandidate, ObservationEncoder

# Re-exported: where callers and tests addressed the action space before the registry.
__all__ = [
    "DISTILLATION_INIT_RAW", "KEEP_RATIOS", "RUNTIME_PRECISIONS", "CompressionEnv",
    "EvalOutcome", "JointAction", "heads_for", "make_action_spec", "map_distillation",
    "precision_stages",
]  # fmt: skip

Passes = Sequence[CompressionPass] | None


def heads_for(runtime: str, passes: Passes = None) -> tuple[str, ...]:
    """Names of the heads offered on ``runtime``, in policy order."""
    if runtime not in RUNTIME_PRECISIONS:
        raise ValueError(f"unknown runtime {runtime!r}; known {sorted(RUNTIME_PRECISIONS)}")
    return tuple(p.name for p in resolve_passes(passes) if p.offered(runtime))


def make_action_spec(runtime: str, passes: Passes = None) -> ActionSpec:
    """One head per pass offered on ``runtime`` (e.g. quantization: what the runtime executes)."""
    heads = heads_for(runtime, passes)
    offered = [p for p in resolve_passes(passes) if p.name in heads]
    return ActionSpec(heads=tuple(HeadSpec(p.name, p.kind, p.size(runtime)) for p in offered))


@dataclass
class JointAction:
    """One complete compression configuration (what one episode decides): the value of every
    pass by name, in pass order, as stored (``to_dict``) and as the passes apply it."""

    values: dict[str, Any]

    def __getitem__(self, name: str) -> Any:
        return self.values[name]

    # The built-in passes' values under their long-standing names (surrogate, strategies).
    @property
    def keep_ratios(self) -> list[float]:
        return self.values["pruning"]

    @property
    def precisions(self) -> list[str]:
        return self.values["quantization"]

    @property
    def fusion(self) -> list[str]:
        return self.values["fusion"]

    @property
    def temperature(self) -> float:
        return self.values["distillation"]["temperature"]

    @property
    def alpha(self) -> float:
        return self.values["distillation"]["alpha"]

    @property
    def update_scope(self) -> str:
        return self.values["update_scope"]

    @classmethod
    def uniform(
        cls, n_groups: int, keep: float, precision: str, *, passes: Passes = None, **choices: Any
    ) -> JointAction:
        """One keep ratio and one precision for every group, every other pass at its default
        (or at ``choices[name]``): what a user tries by hand."""
        choices = {"pruning": keep, "quantization": precision, **choices}
        return cls({
            p.name: p.uniform(n_groups, choices[p.name]) if p.name in choices
            else p.default(n_groups)
            for p in resolve_passes(passes)
        })  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        """Per-agent form, as stored and as ``host.report`` reads it (a copy)."""
        return json.loads(json.dumps(self.values))

    @classmethod
    def from_dict(cls, d: dict[str, Any], passes: Passes = None) -> JointAction:
        """Every pass of ``passes`` must be in ``d``; a key of a pass this caller does not
        know is kept as stored, so the configuration (and its key) stays the same."""
        known = resolve_passes(passes)
        d = renamed_pass_names(d)
        values = {p.name: p.parse(d[p.name]) for p in known}
        values.update({k: v for k, v in d.items() if k not in values})
        return cls(values)

    def canonical_json(self) -> str:
        """Stable text of the configuration: equal configurations give equal strings. A
        renamed pass keys under its old name (``LEGACY_PASS_NAMES``), so that a configuration
        keeps its config key, and a resumed or cached run still finds what it measured."""
        old = {new: was for was, new in LEGACY_PASS_NAMES.items()}
        values = {old.get(k, k): v for k, v in self.values.items()}
        return json.dumps(values, sort_keys=True, separators=(",", ":"))

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
    """The environment protocol of ``hadmc.rl.ppo`` over a model's prunable layer groups."""

    def __init__(
        self,
        encoder: ObservationEncoder,
        runtime: str,
        evaluate: Evaluator,
        keep_bound: KeepBound | None = None,
        passes: Passes = None,
    ) -> None:
        self.encoder = encoder
        self.runtime = runtime
        self.passes = resolve_passes(passes)
        self.action_spec = make_action_spec(runtime, self.passes)
        self.heads = self.action_spec.names
        self.observation_dim = encoder.dim
        self.n_groups = len(encoder.groups)
        self._per_group = [p for p in self.passes if p.per_group]
        # Decision unit of every group, per per-group pass (a new unit = the head acts).
        self.units = {p.name: p.units(self.n_groups, runtime) for p in self._per_group}
        self.bounds = {} if keep_bound is None else {"pruning": keep_bound}
        self.evaluate = evaluate
        self.keep_bound = keep_bound
        self.episode = 0  # index of the episode in progress (or next)
        self.last: LastCandidate | None = None
        self.last_outcome: EvalOutcome | None = None
        self._step = 0
        self._values: dict[str, list[Any]] = {}  # per-group values decided so far, by pass
        self._started = False

    @property
    def stages(self) -> list[int]:
        """Precision stage of every group (the quantization pass's decision units)."""
        return self.units["quantization"]

    def acting(self, step: int) -> dict[str, bool]:
        """Which heads act at ``step`` (the ``head_mask`` of the protocol)."""
        mask = {}
        for p in self.passes:
            if p.name not in self.heads:
                continue
            if p.per_group:
                units = self.units[p.name]
                mask[p.name] = step == 0 or units[step] != units[step - 1]
            else:
                mask[p.name] = step == self.n_groups - 1
        return mask

    head_mask = acting  # the name the PPO protocol documents

    def _obs(self) -> np.ndarray:
        return self.encoder.encode(self._step, self._values, self.last)

    def reset(self, seed: int | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """Start an episode. ``seed`` is accepted for the protocol; the env has no randomness."""
        del seed
        self._step = 0
        self._values = {p.name: [] for p in self._per_group}
        self._started = True
        return self._obs(), {"head_mask": self.acting(0), "episode": self.episode}

    def _need(self, action: dict[str, Any], head: str) -> Any:
        if head not in action:
            raise ValueError(f"step {self._step}: action lacks head {head!r}")
        return action[head]

    def _decide(self, p: CompressionPass, action: dict[str, Any], acts: bool) -> Any:
        """This step's value of pass ``p``: decoded when its head acts, else the unit's (or,
        without a head on this runtime, the pass's default)."""
        if p.name not in self.heads:
            return p.default_choice
        if acts:
            return p.decode(self._need(action, p.name), self.runtime)
        return self._values[p.name][-1]

    def step(self, action: dict[str, Any]) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if not self._started:
            raise RuntimeError("call reset() before step()")
        mask = self.acting(self._step)
        current: dict[str, Any] = {}
        for p in self._per_group:
            current[p.name] = self._decide(p, action, mask.get(p.name, False))
        ctx = StepContext(self._step, self.runtime, self._values, current, self.bounds)
        for p in self._per_group:  # e.g. the keep bound, which needs this step's precision
            current[p.name] = p.refine(current[p.name], ctx)
        for name, value in current.items():
            self._values[name].append(value)
        self._step += 1
        if self._step < self.n_groups:
            return self._obs(), 0.0, False, False, {"head_mask": self.acting(self._step)}

        joint = JointAction({
            p.name: list(self._values[p.name]) if p.per_group
            else p.parse(self._decide(p, action, True))
            for p in self.passes
        })  # fmt: skip
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
