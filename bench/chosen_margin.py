"""How a selection margin would change the chosen model, re-scored from finished bench runs.

The product chooses the front member with the highest reward among those within the accuracy
limit on *validation* (``ParetoArchive.best_under``). Choosing the fastest model at the edge of
the limit picks the candidates whose validation accuracy came out high by chance (the winner's
curse; the demo's validation split is 270 source images x 5 augmented copies, so its
effective size is far below its 1,350 images), and the chosen model lands over the limit on
test. This script asks, without running anything: had the choice required a validation drop
of at most ``limit - margin``, how fast would the chosen model be, and how often over the
limit on the held-out test split? It reads the front (validation and test accuracy, reward,
speedup) that every run's summary already holds.

    python bench/chosen_margin.py bench/results/search-2026-12-04-seed*/search.partial.json

Prints a table and writes bench/results/chosen-margin.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MARGINS_POINTS = (0.0, 0.25, 0.5, 0.75)


def choose(run: dict, limit_points: float, margin_points: float) -> dict | None:
    """As best_under with score=reward: the highest-reward front member within the (tightened)
    limit on validation and faster than the baseline; None when there is none."""
    b_val = run["baseline"]["accuracy"]
    ok = [
        f for f in run["front"]
        if 100 * (b_val - f["accuracy"]) <= limit_points - margin_points and f["speedup"] > 1.0
    ]  # fmt: skip
    return max(ok, key=lambda f: f["reward"]) if ok else None


def score(runs: list[dict], limit_points: float = 1.0) -> dict:
    out: dict[str, dict] = {}
    for name in sorted({r["bench_strategy"] for r in runs}):
        mine = [r for r in runs if r["bench_strategy"] == name]
        rows = {}
        for m in MARGINS_POINTS:
            speedups, drops = [], []
            for r in mine:
                c = choose(r, limit_points, m)
                speedups.append(c["speedup"] if c else 1.0)  # nothing chosen: ship the baseline
                drops.append(100 * (r["baseline"]["test_accuracy"] - c["test_accuracy"]) if c
                             else 0.0)  # fmt: skip
            rows[f"{m:g}"] = {
                "chosen_speedup": speedups,
                "chosen_test_drop_points": drops,
                "over_limit_on_test": int(sum(d > limit_points for d in drops)),
            }
        out[name] = {"seeds": [r["seed"] for r in mine], "by_margin_points": rows}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("partials", type=Path, nargs="+", help="bench/search.py search.partial.json")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "chosen-margin.json")
    args = ap.parse_args(argv)
    runs = [r for p in args.partials for r in json.loads(p.read_text())]
    table = score(runs)
    print(f"chosen model under the 1-point limit, chosen at validation drop <= 1 - margin;"
          f" {len(runs)} runs")  # fmt: skip
    print(
        f"{'strategy':17s} {'margin':>6s} {'speedup':>8s} {'test drop':>9s} {'over on test':>12s}"
    )
    for name, row in table.items():
        for m, v in row["by_margin_points"].items():
            n = len(v["chosen_speedup"])
            print(f"{name:17s} {m:>6s} {np.mean(v['chosen_speedup']):8.2f}"
                  f" {np.mean(v['chosen_test_drop_points']):9.2f}"
                  f" {v['over_limit_on_test']:>7d} of {n}")  # fmt: skip
    args.out.write_text(json.dumps({
        "benchmark": "the chosen model with a selection margin, re-scored from bench/search runs",
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "inputs": [str(p) for p in args.partials],
        "limit_points": 1.0,
        "summary": table,
    }, indent=2))  # fmt: skip
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
