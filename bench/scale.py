"""Search throughput over a pool of boards: candidates per minute for pools of 1, 2 and 4
loopback agents, where measurement bounds the loop (long measuring windows, no fine-tune).

Each pool size runs the same search (the demo model, random strategy, surrogate off, the same
seed and budget), so the rows differ only in how many boards measure at once. Throughput is
steady-state: (measured - 1) / (time of the last measurement - time of the first), which
leaves out setup (model, baseline on every board, sensitivity table); the end-to-end wall time
is printed beside it. The agents share this machine's cores with each other and with the
host's builds, so loopback under-states what separate boards give.

Fleet profile at width: ``hadmc-host profile`` of one small model against 1 and against
``--fleet-width`` (16) loopback agents at once, wall time of the whole command, median of 3;
the issue's target is at most 1.5x the one-agent time.

Build-bound: one board, ``--host-workers`` 1 and 2, with a fine-tune budget and short windows
(``--build-finetune-steps``, ``--build-min-secs``), so that building bounds the loop.

    python bench/scale.py                 # writes bench/results/scale.json
    python bench/scale.py --pools 1,2 --budget 8 --min-secs 2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO))

from agent_helpers import onnx_cnn, start_agent  # noqa: E402

RESULTS = REPO / "bench" / "results" / "scale.json"
TARGET_TWO_BOARDS = 1.7  # the target: 2 boards vs 1, measurement-bound
TARGET_FLEET_RATIO = 1.5  # the target: profile on 16 agents vs 1, wall time
FLEET_REPEATS = 3


def fleet_wall_s(model: Path, addresses: list[str], min_secs: float) -> float:
    """Median wall time of ``hadmc-host profile MODEL --device ...`` (a fresh process each)."""
    import statistics
    import subprocess

    cmd = [sys.executable, "-m", "host", "profile", str(model), "--json", "--num-runs", "20",
           "--warmup-runs", "2", "--warmup-min-secs", "0", "--min-secs", str(min_secs)]  # fmt: skip
    for a in addresses:
        cmd += ["--device", a]
    walls = []
    for _ in range(FLEET_REPEATS):
        t0 = time.perf_counter()
        done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=False)
        walls.append(time.perf_counter() - t0)
        if done.returncode != 0:
            raise SystemExit(f"profile on {len(addresses)} agents failed: {done.stderr[-500:]}")
        rows = json.loads(done.stdout)["results"]
        if len(rows) != len(addresses) or not all(r["ok"] for r in rows):
            raise SystemExit(f"profile on {len(addresses)} agents: not every device measured")
    return statistics.median(walls)


def run_pool(
    addresses: list[str], cfg: argparse.Namespace, out: Path, *, workers: int = 1,
    finetune_steps: int | None = None, min_secs: float | None = None,
) -> dict:  # fmt: skip
    from host.search import add_search_arguments, run_search

    parser = argparse.ArgumentParser()
    add_search_arguments(parser)
    argv = [
        "--strategy", "random", "--surrogate", "off", "--seed", "0", "--out", str(out),
        "--episodes", str(cfg.budget), "--episodes-per-update", str(cfg.per_round),
        "--finetune-steps", str(cfg.finetune_steps if finetune_steps is None else finetune_steps),
        "--max-accuracy-drop", "none", "--warmup-min-secs", "0.2",
        "--min-secs", str(cfg.min_secs if min_secs is None else min_secs),
    ]  # fmt: skip
    if workers > 1:
        argv += ["--host-workers", str(workers)]
    for a in addresses:
        argv += ["--device", a]
    stamps: list[float] = []
    t0 = time.perf_counter()
    code = run_search(parser.parse_args(argv), {"quiet": True,
                                               "on_measured": lambda r: stamps.append(time.perf_counter())})  # fmt: skip
    wall = time.perf_counter() - t0
    if code not in (0, 3):
        raise SystemExit(f"search over {len(addresses)} boards exited {code}")
    summary = json.loads((out / "summary.json").read_text())
    span = stamps[-1] - stamps[0] if len(stamps) > 1 else float("nan")
    return {
        "boards": len(addresses),
        "host_workers": workers,
        "measured": summary["measured"],
        "failed": summary["failed"],
        "candidates_per_min": 60 * (len(stamps) - 1) / span if len(stamps) > 1 else None,
        "wall_s": wall,
        "per_board": [b["measured"] for b in (summary.get("pool") or {}).get("boards", [])]
        or [summary["measured"]],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--pools", default="1,2,4", help="pool sizes, comma-separated")
    p.add_argument("--budget", type=int, default=12, help="real measurements per run")
    p.add_argument("--per-round", type=int, default=4)
    p.add_argument("--finetune-steps", type=int, default=0)
    p.add_argument("--min-secs", type=float, default=3.0, help="timed window per measurement")
    p.add_argument("--workers", default="1,2", help="--host-workers values, build-bound rows")
    p.add_argument("--build-finetune-steps", type=int, default=50)
    p.add_argument("--build-min-secs", type=float, default=0.3)
    p.add_argument("--fleet-width", type=int, default=16, help="agents for the fleet profile; 0: skip")
    p.add_argument("--fleet-min-secs", type=float, default=0.5)
    p.add_argument("--out", type=Path, default=RESULTS)
    cfg = p.parse_args(argv)
    sizes = [int(x) for x in cfg.pools.split(",") if x]
    rows = []
    with tempfile.TemporaryDirectory(prefix="hadmc-scale-") as tmp:
        agents = [start_agent(Path(tmp) / f"agent{i}") for i in range(max(sizes))]
        try:
            for n in sizes:
                row = run_pool([a.address for a in agents[:n]], cfg, Path(tmp) / f"run-{n}")
                rows.append(row)
                print(f"{n} board(s): {row['candidates_per_min']:.1f} candidates/min, "
                      f"{row['wall_s']:.0f} s end to end", file=sys.stderr, flush=True)  # fmt: skip
            build_rows = []
            for w in [int(x) for x in cfg.workers.split(",") if x]:
                row = run_pool([agents[0].address], cfg, Path(tmp) / f"build-{w}", workers=w,
                               finetune_steps=cfg.build_finetune_steps,
                               min_secs=cfg.build_min_secs)  # fmt: skip
                build_rows.append(row)
                print(f"--host-workers {w}: {row['candidates_per_min']:.1f} candidates/min",
                      file=sys.stderr, flush=True)  # fmt: skip
        finally:
            for a in agents:
                a.stop()
        base_w = next((r["candidates_per_min"] for r in build_rows if r["host_workers"] == 1), None)
        for r in build_rows:
            r["speedup_vs_one_worker"] = r["candidates_per_min"] / base_w if base_w else None
        fleet = None
        if cfg.fleet_width > 0:
            model = Path(tmp) / "small.onnx"
            model.write_bytes(onnx_cnn(seed=0, channels=16))
            agents = [start_agent(Path(tmp) / f"fleet{i}") for i in range(cfg.fleet_width)]
            try:
                one_s = fleet_wall_s(model, [agents[0].address], cfg.fleet_min_secs)
                all_s = fleet_wall_s(model, [a.address for a in agents], cfg.fleet_min_secs)
            finally:
                for a in agents:
                    a.stop()
            fleet = {"agents": cfg.fleet_width, "one_agent_wall_s": one_s, "all_agents_wall_s": all_s,
                     "ratio": all_s / one_s, "target_ratio": TARGET_FLEET_RATIO,
                     "meets_target": all_s / one_s <= TARGET_FLEET_RATIO}  # fmt: skip
    one = next((r["candidates_per_min"] for r in rows if r["boards"] == 1), None)
    for r in rows:
        r["speedup_vs_one_board"] = r["candidates_per_min"] / one if one else None
    two = next((r["speedup_vs_one_board"] for r in rows if r["boards"] == 2), None)
    result = {
        "benchmark": "search throughput over a pool of loopback boards (demo model)",
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"platform": platform.platform(), "python": sys.version.split()[0],
                    "cpu_count": os.cpu_count()},  # fmt: skip
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(cfg).items()},
        "rows": rows,
        "build_bound_rows": build_rows,
        "target_two_boards": TARGET_TWO_BOARDS,
        "two_boards_meets_target": None if two is None else two >= TARGET_TWO_BOARDS,
        "fleet_profile": fleet,
    }
    cfg.out.parent.mkdir(parents=True, exist_ok=True)
    cfg.out.write_text(json.dumps(result, indent=2))
    print(f"\n{'boards':>6s} {'cand/min':>9s} {'x vs 1':>7s} {'wall s':>7s} {'per board':>12s}")
    for r in rows:
        x = r["speedup_vs_one_board"]
        print(f"{r['boards']:6d} {r['candidates_per_min']:9.1f} {x if x else float('nan'):7.2f}"
              f" {r['wall_s']:7.0f} {str(r['per_board']):>12s}")  # fmt: skip
    for r in build_rows:
        print(f"--host-workers {r['host_workers']}: {r['candidates_per_min']:.1f} candidates/min,"
              f" {r['speedup_vs_one_worker'] or float('nan'):.2f}x vs one worker")  # fmt: skip
    if fleet:
        print(f"fleet profile: {fleet['agents']} agents {fleet['all_agents_wall_s']:.2f} s vs one "
              f"{fleet['one_agent_wall_s']:.2f} s: {fleet['ratio']:.2f}x (target <= "
              f"{TARGET_FLEET_RATIO}x)")  # fmt: skip
    print(f"wrote {cfg.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
