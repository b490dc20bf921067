"""PPO vs random search at an equal number of device measurements, on the demo model.

For each strategy and seed, one ``hadmc-host search`` run (in-process, local agent on loopback
unless ``--device``); the hypervolume after every measured candidate is read from the run's
summary. Strategies are compared at the same number of measurements (the smallest count any
run reached: duplicates are measured once, so a run can end with fewer than ``--episodes``).

    python bench/search.py            # ~25 min on 2 quiet cores: 3 seeds x 2 strategies x 24 episodes
    python bench/search.py --quick    # ~3 min: 2 seeds x 6 episodes

Budgets (stated with the results): fine-tune 20 steps (quick 5) of batch 64 per candidate, a
PPO update every 4 episodes (quick 3); measurement as the search default (DESIGN §5: >= 10
warm-up runs and >= 0.5 s, then >= 50 runs and >= 1 s, 1 thread). Shorter windows were tried
and dropped: with >= 20 runs in >= 0.2 s the demo's fp32 baseline read 1.86-2.18 ms against
1.69-1.74 ms with the default window minutes apart, and every speedup in a run is relative to
its baseline.

Writes bench/results/search.json and bench/results/search.png, prints a table.
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
RESULTS = ROOT / "bench" / "results"


def run_one(strategy: str, seed: int, cfg: argparse.Namespace, out: Path) -> dict:
    from host.search import add_search_arguments, run_search

    parser = argparse.ArgumentParser()
    add_search_arguments(parser)
    argv = [
        "--strategy", strategy, "--seed", str(seed), "--out", str(out),
        "--episodes", str(cfg.episodes), "--episodes-per-update", str(cfg.episodes_per_update),
        "--finetune-steps", str(cfg.finetune_steps),
    ]  # fmt: skip
    if cfg.device:
        argv += ["--device", cfg.device]
    t0 = time.perf_counter()
    code = run_search(parser.parse_args(argv), {"quiet": True})
    if code != 0:
        raise SystemExit(f"search {strategy} seed {seed} exited {code}")
    summary = json.loads((out / "summary.json").read_text())
    summary["wall_s"] = time.perf_counter() - t0
    return summary


def measured_rows(run_dir: str) -> list[dict]:
    """The run's measured candidates in measurement order: objectives, reward, actions."""
    import sqlite3

    con = sqlite3.connect(Path(run_dir) / "results.sqlite")
    try:
        rows = con.execute(
            "SELECT objectives_json, reward, actions_json FROM candidates"
            " WHERE status = 'measured' ORDER BY id"
        ).fetchall()
    finally:
        con.close()
    return [
        {"objectives": json.loads(o), "reward": float(r), "actions": json.loads(a)}
        for o, r, a in rows
    ]


def common_baseline(runs: list[dict]) -> dict:
    """One baseline for all runs: the median of their fp32 measurements.

    Why: each run measures its own fp32 baseline once and normalises every candidate to it, so
    one noisy baseline reading (1.6-2.6 ms for the same file on this shared VM) scales a whole
    run's hypervolume. Re-scoring every run against the same reference removes that term.
    """
    base = [r["baseline"] for r in runs]
    out = dict(base[0])
    for key in ("latency_ms", "memory_mb"):
        out[key] = float(np.median([b[key] for b in base]))
    return out


def hv_history(rows: list[dict], baseline: dict) -> list[float]:
    """Hypervolume after each measured row, with the current ``hadmc.pareto`` definition (so a
    ``--reanalyse`` of older runs scores them exactly like a new run)."""
    from hadmc.pareto import ParetoArchive
    from hadmc.reward import Objectives

    archive = ParetoArchive(Objectives.from_dict(baseline))
    for i, row in enumerate(rows):
        archive.add(i, Objectives.from_dict(row["objectives"]))
    return [h for _, _, h in archive.history]


def run_stats(run: dict, rows: list[dict], common: dict) -> dict:
    base_acc, base_lat = run["baseline"]["accuracy"], run["baseline"]["latency_ms"]
    drops = [100 * (base_acc - r["objectives"]["accuracy"]) for r in rows]
    near = [
        base_lat / r["objectives"]["latency_ms"]
        for r, d in zip(rows, drops, strict=True)
        if d <= 1.5
    ]
    rewards = [r["reward"] for r in rows]
    half = len(rewards) // 2
    own = hv_history(rows, run["baseline"])
    return {
        "hypervolume": own[-1],
        "hypervolume_history": own,
        "hv_common_history": hv_history(rows, common),
        "within_1_5_points": len(near),
        "best_speedup_within_1_5_points": max(near) if near else None,
        "collapsed_below_50pct": sum(r["objectives"]["accuracy"] < 0.5 for r in rows),
        "update_scope_all": sum(r["actions"]["update"] == "all" for r in rows),
        "reward_mean_first_half": float(np.mean(rewards[:half])),
        "reward_mean_second_half": float(np.mean(rewards[half:])),
    }


def _mean(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def summarise(runs: list[dict], n_common: int) -> dict:
    table = {}
    for strategy in ("ppo", "random"):
        mine = [r for r in runs if r["strategy"] == strategy]
        hv = [r["hypervolume_history"][n_common - 1] for r in mine]
        hv_c = [r["hv_common_history"][n_common - 1] for r in mine]
        best = [r["best"] for r in mine if r["best"]]
        table[strategy] = {
            "hv_at_common_mean": float(np.mean(hv)),
            "hv_at_common_std": float(np.std(hv)),
            "hv_at_common": hv,
            "hv_common_baseline_mean": float(np.mean(hv_c)),
            "hv_common_baseline_std": float(np.std(hv_c)),
            "hv_common_baseline": hv_c,
            "best_speedup_mean": _mean([b["speedup"] for b in best]),
            "best_accuracy_drop_points_mean": _mean([b["accuracy_drop_points"] for b in best]),
            "best_speedup_within_1_5_points": [r["best_speedup_within_1_5_points"] for r in mine],
            "within_1_5_points_mean": _mean([r["within_1_5_points"] for r in mine]),
            "collapsed_below_50pct_mean": _mean([r["collapsed_below_50pct"] for r in mine]),
            "reward_mean_first_half": _mean([r["reward_mean_first_half"] for r in mine]),
            "reward_mean_second_half": _mean([r["reward_mean_second_half"] for r in mine]),
        }
    return table


def plot(results: dict, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11.0, 4.0))
    axes = fig.subplots(1, 2, sharey=True)
    panels = (
        ("hypervolume_history", "each run against its own fp32 baseline"),
        ("hv_common_history", "all runs against the median fp32 baseline"),
    )
    for ax, (key, title) in zip(axes, panels, strict=True):
        for strategy, color in (("ppo", "tab:blue"), ("random", "tab:orange")):
            curves = [r[key] for r in results["runs"] if r["strategy"] == strategy]
            n = min(len(c) for c in curves)
            arr = np.asarray([c[:n] for c in curves])
            x = np.arange(1, n + 1)
            ax.plot(x, arr.mean(0), color=color, label=f"{strategy} (mean of {len(curves)} seeds)")
            ax.fill_between(x, arr.min(0), arr.max(0), color=color, alpha=0.2)
        ax.set_xlabel("device measurements (distinct candidates)")
        ax.set_title(title, fontsize=10)
        ax.legend()
    axes[0].set_ylabel("hypervolume (normalised to baseline)")
    fig.suptitle(f"PPO vs random on the demo ({results['device']}), min-max band over seeds")
    fig.tight_layout()
    FigureCanvasAgg(fig).print_png(str(path))


RUN_KEYS = (
    "strategy", "seed", "run_dir", "measured", "failed", "cache_hits", "hypervolume",
    "hypervolume_history", "best", "baseline", "wall_s",
)  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="2 seeds x 6 episodes, small budgets")
    p.add_argument("--seeds", type=int, default=None, help="seeds per strategy (default 3)")
    p.add_argument("--episodes", type=int, default=None, help="episodes per run (default 24)")
    p.add_argument("--device", default=None, help="as hadmc-host search --device (default local)")
    p.add_argument("--work-dir", type=Path, default=ROOT / "outputs" / "bench-search")
    p.add_argument("--results-dir", type=Path, default=RESULTS, help="where search.json/.png go")
    p.add_argument(
        "--reanalyse",
        type=Path,
        default=None,
        metavar="JSON",
        help="re-score the runs listed in an earlier search.json (their run directories must\n"
        "still exist) instead of running new searches",
    )
    cfg = p.parse_args(argv)
    cfg.seeds = cfg.seeds or (2 if cfg.quick else 3)
    cfg.episodes = cfg.episodes or (6 if cfg.quick else 24)
    cfg.episodes_per_update = 3 if cfg.quick else 4
    cfg.finetune_steps = 5 if cfg.quick else 20

    if cfg.reanalyse:
        earlier = json.loads(cfg.reanalyse.read_text())
        runs = [{k: r[k] for k in RUN_KEYS} for r in earlier["runs"]]
        config, device = earlier["config"], earlier["device"]
    else:
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
        runs, device = [], None
        for seed in range(cfg.seeds):
            for strategy in ("ppo", "random"):
                out = cfg.work_dir / f"{stamp}-{strategy}-s{seed}"
                s = run_one(strategy, seed, cfg, out)
                runs.append({k: s[k] for k in RUN_KEYS if k != "seed"} | {"seed": seed})
                device = s["device"]
                print(f"{strategy:6s} seed {seed}: {s['measured']} measured,"
                      f" HV {s['hypervolume']:.4f}, {s['wall_s']:.0f} s", file=sys.stderr)  # fmt: skip
        config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(cfg).items()}
    common = common_baseline(runs)
    for r in runs:
        r.update(run_stats(r, measured_rows(r["run_dir"]), common))
    n_common = min(len(r["hypervolume_history"]) for r in runs)
    table = summarise(runs, n_common)
    results = {
        "benchmark": "search: PPO vs random at equal device measurements (demo model)",
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"platform": platform.platform(), "python": sys.version.split()[0]},
        "device": device,
        "config": config,
        "measurements_compared": n_common,
        "common_baseline": common,
        "summary": table,
        "runs": runs,
    }
    res = cfg.results_dir
    res.mkdir(parents=True, exist_ok=True)
    (res / "search.json").write_text(json.dumps(results, indent=2))
    plot(results, res / "search.png")
    print(f"\nafter {n_common} device measurements, mean +- std over seeds")
    print(f"{'strategy':8s} {'HV own base':>16s} {'HV common base':>16s} {'best x':>7s}"
          f" {'drop':>6s} {'<=1.5pt':>8s} {'<50%':>5s} {'reward 1st->2nd half':>21s}")  # fmt: skip
    for strategy, row in table.items():
        print(f"{strategy:8s} {row['hv_at_common_mean']:7.3f} +- {row['hv_at_common_std']:.3f}"
              f" {row['hv_common_baseline_mean']:7.3f} +- {row['hv_common_baseline_std']:.3f}"
              f" {row['best_speedup_mean'] or float('nan'):7.2f}"
              f" {row['best_accuracy_drop_points_mean'] or float('nan'):6.2f}"
              f" {row['within_1_5_points_mean']:8.1f} {row['collapsed_below_50pct_mean']:5.1f}"
              f" {row['reward_mean_first_half']:10.3f} -> {row['reward_mean_second_half']:.3f}")  # fmt: skip
    print("best x / drop: the run's chosen model (highest reward on the front) against its own")
    print("fp32 baseline; <=1.5pt: candidates within 1.5 points of fp32; <50%: collapsed ones")
    print(f"wrote {res / 'search.json'} and {res / 'search.png'}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    raise SystemExit(main())
