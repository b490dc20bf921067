"""Multi-head policy: joint log-prob/entropy, masks, init, sampling, random baseline."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch
from torch.distributions import Categorical, Normal

from hadmc.rl.policy import ActionSpec, HeadSpec, MultiHeadPolicy, RandomPolicy


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread() -> Iterator[None]:
    """Tiny networks: one thread. conftest's 2-thread pool makes every small op wait for a
    second thread that an oversubscribed CI box rarely schedules (10x slower here)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


SPEC = ActionSpec(
    (
        HeadSpec("pruning", "categorical", 4),
        HeadSpec("quantization", "categorical", 3),
        HeadSpec("distillation", "gaussian", 2),
        HeadSpec("update_scope", "categorical", 5),
    )
)
OBS_DIM = 6


def _policy(seed: int = 0) -> MultiHeadPolicy:
    pol = MultiHeadPolicy(
        OBS_DIM, SPEC, hidden_size=16, generator=torch.Generator().manual_seed(seed)
    )
    with torch.no_grad():  # make heads far from uniform so the checks are not trivial
        for head in pol.heads:
            head.weight.mul_(100.0)
        pol.log_std("distillation").copy_(torch.tensor([-0.5, 0.3]))
    return pol


def _reference_dists(pol: MultiHeadPolicy, obs: torch.Tensor) -> dict:
    """Per-head distributions built independently of ``MultiHeadPolicy.distributions``."""
    feats = pol.trunk(obs)
    out = {}
    for h in SPEC.heads:
        z = feats @ pol.head_layer(h.name).weight.T + pol.head_layer(h.name).bias
        if h.kind == "categorical":
            out[h.name] = Categorical(logits=z)
        else:
            out[h.name] = Normal(z, pol.log_std(h.name).exp())
    return out


def test_joint_log_prob_and_entropy_are_masked_sums_of_heads() -> None:
    pol = _policy()
    gen = torch.Generator().manual_seed(1)
    obs = torch.randn(8, OBS_DIM, generator=gen)
    masks = torch.ones(8, len(SPEC.heads))
    masks[::2, 2] = 0.0  # distillation acts only on odd rows
    masks[1, 0] = 0.0
    actions, ev = pol.sample(obs, masks, gen)
    ref = _reference_dists(pol, obs)
    exp_lp = torch.zeros(8)
    exp_ent = torch.zeros(8)
    for i, h in enumerate(SPEC.heads):
        lp, ent = ref[h.name].log_prob(actions[h.name]), ref[h.name].entropy()
        if h.kind == "gaussian":
            lp, ent = lp.sum(-1), ent.sum(-1)
        exp_lp += torch.where(masks[:, i] > 0, lp, torch.zeros(()))
        exp_ent += torch.where(masks[:, i] > 0, ent, torch.zeros(()))
    torch.testing.assert_close(ev.log_prob, exp_lp, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ev.entropy, exp_ent, atol=1e-5, rtol=1e-5)
    assert torch.all(ev.head_log_prob["distillation"][::2] == 0)
    assert ev.head_log_prob["distillation"][1] != 0
    # evaluate() on the same actions agrees with what sample() returned
    ev2 = pol.evaluate(obs, actions, masks)
    torch.testing.assert_close(ev2.log_prob, ev.log_prob)


def test_joint_entropy_matches_monte_carlo_minus_expected_log_prob() -> None:
    pol = _policy()
    gen = torch.Generator().manual_seed(2)
    n = 20000
    obs = torch.randn(1, OBS_DIM, generator=gen).expand(n, OBS_DIM)
    masks = torch.ones(n, len(SPEC.heads))
    _, ev = pol.sample(obs, masks, gen)
    mc = -ev.log_prob.mean()
    se = ev.log_prob.std() / n**0.5
    assert abs(float(mc - ev.entropy[0])) < 4 * float(se) + 1e-3
    # masking a head removes exactly its entropy
    masks[:, 1] = 0.0
    ev_masked = pol.evaluate(obs[:1], {k: v[:1] for k, v in _.items()}, masks[:1])
    ref_q = _reference_dists(pol, obs[:1])["quantization"].entropy()
    torch.testing.assert_close(ev_masked.entropy, ev.entropy[:1] - ref_q, atol=1e-5, rtol=1e-5)


def test_masked_head_gets_zero_gradient() -> None:
    pol = _policy()
    gen = torch.Generator().manual_seed(3)
    obs = torch.randn(5, OBS_DIM, generator=gen)
    masks = torch.ones(5, len(SPEC.heads))
    masks[:, 2] = 0.0  # distillation masked everywhere
    masks[:, 3] = 0.0  # update masked everywhere
    actions, _ = pol.sample(obs, masks, gen)
    ev = pol.evaluate(obs, actions, masks)
    (ev.log_prob.sum() + ev.entropy.sum()).backward()
    for name in ("distillation", "update_scope"):
        assert torch.count_nonzero(pol.head_layer(name).weight.grad) == 0
        assert torch.count_nonzero(pol.head_layer(name).bias.grad) == 0
    assert torch.count_nonzero(pol.log_std("distillation").grad) == 0
    for name in ("pruning", "quantization"):
        assert torch.count_nonzero(pol.head_layer(name).weight.grad) > 0


def test_orthogonal_init_gains() -> None:
    pol = MultiHeadPolicy(OBS_DIM, SPEC, hidden_size=16)
    w = pol.head_layer("update_scope").weight  # [5, 16]: orthonormal rows scaled by 0.01
    torch.testing.assert_close(w @ w.T, 1e-4 * torch.eye(5), atol=1e-7, rtol=0)
    w1 = pol.trunk[2].weight  # square hidden layer, gain sqrt(2)
    torch.testing.assert_close(w1 @ w1.T, 2.0 * torch.eye(16), atol=1e-5, rtol=0)
    wv = pol.value_net[1].weight  # value output, gain 1
    torch.testing.assert_close(wv @ wv.T, torch.eye(1), atol=1e-5, rtol=0)
    assert all(torch.count_nonzero(m.bias) == 0 for m in pol.heads)
    # value network is separate from the policy trunk
    assert pol.value_net[0][0].weight.data_ptr() != pol.trunk[0].weight.data_ptr()


def test_deterministic_sample_is_the_mode_and_sampling_uses_the_generator() -> None:
    pol = _policy()
    obs = torch.randn(4, OBS_DIM, generator=torch.Generator().manual_seed(4))
    masks = torch.ones(4, len(SPEC.heads))
    a, _ = pol.sample(obs, masks, torch.Generator().manual_seed(0), deterministic=True)
    ref = _reference_dists(pol, obs)
    assert torch.equal(a["pruning"], ref["pruning"].probs.argmax(-1))
    torch.testing.assert_close(a["distillation"], ref["distillation"].mean)
    s1, _ = pol.sample(obs, masks, torch.Generator().manual_seed(9))
    s2, _ = pol.sample(obs, masks, torch.Generator().manual_seed(9))
    assert all(torch.equal(s1[k], s2[k]) for k in s1)


def test_random_policy_covers_choices_and_ranges() -> None:
    rp = RandomPolicy(SPEC, seed=0)
    draws = [rp.act({"distillation": False}) for _ in range(400)]
    assert {d["pruning"] for d in draws} == {0, 1, 2, 3}
    assert {d["update_scope"] for d in draws} == set(range(5))
    u = np.stack([d["distillation"] for d in draws])
    assert u.shape == (400, 2)
    assert 1.0 <= u[:, 0].min() and u[:, 0].max() <= 20.0 and u[:, 0].std() > 4.0
    assert -3.0 <= u[:, 1].min() and u[:, 1].max() <= 3.0
    again = [RandomPolicy(SPEC, seed=0).act()["pruning"] for _ in range(1)]
    assert again == [draws[0]["pruning"]]
    with pytest.raises(ValueError, match="low < high"):
        RandomPolicy(SPEC, gaussian_ranges={"distillation": ((2.0, 1.0), (0.0, 1.0))})
    with pytest.raises(ValueError, match="unknown heads"):
        rp.act({"nope": True})


def test_spec_validation() -> None:
    with pytest.raises(ValueError, match="kind"):
        HeadSpec("x", "beta", 2)
    with pytest.raises(ValueError, match=">= 2"):
        HeadSpec("x", "categorical", 1)
    with pytest.raises(ValueError, match="unique"):
        ActionSpec((HeadSpec("x", "categorical", 2), HeadSpec("x", "gaussian", 1)))
    assert SPEC.mask_vector({"update_scope": False}).tolist() == [1.0, 1.0, 1.0, 0.0]
    assert SPEC.mask_vector(None).tolist() == [1.0] * 4
