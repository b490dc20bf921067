"""PPO update math against values computed independently in the test.

The pure helpers (``normalize_advantages``, ``value_loss``, ``approx_kl_k3``, ``ppo_loss``) are
checked on hand-worked numbers; ``PPO.update`` is checked end to end on a hand-built rollout
with a single minibatch: the gradient it hands the optimiser must equal the gradient of the
loss rebuilt here from the same batch (whole-batch normalised advantages, clipped value loss,
entropy bonus, global grad-norm clip), so a slip inside ``update`` fails even if the helpers
are right.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch

import hadmc.rl.ppo as ppo_mod
from hadmc.rl.buffer import RolloutBatch
from hadmc.rl.policy import ActionSpec, HeadSpec, MultiHeadPolicy
from hadmc.rl.ppo import (
    PPO,
    PPOConfig,
    approx_kl_k3,
    normalize_advantages,
    ppo_loss,
    value_loss,
)
from hadmc.rl.ppo_config import StepOutput


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread() -> Iterator[None]:
    """Tiny networks: one thread (see tests/test_ppo.py)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


SPEC = ActionSpec((HeadSpec("c", "categorical", 3), HeadSpec("g", "gaussian", 1)))
OBS_DIM = 4


# ---- pure helpers on hand-worked numbers ---------------------------------------------------
def test_normalize_advantages_hand_values() -> None:
    # mean 2.5, unbiased std sqrt(5/3) = 1.2909944
    out = normalize_advantages(torch.tensor([1.0, 2.0, 3.0, 4.0]))
    torch.testing.assert_close(
        out, torch.tensor([-1.1618950, -0.3872983, 0.3872983, 1.1618950]), atol=1e-6, rtol=0
    )
    # not centred would give 2.5 / 1.29 = 1.94 here, not 0
    shifted = normalize_advantages(torch.tensor([10.0, 12.0]))  # mean 11, std sqrt(2)
    torch.testing.assert_close(shifted, torch.tensor([-0.7071068, 0.7071068]), atol=1e-6, rtol=0)
    torch.testing.assert_close(normalize_advantages(torch.tensor([3.0])), torch.tensor([3.0]))
    # equal advantages carry no preference: all 0, not nan
    assert torch.equal(normalize_advantages(torch.full((5,), 2.0)), torch.zeros(5))


def test_value_loss_hand_values() -> None:
    v_new = torch.tensor([1.0, 0.0, 1.0])
    v_old = torch.tensor([0.5, 0.5, 0.5])
    ret = torch.tensor([2.0, -1.0, 0.6])
    # unclipped squared errors: 1, 1, 0.16 -> 0.5 * 2.16 / 3 = 0.36
    assert float(value_loss(v_new, v_old, ret, None)) == pytest.approx(0.36, abs=1e-6)
    # eps 0.2: V_clip = 0.7, 0.3, 0.7 -> squared errors 1.69, 1.69, 0.01
    # max per sample: 1.69, 1.69, 0.16 -> 0.5 * 3.54 / 3 = 0.59
    # (min would give 0.5 * 2.01 / 3 = 0.335, ignoring the clip 0.36)
    assert float(value_loss(v_new, v_old, ret, 0.2)) == pytest.approx(0.59, abs=1e-6)


def test_approx_kl_k3_hand_values() -> None:
    # r = 2: (2 - 1) - ln 2 = 0.3068528; r = 0.5: -0.5 + ln 2 = 0.1931472; mean 0.25.
    # |mean log r| would be 0 here: the log-ratios cancel.
    log_r = torch.tensor([math.log(2.0), math.log(0.5)])
    assert float(approx_kl_k3(log_r)) == pytest.approx(0.25, abs=1e-6)
    assert float(approx_kl_k3(torch.zeros(4))) == 0.0


def test_ppo_loss_subtracts_the_entropy_bonus() -> None:
    pg, v, ent = torch.tensor(0.3), torch.tensor(2.0), torch.tensor(1.5)
    # 0.3 - 0.1 * 1.5 + 0.5 * 2.0 = 1.15
    assert float(ppo_loss(pg, v, ent, ent_coef=0.1, vf_coef=0.5)) == pytest.approx(1.15)


def test_config_accepts_gamma_and_lambda_one() -> None:
    c = PPOConfig(gamma=1.0, gae_lambda=1.0)
    assert c.gamma == 1.0 and c.gae_lambda == 1.0 and c.norm_adv
    with pytest.raises(ValueError, match="gamma"):
        PPOConfig(gamma=1.01)


# ---- end-to-end update on a hand-built rollout --------------------------------------------
# Acting-time values V_old = V(s) + these offsets: several lie outside the value clip range
# (0.2), so the clipped and unclipped value losses differ on this batch.
VALUE_OFFSETS = (0.5, -0.5, 0.05, -0.05, 0.3, -1.0, 0.8, -0.1)
REWARDS = (0.0, 0.0, 3.0, 0.0, 5.0, 0.0, 0.0, 1.0)
TERMINATED = (False, False, True, False, True, False, False, True)


def _config(**kw: Any) -> PPOConfig:
    base: dict[str, Any] = dict(
        hidden_size=8,
        learning_rate=1e-3,
        anneal_lr=False,
        gamma=1.0,
        gae_lambda=1.0,
        n_epochs=1,
        minibatch_size=64,  # > rollout: one minibatch
        clip_coef=0.2,
        clip_value_loss=True,
        vf_coef=0.5,
        ent_coef=0.1,
        max_grad_norm=0.1,
    )
    base.update(kw)
    return PPOConfig(**base)


def _filled_ppo(config: PPOConfig, value_scale: float = 1.0, seed: int = 0) -> PPO:
    """A PPO whose buffer holds 8 transitions (3 episodes) with chosen values and rewards."""
    ppo = PPO(OBS_DIM, SPEC, config, seed=seed)
    gen = torch.Generator().manual_seed(100 + seed)
    obs = torch.randn(len(REWARDS), OBS_DIM, generator=gen).numpy()
    for t, o in enumerate(obs):
        step = ppo.act(o, {"g": t % 3 != 1})  # g masked on some steps
        v_old = step.value + VALUE_OFFSETS[t]
        step = StepOutput(step.action, step.log_prob, v_old, step.head_mask)
        ppo.add(o, step, value_scale * REWARDS[t], TERMINATED[t], False)
    ppo.finish_rollout(None, last_done=True)
    return ppo


def _capture_grads(ppo: PPO) -> list[list[torch.Tensor]]:
    """Gradients as the optimiser sees them at each step (after the norm clip)."""
    seen: list[list[torch.Tensor]] = []

    def hook(opt: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        seen.append([p.grad.detach().clone() for p in ppo.policy.parameters()])

    ppo.optimizer.register_step_pre_hook(hook)
    return seen


def _expected_loss_parts(
    policy: MultiHeadPolicy, b: RolloutBatch, c: PPOConfig
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(pg loss, value loss, mean entropy) rebuilt here, not through hadmc.rl.ppo's helpers."""
    ev = policy.evaluate(b.obs, b.actions, b.masks)
    # Parameters are unchanged since acting, so log pi_old = the current log-prob: r = 1,
    # but with the gradient of r itself.
    ratio = torch.exp(ev.log_prob - ev.log_prob.detach())
    a = b.advantages
    a = (a - a.mean()) / (a.std() + 1e-8)  # whole batch, centred
    clipped_r = torch.clamp(ratio, 1 - c.clip_coef, 1 + c.clip_coef)
    pg = -torch.min(ratio * a, clipped_r * a).mean()
    v, v_old, ret = ev.value, b.values, b.returns
    v_clip = v_old + torch.clamp(v - v_old, -c.clip_coef, c.clip_coef)
    vl = 0.5 * torch.max((v - ret) ** 2, (v_clip - ret) ** 2).mean()
    return pg, vl, ev.entropy.mean()


def _expected_clipped_grads(
    policy: MultiHeadPolicy, b: RolloutBatch, c: PPOConfig
) -> tuple[list[torch.Tensor], float]:
    pg, vl, ent = _expected_loss_parts(policy, b, c)
    loss = pg - c.ent_coef * ent + c.vf_coef * vl
    params = list(policy.parameters())
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    grads = [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads, strict=True)]
    total = math.sqrt(sum(float((g**2).sum()) for g in grads))
    scale = min(1.0, c.max_grad_norm / (total + 1e-6))  # torch's clip_grad_norm_ rule
    return [g * scale for g in grads], total


def _norm(grads: list[torch.Tensor]) -> float:
    return math.sqrt(sum(float((g**2).sum()) for g in grads))


def test_update_gradient_equals_hand_built_loss_gradient() -> None:
    c = _config()
    ppo = _filled_ppo(c)
    b = ppo.buffer.batch()
    assert float(b.advantages.mean().abs()) > 0.5  # centring matters on this batch
    reference = copy.deepcopy(ppo.policy)
    seen = _capture_grads(ppo)
    stats = ppo.update()
    assert stats.minibatches == 1 and len(seen) == 1 and stats.first_ratio_max_abs_dev == 0.0

    pg, vl, ent = _expected_loss_parts(reference, b, c)
    # r = 1 and centred advantages: the surrogate's value is exactly -mean(A_norm) = 0
    assert stats.policy_loss == pytest.approx(0.0, abs=1e-6)
    assert float(pg.detach()) == pytest.approx(0.0, abs=1e-6)
    assert stats.value_loss == pytest.approx(float(vl.detach()), rel=1e-5)
    v_ref = reference.evaluate(b.obs, b.actions, b.masks).value.detach()
    unclipped_vl = 0.5 * float(((v_ref - b.returns) ** 2).mean())
    assert abs(float(vl.detach()) - unclipped_vl) > 1e-3  # the value clip is active on this batch
    assert stats.entropy == pytest.approx(float(ent.detach()), rel=1e-5)

    expected, raw_norm = _expected_clipped_grads(reference, b, c)
    assert raw_norm > 3 * c.max_grad_norm  # the norm clip is active on this batch
    for got, want in zip(seen[0], expected, strict=True):
        torch.testing.assert_close(got, want, atol=1e-7, rtol=1e-4)
    assert _norm(seen[0]) == pytest.approx(c.max_grad_norm, rel=1e-4)


def test_update_clips_the_global_gradient_norm() -> None:
    c = _config(max_grad_norm=0.5, ent_coef=0.0)
    ppo = _filled_ppo(c, value_scale=100.0)  # returns ~100: a value gradient in the hundreds
    seen = _capture_grads(ppo)
    ppo.update()
    assert _norm(seen[0]) <= c.max_grad_norm * (1 + 1e-5)
    assert _norm(seen[0]) == pytest.approx(c.max_grad_norm, rel=1e-4)


def test_entropy_bonus_raises_entropy_when_advantages_carry_no_signal() -> None:
    # One-step episodes with equal reward and value: every advantage is equal, so the
    # normalised advantages are 0 and the only policy gradient is the entropy bonus.
    c = _config(ent_coef=0.5, clip_value_loss=False, max_grad_norm=10.0, learning_rate=0.05)
    ppo = PPO(OBS_DIM, SPEC, c, seed=0)
    obs = torch.randn(6, OBS_DIM, generator=torch.Generator().manual_seed(1)).numpy()
    for o in obs:
        step = ppo.act(o)
        ppo.add(o, StepOutput(step.action, step.log_prob, 0.0, step.head_mask), 1.0, True, False)
    ppo.finish_rollout(None, last_done=True)
    b = ppo.buffer.batch()
    log_std = float(ppo.policy.log_std("g").detach())
    before = float(ppo.policy.evaluate(b.obs, b.actions, b.masks).entropy.detach().mean())
    ppo.update()
    assert float(ppo.policy.log_std("g").detach()) == pytest.approx(log_std + 0.05, abs=1e-4)
    after = float(ppo.policy.evaluate(b.obs, b.actions, b.masks).entropy.detach().mean())
    assert after > before + 0.02  # the categorical head is near uniform already


def test_reported_approx_kl_is_the_k3_estimate_of_the_minibatch_that_stopped() -> None:
    # Epoch 0 steps once; epoch 1's minibatch exceeds the tiny target_kl and is not stepped,
    # so the reported KL is that of the final parameters against pi_old.
    c = _config(n_epochs=2, target_kl=1e-12, learning_rate=0.05, max_grad_norm=10.0)
    ppo = _filled_ppo(c)
    b = ppo.buffer.batch()
    stats = ppo.update()
    assert stats.early_stopped and stats.minibatches == 1
    with torch.no_grad():
        log_r = ppo.policy.evaluate(b.obs, b.actions, b.masks).log_prob - b.log_probs
    r = log_r.double().exp()
    k3 = float(((r - 1) - log_r.double()).mean())
    assert k3 > 1e-3  # the step moved the policy enough to tell estimators apart
    assert abs(abs(float(log_r.mean())) - k3) > 0.2 * k3  # |mean log r| differs here
    assert stats.approx_kl == pytest.approx(k3, rel=1e-3)


def test_advantages_are_normalised_over_the_whole_batch_not_per_minibatch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # 80 transitions with minibatches of 64: one of 64 and a leftover of 16 per epoch.
    c = _config(minibatch_size=64, n_epochs=2, clip_value_loss=False)
    ppo = PPO(OBS_DIM, SPEC, c, seed=3)
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(80, OBS_DIM)).astype(np.float32)
    for t, o in enumerate(obs):
        ppo.add(o, ppo.act(o), float(rng.normal(2.0, 1.0)), t % 5 == 4, False)
    ppo.finish_rollout(None, last_done=True)
    whole = normalize_advantages(ppo.buffer.batch().advantages)

    seen: list[torch.Tensor] = []
    real = ppo_mod.clipped_surrogate_loss

    def spy(ratio: torch.Tensor, adv: torch.Tensor, clip_coef: float) -> torch.Tensor:
        seen.append(adv.detach().clone())
        return real(ratio, adv, clip_coef)

    monkeypatch.setattr(ppo_mod, "clipped_surrogate_loss", spy)
    stats = ppo.update()
    assert stats.minibatches == 4 and [a.numel() for a in seen] == [64, 16, 64, 16]
    for epoch in (seen[:2], seen[2:]):
        used = torch.sort(torch.cat(epoch)).values
        torch.testing.assert_close(used, torch.sort(whole).values, atol=1e-6, rtol=0)
    # the leftover minibatch keeps the batch's scale: it is not re-centred on its own 16
    assert float(seen[1].mean().abs()) > 1e-3 or float(seen[3].mean().abs()) > 1e-3
