"""PPO (clipped surrogate, Schulman et al. 2017) for any env following the hadmc protocol.

CleanRL-style single-file logic: ``collect`` fills a rollout buffer with ``n_steps`` kept
transitions and computes GAE, ``update`` runs K epochs of shuffled minibatches. The env
protocol (docs/architecture.md): ``reset(seed) -> (obs, info)``, ``step(action_dict) -> (obs,
reward, terminated, truncated, info)``, ``action_spec``, ``observation_dim``;
``info["head_mask"]`` says which heads act at the next step, ``info["discard_episode"] is
True`` on a terminal step drops that whole episode from the buffer.

Callers that drive episodes themselves use ``act`` -> ``add`` -> ``finish_rollout`` ->
``update``. Checkpoints (``save``/``load``) carry everything the next update depends on.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from hadmc.rl.buffer import RolloutBatch, RolloutBuffer
from hadmc.rl.policy import ActionSpec, MultiHeadPolicy
from hadmc.rl.ppo_checkpoint import (
    CHECKPOINT_FORMAT,
    capture_rng_states,
    restore_rng_states,
    spec_from_data,
    spec_to_data,
)
from hadmc.rl.ppo_config import PPOConfig, RolloutStats, StepOutput, Transition, UpdateStats


def clipped_surrogate_loss(
    ratio: torch.Tensor, advantages: torch.Tensor, clip_coef: float
) -> torch.Tensor:
    """-E[min(r A, clip(r, 1-eps, 1+eps) A)] (ERRATA rows 2.1 and 2.4/4), to be minimised.

    Written as max of the negated terms; where the clipped term wins (A > 0 and r > 1+eps, or
    A < 0 and r < 1-eps) the loss is constant in r, so those samples give no gradient.
    """
    clipped = torch.clamp(ratio, 1.0 - clip_coef, 1.0 + clip_coef)
    return torch.max(-advantages * ratio, -advantages * clipped).mean()


def normalize_advantages(adv: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """(A - mean A) / (std A + eps) over the given advantages (unbiased std, as CleanRL).

    ``PPO.update`` calls it once on the whole rollout, not per minibatch: the search's
    rollouts are small (a few episodes of ~20 steps) and are cut into 64s plus a leftover of
    e.g. 16, whose own mean/std are noisy; a shared statistic gives every minibatch the same
    scale and sign convention. A single advantage is returned unchanged (std undefined).
    """
    if adv.numel() <= 1:
        return adv
    return (adv - adv.mean()) / (adv.std() + eps)


def value_loss(
    v_new: torch.Tensor, v_old: torch.Tensor, ret: torch.Tensor, clip_coef: float | None
) -> torch.Tensor:
    """0.5 * mean((V - R)^2) (ERRATA row 2.4/4 L^value); clipped as in CleanRL if ``clip_coef``.

    Clipped form: 0.5 * mean(max((V - R)^2, (V_old + clip(V - V_old, -eps, eps) - R)^2)). The
    max makes it pessimistic: moving V more than eps away from V_old never lowers the loss.
    ``clip_coef=None`` means no clipping.
    """
    unclipped = (v_new - ret) ** 2
    if clip_coef is None:
        return 0.5 * unclipped.mean()
    v_clipped = v_old + torch.clamp(v_new - v_old, -clip_coef, clip_coef)
    return 0.5 * torch.max(unclipped, (v_clipped - ret) ** 2).mean()


def approx_kl_k3(log_ratio: torch.Tensor) -> torch.Tensor:
    """k3 estimator of KL(old || new): mean((r - 1) - log r), r = exp(log_ratio).

    Unbiased and >= 0 per sample (Schulman, "Approximating KL divergence"); mean(-log r) is
    unbiased too but can go negative, and |mean log r| is not a KL estimate at all.
    """
    return (torch.expm1(log_ratio) - log_ratio).mean()


def ppo_loss(
    pg_loss: torch.Tensor,
    v_loss: torch.Tensor,
    entropy: torch.Tensor,
    ent_coef: float,
    vf_coef: float,
) -> torch.Tensor:
    """L = L_pg - c2 * H + c1 * L_v, minimised: the entropy term is a bonus (more is better)."""
    return pg_loss - ent_coef * entropy + vf_coef * v_loss


def _as_obs_tensor(obs: np.ndarray, obs_dim: int) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(obs, dtype=np.float32)).reshape(1, -1)
    if t.shape[1] != obs_dim:
        raise ValueError(f"observation has {t.shape[1]} values, expected {obs_dim}")
    return t


class PPO:
    """Five-agent (any ``ActionSpec``) PPO controller."""

    def __init__(
        self, obs_dim: int, action_spec: ActionSpec, config: PPOConfig | None = None, seed: int = 0
    ) -> None:
        self.obs_dim = int(obs_dim)
        self.action_spec = action_spec
        self.config = config if config is not None else PPOConfig()
        self.seed = int(seed)
        # Own generators (not the global RNGs): sampling and shuffling stay reproducible no
        # matter what else in the process draws random numbers, and they are checkpointed.
        self.generator = torch.Generator().manual_seed(self.seed)
        self.np_rng = np.random.default_rng(self.seed)
        self.policy = MultiHeadPolicy(
            self.obs_dim,
            action_spec,
            self.config.hidden_size,
            self.config.init_log_std,
            generator=self.generator,
            gaussian_init_mean=self.config.gaussian_init_mean,
        )
        self.optimizer = torch.optim.Adam(
            self.policy.parameters(), lr=self.config.learning_rate, eps=self.config.adam_eps
        )
        self.buffer = RolloutBuffer(action_spec, self.obs_dim)
        self.updates_done = 0
        self.steps_done = 0  # transitions used for training
        self.env_steps_done = 0  # env.step calls including discarded episodes
        self.episodes_started = 0
        self._env: Any = None
        self._obs: np.ndarray | None = None
        self._mask: dict[str, bool] | None = None
        self._ep_return = 0.0
        self._ep_len = 0

    # ---- acting ---------------------------------------------------------------------------
    def act(
        self,
        obs: np.ndarray,
        head_mask: Mapping[str, bool] | None = None,
        deterministic: bool = False,
    ) -> StepOutput:
        """Sample (or take the mode of) a joint action, under no_grad in eval mode."""
        mask = self.action_spec.mask_vector(head_mask)
        obs_t = _as_obs_tensor(obs, self.obs_dim)
        if self.policy.training:  # eval() walks every module: skip it when already set
            self.policy.eval()
        with torch.no_grad():
            mask_t = torch.as_tensor(mask).reshape(1, -1)
            actions, ev = self.policy.sample(obs_t, mask_t, self.generator, deterministic)
        out: dict[str, int | np.ndarray] = {}
        for h in self.action_spec.heads:
            a = actions[h.name][0]
            out[h.name] = int(a.item()) if h.kind == "categorical" else a.numpy().astype(np.float32)
        return StepOutput(out, float(ev.log_prob.item()), float(ev.value.item()), mask)

    def value(self, obs: np.ndarray) -> float:
        if self.policy.training:  # eval() walks every module: skip it when already set
            self.policy.eval()
        with torch.no_grad():
            return float(self.policy.value(_as_obs_tensor(obs, self.obs_dim)).item())

    def add(
        self,
        obs: np.ndarray,
        step: StepOutput,
        reward: float,
        terminated: bool,
        truncated: bool,
        next_obs: np.ndarray | None = None,
    ) -> None:
        """Store a transition. On a time-limit truncation pass ``next_obs`` (bootstrapped)."""
        final_value = 0.0
        if truncated and not terminated:
            if next_obs is None:
                raise ValueError("a truncated step needs next_obs to bootstrap V(s_{T+1})")
            final_value = self.value(next_obs)
        self.buffer.add(
            obs, step.action, step.head_mask, step.log_prob, step.value, reward, terminated,
            truncated, final_value,
        )  # fmt: skip

    def finish_rollout(self, last_obs: np.ndarray | None, last_done: bool) -> None:
        """Compute GAE; bootstrap from V(last_obs) unless the last step ended an episode."""
        last_value = 0.0 if last_done else self.value(last_obs)  # type: ignore[arg-type]
        self.buffer.compute_returns(
            last_value, last_done, self.config.gamma, self.config.gae_lambda
        )

    def _reset_env(self, env: Any) -> None:
        # Each episode's reset seed derives from (seed, episode index): reproducible, and a
        # resumed run reseeds exactly where the original would have continued.
        env_seed = int(
            np.random.SeedSequence([self.seed, self.episodes_started]).generate_state(1)[0]
        )
        obs, info = env.reset(seed=env_seed)
        self.episodes_started += 1
        self._obs = np.asarray(obs, dtype=np.float32)
        self._mask = info.get("head_mask")
        self._ep_return, self._ep_len = 0.0, 0

    def collect(
        self, env: Any, n_steps: int, callback: Callable[[Transition], bool | None] | None = None
    ) -> RolloutStats:
        """Run ``env`` until ``n_steps`` transitions are kept, then compute GAE.

        Episodes continue across calls with the same env. A terminal step whose
        ``info.get("discard_episode") is True`` removes its episode from the buffer; those
        steps do not count toward ``n_steps``. ``callback`` returning False ends the rollout.
        """
        if n_steps <= 0:
            raise ValueError(f"n_steps must be > 0, got {n_steps}")
        if getattr(env, "action_spec", None) != self.action_spec:
            raise ValueError("env.action_spec differs from the policy's ActionSpec")
        if getattr(env, "observation_dim", None) != self.obs_dim:
            raise ValueError(f"env.observation_dim != {self.obs_dim}")
        if len(self.buffer):
            raise RuntimeError("buffer not empty: call update() before collecting again")
        if env is not self._env:
            self._env, self._obs = env, None
        stats = RolloutStats(0, 0, 0, 0)
        max_env_steps = n_steps * self.config.max_env_steps_factor
        stop = False
        while len(self.buffer) < n_steps and not stop:
            # Reset lazily (not right after a terminal step) so a checkpoint taken at an
            # episode boundary resumes with the same reset seed the original run would use.
            if self._obs is None:
                self._reset_env(env)
            obs = self._obs
            assert obs is not None
            step = self.act(obs, self._mask)
            next_obs, reward, terminated, truncated, info = env.step(step.action)
            stats.env_steps += 1
            self._ep_return += float(reward)
            self._ep_len += 1
            self.add(obs, step, float(reward), terminated, truncated, next_obs)
            if callback is not None:
                t = Transition(obs, step.action, float(reward), terminated, truncated, info)
                stop = callback(t) is False
            if terminated or truncated:
                if info.get("discard_episode") is True:
                    self.buffer.discard_last_episode()
                    stats.episodes_discarded += 1
                else:
                    stats.episodes_finished += 1
                    stats.episode_returns.append(self._ep_return)
                    stats.episode_lengths.append(self._ep_len)
                self._obs, self._mask = None, None
            else:
                self._obs = np.asarray(next_obs, dtype=np.float32)
                self._mask = info.get("head_mask")
            if stats.env_steps >= max_env_steps and len(self.buffer) < n_steps:
                raise RuntimeError(
                    f"collect: {stats.env_steps} env steps but only {len(self.buffer)} kept "
                    f"transitions (episodes discarded: {stats.episodes_discarded})"
                )
        stats.steps_kept = len(self.buffer)
        self.steps_done += stats.steps_kept
        self.env_steps_done += stats.env_steps
        if stats.steps_kept:
            last_done = self.buffer.terminated[-1] or self.buffer.truncated[-1]
            self.finish_rollout(None if last_done else self._obs, last_done)
        return stats

    # ---- learning -------------------------------------------------------------------------
    def current_learning_rate(self) -> float:
        c = self.config
        if not c.anneal_lr or c.total_updates is None:
            return c.learning_rate
        return c.learning_rate * max(0.0, 1.0 - self.updates_done / c.total_updates)

    def update(self) -> UpdateStats:
        """K epochs of clipped-PPO minibatch steps on the buffer, then clear it.

        Advantages are normalised once over the whole rollout (``norm_adv``), not per
        minibatch; each step minimises ``ppo_loss`` and clips the global gradient norm.
        """
        c = self.config
        b = self.buffer.batch()
        n = b.obs.shape[0]
        lr = self.current_learning_rate()
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.policy.train()
        sums = dict(pg=0.0, v=0.0, ent=0.0, cf=0.0)
        n_minibatches, approx_kl, early, first_dev, first_cf = 0, 0.0, False, float("nan"), float("nan")
        mb_size = min(c.minibatch_size, n)
        perms = [torch.as_tensor(self.np_rng.permutation(n)) for _ in range(c.n_epochs)]
        # Whole-rollout statistics, computed once (see normalize_advantages for why).
        advantages = normalize_advantages(b.advantages) if c.norm_adv else b.advantages
        old_log_probs = self._old_log_probs(b, perms[0], mb_size)
        diff = (old_log_probs - b.log_probs).abs()
        drift = float(diff.max())
        if bool((diff > 1e-4 * (1.0 + b.log_probs.abs())).any()):
            # Not rounding: the parameters changed between acting and this update.
            raise RuntimeError(
                f"policy changed since the rollout was collected (drift {drift:.3g})"
            )
        for perm in perms:
            for start in range(0, n, mb_size):
                idx = perm[start : start + mb_size]
                acts = {k: v[idx] for k, v in b.actions.items()}
                ev = self.policy.evaluate(b.obs[idx], acts, b.masks[idx])
                log_ratio = ev.log_prob - old_log_probs[idx]
                ratio = log_ratio.exp()
                with torch.no_grad():
                    approx_kl = float(approx_kl_k3(log_ratio))
                    clip_frac = float(((ratio - 1).abs() > c.clip_coef).float().mean())
                if n_minibatches == 0:
                    first_dev = float((ratio.detach() - 1).abs().max())
                    first_cf = clip_frac
                if c.target_kl is not None and approx_kl > c.target_kl and n_minibatches > 0:
                    early = True  # stop before stepping on a minibatch that drifted too far
                    break
                pg_loss = clipped_surrogate_loss(ratio, advantages[idx], c.clip_coef)
                v_loss = self._value_loss(ev.value, b.values[idx], b.returns[idx])
                entropy = ev.entropy.mean()
                loss = ppo_loss(pg_loss, v_loss, entropy, c.ent_coef, c.vf_coef)
                self.optimizer.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(self.policy.parameters(), c.max_grad_norm)
                self.optimizer.step()
                n_minibatches += 1
                sums["pg"] += float(pg_loss.detach())
                sums["v"] += float(v_loss.detach())
                sums["ent"] += float(entropy.detach())
                sums["cf"] += clip_frac
            if early:
                break
        y, v = b.returns.numpy(), b.values.numpy()
        var_y = float(np.var(y))
        explained_var = float("nan") if var_y == 0 else 1.0 - float(np.var(y - v)) / var_y
        self.buffer.clear()
        self.updates_done += 1
        d = max(n_minibatches, 1)
        return UpdateStats(
            sums["pg"] / d, sums["v"] / d, sums["ent"] / d, approx_kl, sums["cf"] / d,
            explained_var, lr, n, n_minibatches, early, first_dev, first_cf, drift,
        )  # fmt: skip

    @torch.no_grad()
    def _old_log_probs(self, b: RolloutBatch, perm: torch.Tensor, mb_size: int) -> torch.Tensor:
        """log pi_old of every stored action, evaluated in epoch 0's minibatches.

        The parameters have not changed since acting, so this equals the acting-time log-prob
        up to float rounding (``UpdateStats.logprob_drift``). Evaluating it with the same
        batch shapes as epoch 0 makes the first minibatch's ratio exactly 1: a batch-size
        dependent GEMM otherwise leaves ~1e-7 of noise.
        """
        out = torch.empty_like(b.log_probs)
        for start in range(0, perm.numel(), mb_size):
            idx = perm[start : start + mb_size]
            acts = {k: v[idx] for k, v in b.actions.items()}
            out[idx] = self.policy.evaluate(b.obs[idx], acts, b.masks[idx]).log_prob
        return out

    def _value_loss(
        self, v_new: torch.Tensor, v_old: torch.Tensor, ret: torch.Tensor
    ) -> torch.Tensor:
        """``value_loss`` with this config's clipping (``clip_value_loss``, range ``clip_coef``)."""
        clip = self.config.clip_coef if self.config.clip_value_loss else None
        return value_loss(v_new, v_old, ret, clip)

    # ---- checkpointing --------------------------------------------------------------------
    def checkpoint_dict(self) -> dict[str, Any]:
        """Plain state dict (tensors, numbers, strings, lists) for ``torch.save``."""
        if len(self.buffer):
            raise RuntimeError("checkpoint between updates: the rollout buffer is not empty")
        return {
            "format": CHECKPOINT_FORMAT,
            "obs_dim": self.obs_dim,
            "action_spec": spec_to_data(self.action_spec),
            "config": asdict(self.config),
            "seed": self.seed,
            "policy": self.policy.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "updates_done": self.updates_done,
            "steps_done": self.steps_done,
            "env_steps_done": self.env_steps_done,
            "episodes_started": self.episodes_started,
            "rng": capture_rng_states(self.generator, self.np_rng),
        }

    def save(self, path: str | Path) -> None:
        torch.save(self.checkpoint_dict(), Path(path))

    def load_checkpoint(self, path_or_state: str | Path | dict[str, Any]) -> None:
        """Restore a checkpoint into this object (same ActionSpec and obs_dim)."""
        s = path_or_state
        if not isinstance(s, dict):
            s = torch.load(Path(s), weights_only=True)
        if s.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"unknown checkpoint format {s.get('format')!r}")
        if (
            spec_from_data(s["action_spec"]) != self.action_spec
            or int(s["obs_dim"]) != self.obs_dim
        ):
            raise ValueError("checkpoint ActionSpec/obs_dim differ from this PPO's")
        self.policy.load_state_dict(s["policy"])
        self.optimizer.load_state_dict(s["optimizer"])
        self.updates_done = int(s["updates_done"])
        self.steps_done = int(s["steps_done"])
        self.env_steps_done = int(s["env_steps_done"])
        self.episodes_started = int(s["episodes_started"])
        restore_rng_states(s["rng"], self.generator, self.np_rng)
        self.buffer.clear()
        # An in-progress episode is not part of the checkpoint: the next collect() resets.
        self._env, self._obs, self._mask = None, None, None

    @classmethod
    def load(cls, path: str | Path) -> PPO:
        """A fresh PPO rebuilt from a checkpoint (config, spec, seed, state)."""
        s = torch.load(Path(path), weights_only=True)
        spec = spec_from_data(s["action_spec"])
        obj = cls(int(s["obs_dim"]), spec, PPOConfig(**s["config"]), seed=int(s["seed"]))
        obj.load_checkpoint(s)
        return obj
