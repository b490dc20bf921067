"""Search strategies side by side at an equal number of device measurements, on the demo.

Strategies (``STRATEGIES``): grid, random, optuna, ppo (surrogate off), ppo+surrogate,
random+surrogate (random proposals ranked by the surrogate: what the learning itself adds is
``ppo+surrogate`` minus this). For each strategy and seed, one in-process ``hadmc-host search``
with the same budget of real candidates, the same fine-tune, the same device.

Scoring, all on the HELD-OUT test split (selection inside each search used validation only):

- ``hv_curve``: hypervolume after each measurement over test accuracy, latency, size, memory,
  every run re-scored against one common baseline (the median of all runs' fp32 latency and
  memory readings: one noisy baseline reading would otherwise scale a whole run);
- ``hv_at_budget``: its last value (a grid that ran out early keeps its last value);
- ``best_speedup_within_1pt_test``: the fastest front member (the front is the run's own, on
  validation) whose test accuracy is within 1 point of the baseline's, against the run's own
  baseline latency; ``chosen_*``: the model the run itself chose under the 1-point limit;
- ``collapsed_measured``: measured candidates at or below half the baseline's accuracy;
- ``latency_mape`` (prospective: predicted before each measurement) and ``proxy_spearman``.

With paired latency (the search's default) a candidate's latency is re-scored as its ratio to
the baseline, timed in the same window, x the common baseline's p50.

    python bench/search.py                      # 3 seeds x 6 strategies x 32 measurements
    python bench/search.py --seeds 2 --budget 16 --finetune-steps 10    # a smaller run

Writes bench/results/search.json (top-level ``summary`` keyed by strategy) and search.png.
"""

from __future__ import annotations

import argparse
import json
import platform
import sqlite3
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
STRATEGIES = ("grid", "random", "optuna", "ppo", "ppo+surrogate", "random+surrogate")


def run_one(strategy: str, seed: int, cfg: argparse.Namespace, out: Path) -> dict:
    from host.search import add_search_arguments, run_search

    name, _, sur = strategy.partition("+")
    parser = argparse.ArgumentParser()
    add_search_arguments(parser)
    argv = [
        "--strategy", name, "--surrogate", "on" if sur else "off", "--seed", str(seed),
        "--out", str(out), "--episodes", str(cfg.budget),
        "--episodes-per-update", str(cfg.per_round), "--finetune-steps", str(cfg.finetune_steps),
        "--min-secs", str(cfg.measure_seconds), "--warmup-min-secs", "0.2",
        "--demo", cfg.demo,
    ]  # fmt: skip
    if cfg.device:
        argv += ["--device", cfg.device]
    t0 = time.perf_counter()
    code = run_search(parser.parse_args(argv), {"quiet": True})
    if code not in (0, 3):  # 3: finished, but no model within the limits (a result, not a crash)
        raise SystemExit(f"search {strategy} seed {seed} exited {code}")
    summary = json.loads((out / "summary.json").read_text())
    summary["wall_s"] = time.perf_counter() - t0
    return summary


def measured_rows(run_dir: str) -> list[dict]:
    con = sqlite3.connect(Path(run_dir) / "results.sqlite")
    try:
        rows = con.execute(
            "SELECT id, objectives_json, metrics_json FROM candidates"
            " WHERE status = 'measured' ORDER BY id"
        ).fetchall()
    finally:
        con.close()
    from host.legacy import renamed_keys  # stores written before the MiB rename

    return [{"id": i, "objectives": renamed_keys(json.loads(o)), "metrics": renamed_keys(json.loads(m))}
            for i, o, m in rows]  # fmt: skip


def _test_objectives(row: dict, common_latency_ms: float) -> dict:
    """The row's objectives with test accuracy; a paired row's latency re-based on the common
    baseline (its ratio from one window x the common p50), so that a run whose one baseline
    reading was slow does not scale all its candidates."""
    o = dict(row["objectives"])
    o["accuracy"] = row["metrics"]["test_accuracy"]
    if row["metrics"].get("latency_ratio") is not None:
        o["latency_ms"] = row["metrics"]["latency_ratio"] * common_latency_ms
    return o


def score_run(run: dict, common: dict) -> dict:
    from hadmc.search.pareto import ParetoArchive
    from hadmc.search.reward import Objectives

    rows = measured_rows(run["run_dir"])
    base = dict(common, accuracy=run["baseline"]["test_accuracy"])
    archive = ParetoArchive(Objectives.from_dict(base))
    for r in rows:
        archive.add(r["id"], Objectives.from_dict(_test_objectives(r, common["latency_ms"])))
    curve = [h for _, _, h in archive.history]
    curve += [curve[-1] if curve else 0.0] * (run["budget"] - len(curve))
    b_test, b_lat = run["baseline"]["test_accuracy"], run["baseline"]["latency_ms"]
    by_id = {r["id"]: r for r in rows}
    within = [
        b_lat / f["latency_ms"]
        for f in run["front"]
        if f["test_accuracy"] is not None and 100 * (b_test - f["test_accuracy"]) <= 1.0
    ]
    del by_id
    best = run.get("best") or {}
    sur = run.get("surrogate") or {}
    return {
        "hv_at_budget": curve[-1] if curve else 0.0,
        "hv_curve": curve,
        "best_speedup_within_1pt_test": max(within) if within else 1.0,
        "chosen_speedup": best.get("speedup"),
        "chosen_test_drop_points": None
        if best.get("test_accuracy") is None
        else 100 * (b_test - best["test_accuracy"]),
        "collapsed_measured": run["collapsed_measured"],
        "measured": run["measured"],
        "latency_mape": sur.get("latency_mape_prospective_pct"),
        "latency_mape_loo": sur.get("latency_mape_loo_pct"),
        "proxy_spearman": sur.get("proxy_spearman"),
        "wall_s": run["wall_s"],
    }


def summarise(scores: dict[str, list[dict]]) -> dict:
    keys = ("hv_at_budget", "hv_curve", "best_speedup_within_1pt_test", "chosen_speedup",
            "chosen_test_drop_points", "collapsed_measured", "measured", "latency_mape",
            "latency_mape_loo", "proxy_spearman", "wall_s")  # fmt: skip
    return {s: {k: [r[k] for r in runs] for k in keys} for s, runs in scores.items()}


def _mean(xs: list) -> float:
    xs = [x for x in xs if x is not None]
    return float(np.mean(xs)) if xs else float("nan")


def plot(summary: dict, path: Path, title: str) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8.0, 4.5))
    ax = fig.subplots()
    for name, row in summary.items():
        arr = np.asarray(row["hv_curve"], dtype=float)
        x = np.arange(1, arr.shape[1] + 1)
        ax.plot(x, arr.mean(0), label=f"{name} ({arr.shape[0]} seeds)")
        ax.fill_between(x, arr.min(0), arr.max(0), alpha=0.12)
    ax.set_xlabel("device measurements (distinct candidates)")
    ax.set_ylabel("hypervolume on test accuracy (baseline alone = 0.5)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    FigureCanvasAgg(fig).print_png(str(path))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--first-seed", type=int, default=0, help="run seeds first..first+seeds-1")
    p.add_argument("--skip", default="", help="strategy@seed pairs already run, comma-separated")
    p.add_argument("--budget", type=int, default=32, help="real measurements per run")
    p.add_argument("--per-round", type=int, default=4)
    p.add_argument("--finetune-steps", type=int, default=50)
    p.add_argument("--measure-seconds", type=float, default=0.5)
    p.add_argument("--strategies", default=",".join(STRATEGIES))
    p.add_argument("--device", default=None, help="as hadmc-host search --device (default local)")
    p.add_argument("--demo", choices=("standard", "tiny"), default="standard",
                   help="the built-in demo (results up to 2026-12-02 ran on today's 'tiny')")
    p.add_argument("--work-dir", type=Path, default=ROOT / "outputs" / "bench-search")
    p.add_argument("--results-dir", type=Path, default=RESULTS)
    p.add_argument("--from-partial", type=Path, nargs="+", default=None, metavar="JSON",
                   help="score the runs of stopped or separate benches (search.partial.json\n"
                   "files, e.g. of different --first-seed) and exit")
    cfg = p.parse_args(argv)
    strategies = [s for s in cfg.strategies.split(",") if s]
    if cfg.from_partial:
        from host.legacy import renamed_keys  # partials written before the MiB rename

        runs = [renamed_keys(r) for part in cfg.from_partial for r in json.loads(part.read_text())]
        done = {r["bench_strategy"] for r in runs}
        cfg.seeds = len({r["seed"] for r in runs})
        cfg.budget = max(r["budget"] for r in runs)  # the title's figures come from the runs
        cfg.finetune_steps = _run_config(runs[0]).get("finetune_steps", cfg.finetune_steps)
        chosen = [s for s in strategies if s in done]
        return report([r for r in runs if r["bench_strategy"] in chosen], chosen, cfg)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    runs: list[dict] = []
    partial = cfg.results_dir / "search.partial.json"
    cfg.results_dir.mkdir(parents=True, exist_ok=True)
    for seed in range(cfg.first_seed, cfg.first_seed + cfg.seeds):
        for strategy in strategies:  # interleaved, so machine drift hits every strategy alike
            if f"{strategy}@{seed}" in cfg.skip.split(","):
                continue
            s = run_one(strategy, seed, cfg, cfg.work_dir / f"{stamp}-{strategy}-s{seed}")
            s["bench_strategy"], s["seed"] = strategy, seed
            runs.append(s)
            partial.write_text(json.dumps(runs, default=str))  # a stopped bench keeps its runs
            print(f"{strategy:17s} seed {seed}: {s['measured']} measured, HV {s['hypervolume']:.3f},"
                  f" {s['wall_s']:.0f} s", file=sys.stderr, flush=True)  # fmt: skip
    return report(runs, strategies, cfg)


def _run_config(run: dict) -> dict:
    path = Path(run["run_dir"]) / "run_config.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def report(runs: list[dict], strategies: list[str], cfg: argparse.Namespace) -> int:
    """Score ``runs`` (summaries of finished searches) and write search.json / search.png."""
    common = dict(runs[0]["baseline"])
    for key in ("latency_ms", "memory_mib"):
        common[key] = float(np.median([r["baseline"][key] for r in runs]))
    scores: dict[str, list[dict]] = {s: [] for s in strategies}
    for r in runs:
        scores[r["bench_strategy"]].append(score_run(r, common))
    summary = summarise(scores)
    # The latency model cannot beat the machine: the same fp32 file, measured once per run,
    # spread this much (mean absolute deviation from the median, %), which is the MAPE a
    # perfect model would get on readings this far apart in time.
    lat = np.array([r["baseline"]["latency_ms"] for r in runs])
    noise = {
        "baseline_latency_ms": lat.tolist(),
        "mad_pct": float(100 * np.mean(np.abs(lat - np.median(lat))) / np.median(lat)),
    }
    results = {
        "benchmark": "search strategies at equal device measurements (demo model)",
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"platform": platform.platform(), "python": sys.version.split()[0]},
        "device": runs[0]["device"],
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(cfg).items()},
        "common_baseline": common,
        "latency_noise_floor": noise,
        "summary": summary,
        "runs": [{k: r.get(k) for k in ("bench_strategy", "seed", "run_dir", "measured",
                                         "proposals", "stop_reason", "best", "baseline",
                                         "surrogate", "wall_s")} for r in runs],  # fmt: skip
    }
    cfg.results_dir.mkdir(parents=True, exist_ok=True)
    (cfg.results_dir / "search.json").write_text(json.dumps(results, indent=2, default=str))
    title = (f"{len(strategies)} strategies, {cfg.seeds} seeds, {cfg.budget} measurements, "
             f"{cfg.finetune_steps} fine-tune steps, {results['device']}")  # fmt: skip
    plot(summary, cfg.results_dir / "search.png", title)
    print(f"\n{title}; mean over seeds (test split)")
    print(f"{'strategy':17s} {'HV@budget':>10s} {'HV@16':>7s} {'best x<=1pt':>11s}"
          f" {'chosen x':>8s} {'chosen drop':>11s} {'collapsed':>9s} {'MAPE %':>7s} {'rho':>5s}")
    for name, row in summary.items():
        hv16 = _mean([c[min(15, len(c) - 1)] for c in row["hv_curve"]])
        print(f"{name:17s} {_mean(row['hv_at_budget']):10.3f} {hv16:7.3f}"
              f" {_mean(row['best_speedup_within_1pt_test']):11.2f}"
              f" {_mean(row['chosen_speedup']):8.2f} {_mean(row['chosen_test_drop_points']):11.2f}"
              f" {_mean(row['collapsed_measured']):9.1f} {_mean(row['latency_mape']):7.1f}"
              f" {_mean(row['proxy_spearman']):5.2f}")  # fmt: skip
    print(f"latency noise floor: the fp32 baseline read {lat.min():.3f}-{lat.max():.3f} ms across"
          f" runs, {noise['mad_pct']:.1f} % mean absolute deviation from the median")
    print(f"wrote {cfg.results_dir / 'search.json'} and {cfg.results_dir / 'search.png'}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    raise SystemExit(main())
