"""``hadmc-host search --target auto``: one search per execution target the device offers, and
one Pareto front across them in which every row names its target.

Why one search per target rather than a target head in the policy: the target changes what the
other heads mean (the precisions it executes, fp16 on GPUs; the artifact kind, .onnx or
.tflite), the baseline every reward is a ratio against, and the latency model the surrogate
calibrates on the device. One search per target keeps each of those honest and each run
directory a complete, resumable search. ``--episodes`` is split evenly between the targets, so
the whole costs the device measurements of one search of that budget.

Speedups: each row keeps its run's own ``speedup`` (paired with that target's fp32 baseline) and
adds ``speedup_vs_fastest_fp32``, against the fastest fp32 baseline among the targets, so no
target looks good merely because its own fp32 baseline is slow. That second ratio compares two
runs' measurements, made minutes apart on the same board, not one interleaved window.

Layout of ``--out DIR``: ``run_config.json`` (target "auto"), ``targets/<runtime>-<accel>/``
(one full run directory per target), ``summary.json`` (the merged front and the choice).
``--resume DIR`` resumes every target's run and merges again.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from host.errors import (
    EXIT_INTERRUPTED,
    EXIT_NO_MODEL,
    EXIT_OK,
    UsageError,
    search_fail,
    search_interrupted,
)
from host.search_config import SearchConfig
from host.targets import runtime_problem
from protos.runtimes import DEFAULT_ACCELERATOR, RUNTIME_NAMES


def offered_targets(info: dict[str, Any]) -> list[str]:
    """The targets ``--target auto`` searches: every available target of a runtime the host
    exports for. A device that lists no targets (an older agent, a ``sim:`` profile) offers
    each runtime it runs, on that runtime's CPU target."""
    runs = [r for r in RUNTIME_NAMES if not runtime_problem(info, r)]
    listed = info.get("targets") or []
    if not listed:
        return [f"{r}:{DEFAULT_ACCELERATOR[r]}" for r in runs]
    return [t["target"] for t in listed
            if t.get("available") and t["target"].split(":", 1)[0] in runs]  # fmt: skip


def split_budget(episodes: int, n: int) -> list[int]:
    """``episodes`` split as evenly as possible over ``n`` targets, the remainder first."""
    return [episodes // n + (i < episodes % n) for i in range(n)]


def slug(target: str) -> str:
    return target.replace(":", "-")


def run_per_target(
    cfg: SearchConfig,
    run_dir: Path,
    resumed: bool,
    device: Any,
    info: dict[str, Any],
    hooks: dict[str, Any],
    passes: Sequence[Any] | None = None,
    *,
    search_one: Callable[..., int],
) -> int:
    """``--target auto`` (module docstring); returns the exit code. ``search_one``: one search
    on the open device (``host.search.search_on``), called once per target."""
    targets = offered_targets(info)
    if not targets:
        return search_fail("the device offers no execution target this host can export for",
                     cfg.json, "runtime_unavailable")  # fmt: skip
    if cfg.episodes < len(targets):
        return search_fail(UsageError(
            f"--target auto searches {len(targets)} targets ({', '.join(targets)}) and needs "
            f"--episodes >= {len(targets)}, one per target at least"), cfg.json)  # fmt: skip
    if not resumed and (run_dir / "targets").exists():
        return search_fail(UsageError(f"{run_dir} already holds a --target auto run; use --resume "
                                f"{run_dir} or a new --out"), cfg.json)  # fmt: skip
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "run_config.json").write_text(cfg.to_json())
    quiet = bool(hooks.get("quiet"))
    codes: dict[str, int] = {}
    for i, (target, episodes) in enumerate(zip(targets, split_budget(cfg.episodes, len(targets)),
                                               strict=True)):  # fmt: skip
        sub = run_dir / "targets" / slug(target)
        again = (sub / "results.sqlite").exists() and resumed
        sub_cfg = cfg.replace(
            target=target, runtime=target.split(":", 1)[0], episodes=episodes, out=str(sub),
            resume=str(sub) if again else None, json=False,
        )  # fmt: skip
        if not quiet:
            print(f"target {target} ({i + 1} of {len(targets)}): {episodes} episodes -> {sub}",
                  file=sys.stderr, flush=True)  # fmt: skip
        code = search_one(sub_cfg, sub, again, device, info, hooks, passes)
        codes[target] = code
        if code == EXIT_INTERRUPTED:
            return search_interrupted(
                f"hadmc-host: interrupted; resume with: hadmc-host search --resume {run_dir}",
                cfg.json)  # fmt: skip
    merged = merge(run_dir, targets, codes, cfg)
    (run_dir / "summary.json").write_text(json.dumps(merged, indent=2, default=str))
    _print(merged, cfg, run_dir)
    if merged["best"] is not None:
        return EXIT_OK
    return EXIT_NO_MODEL if any(c in (EXIT_OK, EXIT_NO_MODEL) for c in codes.values()) else max(
        codes.values())


def merge(run_dir: Path, targets: list[str], codes: dict[str, int], cfg: SearchConfig
          ) -> dict[str, Any]:  # fmt: skip
    """The per-target summaries as one: every target's baseline, the front across targets (the
    same noise-robust dominance as one run's, on the fastest fp32 baseline), and the choice."""
    from hadmc.search.pareto import ParetoArchive
    from hadmc.search.reward import Objectives

    runs: list[dict[str, Any]] = []
    for t in targets:
        path = run_dir / "targets" / slug(t) / "summary.json"
        s = json.loads(path.read_text()) if path.is_file() else None
        runs.append({"target": t, "exit_code": codes.get(t), "summary": s})
    done = [r for r in runs if r["summary"] is not None]
    out: dict[str, Any] = {
        "run_dir": str(run_dir), "target": "auto", "strategy": cfg.strategy,
        "budget": cfg.episodes, "targets": [], "fastest_fp32_target": None, "front": [],
        "best": None, "ok": False,
    }  # fmt: skip
    for r in runs:
        s = r["summary"] or {}
        out["targets"].append({
            "target": r["target"], "exit_code": r["exit_code"],
            "run_dir": str(Path("targets") / slug(r["target"])),
            "baseline_latency_ms": (s.get("baseline") or {}).get("latency_ms"),
            "baseline_accuracy": (s.get("baseline") or {}).get("accuracy"),
            "measured": s.get("measured"), "episodes": s.get("budget"),
            "hypervolume": s.get("hypervolume"),
        })  # fmt: skip
    if not done:
        return out
    fastest = min(done, key=lambda r: r["summary"]["baseline"]["latency_ms"])
    base = fastest["summary"]["baseline"]
    out["fastest_fp32_target"] = fastest["target"]
    archive = ParetoArchive(Objectives.from_dict(base))
    rows: dict[str, dict[str, Any]] = {}
    for r in done:
        for row in r["summary"]["front"]:
            key = f"{r['target']}#{row['id']}"
            rows[key] = {
                **row, "target": r["target"],
                "artifact": str(Path("targets") / slug(r["target"]) / row["artifact"]),
                "speedup_vs_fastest_fp32": base["latency_ms"] / row["latency_ms"],
            }  # fmt: skip
            archive.add(key, Objectives.from_dict(row))
    front = [rows[str(e.candidate_id)] for e in archive.front()]
    out["front"] = sorted(front, key=lambda row: row["latency_ms"])
    # The choice: the fastest against the fastest fp32 target among rows within the limits
    # (each row's `feasible` is against its own target's baseline, as its run judged it),
    # and faster than that fastest fp32 baseline (a slower model is never the one to ship:
    # hadmc.search.pareto.ParetoArchive.best_under).
    ok = [
        row for row in out["front"]
        if row.get("feasible") and row["speedup_vs_fastest_fp32"] > 1.0
    ]  # fmt: skip
    if ok:
        best = max(ok, key=lambda row: row["speedup_vs_fastest_fp32"])
        out["best"] = {k: best[k] for k in ("target", "id", "artifact", "accuracy", "latency_ms",
                                            "speedup", "speedup_vs_fastest_fp32",
                                            "test_accuracy", "test_accuracy_ci95", "precision")}
        out["ok"] = True
    return out


def _print(merged: dict[str, Any], cfg: SearchConfig, run_dir: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    out = Console(stderr=cfg.json)
    if not out.is_terminal:
        out = Console(stderr=cfg.json, width=140)
    per = Table(title="targets (fp32 baselines)")
    for col in ("target", "baseline p50 ms", "vs fastest fp32", "measured", "exit"):
        per.add_column(col, justify="right")
    fastest = next((t for t in merged["targets"] if t["target"] == merged["fastest_fp32_target"]),
                   None)  # fmt: skip
    for t in merged["targets"]:
        ms = t["baseline_latency_ms"]
        ratio = "-" if ms is None or fastest is None else (
            f"{fastest['baseline_latency_ms'] / ms:.2f}")  # fmt: skip
        per.add_row(t["target"], "-" if ms is None else f"{ms:.3f}", ratio,
                    str(t["measured"] if t["measured"] is not None else "-"), str(t["exit_code"]))
    out.print(per)
    table = Table(title=f"Pareto front across targets ({merged['strategy']}, "
                        f"{merged['budget']} episodes in all)")  # fmt: skip
    for col in ("target", "id", "val acc %", "test acc %", "p50 ms", "speedup (own fp32)",
                "speedup (fastest fp32)", "precision", "feasible"):
        table.add_column(col, justify="right")
    for r in merged["front"]:
        test = "-" if r.get("test_accuracy") is None else f"{100 * r['test_accuracy']:.2f}"
        table.add_row(r["target"], str(r["id"]), f"{100 * r['accuracy']:.2f}", test,
                      f"{r['latency_ms']:.3f}", f"{r['speedup']:.2f}",
                      f"{r['speedup_vs_fastest_fp32']:.2f}", str(r["precision"]),
                      "-" if r.get("feasible") is None else ("yes" if r["feasible"] else "no"))
    out.print(table)
    best = merged["best"]
    if best is not None:
        out.print(
            f"best within the limits, fastest against {merged['fastest_fp32_target']} fp32: "
            f"{best['target']} candidate {best['id']} ({run_dir / best['artifact']}, "
            f"{best['speedup_vs_fastest_fp32']:.2f}x)"
        )
    else:
        print("hadmc-host search: no model within the limits on any target", file=sys.stderr)
    out.print(f"run directory: {run_dir} (one run per target under targets/)")
    if cfg.json:
        print(json.dumps(merged, default=str))
