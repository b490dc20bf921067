"""What the learning adds *inside* the surrogate: PPO vs random sampling on one fixed surrogate.

The end-to-end bench (``bench/search.py``) found ``ppo+surrogate`` and ``random+surrogate``
level on hypervolume. That mixes two questions: does PPO optimise the surrogate's reward
better than random sampling does, and does a better surrogate optimum become a better real
model? This script answers the first one alone, with no device and no fine-tune, in minutes:

1. It restores a finished search (``--run DIR``, any strategy with the surrogate's inputs:
   the run's baseline, sensitivity table and real candidates) and refits its surrogate on
   every real candidate of that run, exactly as the search's own loop does.
2. For each seed, at an equal number of surrogate evaluations (one per episode):

   - ``random``: uniform proposals through the same environment (same stages, masks, bounds);
   - ``ppo``: a fresh controller, built as ``--strategy ppo --surrogate on`` builds it, trained
     on the surrogate's reward by the search's own inner loop (``PPOStrategy._inner_loop``,
     in updates of ``INNER_EPISODES_PER_UPDATE`` episodes).

   It records the best predicted reward found after N evaluations, and, at the end, the mean
   reward of 256 fresh samples from each (what a round of the search ranks). The best uniform
   configuration (the grid a user tries first) is printed beside them as a reference level.

3. With ``--front``, per seed, what a round adds to the *front*: the predicted hypervolume
   that the round's 4 picks (``Strategy._rank``: best predicted reward, then the most
   predicted hypervolume added) add to the run's real front, from the pool each strategy
   ranks: random+surrogate's 512 random proposals, and ppo+surrogate's pool after its warm-up
   (``PPOStrategy.propose``: 256 policy samples, 256 random).

Every figure here is *predicted* (the surrogate's conservative reward, accuracy at its lower
bound): this measures the optimiser, not the model it would find.

    python bench/surrogate_optimiser.py --run runs/my-search --seeds 5 --evaluations 4096

Writes bench/results/surrogate-optimiser.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "bench" / "results"
CHECKPOINTS = (32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384)
FINAL_SAMPLES = 256


class _Captured(Exception):
    """Raised from inside the resumed search once its SearchRun is set up."""

    def __init__(self, run) -> None:
        super().__init__("captured")
        self.run = run


def restore(run_dir: Path):
    """The finished search's SearchRun with its surrogate refit on all its real candidates.
    Resuming re-opens the device (the local agent) for the baseline, and stops before the loop."""
    from hadmc.search.env import JointAction
    from host.search import add_search_arguments, run_search
    from host.search_run import SearchRun

    def capture(self):
        for rec in self.store.candidates("measured"):
            joint = JointAction.from_dict(rec.actions, self.passes)
            self.surrogate.observe(joint, rec.metrics)
        raise _Captured(self)

    parser = argparse.ArgumentParser()
    add_search_arguments(parser)
    original = SearchRun.run
    SearchRun.run = capture
    try:
        run_search(parser.parse_args(["--resume", str(run_dir)]), {"quiet": True})
    except _Captured as got:
        return got.run
    finally:
        SearchRun.run = original
    raise SystemExit(f"{run_dir}: the search did not reach its loop (see the messages above)")


def best_so_far(rewards: list[float], checkpoints: tuple[int, ...]) -> dict[int, float]:
    running = np.maximum.accumulate(np.asarray(rewards, dtype=float))
    return {n: float(running[n - 1]) for n in checkpoints if n <= len(running)}


def describe(run, joint) -> dict:
    """The predicted figures of one proposal, as a user reads them (label: predicted)."""
    pred = run.surrogate.predict(joint)
    base = run.surrogate.baseline
    return {
        "reward": pred.reward,
        "accuracy_drop_pts": 100.0 * (base.accuracy - pred.objectives.accuracy),
        "accuracy_drop_pts_lower_bound": 100.0 * (base.accuracy - pred.conservative.accuracy),
        "speedup": base.latency_ms / pred.objectives.latency_ms,
        "mean_keep": float(np.mean(joint.keep_ratios)),
        "int8_share": float(np.mean([p == "int8" for p in joint.precisions])),
    }


def random_rewards(run, seed: int, n: int) -> tuple[list[float], dict]:
    """n proposals of the random strategy itself (``RandomStrategy._one``), seeded."""
    from host.strategies import RandomStrategy

    random = RandomStrategy(run.strategy.ctx)
    random.policy.rng = np.random.default_rng(seed)
    out, best, best_reward = [], None, float("-inf")
    for _ in range(n):
        joint = random._one().joint
        out.append(run.surrogate.predict(joint).reward)
        if out[-1] >= best_reward:
            best, best_reward = joint, out[-1]
    return out, describe(run, best)


def grid_joints(run) -> list:
    """Every uniform configuration (one keep ratio, one precision for all groups): what a
    user tries first, as a reference level for both optimisers."""
    from hadmc.compress.passes.pruning_pass import KEEP_RATIOS
    from hadmc.search.env import JointAction

    ctx = run.strategy.ctx
    return [
        JointAction.uniform(ctx.n_groups, k, prec, passes=run.env.passes)
        for k in KEEP_RATIOS
        for prec in ctx.precisions
    ]


def grid_rewards(run) -> list[float]:
    return [run.surrogate.predict(j).reward for j in grid_joints(run)]


def ppo_rewards(run, seed: int, n: int) -> tuple[list[float], list[float], dict]:
    """The search's own inner loop (``PPOStrategy._inner_loop``) run once for n episodes
    (no warm-up on top), then FINAL_SAMPLES policy samples, and the best proposal met while
    training."""
    from host.strategies import PPOSettings, PPOStrategy

    strategy = PPOStrategy(run.strategy.ctx, run.ppo_agent(seed),
                           PPOSettings(inner_episodes=n, warmup_episodes=0))  # fmt: skip
    senv = strategy._surrogate_env()
    seen: list = [float("-inf"), None]
    inner = senv.evaluate

    def evaluate(joint, episode):  # the env's own evaluate, keeping the best joint
        outcome = inner(joint, episode)
        if outcome.reward > seen[0]:
            seen[:] = [outcome.reward, joint]
        return outcome

    senv.evaluate = evaluate
    strategy._surrogate_env = lambda: senv  # the inner loop trains on the watched env
    strategy._inner_loop()
    final = [run.surrogate.predict(strategy._sample("policy").joint).reward
             for _ in range(FINAL_SAMPLES)]  # fmt: skip
    return strategy.inner_rewards[:n], final, describe(run, seen[1])


def front_gain(run, seed: int) -> dict:
    """Predicted hypervolume of the real front plus a round's 4 picks, from random's pool and
    from PPO's (after the search's own warm-up), and the predicted front of each whole pool."""
    from host.strategies import (
        PPOSettings,
        PPOStrategy,
        RandomStrategy,
        points_hypervolume,
        predicted_front_point,
    )

    ctx, surrogate = run.strategy.ctx, run.surrogate
    archive = ctx.archive
    front = [archive.normalised(e.objectives) for e in archive.front()]

    def hv(proposals) -> float:  # as _pick_for_front scores its picks
        points = [predicted_front_point(archive, surrogate.predict(p.joint)) for p in proposals]
        return points_hypervolume([*front, *(x for x in points if x)], archive.reference_point)

    random = RandomStrategy(ctx)
    random.policy.rng = np.random.default_rng(2000 + seed)
    pool_random = [random._one() for _ in range(2 * FINAL_SAMPLES)]
    ppo = PPOStrategy(ctx, run.ppo_agent(seed), PPOSettings(inner_episodes=0))
    ppo._inner_loop()  # the warm-up (INNER_WARMUP_EPISODES)
    pool_ppo = [ppo._sample("policy") for _ in range(FINAL_SAMPLES)]
    pool_ppo += pool_random[:FINAL_SAMPLES]
    return {
        "real_front": hv([]),
        "random": {"picks": hv(random._rank(pool_random, 4)), "pool": hv(pool_random)},
        "ppo": {"picks": hv(ppo._rank(pool_ppo, 4)), "pool": hv(pool_ppo)},
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", type=Path, required=True, help="a finished hadmc-host search dir")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--evaluations", type=int, default=4096, help="surrogate evaluations each")
    ap.add_argument("--out", type=Path, default=RESULTS / "surrogate-optimiser.json")
    ap.add_argument("--front", action="store_true",
                    help="also: predicted hypervolume a round adds to the real front")  # fmt: skip
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    run = restore(args.run)
    checkpoints = tuple(c for c in CHECKPOINTS if c <= args.evaluations)
    grid = grid_rewards(run)
    grid_best = grid_joints(run)[int(np.argmax(grid))]
    rows: dict[str, list[dict]] = {"random": [], "ppo": []}
    for seed in range(args.seeds):
        r, r_best = random_rewards(run, 1000 + seed, args.evaluations)
        rows["random"].append({"seed": seed, "best": best_so_far(r, checkpoints),
                               "final_mean": float(np.mean(r[:FINAL_SAMPLES])),
                               "best_proposal": r_best})  # fmt: skip
        p, final, p_best = ppo_rewards(run, seed, args.evaluations)
        rows["ppo"].append({"seed": seed, "best": best_so_far(p, checkpoints),
                            "final_mean": float(np.mean(final)),
                            "final_best": float(np.max(final)), "best_proposal": p_best})  # fmt: skip
        print(f"seed {seed}: random best {max(r):.4f}, ppo best {max(p):.4f}, "
              f"ppo final mean {np.mean(final):.4f}", file=sys.stderr)  # fmt: skip
    summary = {
        name: {
            "best_mean": {n: float(np.mean([x["best"][n] for x in xs])) for n in checkpoints},
            "best_std": {n: float(np.std([x["best"][n] for x in xs])) for n in checkpoints},
            "final_sample_mean": float(np.mean([x["final_mean"] for x in xs])),
        }
        for name, xs in rows.items()
    }
    print(f"{'evaluations':>12} {'random best':>14} {'ppo best':>14}")
    for n in checkpoints:
        r, p = summary["random"], summary["ppo"]
        print(f"{n:>12} {r['best_mean'][n]:>8.4f}±{r['best_std'][n]:.4f} "
              f"{p['best_mean'][n]:>8.4f}±{p['best_std'][n]:.4f}")  # fmt: skip
    print(f"best uniform configuration (grid, {len(grid)} of them): {max(grid):.4f}")
    for name, d in (("grid", describe(run, grid_best)),
                    *((k, rows[k][0]["best_proposal"]) for k in rows)):  # fmt: skip
        print(
            f"  best {name:<7} (seed 0): reward {d['reward']:.4f}, predicted speedup "
            f"{d['speedup']:.2f}x at {d['accuracy_drop_pts']:.2f} pts drop "
            f"(lower bound {d['accuracy_drop_pts_lower_bound']:.2f}), mean keep "
            f"{d['mean_keep']:.2f}, int8 share {d['int8_share']:.2f}"
        )
    print(f"mean reward of {FINAL_SAMPLES} samples: random {summary['random']['final_sample_mean']:.4f}"
          f", trained ppo {summary['ppo']['final_sample_mean']:.4f}")  # fmt: skip
    fronts = []
    for seed in range(args.seeds if args.front else 0):
        fronts.append(front_gain(run, seed))
        g = fronts[-1]
        print(
            f"seed {seed}: real front HV {g['real_front']:.4f}; + 4 picks from random's pool "
            f"{g['random']['picks']:.4f}, from ppo's {g['ppo']['picks']:.4f}",
            file=sys.stderr,
        )
    if fronts:
        print(
            f"predicted HV of the real front + a round's 4 picks (mean of {len(fronts)}): "
            f"random {np.mean([g['random']['picks'] for g in fronts]):.4f}, "
            f"ppo {np.mean([g['ppo']['picks'] for g in fronts]):.4f} "
            f"(front alone {fronts[0]['real_front']:.4f})"
        )
    out = {
        "label": "predicted",
        "front_gain": fronts,
        "run": str(args.run),
        "groups": run.strategy.ctx.n_groups,
        "real_candidates_fit": run.surrogate.observed,
        "seeds": args.seeds,
        "evaluations": args.evaluations,
        "summary": summary,
        "grid_best": float(max(grid)),
        "grid_best_proposal": describe(run, grid_best),
        "per_seed": rows,
        "machine": {"platform": platform.platform(), "python": platform.python_version()},
        "wall_s": time.perf_counter() - t0,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2))
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
