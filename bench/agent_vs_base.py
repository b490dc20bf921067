"""Agent cold start and idle RSS, this tree against an older commit, alternating in one run.

Why a side-by-side run: the cold start of the same code swings 2x between VMs of the same
kind (0.15 s and 0.31 s), so "no worse than before" is only a fair claim when both versions
start on the same machine at the same time. Each round starts the base agent, then this
tree's, waits for LISTENING, sends one GetInfo, and reads RSS 0.5 s later.

    python bench/agent_vs_base.py 41482f6     # the commit before the hardening issue (13)

Writes bench/results/agent-vs-<ref>.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from agent import interpreter_floor_s  # noqa: E402  (bench/agent.py, this script's folder)
from agent_helpers import start_agent  # noqa: E402

from protos import hadmc_device_pb2 as pb  # noqa: E402


def start_once(tree: Path, cache: Path) -> tuple[float, float]:
    """(seconds to LISTENING, idle RSS in MiB after one GetInfo) of the agent in ``tree``."""
    agent = start_agent(cache, cwd=tree)
    try:
        agent.stub().GetInfo(pb.GetInfoRequest(), timeout=30)
        time.sleep(0.5)
        return agent.cold_start_s, psutil.Process(agent.proc.pid).memory_info().rss / 2**20
    finally:
        agent.stop()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("ref", help="the base commit (any git revision)")
    p.add_argument("--rounds", type=int, default=7)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "base"
        subprocess.run(["git", "worktree", "add", "-q", "--detach", str(base), args.ref],
                       cwd=REPO, check=True)  # fmt: skip
        try:
            trees = {args.ref: base, "HEAD": REPO}
            runs: dict[str, dict[str, list[float]]] = {k: {"cold_s": [], "rss_mib": []} for k in trees}
            for i in range(args.rounds):
                for name, tree in trees.items():
                    cold, rss = start_once(tree, Path(tmp) / f"cache-{i}-{len(runs[name]['cold_s'])}-{name}")
                    runs[name]["cold_s"].append(cold)
                    runs[name]["rss_mib"].append(rss)
            floor = [interpreter_floor_s() for _ in range(args.rounds)]
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(base)], cwd=REPO, check=False)
    out = {
        "command": f"python bench/agent_vs_base.py {args.ref}",
        "rounds": args.rounds,
        "python_import_grpc_s": {"median": statistics.median(floor), "all": floor},
        **{
            name: {
                "cold_start_s": {"median": statistics.median(r["cold_s"]), "all": r["cold_s"]},
                "idle_rss_mib": {"median": statistics.median(r["rss_mib"]), "all": r["rss_mib"]},
            }
            for name, r in runs.items()
        },
    }
    path = REPO / "bench" / "results" / f"agent-vs-{args.ref}.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"{'version':<12} {'cold start (s)':>15} {'idle RSS (MiB)':>15}")
    for name in runs:
        print(f"{name:<12} {out[name]['cold_start_s']['median']:>15.3f} "
              f"{out[name]['idle_rss_mib']['median']:>15.1f}")  # fmt: skip
    print(f"{'import grpc':<12} {out['python_import_grpc_s']['median']:>15.3f}")
    print(f"wrote {path.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
