"""PPO on gymnasium CartPole-v1: the controller learns a task that is not compression.

Trains ``hadmc.rl.ppo.PPO`` through ``hadmc.rl.gym_adapter`` on one thread, and every
``--eval-every`` updates records the mean return of the last 10 training episodes and the
mean return of deterministic (argmax) evaluation episodes on a separate env. Prints a table
of return vs environment steps and writes bench/results/ppo_cartpole.json + .png.

    python bench/ppo_cartpole.py                 # ~40k steps, 1-3 min on one thread
    python bench/ppo_cartpole.py --seed 2 --updates 100
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from hadmc.rl.gym_adapter import make_gym_env
from hadmc.rl.ppo import PPO, PPOConfig

RESULTS = Path(__file__).resolve().parent / "results"


def evaluate(ppo: PPO, episodes: int, seed: int) -> float:
    """Mean undiscounted return of deterministic episodes (mode actions)."""
    env = make_gym_env("CartPole-v1")
    returns = []
    for ep in range(episodes):
        obs, _ = env.reset(seed=seed + ep)
        done, total = False, 0.0
        while not done:
            obs, r, term, trunc, _ = env.step(ppo.act(obs, deterministic=True).action)
            total += r
            done = term or trunc
        returns.append(total)
    return float(np.mean(returns))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--updates", type=int, default=160)
    ap.add_argument("--n-steps", type=int, default=256, help="env steps per rollout")
    ap.add_argument("--eval-every", type=int, default=16, help="updates between evaluations")
    ap.add_argument("--eval-episodes", type=int, default=3)
    ap.add_argument("--out", type=Path, default=RESULTS / "ppo_cartpole.json")
    args = ap.parse_args()
    torch.set_num_threads(1)

    # rl-baselines3-zoo's CartPole-v1 PPO settings, adapted to one env (their 8 x 32 steps
    # -> 256 steps here); value clipping off (SB3 default).
    config = PPOConfig(
        hidden_size=64,
        learning_rate=1e-3,
        anneal_lr=True,
        total_updates=args.updates,
        gamma=0.98,
        gae_lambda=0.8,
        n_epochs=10,
        minibatch_size=64,
        clip_coef=0.2,
        ent_coef=0.0,
    )
    env = make_gym_env("CartPole-v1")
    ppo = PPO(env.observation_dim, env.action_spec, config, seed=args.seed)
    rows: list[dict] = []
    train_returns: list[float] = []
    t0 = time.perf_counter()
    print(f"{'env_steps':>9} {'train_return_last10':>19} {'eval_return':>11} {'wall_s':>7}")
    for u in range(1, args.updates + 1):
        stats = ppo.collect(env, args.n_steps)
        train_returns += stats.episode_returns
        up = ppo.update()
        if u % args.eval_every == 0 or u == args.updates:
            row = {
                "update": u,
                "env_steps": ppo.env_steps_done,
                "train_return_last10": float(np.mean(train_returns[-10:])),
                "eval_return": evaluate(ppo, args.eval_episodes, seed=10_000 + u),
                "approx_kl": up.approx_kl,
                "clip_fraction": up.clip_fraction,
                "explained_variance": up.explained_variance,
                "entropy": up.entropy,
                "wall_s": time.perf_counter() - t0,
            }
            rows.append(row)
            print(
                f"{row['env_steps']:>9} {row['train_return_last10']:>19.1f} "
                f"{row['eval_return']:>11.1f} {row['wall_s']:>7.1f}"
            )
    result = {
        "benchmark": "ppo_cartpole",
        "env": "CartPole-v1 (max return 500)",
        "seed": args.seed,
        "n_steps": args.n_steps,
        "updates": args.updates,
        "eval_episodes": args.eval_episodes,
        "config": asdict(config),
        "rows": rows,
        "final_eval_return": rows[-1]["eval_return"],
        "wall_s": time.perf_counter() - t0,
        "torch_threads": torch.get_num_threads(),
        "machine": {"python": platform.python_version(), "torch": torch.__version__,
                    "cpu": platform.processor() or platform.machine()},
        "command": "python bench/ppo_cartpole.py",
    }  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    plot(rows, args.out.with_suffix(".png"))
    print(f"wrote {args.out} and {args.out.with_suffix('.png')} ({result['wall_s']:.0f} s)")


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [r["env_steps"] for r in rows]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(
        steps, [r["train_return_last10"] for r in rows], marker="o", label="train (last 10 ep.)"
    )
    ax.plot(steps, [r["eval_return"] for r in rows], marker="s", label="eval (deterministic)")
    ax.axhline(500, color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel("environment steps")
    ax.set_ylabel("episode return")
    ax.set_title("hadmc PPO on CartPole-v1")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
