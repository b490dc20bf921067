"""GAE against numbers worked out by hand; episode boundaries, truncation, discarding."""

from __future__ import annotations

import numpy as np
import pytest

from hadmc.rl.buffer import RolloutBuffer, compute_gae
from hadmc.rl.policy import ActionSpec, HeadSpec
from hadmc.rl.ppo_config import PPOConfig

GAMMA, LAM = 0.9, 0.8  # gamma * lambda = 0.72

# Six steps: an episode that terminates at t=2, a second one cut by a time limit at t=4
# (bootstrap with V(final obs) = 1.0), and a third one still running when the rollout ends
# (bootstrap with V(last obs) = 0.7).
REWARDS = np.array([1.0, 0.0, 2.0, 1.0, 0.5, 1.5])
VALUES = np.array([0.5, 0.4, 0.3, 0.6, 0.2, 0.4])
TERMINATED = np.array([False, False, True, False, False, False])
TRUNCATED = np.array([False, False, False, False, True, False])
FINAL_VALUES = np.array([0.0, 0.0, 0.0, 0.0, 1.0, 0.0])
LAST_VALUE = 0.7

# By hand, backwards:
# t=5: delta = 1.5 + 0.9*0.7 - 0.4 = 1.73                       A5 = 1.73
# t=4: truncated: delta = 0.5 + 0.9*1.0 - 0.2 = 1.2, no carry    A4 = 1.2
# t=3: delta = 1.0 + 0.9*0.2 - 0.6 = 0.58; + 0.72*1.2            A3 = 1.444
# t=2: terminated: delta = 2.0 - 0.3 = 1.7 (no bootstrap, no carry from t=3)   A2 = 1.7
# t=1: delta = 0.0 + 0.9*0.3 - 0.4 = -0.13; + 0.72*1.7           A1 = 1.094
# t=0: delta = 1.0 + 0.9*0.4 - 0.5 = 0.86; + 0.72*1.094          A0 = 1.64768
EXPECTED_ADV = np.array([1.64768, 1.094, 1.7, 1.444, 1.2, 1.73])
EXPECTED_RET = EXPECTED_ADV + VALUES  # 2.14768, 1.494, 2.0, 2.044, 1.4, 2.13

SPEC = ActionSpec((HeadSpec("a", "categorical", 2),))


def test_compute_gae_matches_hand_computation() -> None:
    adv, ret = compute_gae(
        REWARDS, VALUES, TERMINATED, TRUNCATED, FINAL_VALUES, LAST_VALUE, GAMMA, LAM
    )
    np.testing.assert_allclose(adv, EXPECTED_ADV, atol=1e-6)
    np.testing.assert_allclose(ret, [2.14768, 1.494, 2.0, 2.044, 1.4, 2.13], atol=1e-6)


def _filled_buffer() -> RolloutBuffer:
    buf = RolloutBuffer(SPEC, obs_dim=1)
    for t in range(6):
        buf.add(
            np.array([float(t)]), {"a": t % 2}, None, -0.69, VALUES[t], REWARDS[t],
            TERMINATED[t], TRUNCATED[t], FINAL_VALUES[t],
        )  # fmt: skip
    return buf


def test_buffer_returns_are_advantages_plus_values() -> None:
    buf = _filled_buffer()
    buf.compute_returns(LAST_VALUE, last_done=False, gamma=GAMMA, lam=LAM)
    b = buf.batch()
    np.testing.assert_allclose(b.advantages.numpy(), EXPECTED_ADV, atol=1e-6)
    np.testing.assert_allclose(b.returns.numpy(), EXPECTED_RET, atol=1e-6)
    assert b.obs.shape == (6, 1) and b.masks.shape == (6, 1)


def test_last_value_ignored_when_rollout_ends_on_termination() -> None:
    adv_a, _ = compute_gae(
        np.array([1.0, 2.0]), np.array([0.5, 0.5]), np.array([False, True]),
        np.array([False, False]), np.zeros(2), 100.0, GAMMA, LAM,
    )  # fmt: skip
    # t=1: 2 - 0.5 = 1.5 ; t=0: 1 + 0.9*0.5 - 0.5 + 0.72*1.5 = 2.03
    np.testing.assert_allclose(adv_a, [2.03, 1.5], atol=1e-6)


def test_lambda_one_gamma_one_gives_monte_carlo_return() -> None:
    rewards = np.array([1.0, 2.0, 3.0])
    values = np.array([0.3, -1.0, 2.0])
    _, ret = compute_gae(
        rewards, values, np.array([False, False, True]), np.zeros(3, bool), np.zeros(3), 0.0,
        1.0, 1.0,
    )  # fmt: skip
    np.testing.assert_allclose(ret, [6.0, 5.0, 3.0], atol=1e-6)


def test_last_done_must_agree_with_buffer() -> None:
    buf = _filled_buffer()
    with pytest.raises(ValueError, match="last_done"):
        buf.compute_returns(LAST_VALUE, last_done=True, gamma=GAMMA, lam=LAM)


def test_discard_last_episode_removes_only_that_episode() -> None:
    buf = _filled_buffer()
    with pytest.raises(ValueError, match="does not end an episode"):
        buf.discard_last_episode()  # t=5 is mid-episode
    buf.add(np.array([6.0]), {"a": 0}, None, -0.69, 0.1, 0.0, True, False)
    assert buf.discard_last_episode() == 2  # t=5 and t=6
    assert len(buf) == 5
    assert [float(o[0]) for o in buf.obs] == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert buf.truncated[-1]


def test_bad_inputs_are_rejected() -> None:
    buf = RolloutBuffer(SPEC, obs_dim=1)
    with pytest.raises(ValueError, match="outside"):
        buf.add(np.zeros(1), {"a": 2}, None, 0.0, 0.0, 0.0, False, False)
    with pytest.raises(ValueError, match="expected 1"):
        buf.add(np.zeros(3), {"a": 0}, None, 0.0, 0.0, 0.0, False, False)
    with pytest.raises(ValueError, match="finite"):
        buf.add(np.zeros(1), {"a": 0}, None, 0.0, 0.0, float("nan"), False, False)
    with pytest.raises(ValueError, match="unknown heads"):
        buf.add(np.zeros(1), {"a": 0}, {"zzz": False}, 0.0, 0.0, 0.0, False, False)
    with pytest.raises(ValueError, match="gamma"):
        compute_gae(np.zeros(1), np.zeros(1), np.zeros(1), np.zeros(1), np.zeros(1), 0, 1.5, 0.9)


def test_gamma_one_lambda_one_terminal_reward_advantage_is_return_minus_value() -> None:
    # The compression search's setting: ten steps, reward R = 0.7 only on the terminal step.
    # With gamma = lambda = 1 the deltas telescope: A_t = R - V(s_t) at every step, and the
    # value target is R itself.
    cfg = PPOConfig(gamma=1.0, gae_lambda=1.0)  # the [0, 1] bounds are inclusive
    values = np.array([0.1, -0.4, 0.25, 0.9, 0.0, 0.33, -1.2, 0.5, 0.05, 0.6])
    rewards = np.zeros(10)
    rewards[-1] = 0.7
    terminated = np.zeros(10, bool)
    terminated[-1] = True
    adv, ret = compute_gae(
        rewards, values, terminated, np.zeros(10, bool), np.zeros(10), 123.0,
        cfg.gamma, cfg.gae_lambda,
    )  # fmt: skip
    np.testing.assert_allclose(adv, 0.7 - values, atol=1e-6)
    np.testing.assert_allclose(ret, np.full(10, 0.7), atol=1e-6)
    # the same through the buffer that PPO uses
    buf = RolloutBuffer(SPEC, obs_dim=1)
    for t in range(10):
        buf.add(np.array([t / 10]), {"a": 0}, None, -0.69, values[t], rewards[t], t == 9, False)
    buf.compute_returns(0.0, last_done=True, gamma=cfg.gamma, lam=cfg.gae_lambda)
    np.testing.assert_allclose(buf.batch().advantages.numpy(), 0.7 - values, atol=1e-6)
