"""Search strategies: grid order, design phase, surrogate ranking, Optuna's space, PPO's inner
loop (it must raise the predicted reward of what the policy proposes)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hadmc.compress.pruning import find_layer_groups
from hadmc.models import build_model
from hadmc.rl.ppo import PPO, PPOConfig
from hadmc.search.env import KEEP_RATIOS, CompressionEnv, EvalOutcome, JointAction
from hadmc.search.observation import HardwareFeatures, ObservationEncoder
from hadmc.search.reward import Limits, Objectives, RewardConfig
from hadmc.surrogate.accuracy import AccuracyProxy
from hadmc.surrogate.latency import LatencyModel
from hadmc.surrogate.model import Surrogate
from hadmc.surrogate.structure import ModelStructure
from host.strategies import (
    DESIGN,
    GridStrategy,
    OptunaStrategy,
    PPOSettings,
    PPOStrategy,
    RandomStrategy,
    StrategyContext,
    _deferred,
)


@pytest.fixture(scope="module")
def parts():
    torch.manual_seed(0)
    model = build_model("mobilenetv2_small", num_classes=10, in_channels=1).eval()
    x = torch.zeros(1, 1, 16, 16)
    groups = find_layer_groups(model, x)
    s = ModelStructure(model, x)
    n = s.n_groups
    baseline = Objectives(0.95, 2.0, 30.0, None, 8_000_000, 0)
    # Sensitive first and last groups: the proxy penalises pruning them.
    table = [[0.2, 0.5, 0.8] if i in (0, n - 1) else [0.0, 0.01, 0.03] for i in range(n)]
    return groups, s, baseline, table


def _ctx(parts, surrogate=True, limit=None, seed=0) -> StrategyContext:
    groups, s, baseline, table = parts
    n = s.n_groups
    hw = HardwareFeatures(2, 8192, baseline.latency_ms, True)
    enc = ObservationEncoder(groups, [r[1] for r in table], hw)
    env = CompressionEnv(enc, "onnxruntime", _deferred)
    sur = None
    if surrogate:
        lat = LatencyModel(s.features([1.0] * n, ["fp32"] * n), 2.0, 8e6, 30.0)
        sur = Surrogate(s, lat, AccuracyProxy(table, 0.95), baseline,
                        RewardConfig(limits=Limits(max_accuracy_drop=1.0)))  # fmt: skip
    return StrategyContext(
        env=env, key=lambda j: j.canonical_json(), known=set(), seed=seed, surrogate=sur,
        max_latency_ms=limit, n_groups=n,
    )  # fmt: skip


def test_grid_is_uniform_mildest_first_and_ends(parts) -> None:
    ctx = _ctx(parts, surrogate=False)
    s = parts[1]
    grid = GridStrategy(ctx, lambda j: s.features(j.keep_ratios, j.precisions).macs)
    props = grid.propose(100)
    assert len(props) == len(KEEP_RATIOS) * 2 - 1  # the baseline itself is not re-measured
    for p in props:
        assert len(set(p.joint.keep_ratios)) == 1 and len(set(p.joint.precisions)) == 1
    macs = [s.features(p.joint.keep_ratios, p.joint.precisions).macs for p in props]
    assert macs == sorted(macs, reverse=True)
    ctx.known.update(ctx.key(p.joint) for p in props)
    assert grid.propose(4) == []


def test_random_with_surrogate_measures_the_design_then_ranks(parts) -> None:
    ctx = _ctx(parts, limit=1.2)
    strat = RandomStrategy(ctx)
    design = strat.propose(3)
    assert [p.source for p in design] == ["design"] * 3
    assert [(p.joint.keep_ratios[0], p.joint.precisions[0]) for p in design] == list(DESIGN[:3])
    ctx.known.update(ctx.key(j) for j in (p.joint for p in design))
    rest = strat.propose(len(DESIGN))
    assert [p.source for p in rest] == ["design"] * (len(DESIGN) - 3)
    ctx.known.update(ctx.key(p.joint) for p in rest)
    ranked = strat.propose(4)
    assert len(ranked) == 4 and {p.source for p in ranked} <= {"random", "cover"}
    rewards = [p.predicted.reward for p in ranked]
    assert rewards == sorted(rewards, reverse=True)
    assert len({ctx.key(p.joint) for p in ranked}) == 4
    assert not {ctx.key(p.joint) for p in ranked} & ctx.known
    # Certain to break the latency limit (predicted > 1.25 x limit): never sent.
    assert all(p.predicted.objectives.latency_ms <= 1.2 * 1.25 for p in ranked)
    # The ranking beats the pool it came from on predicted reward.
    pool = [strat._one() for _ in range(64)]
    mean_pool = np.mean([ctx.surrogate.predict(p.joint).reward for p in pool])
    assert np.mean(rewards) > mean_pool


def test_optuna_proposes_in_the_same_space_and_learns_from_tells(parts) -> None:
    ctx = _ctx(parts, surrogate=False)
    strat = OptunaStrategy(ctx)
    props = strat.propose(3)
    stages = ctx.env.stages
    for p in props:
        j = p.joint
        assert len(j.keep_ratios) == ctx.n_groups and set(j.keep_ratios) <= set(KEEP_RATIOS)
        for a, b, pa, pb in zip(stages, stages[1:], j.precisions, j.precisions[1:], strict=False):
            assert a != b or pa == pb  # one precision per stage
        assert 1.0 <= j.temperature <= 20.0 and 0.05 <= j.alpha <= 0.95
    strat.observe([(props[0], EvalOutcome("measured", 0.7)), (props[1], EvalOutcome("failed", None)),
                   (props[2], EvalOutcome("measured", 0.2))])  # fmt: skip
    states = [t.state.name for t in strat.study.trials]
    assert states == ["COMPLETE", "FAIL", "COMPLETE"]
    assert strat.study.best_value == pytest.approx(0.7)


def test_ppo_inner_loop_raises_the_predicted_reward_of_its_proposals(parts) -> None:
    ctx = _ctx(parts)
    ctx.known.update(
        ctx.key(JointAction.uniform(ctx.n_groups, k, p)) for k, p in DESIGN
    )  # design done
    cfg = PPOConfig(learning_rate=1e-3, gamma=1.0, gae_lambda=1.0, anneal_lr=False)
    agent = PPO(ctx.env.observation_dim, ctx.env.action_spec, cfg, seed=0)
    strat = PPOStrategy(ctx, agent, PPOSettings(inner_episodes=64, inner_episodes_per_update=16,
                                                warmup_episodes=128, pool=32))  # fmt: skip

    def mean_predicted(n: int = 24) -> float:
        return float(np.mean([ctx.surrogate.predict(strat._sample("t").joint).reward
                              for _ in range(n)]))  # fmt: skip

    before = mean_predicted()
    for _ in range(4):
        props = strat.propose(2)
    after = mean_predicted()
    # The first round trains on the warm-up's 128 episodes (8 updates), each later one on 64.
    assert strat.inner_updates == 8 + 3 * 4 and len(props) == 2
    assert after > before + 0.02, (before, after)
    # Real outcomes train the policy on their own trajectories (one update per round).
    # (A round's picks may all come from the random or cover pool, which have no trajectory.)
    sent = [strat._sample("policy") for _ in range(2)]
    strat.observe([(p, EvalOutcome("measured", 0.5)) for p in sent])
    assert strat.real_updates == 1 and len(agent.buffer) == 0


def test_selection_takes_the_best_reward_then_what_adds_most_front() -> None:
    from hadmc.search.pareto import ParetoArchive
    from hadmc.surrogate.model import Prediction
    from host.strategies import Proposal, _pick_for_front

    base = Objectives(0.95, 2.0, 30.0, None, 8_000_000, 0)
    archive = ParetoArchive(base)
    archive.add(1, Objectives(0.94, 1.0, 30.0, None, 4_000_000, 4_000_000))

    def prop(acc: float, lat: float, reward: float) -> Proposal:
        obj = Objectives(acc, lat, 30.0, None, int(8e6 * lat / 2), int(8e6 * lat / 2))
        return Proposal(JointAction.uniform(2, 1.0, "int8"), predicted=Prediction(obj, reward,
                        None, True))  # fmt: skip

    best = prop(0.945, 0.9, 1.2)  # the best predicted reward: near the existing member
    twin = prop(0.944, 0.9, 1.19)  # almost the same point: adds almost nothing
    far = prop(0.80, 0.3, 0.5)  # a much faster trade-off: adds the most volume
    dead = prop(0.30, 0.1, 2.0)  # predicted collapsed: adds nothing
    picks = _pick_for_front([dead, best, twin, far], 3, archive)
    assert picks[0] is dead  # first: best predicted reward, as ranked (the caller sorts)
    assert picks[1] is far and picks[2] in (best, twin)
    picks = _pick_for_front([best, twin, far], 2, archive)
    assert picks == [best, far]


def test_cover_pool_holds_the_grid_and_reaches_the_fast_end(parts) -> None:
    from host.cover import cover_pool, uniform_grid

    ctx = _ctx(parts)
    env, n = ctx.env, ctx.n_groups
    pool = cover_pool(np.random.default_rng(0), 64, n, env.stages, ("fp32", "int8"), env.passes)
    keys = {ctx.key(j) for j in pool}
    grid = uniform_grid(n, ("fp32", "int8"), env.passes)
    assert len(grid) == 2 * len(KEEP_RATIOS) - 1 and {ctx.key(j) for j in grid} <= keys
    jittered = pool[len(grid) :]
    for j in jittered:  # one precision per stage; every keep a valid choice
        assert set(j.keep_ratios) <= set(KEEP_RATIOS)
        for a, b, pa, pb in zip(env.stages, env.stages[1:], j.precisions, j.precisions[1:],
                                strict=False):  # fmt: skip
            assert a != b or pa == pb
    mean_keep = [float(np.mean(j.keep_ratios)) for j in jittered]
    # Uniform-random per-group keeps average near 0.65; the cover pool spans the whole range.
    assert min(mean_keep) < 0.4 and max(mean_keep) > 0.9
    assert sum(len(set(j.keep_ratios)) > 1 for j in jittered) > len(jittered) // 2


def test_surrogate_ranking_reaches_the_fast_end_of_the_front(parts) -> None:
    """After the design, the real front holds only mild models; the fast end adds the most
    predicted volume, and only the cover pool offers it (random per-group sampling averages to
    a keep near 0.65): both surrogate strategies must send one there."""
    from hadmc.search.pareto import ParetoArchive

    groups, s, baseline, _ = parts
    mild = [[0.0, 0.002, 0.006]] * s.n_groups  # keep 0.3 everywhere: about 0.1 predicted drop
    for make in (RandomStrategy, _ppo_strategy):
        ctx = _ctx((groups, s, baseline, mild))
        ctx.known.update(ctx.key(JointAction.uniform(ctx.n_groups, k, p)) for k, p in DESIGN)
        archive = ParetoArchive(ctx.surrogate.baseline)
        for i, keep in enumerate((0.9, 0.8)):
            archive.add(i, ctx.surrogate.predict(JointAction.uniform(ctx.n_groups, keep, "int8"))
                        .objectives)  # fmt: skip
        ctx.archive = archive
        picks = make(ctx).propose(4)
        assert len(picks) == 4
        assert min(float(np.mean(p.joint.keep_ratios)) for p in picks) <= 0.45, make


def _ppo_strategy(ctx: StrategyContext) -> PPOStrategy:
    cfg = PPOConfig(learning_rate=1e-3, gamma=1.0, gae_lambda=1.0, anneal_lr=False)
    agent = PPO(ctx.env.observation_dim, ctx.env.action_spec, cfg, seed=0)
    return PPOStrategy(
        ctx,
        agent,
        PPOSettings(
            inner_episodes=16,
            inner_episodes_per_update=16,
            warmup_episodes=16,
            pool=32,
            explore_pool=32,
        ),
    )
