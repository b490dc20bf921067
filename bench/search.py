"""PPO vs random search at an equal number of device measurements, on the demo model.

For each strategy and seed, one ``hadmc-host search`` run (in-process, local agent on loopback
unless ``--device``); the hypervolume after every measured candidate is read from the run's
summary. Strategies are compared at the same number of measurements (the smallest count any
run reached: duplicates are measured once, so a run can end with fewer than ``--episodes``).

    python bench/search.py            # ~15 min on 2 quiet cores: 3 seeds x 2 strategies x 24 episodes
    python bench/search.py --quick    # ~3 min: 2 seeds x 6 episodes

Budgets (stated with the results): fine-tune 20 steps (quick 5) of batch 64 per candidate, a
PPO update every 4 episodes (quick 3), as the search default, measurement >= 20 runs and >= 0.2 s after >= 10 warm-up
runs and >= 0.1 s, 1 thread.

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
        "--finetune-steps", str(cfg.finetune_steps), "--measure-runs", str(cfg.measure_runs),
        "--measure-seconds", str(cfg.measure_seconds), "--warmup-seconds", str(cfg.warmup_seconds),
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


def plot(results: dict, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.0))
    ax = fig.subplots()
    for strategy, color in (("ppo", "tab:blue"), ("random", "tab:orange")):
        curves = [r["hypervolume_history"] for r in results["runs"] if r["strategy"] == strategy]
        n = min(len(c) for c in curves)
        arr = np.asarray([c[:n] for c in curves])
        x = np.arange(1, n + 1)
        ax.plot(x, arr.mean(0), color=color, label=f"{strategy} (mean of {len(curves)} seeds)")
        ax.fill_between(x, arr.min(0), arr.max(0), color=color, alpha=0.2)
    ax.set_xlabel("device measurements (distinct candidates)")
    ax.set_ylabel("hypervolume (normalised to baseline)")
    ax.set_title(f"PPO vs random on the demo ({results['device']})")
    ax.legend()
    fig.tight_layout()
    FigureCanvasAgg(fig).print_png(str(path))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="2 seeds x 6 episodes, small budgets")
    p.add_argument("--seeds", type=int, default=None, help="seeds per strategy (default 3)")
    p.add_argument("--episodes", type=int, default=None, help="episodes per run (default 24)")
    p.add_argument("--device", default=None, help="as hadmc-host search --device (default local)")
    p.add_argument("--work-dir", type=Path, default=ROOT / "outputs" / "bench-search")
    p.add_argument("--results-dir", type=Path, default=RESULTS, help="where search.json/.png go")
    cfg = p.parse_args(argv)
    cfg.seeds = cfg.seeds or (2 if cfg.quick else 3)
    cfg.episodes = cfg.episodes or (6 if cfg.quick else 24)
    cfg.episodes_per_update = 3 if cfg.quick else 4
    cfg.finetune_steps = 5 if cfg.quick else 20
    cfg.measure_runs, cfg.measure_seconds, cfg.warmup_seconds = (20, 0.2, 0.1)

    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    runs = []
    for seed in range(cfg.seeds):
        for strategy in ("ppo", "random"):
            out = cfg.work_dir / f"{stamp}-{strategy}-s{seed}"
            s = run_one(strategy, seed, cfg, out)
            runs.append(s)
            print(f"{strategy:6s} seed {seed}: {s['measured']} measured, HV {s['hypervolume']:.4f},"
                  f" {s['wall_s']:.0f} s", file=sys.stderr)  # fmt: skip
    n_common = min(len(r["hypervolume_history"]) for r in runs)
    table = {}
    for strategy in ("ppo", "random"):
        hv = [r["hypervolume_history"][n_common - 1] for r in runs if r["strategy"] == strategy]
        best = [r["best"] for r in runs if r["strategy"] == strategy and r["best"]]
        table[strategy] = {
            "hv_at_common_mean": float(np.mean(hv)),
            "hv_at_common_std": float(np.std(hv)),
            "hv_at_common": hv,
            "best_speedup_mean": float(np.mean([b["speedup"] for b in best])) if best else None,
            "best_accuracy_drop_points_mean": float(
                np.mean([b["accuracy_drop_points"] for b in best])
            )
            if best
            else None,
        }
    results = {
        "benchmark": "search: PPO vs random at equal device measurements (demo model)",
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"platform": platform.platform(), "python": sys.version.split()[0]},
        "device": runs[0]["device"],
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(cfg).items()},
        "measurements_compared": n_common,
        "summary": table,
        "runs": [
            {
                k: r[k]
                for k in (
                    "strategy",
                    "run_dir",
                    "measured",
                    "failed",
                    "cache_hits",
                    "hypervolume",
                    "hypervolume_history",
                    "best",
                    "baseline",
                    "wall_s",
                )
            }
            | {"seed": int(Path(r["run_dir"]).name.rsplit("-s", 1)[1])}
            for r in runs
        ],  # fmt: skip
    }
    res = cfg.results_dir
    res.mkdir(parents=True, exist_ok=True)
    (res / "search.json").write_text(json.dumps(results, indent=2))
    plot(results, res / "search.png")
    print(f"\nhypervolume after {n_common} device measurements (mean +- std over seeds)")
    print(f"{'strategy':10s} {'HV':>16s} {'best speedup':>13s} {'acc drop pts':>13s}")
    for strategy, row in table.items():
        sp = row["best_speedup_mean"]
        dr = row["best_accuracy_drop_points_mean"]
        print(f"{strategy:10s} {row['hv_at_common_mean']:8.4f} +- {row['hv_at_common_std']:.4f}"
              f" {sp if sp is None else f'{sp:13.2f}'} {dr if dr is None else f'{dr:13.2f}'}")  # fmt: skip
    print(f"wrote {res / 'search.json'} and {res / 'search.png'}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    raise SystemExit(main())
