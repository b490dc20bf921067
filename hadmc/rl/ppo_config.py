"""PPO configuration and the result records ``PPO.act``/``collect``/``update`` return."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class PPOConfig:
    """Every PPO hyperparameter (defaults: CleanRL ``ppo.py`` unless noted)."""

    hidden_size: int = 64  # width H of the shared trunk and of the value net
    learning_rate: float = 2.5e-4  # Adam step size at update 0
    anneal_lr: bool = True  # linear decay to 0 over ``total_updates`` (spec 2.6)
    total_updates: int | None = None  # needed for annealing; None = constant LR
    gamma: float = 0.99  # discount
    gae_lambda: float = 0.95  # GAE lambda
    n_epochs: int = 4  # K passes over the rollout per update
    minibatch_size: int = 64  # transitions per gradient step
    clip_coef: float = 0.2  # epsilon of the clipped ratio
    clip_value_loss: bool = False  # clip V(s) to V_old +- clip_coef (SB3 default: off)
    vf_coef: float = 0.5  # c1
    ent_coef: float = 0.01  # c2 (entropy bonus)
    max_grad_norm: float = 0.5  # global gradient-norm clip
    target_kl: float | None = None  # approx-KL early stop of the update; None = off
    # Normalise advantages to mean 0, std 1 over the WHOLE rollout, once per update (CleanRL
    # does it per minibatch). Why: a search rollout is a few short episodes, split into
    # minibatches of 64 plus a leftover (e.g. 16); per-minibatch mean/std on 16 samples are
    # noisy and flip which actions count as better than average from one minibatch to the next.
    norm_adv: bool = True
    adam_eps: float = 1e-5  # CleanRL's Adam epsilon
    init_log_std: float = 0.0  # initial log sigma of Gaussian heads (sigma = 1)
    # Initial raw mean per Gaussian head (default 0). For the distillation head,
    # {"distillation": [4.0, 0.85]} starts at T = 4, alpha = sigmoid(0.85) = 0.7.
    gaussian_init_mean: dict[str, list[float]] | None = None
    max_env_steps_factor: int = 20  # collect() fails after n_steps * this env steps (discards)

    def __post_init__(self) -> None:
        positive = (
            "hidden_size",
            "learning_rate",
            "n_epochs",
            "minibatch_size",
            "max_env_steps_factor",
        )
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"PPOConfig.{name} must be > 0, got {getattr(self, name)}")
        for name in ("gamma", "gae_lambda"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"PPOConfig.{name} must be in [0, 1], got {getattr(self, name)}")
        for name in ("clip_coef", "vf_coef", "ent_coef", "max_grad_norm", "adam_eps"):
            if getattr(self, name) < 0:
                raise ValueError(f"PPOConfig.{name} must be >= 0, got {getattr(self, name)}")
        if self.anneal_lr and self.total_updates is not None and self.total_updates <= 0:
            raise ValueError("PPOConfig.total_updates must be > 0")
        if self.target_kl is not None and self.target_kl <= 0:
            raise ValueError("PPOConfig.target_kl must be > 0 or None")


@dataclass
class StepOutput:
    """One ``act`` result. ``action``: categorical -> int, gaussian -> raw float32 array."""

    action: dict[str, int | np.ndarray]
    log_prob: float  # joint, masked heads excluded
    value: float
    head_mask: np.ndarray  # float32 [n_heads], 1 = acts


@dataclass
class Transition:
    """What ``collect`` hands its callback after every env step."""

    obs: np.ndarray
    action: dict[str, int | np.ndarray]
    reward: float
    terminated: bool
    truncated: bool
    info: dict[str, Any]


@dataclass
class RolloutStats:
    env_steps: int  # env.step calls, discarded episodes included
    steps_kept: int  # transitions in the buffer
    episodes_finished: int  # kept episodes that ended in this rollout
    episodes_discarded: int
    episode_returns: list[float] = field(default_factory=list)
    episode_lengths: list[int] = field(default_factory=list)


@dataclass
class UpdateStats:
    """Means over the minibatches actually stepped (all but ``approx_kl`` of the last one)."""

    policy_loss: float
    value_loss: float
    entropy: float
    approx_kl: float
    clip_fraction: float
    explained_variance: float
    learning_rate: float
    n_samples: int
    minibatches: int
    early_stopped: bool
    first_ratio_max_abs_dev: float  # max |r - 1| on the very first minibatch (should be 0)
    first_clip_fraction: float
    logprob_drift: float  # max |acting-time log-prob - recomputed log pi_old|, float noise
