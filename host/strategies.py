"""Search strategies behind one protocol: ``propose(k)`` candidates, then ``observe`` outcomes.

Every strategy shares the pipeline, the budget accounting (real device measurements), the store
and the archive (``host.search_run``); they differ only in what they propose:

- ``grid``: the uniform configurations a user tries first (one keep ratio and one precision for
  every group, default distillation), in order of predicted latency, mildest first. It ends
  when the grid is exhausted, even below the budget.
- ``random``: uniform over the same action space (sampled through the same environment, so
  stages, masks and bounds are identical).
- ``optuna``: Optuna's TPE sampler over the same space, maximising the reward.
- ``ppo``: the multi-head PPO policy; each proposal is one episode, its real reward trains it.
- ``+surrogate`` (ppo, random): a designed set of uniform configurations is measured first
  (it calibrates the latency model and the accuracy proxy, and its candidates are real
  candidates that count in the budget); afterwards PPO trains on ``inner_episodes`` surrogate
  episodes per round, and each round sends the top not-yet-measured proposals by predicted
  reward to the device. Random + surrogate ranks random proposals the same way: the ablation
  that separates what the surrogate gives from what the learning gives. Both rank the same
  cover pool beside their own proposals (``host.cover``: the uniform grid and jittered-uniform
  configurations), so the front picks can reach every part of the trade-off curve.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from hadmc.search.env import CompressionEnv, EvalOutcome, JointAction
from hadmc.surrogate.model import Prediction, Surrogate
from host.cover import cover_pool, uniform_grid

STRATEGIES = ("ppo", "random", "optuna", "grid")
# Design set of the surrogate strategies: (keep, precision) uniform configurations. Why these:
# they span the latency range (int8 at three widths, plus fp32 at one) so the first latency fit
# separates fp32 from int8 MACs, and each is a sensible candidate in its own right.
DESIGN = ((1.0, "int8"), (0.7, "int8"), (0.5, "int8"), (0.5, "fp32"), (0.3, "int8"))
SURROGATE_POOL = 256  # proposals sampled per round, ranked by predicted reward
# Jittered-uniform proposals per round beside the uniform grid (host.cover: the fast end of the
# curve, which neither random per-group sampling nor a converged policy reaches).
COVER_POOL = 128
INNER_EPISODES = 256  # surrogate episodes PPO trains on before each real round
INNER_EPISODES_PER_UPDATE = 32
# ... and before the first policy round, until it has trained on this many in all. Why:
# bench/surrogate_optimiser.py (2026-12-04, the default demo, 5 seeds) found that after 256
# surrogate episodes the policy's best proposal is still below the best uniform configuration
# on predicted reward on most seeds (0.44 +- 0.84 against the grid's 1.44), while at 2048 it
# is above it on every seed (1.73 +- 0.03; random sampling: -0.08 after 2048). One warm-up
# costs ~35 s on a 2-vCPU VM, once per search; every later round adds INNER_EPISODES.
INNER_WARMUP_EPISODES = 2048


@dataclass
class Proposal:
    joint: JointAction
    trajectory: list[tuple[np.ndarray, Any]] | None = None  # PPO (obs, StepOutput) per step
    predicted: Prediction | None = None
    source: str = ""  # "design" | "policy" | "random" | "cover" | "grid" | "optuna"


def _deferred(joint: JointAction, episode: int) -> EvalOutcome:
    """Terminal evaluation of a sampling env: the real one happens later, in the loop."""
    return EvalOutcome("predicted", 0.0)


def sample_episode(
    env: CompressionEnv, act: Callable[[np.ndarray, dict[str, bool]], tuple[dict, Any]]
) -> tuple[JointAction, list[tuple[np.ndarray, Any]]]:
    """Walk one episode with ``act(obs, mask) -> (action, record)``; return the joint action."""
    obs, info = env.reset()
    trajectory = []
    while True:
        action, record = act(obs, info["head_mask"])
        trajectory.append((obs, record))
        obs, _, done, _, info = env.step(action)
        if done:
            return info["joint_action"], trajectory


@dataclass
class StrategyContext:
    """What a strategy may use: the sampling env, a key function, the known keys, surrogate."""

    env: CompressionEnv  # evaluate = _deferred; ``last`` is kept in sync by the loop
    key: Callable[[JointAction], str]
    known: set[str]  # config keys already in the store (measured or failed)
    seed: int
    surrogate: Surrogate | None = None
    max_latency_ms: float | None = None
    runtime: str = "onnxruntime"
    precisions: tuple[str, ...] = ("fp32", "int8")
    n_groups: int = 0
    observed_real: int = 0
    # The real archive, for selection by predicted hypervolume gain (``_rank``); None in
    # unit tests that rank by reward alone.
    archive: Any = None


class Strategy:
    name = "base"

    def __init__(self, ctx: StrategyContext) -> None:
        self.ctx = ctx

    def propose(self, k: int) -> list[Proposal]:
        raise NotImplementedError

    def observe(self, results: list[tuple[Proposal, EvalOutcome]]) -> None:
        """Real outcomes of the last proposals (measured, cached or failed)."""

    # -- shared helpers -------------------------------------------------------------------
    def _design(self, k: int) -> list[Proposal]:
        """The next designed uniform configurations not yet in the store."""
        out = []
        for keep, prec in DESIGN:
            if prec not in self.ctx.precisions:
                continue
            joint = JointAction.uniform(self.ctx.n_groups, keep, prec, passes=self.ctx.env.passes)
            if self.ctx.key(joint) not in self.ctx.known and len(out) < k:
                out.append(Proposal(joint, source="design"))
        return out

    def _cover(self) -> list[Proposal]:
        """The uniform grid and ``COVER_POOL`` jittered-uniform configurations (host.cover),
        drawn afresh each round; the same for every strategy that ranks with the surrogate."""
        # 7919: a fixed salt, so this stream never coincides with the random half's
        # (seeded by [seed, real_updates]) in the same round.
        rng = np.random.default_rng([self.ctx.seed, self.ctx.observed_real, 7919])
        env = self.ctx.env
        joints = cover_pool(rng, COVER_POOL, self.ctx.n_groups, env.stages,
                            self.ctx.precisions, env.passes)  # fmt: skip
        return [Proposal(j, source="cover") for j in joints]

    def _in_design_phase(self) -> bool:
        return self.ctx.surrogate is not None and bool(self._design(1))

    def _rank(self, pool: list[Proposal], k: int) -> list[Proposal]:
        """Top ``k`` distinct, unmeasured proposals by predicted reward. A proposal whose
        predicted latency exceeds the limit by more than the latency model's error is certain
        to break it and is never sent (``LIMIT_MARGIN``)."""
        s = self.ctx.surrogate
        assert s is not None
        seen: set[str] = set()
        scored = []
        for p in pool:
            key = self.ctx.key(p.joint)
            if key in seen or key in self.ctx.known:
                continue
            seen.add(key)
            p.predicted = s.predict(p.joint)
            limit = self.ctx.max_latency_ms
            if limit is not None and p.predicted.objectives.latency_ms > limit * LIMIT_MARGIN:
                continue
            scored.append(p)
        scored.sort(key=lambda p: -p.predicted.reward)  # type: ignore[union-attr]
        if self.ctx.archive is None or len(scored) <= 1:
            return scored[:k]
        return _pick_for_front(scored, k, self.ctx.archive)


LIMIT_MARGIN = 1.25  # predicted latency > 1.25 x the limit: certain to break it


def predicted_front_point(archive: Any, predicted: Any) -> list[float] | None:
    """A prediction's normalised point for the front's hypervolume, from its conservative
    objectives (accuracy at its lower bound, hadmc.surrogate.model); None when it would add no
    volume (collapsed, or outside the reference point). Shared with bench/surrogate_optimiser."""
    obj = predicted.conservative or predicted.objectives
    if obj.accuracy <= archive.min_accuracy:
        return None
    x = archive.normalised(obj)
    return x if all(a < r for a, r in zip(x, archive.reference_point, strict=True)) else None


def points_hypervolume(points: list[list[float]], ref: Any) -> float:
    import moocore

    return float(moocore.hypervolume(np.asarray(points), ref=ref)) if points else 0.0


def _pick_for_front(scored: list[Proposal], k: int, archive: Any) -> list[Proposal]:
    """The best predicted reward first (what the user's chosen model needs), then greedily the
    proposal whose *predicted* objectives add the most hypervolume to the real front plus the
    picks so far (a greedy, expectation-free EHVI). Why: the scalar reward focuses on one
    trade-off (the fastest model within the accuracy limit); the front, and a user who relaxes
    the limit later, need the rest of the trade-off curve too. Predictions are only used to
    choose what to measure; they never enter the archive."""
    front = [archive.normalised(e.objectives) for e in archive.front()]

    def point(p: Proposal) -> list[float] | None:
        return predicted_front_point(archive, p.predicted)

    def hv(points: list[list[float]]) -> float:
        return points_hypervolume(points, archive.reference_point)

    picks = [scored[0]]
    chosen = [*front, *([point(scored[0])] if point(scored[0]) else [])]
    rest = scored[1:]
    while len(picks) < k and rest:
        base = hv(chosen)
        gains = [(hv([*chosen, x]) - base) if (x := point(p)) else -1.0 for p in rest]
        i = int(np.argmax(gains))
        if gains[i] <= 0:  # nothing adds predicted volume: fall back to predicted reward
            i = 0
        p = rest.pop(i)
        picks.append(p)
        if (x := point(p)) is not None:
            chosen.append(x)
    return picks


class GridStrategy(Strategy):
    name = "grid"

    def __init__(self, ctx: StrategyContext, order_by: Callable[[JointAction], float]) -> None:
        super().__init__(ctx)
        grid = uniform_grid(ctx.n_groups, ctx.precisions, ctx.env.passes)
        self.grid = sorted(grid, key=lambda j: -order_by(j))  # mildest (slowest) first

    def propose(self, k: int) -> list[Proposal]:
        todo = [j for j in self.grid if self.ctx.key(j) not in self.ctx.known]
        return [Proposal(j, source="grid") for j in todo[:k]]


class RandomStrategy(Strategy):
    name = "random"

    def __init__(self, ctx: StrategyContext) -> None:
        super().__init__(ctx)
        from hadmc.rl.policy import RandomPolicy

        self.policy = RandomPolicy(ctx.env.action_spec, seed=ctx.seed)

    def _one(self) -> Proposal:
        joint, _ = sample_episode(self.ctx.env, lambda obs, mask: (self.policy.act(mask), None))
        return Proposal(joint, source="random")

    def propose(self, k: int) -> list[Proposal]:
        if self.ctx.surrogate is None:
            return [self._one() for _ in range(k)]
        if self._in_design_phase():
            return self._design(k)
        return self._rank([self._one() for _ in range(SURROGATE_POOL)] + self._cover(), k)


class OptunaStrategy(Strategy):
    """TPE (multivariate) over every pass's ``suggest``: keep per group, precision per stage,
    T, alpha, update scope (and a new pass's categorical head per decision unit)."""

    name = "optuna"

    def __init__(self, ctx: StrategyContext) -> None:
        super().__init__(ctx)
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        sampler = optuna.samplers.TPESampler(seed=ctx.seed, multivariate=True)
        self.study = optuna.create_study(direction="maximize", sampler=sampler)
        self._pending: dict[int, Any] = {}

    def _joint(self, trial: Any) -> JointAction:
        env = self.ctx.env
        return JointAction({
            p.name: p.suggest(trial, env.runtime, env.units.get(p.name))
            if p.name in env.heads else p.default(env.n_groups)
            for p in env.passes
        })  # fmt: skip

    def propose(self, k: int) -> list[Proposal]:
        out = []
        for _ in range(k):
            trial = self.study.ask()
            p = Proposal(self._joint(trial), source="optuna")
            self._pending[id(p)] = trial
            out.append(p)
        return out

    def observe(self, results: list[tuple[Proposal, EvalOutcome]]) -> None:
        import optuna

        for p, out in results:
            trial = self._pending.pop(id(p), None)
            if trial is None:
                continue
            if out.status == "measured" and out.reward is not None:
                self.study.tell(trial, float(out.reward))
            else:
                self.study.tell(trial, state=optuna.trial.TrialState.FAIL)


@dataclass
class PPOSettings:
    inner_episodes: int = INNER_EPISODES
    inner_episodes_per_update: int = INNER_EPISODES_PER_UPDATE
    warmup_episodes: int = INNER_WARMUP_EPISODES  # surrogate episodes before the first round
    pool: int = SURROGATE_POOL  # policy samples per round
    explore_pool: int = SURROGATE_POOL  # random samples beside them (see PPOStrategy.propose)


class PPOStrategy(Strategy):
    """PPO proposals; with a surrogate, an inner loop of surrogate episodes between rounds."""

    name = "ppo"

    def __init__(self, ctx: StrategyContext, agent: Any, settings: PPOSettings | None = None):
        super().__init__(ctx)
        self.agent = agent
        self.settings = settings or PPOSettings()
        self.inner_updates = 0
        self.real_updates = 0
        self.inner_rewards: list[float] = []  # surrogate episode returns (diagnostics)

    def _sample(self, source: str) -> Proposal:
        def act(obs: np.ndarray, mask: dict[str, bool]) -> tuple[dict, Any]:
            step = self.agent.act(obs, mask)
            return step.action, step

        joint, trajectory = sample_episode(self.ctx.env, act)
        return Proposal(joint, trajectory, source=source)

    def _surrogate_env(self) -> CompressionEnv:
        s = self.ctx.surrogate
        assert s is not None
        env = self.ctx.env

        def evaluate(joint: JointAction, episode: int) -> EvalOutcome:
            pred = s.predict(joint)
            return EvalOutcome("predicted", pred.reward, pred.to_dict())

        senv = CompressionEnv(
            env.encoder, env.runtime, evaluate, keep_bound=env.keep_bound, passes=env.passes
        )
        senv.last = env.last
        return senv

    def _inner_loop(self) -> None:
        """PPO on surrogate rewards: ``inner_episodes`` episodes (the first time, up to
        ``warmup_episodes`` in all) in updates of ``inner_episodes_per_update``. A predicted
        candidate costs microseconds; the policy's update is what takes the time."""
        senv = self._surrogate_env()
        n = self.ctx.n_groups
        per = self.settings.inner_episodes_per_update
        episodes = self.settings.inner_episodes
        if self.inner_updates == 0:
            episodes = max(episodes, self.settings.warmup_episodes)
        for _ in range(max(1, episodes // per)):
            stats = self.agent.collect(senv, per * n)
            self.inner_rewards.extend(stats.episode_returns)
            self.agent.update()
            self.inner_updates += 1

    def propose(self, k: int) -> list[Proposal]:
        if self.ctx.surrogate is None:
            return [self._sample("policy") for _ in range(k)]
        if self._in_design_phase():
            return self._design(k)
        self._inner_loop()
        policy = [self._sample("policy") for _ in range(self.settings.pool)]
        # Exploration half of the pool: random proposals (no trajectory, so they train the
        # surrogate, not the policy). Why: the trained policy concentrates on the one
        # trade-off its scalar reward prefers; the round's first pick (best predicted reward)
        # is where it wins, while the front picks (_pick_for_front: most predicted hypervolume
        # added) need the rest of the curve, which a converged policy no longer samples. The
        # random+surrogate strategy ranks the same kind of random half alone, so the bench's
        # difference between the two is what the policy adds. It also fills a round when the
        # policy's few distinct proposals are all measured already. Both also rank the cover
        # pool (host.cover: the grid and jittered-uniform configurations), which reaches the
        # fast end of the curve that neither random half nor policy samples do.
        random = RandomStrategy(self.ctx)
        random.policy.rng = np.random.default_rng([self.ctx.seed, self.real_updates])
        explore = [random._one() for _ in range(self.settings.explore_pool)]
        return self._rank(policy + explore + self._cover(), k)

    def observe(self, results: list[tuple[Proposal, EvalOutcome]]) -> None:
        """The real rewards train the policy too (the policy has not moved since sampling)."""
        added = 0
        for p, out in results:
            if p.trajectory is None or out.status != "measured" or out.reward is None:
                continue
            for i, (obs, step) in enumerate(p.trajectory):
                last = i == len(p.trajectory) - 1
                self.agent.add(obs, step, float(out.reward) if last else 0.0, last, False)
            added += 1
        if added:
            self.agent.finish_rollout(None, True)
            self.agent.update()
            self.real_updates += 1
