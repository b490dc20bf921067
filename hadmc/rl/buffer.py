"""Rollout storage and Generalised Advantage Estimation (Schulman et al. 2016).

GAE as implemented (ERRATA rows "2.3 / 2.4 terminal" and "2.3 properties"):

    delta_t = r_t + gamma * V_next_t * (1 - terminated_t) - V(s_t)
    A_t     = delta_t + gamma * lambda * (1 - episode_end_t) * A_{t+1}
    R_t     = A_t + V(s_t)                       (value-function target)

where ``V_next_t`` is V(s_{t+1}) of the same episode: the next stored value inside an episode,
V(final obs) for a time-limit truncation (``truncated_t``; passed in as ``final_value``), or
V(last obs) for the last stored step of a rollout cut mid-episode. ``episode_end_t`` =
terminated or truncated, so no advantage flows across an episode boundary.

The buffer is list-backed (not preallocated) because a whole episode can be removed after its
last step (``discard_last_episode``: a compression candidate that could not be measured).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

from hadmc.rl.policy import ActionSpec


def compute_gae(
    rewards: np.ndarray,
    values: np.ndarray,
    terminated: np.ndarray,
    truncated: np.ndarray,
    final_values: np.ndarray,
    last_value: float,
    gamma: float,
    lam: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Advantages and returns for one rollout of length N (all arrays shape ``[N]``).

    ``final_values[t]`` is V(s_{t+1}) used only where ``truncated[t]`` (time limit: the episode
    did not really end, so bootstrap). ``last_value`` is V(s_N) used only when the last step
    is mid-episode. A step that is terminated never bootstraps.
    """
    if not (0.0 <= gamma <= 1.0 and 0.0 <= lam <= 1.0):
        raise ValueError(f"gamma and lambda must be in [0, 1], got {gamma}, {lam}")
    n = len(rewards)
    if not all(len(a) == n for a in (values, terminated, truncated, final_values)):
        raise ValueError("rewards, values, terminated, truncated, final_values differ in length")
    adv = np.zeros(n, dtype=np.float64)
    next_adv = 0.0
    for t in reversed(range(n)):
        term, trunc = bool(terminated[t]), bool(truncated[t])
        if term:
            next_v = 0.0
        elif trunc:
            next_v = float(final_values[t])
        elif t == n - 1:
            next_v = float(last_value)
        else:
            next_v = float(values[t + 1])
        delta = float(rewards[t]) + gamma * next_v - float(values[t])
        # Continue the lambda-sum only inside the same episode (and not past the rollout end).
        carry = 0.0 if (term or trunc or t == n - 1) else gamma * lam * next_adv
        adv[t] = delta + carry
        next_adv = adv[t]
    returns = adv + values.astype(np.float64)
    return adv.astype(np.float32), returns.astype(np.float32)


@dataclass
class RolloutBatch:
    """Tensors for one PPO update (N transitions)."""

    obs: torch.Tensor  # [N, obs_dim] float32
    actions: dict[str, torch.Tensor]  # categorical [N] int64; gaussian [N, d] float32 (raw)
    masks: torch.Tensor  # [N, n_heads] float32, 1 = head acted
    log_probs: torch.Tensor  # [N] joint log-prob at acting time
    values: torch.Tensor  # [N] V(s_t) at acting time
    advantages: torch.Tensor  # [N]
    returns: torch.Tensor  # [N]


class RolloutBuffer:
    """Transitions of one rollout, in order; ``compute_returns`` fills advantages/returns."""

    def __init__(self, action_spec: ActionSpec, obs_dim: int) -> None:
        self.action_spec = action_spec
        self.obs_dim = obs_dim
        self.clear()

    def clear(self) -> None:
        self.obs: list[np.ndarray] = []
        self.actions: dict[str, list] = {h.name: [] for h in self.action_spec.heads}
        self.masks: list[np.ndarray] = []
        self.log_probs: list[float] = []
        self.values: list[float] = []
        self.rewards: list[float] = []
        self.terminated: list[bool] = []
        self.truncated: list[bool] = []
        self.final_values: list[float] = []
        self.advantages: np.ndarray | None = None
        self.returns: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.rewards)

    def add(
        self,
        obs: np.ndarray,
        action: Mapping[str, int | np.ndarray],
        head_mask: Mapping[str, bool] | np.ndarray | None,
        log_prob: float,
        value: float,
        reward: float,
        terminated: bool,
        truncated: bool,
        final_value: float = 0.0,
    ) -> None:
        """Store one step. ``final_value`` = V(next obs), needed only when ``truncated``."""
        obs_arr = np.asarray(obs, dtype=np.float32).reshape(-1)
        if obs_arr.shape[0] != self.obs_dim:
            raise ValueError(f"obs has {obs_arr.shape[0]} values, expected {self.obs_dim}")
        if not np.isfinite(reward):
            raise ValueError(f"reward must be finite, got {reward}")
        mask = (
            np.asarray(head_mask, dtype=np.float32)
            if isinstance(head_mask, np.ndarray)
            else self.action_spec.mask_vector(head_mask)
        )
        for h in self.action_spec.heads:
            if h.name not in action:
                raise ValueError(f"action lacks head {h.name!r}")
            if h.kind == "categorical":
                a = int(action[h.name])
                if not 0 <= a < h.size:
                    raise ValueError(f"head {h.name!r}: action {a} outside [0, {h.size})")
                self.actions[h.name].append(a)
            else:
                u = np.asarray(action[h.name], dtype=np.float32).reshape(-1)
                if u.shape[0] != h.size:
                    raise ValueError(f"head {h.name!r}: expected {h.size} dims, got {u.shape[0]}")
                self.actions[h.name].append(u)
        self.obs.append(obs_arr)
        self.masks.append(mask)
        self.log_probs.append(float(log_prob))
        self.values.append(float(value))
        self.rewards.append(float(reward))
        self.terminated.append(bool(terminated))
        self.truncated.append(bool(truncated))
        self.final_values.append(float(final_value))
        self.advantages = self.returns = None

    def discard_last_episode(self) -> int:
        """Remove the episode whose last step was just added; returns how many steps went.

        Only the part of that episode stored in this buffer can be removed: if it began in an
        earlier rollout, those steps were already used by an earlier update.
        """
        n = len(self)
        if n == 0 or not (self.terminated[-1] or self.truncated[-1]):
            raise ValueError("discard_last_episode: the last stored step does not end an episode")
        start = n - 1
        while start > 0 and not (self.terminated[start - 1] or self.truncated[start - 1]):
            start -= 1
        for lst in (
            self.obs,
            self.masks,
            self.log_probs,
            self.values,
            self.rewards,
            self.terminated,
            self.truncated,
            self.final_values,
            *self.actions.values(),
        ):
            del lst[start:]
        self.advantages = self.returns = None
        return n - start

    def compute_returns(self, last_value: float, last_done: bool, gamma: float, lam: float) -> None:
        """GAE over the stored steps. ``last_value`` = V(obs after the last step).

        ``last_done`` must agree with the last stored step: True iff it ended an episode
        (then ``last_value`` is not used).
        """
        if len(self) == 0:
            raise ValueError("compute_returns on an empty buffer")
        ended = self.terminated[-1] or self.truncated[-1]
        if bool(last_done) != ended:
            raise ValueError(
                f"last_done={last_done} but the last stored step has terminated="
                f"{self.terminated[-1]}, truncated={self.truncated[-1]}"
            )
        self.advantages, self.returns = compute_gae(
            np.asarray(self.rewards),
            np.asarray(self.values),
            np.asarray(self.terminated),
            np.asarray(self.truncated),
            np.asarray(self.final_values),
            last_value,
            gamma,
            lam,
        )

    def batch(self) -> RolloutBatch:
        if self.advantages is None or self.returns is None:
            raise RuntimeError("call compute_returns (PPO.finish_rollout) before batch()")
        actions: dict[str, torch.Tensor] = {}
        for h in self.action_spec.heads:
            if h.kind == "categorical":
                actions[h.name] = torch.as_tensor(self.actions[h.name], dtype=torch.int64)
            else:
                actions[h.name] = torch.as_tensor(np.stack(self.actions[h.name]))
        return RolloutBatch(
            obs=torch.as_tensor(np.stack(self.obs)),
            actions=actions,
            masks=torch.as_tensor(np.stack(self.masks)),
            log_probs=torch.as_tensor(self.log_probs, dtype=torch.float32),
            values=torch.as_tensor(self.values, dtype=torch.float32),
            advantages=torch.as_tensor(self.advantages),
            returns=torch.as_tensor(self.returns),
        )
