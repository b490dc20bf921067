"""A finished search's outputs: the JSON summary, Pareto artifacts, best model, report, table.

Selection is on validation accuracy (the archive and ``best_under``); every front entry and the
chosen model also carry the held-out test accuracy with its 95 % Wilson interval
(``test_accuracy``, ``test_accuracy_ci95``), which nothing in the search ever looked at.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from hadmc.stats import binomial_ci95
from host.search_eval import copy_artifact
from host.search_table import search_front_table


def _test_fields(metrics: dict[str, Any]) -> dict[str, Any]:
    acc, n = metrics.get("test_accuracy"), int(metrics.get("test_n") or 0)
    if acc is None or n == 0:
        return {"test_accuracy": None, "test_accuracy_ci95": None, "test_n": 0}
    lo, hi = binomial_ci95(round(acc * n), n)
    return {"test_accuracy": acc, "test_accuracy_ci95": [lo, hi], "test_n": n}


def summary(run: Any) -> dict[str, Any]:
    rows = {r.id: r for r in run.store.candidates()}
    front = []
    for e in sorted(run.archive.front(), key=lambda e: e.objectives.latency_ms):
        rec = rows[e.candidate_id]
        m = rec.metrics or {}
        front.append(
            {
                "id": rec.id,
                "artifact": rec.artifact_relpath,  # relative to the run directory
                **e.objectives.to_dict(),
                **_test_fields(m),
                "speedup": run.baseline.latency_ms / e.objectives.latency_ms,
                "precision": m.get("precision"),
                "feasible": m.get("feasible"),
                "source": m.get("source"),
                "reward": rec.reward,
                "actions": rec.actions,
            }
        )
    # Chosen like host.report does by default: highest reward among feasible front members.
    best = run.archive.best_under(run.limits, score=lambda e: rows[e.candidate_id].reward)
    b = run.baseline
    measured = [r for r in rows.values() if r.status == "measured"]
    collapsed = sum((r.metrics or {}).get("accuracy", 0.0) <= run.archive.min_accuracy
                    for r in measured)  # fmt: skip
    out: dict[str, Any] = {
        "run_dir": str(run.run_dir),
        "strategy": run.strategy_label,
        "device": run.evaluator.device.name,
        "simulated": any((r.metrics or {}).get("source") == "simulated" for r in measured),
        "model": run.model_label,
        "budget": run.budget,
        "episodes": run.budget,
        "proposals": run.proposals,
        "stop_reason": run.stop_reason or None,
        "candidates": len(rows),
        "measured": len(measured),
        "failed": sum(r.status == "failed" for r in rows.values()),
        "collapsed_measured": collapsed,
        "measurements_this_process": run.evaluator.measurements,
        "cache_hits": run.evaluator.cache_hits,
        "hypervolume": run.archive.hypervolume(),
        "hypervolume_history": [h for _, _, h in run.archive.history],
        "baseline": {**b.to_dict(), **_test_fields(run.baseline_metrics)},
        "limits": {
            "max_accuracy_drop": run.limits.max_accuracy_drop,
            "max_latency_ms": run.limits.max_latency_ms,
            "max_memory_mib": run.limits.max_memory_mib,
        },
        "surrogate": run.surrogate.report(),
        "int8_probe": json.loads(run.int8_probe.to_json()) if run.int8_probe else None,
        # A pool of boards: each board's baseline, candidates measured, and the boards lost.
        "pool": run.evaluator.device.describe() if hasattr(run.evaluator.device, "describe")
        else None,
        "front": front,
        "best": None,
        # host.errors' words for exit 3: no working model at all, or none within the limits.
        "ok": best is not None,
        "error_code": None if best is not None else (
            "none_within_limits" if front else "no_working_model"),
    }  # fmt: skip
    if best is not None:
        m = rows[best.candidate_id].metrics or {}
        out["best"] = {
            "id": best.candidate_id,
            **best.objectives.to_dict(),
            **_test_fields(m),
            "speedup": b.latency_ms / best.objectives.latency_ms,
            "accuracy_drop_points": 100 * (b.accuracy - best.objectives.accuracy),
        }
    return out


def _limits_text(lim: Any) -> str:
    """The limits in force, in words ('' when none)."""
    parts = [f"max accuracy drop {lim.max_accuracy_drop:g} points"] if lim.max_accuracy_drop \
        is not None else []  # fmt: skip
    if lim.max_latency_ms is not None:
        parts.append(f"max latency {lim.max_latency_ms:g} ms")
    if lim.max_memory_mib is not None:
        parts.append(f"max memory {lim.max_memory_mib:g} MiB")
    return ", ".join(parts)


def _closest(run: Any, summary: dict[str, Any]) -> str:
    """The limits and the front member nearest to meeting them (smallest summed violation)."""
    from hadmc.search.reward import Objectives, limit_violations

    lim = run.limits

    def excess(row: dict[str, Any]) -> float:
        return sum(limit_violations(Objectives.from_dict(row), run.baseline, lim).values())

    within = [row for row in summary["front"] if excess(row) == 0]
    if within:  # within every limit, but none faster than the baseline (best_under)
        c = min(within, key=lambda row: row["latency_ms"])
        return (
            f"no front member within the limits is faster than the fp32 baseline "
            f"({run.baseline.latency_ms:.3f} ms); the closest is candidate {c['id']} at "
            f"{c['latency_ms']:.3f} ms: keep the original model, or search further "
            "(--resume DIR --episodes N)"
        )
    c = min(summary["front"], key=excess)
    drop = 100 * (run.baseline.accuracy - c["accuracy"])
    return (
        f"no front member meets the limits ({_limits_text(lim)}); closest: candidate {c['id']}, "
        f"{c['latency_ms']:.3f} ms, {drop:.2f} points drop, {c['memory_mib']:.1f} MiB "
        "(results.sqlite has every candidate; relax a limit, or raise --episodes / "
        "--finetune-steps)"
    )


def _no_model(run: Any, summary: dict[str, Any]) -> str:
    """Why there is no chosen model (exit 3), in one line."""
    if summary["front"]:
        return _closest(run, summary)
    failed = run.store.candidates("failed") if not summary["measured"] else []
    if failed:
        return f"every candidate failed; the first: {' '.join(str(failed[0].error).split())}"
    return (
        "no working model: every measured candidate kept half of the baseline's accuracy"
        " or less (all are in results.sqlite); try more --finetune-steps or --episodes"
    )


def finish(run: Any, summary: dict[str, Any]) -> None:
    from rich.console import Console

    # Paths in summary.json are relative to the run directory, like report.json's, so a moved
    # run directory stays valid; the terminal lines below print them joined to it.
    pareto_dir = run.run_dir / "pareto"
    for row in summary["front"]:
        src = run.store.artifact_file(int(row["id"]))
        dest = copy_artifact(src, pareto_dir / f"candidate-{row['id']}.{run.ext}")
        row["pareto_path"] = run.store.relative(dest)
    best = summary["best"]
    if best is not None:
        src = run.store.artifact_file(int(best["id"]))
        assert src is not None
        best["path"] = run.store.relative(copy_artifact(src, run.run_dir / f"best.{run.ext}"))
    (run.run_dir / "surrogate.json").write_text(json.dumps(summary["surrogate"], indent=1))
    if summary.get("pool"):  # the report reads the store: the pool as it ended, lost boards too
        device = run.store.run_info()["device"] or {}
        run.store.set_run(device={**device, "pool": summary["pool"]})
    try:
        from host.report import render

        render(run.run_dir)
        summary["report"] = [str(run.run_dir / "report.json"), str(run.run_dir / "report.html")]
    except Exception as exc:  # noqa: BLE001 - the results stand without the report
        print(f"hadmc-host search: warning: report not rendered: {exc}", file=sys.stderr)
    (run.run_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str))

    out = Console(stderr=run.cfg.json)
    if not out.is_terminal:
        out = Console(stderr=run.cfg.json, width=140)  # logs/pipes: no truncated columns
    out.print(search_front_table(summary, run.baseline))
    out.print(f"run directory: {run.run_dir}")
    out.print(f"results: {run.store.path}   Pareto artifacts: {pareto_dir}")
    if summary.get("stop_reason"):
        out.print(f"stopped early: {summary['stop_reason']}")
    if best is not None:
        test = ""
        if best.get("test_accuracy") is not None:
            lo, hi = best["test_accuracy_ci95"]
            test = (f", test accuracy {100 * best['test_accuracy']:.2f} %"
                    f" [{100 * lo:.2f}, {100 * hi:.2f}]")  # fmt: skip
        # The rule that chose it: the highest reward among front members within the limits.
        limits = _limits_text(run.limits)
        rule = f"best by reward within {limits}" if limits else "best by reward (no limits)"
        out.print(
            f"{rule}: {run.run_dir / best['path']} (speedup {best['speedup']:.2f}x, "
            f"accuracy drop {best['accuracy_drop_points']:.2f} points on validation{test})"
        )
    else:
        # A plain line on stderr (no wrapping): the reason for exit 3, beside the exit code.
        print(f"hadmc-host search: {summary['error_code']}: {_no_model(run, summary)}",
              file=sys.stderr, flush=True)  # fmt: skip
    if run.cfg.json:
        print(json.dumps(summary, default=str))
    run.store.close()
