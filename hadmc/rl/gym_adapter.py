"""Wrap a gymnasium env as a single-head hadmc env (shows PPO is independent of compression).

``Discrete(n)`` becomes one categorical head ``"action"`` of size n; a 1-D ``Box`` becomes one
Gaussian head of that many dims whose raw sample is clipped to the Box bounds here, in the
env (the policy never squashes: ERRATA row 3.2). Observations are flattened to float32.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from hadmc.rl.policy import ActionSpec, HeadSpec

HEAD_NAME = "action"


class GymnasiumAdapter:
    """hadmc env protocol (``action_spec``, ``observation_dim``, dict actions) over gymnasium."""

    def __init__(self, env: gym.Env) -> None:
        obs_space = env.observation_space
        if not isinstance(obs_space, spaces.Box):
            raise ValueError(f"only Box observation spaces are supported, got {obs_space}")
        act_space = env.action_space
        if isinstance(act_space, spaces.Discrete):
            head = HeadSpec(HEAD_NAME, "categorical", int(act_space.n))
        elif isinstance(act_space, spaces.Box) and len(act_space.shape) == 1:
            head = HeadSpec(HEAD_NAME, "gaussian", int(act_space.shape[0]))
        else:
            raise ValueError(
                f"only Discrete or 1-D Box action spaces are supported, got {act_space}"
            )
        self.env = env
        self.action_spec = ActionSpec((head,))
        self.observation_dim = int(np.prod(obs_space.shape))

    def reset(self, seed: int | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        obs, info = self.env.reset(seed=seed)
        return np.asarray(obs, dtype=np.float32).reshape(-1), dict(info)

    def step(self, action: dict[str, Any]) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if HEAD_NAME not in action:
            raise ValueError(f"action dict lacks head {HEAD_NAME!r}")
        a = action[HEAD_NAME]
        act_space = self.env.action_space
        if isinstance(act_space, spaces.Box):
            a = np.clip(np.asarray(a, dtype=act_space.dtype), act_space.low, act_space.high)
        else:
            a = int(a)
        obs, reward, terminated, truncated, info = self.env.step(a)
        return (
            np.asarray(obs, dtype=np.float32).reshape(-1),
            float(reward),
            bool(terminated),
            bool(truncated),
            dict(info),
        )

    def close(self) -> None:
        self.env.close()


def make_gym_env(env_id: str, **kwargs: Any) -> GymnasiumAdapter:
    """``gym.make(env_id, **kwargs)`` wrapped as a hadmc env."""
    return GymnasiumAdapter(gym.make(env_id, **kwargs))
