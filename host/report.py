"""Run report: ``report.json`` + self-contained ``report.html`` + PNG plots from a run directory.

``render(run_dir)`` reads ``results.sqlite`` (host.store), replays the measured candidates in
insertion order through a ``ParetoArchive`` (front, hypervolume history, chosen model) and
writes the files next to the store. The schema of ``report.json`` is in docs/report-schema.md;
every path in it is relative to the run directory, so a moved or copied run directory keeps a
valid report (re-rendering one that was moved is also safe).

Split: this module builds the report dict; ``host.report_plots`` draws the static PNGs,
``host.report_interactive`` the optional plotly figure, ``host.report_html`` the page.
Simulated measurements are labelled ``simulated`` and predicted ones (``metrics["predicted"]``)
``predicted`` in the JSON, the tables, the plots and the page heading.
"""

from __future__ import annotations

import filecmp
import platform
import sys
import time
from collections import Counter
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from hadmc.search.pareto import ParetoArchive
from hadmc.search.reward import Limits, Objectives
from host.report_pool import pool_fields
from host.report_rows import FRONT_COLUMNS, front_table  # noqa: F401 - public names
from host.store import ResultsStore

REPORT_SCHEMA_VERSION = 3
PLOTS = ("pareto", "hypervolume", "reward", "actions")
def _objectives(d: Mapping[str, Any] | None) -> Objectives | None:
    """Objectives from either an objectives dict or a metrics dict; None when incomplete."""
    if not d:
        return None
    try:
        return Objectives.from_dict(d) if "latency_ms" in d else Objectives.from_metrics(d)
    except (KeyError, TypeError, ValueError):
        return None


def _limits(config: Mapping[str, Any]) -> Limits:
    src = config.get("limits") if isinstance(config.get("limits"), Mapping) else config
    return Limits(
        max_latency_ms=src.get("max_latency_ms"),
        max_accuracy_drop=src.get("max_accuracy_drop"),
        max_memory_mib=src.get("max_memory_mib"),
    )


def _source(metrics: Mapping[str, Any] | None, device: Mapping[str, Any] | None) -> str:
    for d in (metrics or {}, device or {}):
        if d.get("source"):
            return str(d["source"])
    return "unknown"


def measurement_kind(metrics: Mapping[str, Any] | None, source: str) -> str:
    """``predicted`` (a model's estimate, e.g. a surrogate: ``metrics["predicted"]`` true),
    ``simulated`` (the analytic ``sim:`` device) or ``measured``. Predicted wins: a number
    predicted for a real board is still not a measurement."""
    if (metrics or {}).get("predicted") is True:
        return "predicted"
    return "simulated" if source == "simulated" else "measured"


def config_summary(actions: Mapping[str, Any] | None) -> dict[str, Any]:
    """The few numbers that tell one configuration from another (hover text, tables)."""
    a = actions or {}
    keep = [float(v) for v in a.get("pruning", [])]
    dist = a.get("distillation") if isinstance(a.get("distillation"), Mapping) else {}
    return {
        "mean_keep_ratio": sum(keep) / len(keep) if keep else None,
        "precisions": dict(sorted(Counter(str(p) for p in a.get("quantization", [])).items())),
        "temperature": dist.get("temperature"),
        "alpha": dist.get("alpha"),
        "update_scope": a.get("update_scope", a.get("update")),  # "update": stored before
    }


def versus_baseline(obj: Objectives, base: Objectives | None) -> dict[str, float | None] | None:
    """Ratios a user compares: > 1 speedup is faster; < 1 size/memory ratio is smaller."""
    if base is None:
        return None

    def ratio(a: float, b: float) -> float | None:
        return a / b if b else None

    return {
        "speedup": ratio(base.latency_ms, obj.latency_ms),
        "size_ratio": ratio(obj.size_bytes, base.size_bytes),
        "memory_ratio": ratio(obj.memory_mib, base.memory_mib),
        "accuracy_drop_points": 100.0 * (base.accuracy - obj.accuracy),
    }


def limits_met(obj: Objectives, base: Objectives | None, limits: Limits) -> list[dict[str, Any]]:
    """One row per limit that was set: its value, the model's value and whether it is met."""
    rows = []
    if limits.max_latency_ms is not None:
        rows.append(("max_latency_ms", limits.max_latency_ms, obj.latency_ms))
    if limits.max_memory_mib is not None:
        rows.append(("max_memory_mib", limits.max_memory_mib, obj.memory_mib))
    if limits.max_accuracy_drop is not None and base is not None:
        drop = 100.0 * (base.accuracy - obj.accuracy)
        rows.append(("max_accuracy_drop", limits.max_accuracy_drop, drop))
    return [{"limit": k, "value": v, "actual": a, "met": a <= v} for k, v, a in rows]


def test_fields(metrics: Mapping[str, Any] | None) -> dict[str, Any]:
    """``test_accuracy``, ``test_accuracy_ci95`` ([lo, hi]) and ``test_n`` of a metrics dict,
    each None when absent. The interval is the stored one, else the 95 % Wilson interval from
    ``test_n`` (the same ``hadmc.stats.binomial_ci95`` the search's summary uses)."""
    m = metrics or {}
    acc, ci, n = m.get("test_accuracy"), m.get("test_accuracy_ci95"), m.get("test_n")
    if acc is not None and ci is None and n:
        from hadmc.stats import binomial_ci95

        ci = list(binomial_ci95(round(acc * n), int(n)))
    return {"test_accuracy": acc, "test_accuracy_ci95": ci, "test_n": n or None}


def latency_fields(metrics: Mapping[str, Any] | None) -> dict[str, Any]:
    """How the latency objective was timed: ``latency_timing`` "paired" (interleaved with the
    baseline in one window; the objective is the ratio x the baseline's p50, see
    ``host.search_eval.metrics_of``) with ``latency_ratio`` and its ``latency_ratio_ci95``, or
    "alone" (None for both)."""
    m = metrics or {}
    if m.get("latency_ms_p50_paired") is None:
        return {"latency_timing": "alone", "latency_ratio": None, "latency_ratio_ci95": None}
    return {
        "latency_timing": "paired",
        "latency_ratio": m.get("latency_ratio"),
        "latency_ratio_ci95": m.get("latency_ratio_ci95"),
    }


# More than half of a model's nodes on the CPU: the accelerator did not really run it, and its
# latency says more about the fallback than about the accelerator (issue 14, provenance).
MOSTLY_CPU_FALLBACK = 0.5


def execution_fields(provenance: Mapping[str, Any] | None) -> dict[str, Any]:
    """Where a measurement ran: ``target`` ("<runtime>:<accelerator>"), the
    ``execution_provider`` behind it, the ``provider_options`` passed, the
    ``cpu_fallback_fraction`` of nodes the accelerator left to the CPU (None where the agent
    did not profile placement: the CPU targets), and ``mostly_cpu_fallback`` when that share is
    over ``MOSTLY_CPU_FALLBACK``."""
    p = provenance or {}
    fallback = p.get("cpu_fallback_fraction")
    return {
        "target": p.get("target") or None,
        "execution_provider": p.get("execution_provider") or None,
        "provider_options": p.get("provider_options") or {},
        "cpu_fallback_fraction": fallback,
        "mostly_cpu_fallback": fallback is not None and fallback > MOSTLY_CPU_FALLBACK,
    }


def _rel(run_dir: Path, path: Path) -> str:
    return path.resolve().relative_to(run_dir.resolve()).as_posix()


def _pareto_copy(run_dir: Path, cid: int) -> str | None:
    """``pareto/candidate-<id>.<ext>`` as the search's finish() copies front members."""
    found = sorted((run_dir / "pareto").glob(f"candidate-{cid}.*"))
    return _rel(run_dir, found[0]) if found else None


def _best_copy(run_dir: Path, artifact: str | None) -> str | None:
    """``best.<ext>`` when it is a copy of the chosen artifact (not a stale one from before a
    re-render with other settings). copy2 keeps mtimes, so the shallow compare is cheap."""
    if artifact is None or not (run_dir / artifact).is_file():
        return None
    suffix = Path(artifact).suffix
    best = run_dir / f"best{suffix}"
    if best.is_file() and filecmp.cmp(best, run_dir / artifact, shallow=True):
        return best.name
    return None


def _candidates(
    store: ResultsStore, device: Mapping[str, Any] | None, base: Objectives | None
) -> list[dict[str, Any]]:
    out = []
    for rec in store.candidates():
        row = rec.to_dict()
        # report.json holds run-dir relative paths only (the record's absolute one is local).
        row["artifact_path"] = row.pop("artifact_relpath")
        row["artifact_exists"] = rec.artifact_path is not None and Path(rec.artifact_path).is_file()
        obj = _objectives(rec.objectives) or _objectives(rec.metrics)
        row["objectives"] = None if obj is None else obj.to_dict()
        row["versus_baseline"] = None if obj is None else versus_baseline(obj, base)
        row["measurement_source"] = _source(rec.metrics, device)
        row["measurement_kind"] = measurement_kind(rec.metrics, row["measurement_source"])
        row["config_summary"] = config_summary(rec.actions)
        row["on_front"] = False
        out.append(row)
    return out


def _entry(c: Mapping[str, Any]) -> dict[str, Any]:
    """Keys every front row and the chosen model share (from its candidate row)."""
    return {
        "id": c["id"],
        "objectives": c["objectives"],
        "versus_baseline": c["versus_baseline"],
        "reward": c["reward"],
        "measurement_source": c["measurement_source"],
        "measurement_kind": c["measurement_kind"],
        **test_fields(c["metrics"]),
        **latency_fields(c["metrics"]),
        **execution_fields(c.get("provenance")),
        **pool_fields(c.get("provenance")),
        "artifact_path": c["artifact_path"],
        "config_summary": c["config_summary"],
    }


def _analyse(
    run_dir: Path,
    cands: list[dict[str, Any]],
    baseline: Objectives | None,
    limits: Limits,
    choose_by: str,
) -> dict[str, Any]:
    measured = [c for c in cands if c["status"] == "measured" and c["objectives"]]
    reference = baseline or (Objectives.from_dict(measured[0]["objectives"]) if measured else None)
    if reference is None:
        return {"front": [], "chosen": None, "hv": None}
    archive = ParetoArchive(reference)
    for c in measured:
        archive.add(c["id"], Objectives.from_dict(c["objectives"]))
    by_id = {c["id"]: c for c in cands}
    for cid in archive.front_ids():
        by_id[cid]["on_front"] = True
    best = archive.best_under(
        limits,
        score=(lambda e: by_id[e.candidate_id]["reward"]) if choose_by == "reward" else None,
    )
    front = [
        {
            **_entry(by_id[e.candidate_id]),
            "normalised": dict(
                zip(archive.hv_objectives, archive.normalised(e.objectives), strict=True)
            ),
            "pareto_path": _pareto_copy(run_dir, int(e.candidate_id)),
        }
        for e in archive.front()
    ]
    hv = {
        "objectives": list(archive.hv_objectives),
        "reference_point": archive.reference_point.tolist(),
        "normalisation": "accuracy -> 1 - acc/baseline_acc; others -> value/baseline; minimised",
        "normalised_against": "baseline"
        if baseline
        else "first measured candidate (no baseline stored)",
        "final": archive.hypervolume(),
        "history": [
            {"evaluation": n, "candidate_id": cid, "hypervolume": h}
            for n, cid, h in archive.history
        ],
    }
    chosen = None
    if best is not None:
        c = by_id[best.candidate_id]
        chosen = {
            **_entry(c),
            "rule": f"highest {choose_by} among Pareto-front members within the limits and "
            "faster than the fp32 baseline",
            "limits_met": limits_met(best.objectives, baseline, limits),
            "pareto_path": _pareto_copy(run_dir, int(best.candidate_id)),
            "best_path": _best_copy(run_dir, c["artifact_path"]),
        }
    return {"front": front, "chosen": chosen, "hv": hv}


def build(run_dir: str | Path) -> dict[str, Any]:
    """The report dict of ``run_dir`` (what ``report.json`` holds), writing nothing.
    Raises ``FileNotFoundError`` when ``run_dir`` holds no results store."""
    run_dir = Path(run_dir)
    if not (run_dir / "results.sqlite").is_file():
        raise FileNotFoundError(f"no results.sqlite in {run_dir}: not a hadmc run directory")
    with ResultsStore(run_dir) as store:
        info = store.run_info()
        baseline = _objectives(info["baseline"])
        cands = _candidates(store, info["device"], baseline)
        schema = store.schema_version
    config = info["config"] or {}
    limits = _limits(config)
    choose_by = str(config.get("choose_by", "reward"))
    if choose_by not in ("reward", "accuracy"):
        raise ValueError(f"choose_by must be 'reward' or 'accuracy', got {choose_by!r}")
    analysis = _analyse(run_dir, cands, baseline, limits, choose_by)
    sources = sorted({c["measurement_source"] for c in cands})
    simulated = "simulated" in sources or (info["device"] or {}).get("source") == "simulated"
    try:
        version = metadata.version("hadmc")
    except metadata.PackageNotFoundError:
        version = "unknown"
    return {
        "schema_version": REPORT_SCHEMA_VERSION,
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "run_dir": str(run_dir.resolve()),
        "simulated": simulated,
        "run": {"config": config},
        # Coupled channel groups the pruning head never saw (hadmc.compress.pruning), and why.
        "unprunable_groups": config.get("unprunable_groups", []),
        "device": info["device"],
        "baseline": {
            "metrics": info["baseline"],
            "objectives": baseline and baseline.to_dict(),
            **test_fields(info["baseline"]),
            **execution_fields((info["baseline"] or {}).get("provenance")),
        },
        "limits": dict(vars(limits)),
        "counts": {
            "total": len(cands),
            "measured": sum(c["status"] == "measured" for c in cands),
            "failed": sum(c["status"] == "failed" for c in cands),
            "predicted": sum(c["measurement_kind"] == "predicted" for c in cands),
        },
        # The search's surrogate: predicted-figure quality (label "predicted"), from
        # surrogate.json when the search wrote one.
        "surrogate": _run_file(run_dir, "surrogate.json"),
        # Stages the device measured slower with int8, kept float (host.int8_probe).
        "int8_probe": _run_file(run_dir, "int8_probe.json"),
        "candidates": cands,
        "pareto_front": analysis["front"],
        "chosen": analysis["chosen"],
        "hypervolume": analysis["hv"],
        "plots": {name: f"plots/{name}.png" for name in PLOTS},
        "provenance": {
            "hadmc_version": version,
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "store_schema_version": schema,
            "measurement_sources": sources,
        },
    }


def _run_file(run_dir: Path, name: str) -> dict[str, Any] | None:
    """A JSON file the search wrote into the run directory, or None."""
    import json

    path = run_dir / name
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def render(run_dir: str | Path) -> dict[str, Any]:
    """Write ``report.json``, ``report.html`` and ``plots/*.png`` into ``run_dir``; return the
    report dict. Works from any working directory and after the run directory was moved.
    Raises ``FileNotFoundError`` when ``run_dir`` holds no results store."""
    import json

    from host.report_html import page
    from host.report_interactive import pareto_div
    from host.report_plots import draw_all

    run_dir = Path(run_dir)
    report = build(run_dir)
    png = draw_all(report, run_dir / "plots")
    interactive, why_not = pareto_div(report)
    report["interactive"] = {"pareto": interactive is not None, "unavailable_reason": why_not}
    (run_dir / "report.json").write_text(json.dumps(report, indent=1, allow_nan=False))
    (run_dir / "report.html").write_text(page(report, png, interactive), encoding="utf-8")
    return report
