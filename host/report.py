"""Run report: ``report.json`` + self-contained ``report.html`` + PNG plots from a run directory.

``render(run_dir)`` reads ``results.sqlite`` (host.store), replays the measured candidates in
insertion order through a ``ParetoArchive`` (front, hypervolume history, chosen model) and
writes the files next to the store. The schema of ``report.json`` is in docs/report-schema.md.
Simulated measurements are labelled ``simulated`` in the JSON, tables and plot titles.

Plots use matplotlib's object API with the Agg canvas (no pyplot global state, no display).
"""

from __future__ import annotations

import base64
import html
import json
import platform
import sys
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from hadmc.pareto import ParetoArchive
from hadmc.reward import Limits, Objectives
from host.store import ResultsStore

REPORT_SCHEMA_VERSION = 1
PLOTS = ("pareto", "hypervolume", "reward", "actions")
FRONT_COLUMNS = (
    "id", "accuracy_%", "latency_ms_p50", "peak_memory_mb", "size_kb", "energy_mj",
    "update_kb", "reward", "source",
)  # fmt: skip


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
        max_memory_mb=src.get("max_memory_mb"),
    )


def _source(metrics: Mapping[str, Any] | None, device: Mapping[str, Any] | None) -> str:
    for d in (metrics or {}, device or {}):
        if d.get("source"):
            return str(d["source"])
    return "unknown"


def _candidates(store: ResultsStore, device: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    out = []
    for rec in store.candidates():
        row = rec.to_dict()
        obj = _objectives(rec.objectives) or _objectives(rec.metrics)
        row["objectives"] = None if obj is None else obj.to_dict()
        row["measurement_source"] = _source(rec.metrics, device)
        row["on_front"] = False
        out.append(row)
    return out


def _analyse(
    cands: list[dict[str, Any]], baseline: Objectives | None, limits: Limits, choose_by: str
) -> dict[str, Any]:
    measured = [c for c in cands if c["status"] == "measured" and c["objectives"]]
    reference = baseline or (Objectives.from_dict(measured[0]["objectives"]) if measured else None)
    if reference is None:
        return {"front": [], "chosen": None, "hv": None}
    archive = ParetoArchive(reference)
    for c in measured:
        archive.add(c["id"], Objectives.from_dict(c["objectives"]))
    front_ids = set(archive.front_ids())
    by_id = {c["id"]: c for c in cands}
    for cid in front_ids:
        by_id[cid]["on_front"] = True
    best = archive.best_under(
        limits,
        score=(lambda e: by_id[e.candidate_id]["reward"]) if choose_by == "reward" else None,
    )
    front = [
        {
            "id": e.candidate_id,
            "objectives": e.objectives.to_dict(),
            "normalised": dict(
                zip(archive.hv_objectives, archive.normalised(e.objectives), strict=True)
            ),
            "reward": by_id[e.candidate_id]["reward"],
            "measurement_source": by_id[e.candidate_id]["measurement_source"],
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
        chosen = {
            "id": best.candidate_id,
            "rule": f"highest {choose_by} among feasible Pareto-front members",
            "objectives": best.objectives.to_dict(),
            "reward": by_id[best.candidate_id]["reward"],
            "artifact_path": by_id[best.candidate_id]["artifact_path"],
            "measurement_source": by_id[best.candidate_id]["measurement_source"],
        }
    return {"front": front, "chosen": chosen, "hv": hv}


# -- plots --------------------------------------------------------------------------------
def _save(fig: Figure, path: Path) -> None:
    FigureCanvasAgg(fig)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _plot_pareto(report: dict[str, Any], path: Path, tag: str) -> None:
    fig = Figure(figsize=(6.4, 4.6))
    ax = fig.add_subplot()
    rows = [c for c in report["candidates"] if c["objectives"]]
    others = [c for c in rows if not c["on_front"]]
    front = sorted((c for c in rows if c["on_front"]), key=lambda c: c["objectives"]["latency_ms"])
    ax.scatter([c["objectives"]["latency_ms"] for c in others],
               [100 * c["objectives"]["accuracy"] for c in others],
               s=18, c="0.6", label="dominated candidates")  # fmt: skip
    ax.plot([c["objectives"]["latency_ms"] for c in front],
            [100 * c["objectives"]["accuracy"] for c in front],
            "o-", c="tab:red", drawstyle="steps-post", label="Pareto front (all objectives)")  # fmt: skip
    base = report["baseline"]["objectives"]
    if base:
        ax.scatter([base["latency_ms"]], [100 * base["accuracy"]], marker="*", s=220,
                   c="tab:blue", zorder=5, label="baseline (uncompressed)")  # fmt: skip
    chosen = report["chosen"]
    if chosen:
        ax.scatter([chosen["objectives"]["latency_ms"]], [100 * chosen["objectives"]["accuracy"]],
                   s=160, facecolors="none", edgecolors="k", linewidths=2, zorder=6,
                   label="chosen")  # fmt: skip
    if report["limits"].get("max_latency_ms"):
        ax.axvline(report["limits"]["max_latency_ms"], ls="--", c="k", lw=1, label="latency limit")
    ax.set_xlabel("latency p50 (ms)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(f"Accuracy vs latency{tag}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    _save(fig, path)


def _plot_hv(report: dict[str, Any], path: Path, tag: str) -> None:
    fig = Figure(figsize=(6.4, 3.8))
    ax = fig.add_subplot()
    hist = (report["hypervolume"] or {}).get("history", [])
    ax.plot([h["evaluation"] for h in hist], [h["hypervolume"] for h in hist], "-", c="tab:green")
    objs = ", ".join((report["hypervolume"] or {}).get("objectives", []))
    ax.set_xlabel("measured candidates")
    ax.set_ylabel(f"hypervolume ({objs})")
    ax.set_title(f"Hypervolume vs evaluations{tag}")
    ax.grid(alpha=0.3)
    _save(fig, path)


def _plot_reward(report: dict[str, Any], path: Path, tag: str) -> None:
    fig = Figure(figsize=(6.4, 3.8))
    ax = fig.add_subplot()
    ok = [c for c in report["candidates"] if c["reward"] is not None]
    ax.scatter([c["episode"] for c in ok], [c["reward"] for c in ok], s=14, c="tab:blue",
               label="reward")  # fmt: skip
    if ok:
        best, running = [], float("-inf")
        for c in sorted(ok, key=lambda c: (c["episode"], c["id"])):
            running = max(running, c["reward"])
            best.append((c["episode"], running))
        ax.plot(
            [e for e, _ in best],
            [r for _, r in best],
            c="tab:orange",
            drawstyle="steps-post",
            label="best so far",
        )
    failed = [c["episode"] for c in report["candidates"] if c["status"] == "failed"]
    if failed:
        y = min((c["reward"] for c in ok), default=0.0)
        ax.scatter(failed, [y] * len(failed), marker="x", c="tab:red", label="failed (no reward)")
    ax.set_xlabel("episode")
    ax.set_ylabel("reward")
    ax.set_title(f"Reward per episode{tag}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    _save(fig, path)


def _counts(ax: Any, values: Sequence[Any], title: str) -> None:
    counts = Counter(str(v) for v in values)
    labels = sorted(counts)
    ax.bar(labels, [counts[k] for k in labels], color="tab:purple")
    ax.set_title(title, fontsize=9)
    ax.tick_params(labelsize=7)


def _hist(ax: Any, values: Sequence[float], title: str) -> None:
    ax.hist(values, bins=min(20, max(5, len(set(values)))), color="tab:cyan", edgecolor="k")
    ax.set_title(title, fontsize=9)
    ax.tick_params(labelsize=7)


def _plot_actions(report: dict[str, Any], path: Path, tag: str) -> None:
    acts = [c["actions"] or {} for c in report["candidates"]]
    keep = [float(v) for a in acts for v in a.get("pruning", [])]
    prec = [v for a in acts for v in a.get("quantization", [])]
    fusion = [v for a in acts for v in a.get("fusion", [])]
    dist = [a["distillation"] for a in acts if isinstance(a.get("distillation"), Mapping)]
    temps = [float(d["temperature"]) for d in dist if "temperature" in d]
    alphas = [float(d["alpha"]) for d in dist if "alpha" in d]
    scopes = [a["update"] for a in acts if "update" in a]
    fig = Figure(figsize=(9.6, 5.6))
    axes = fig.subplots(2, 3)
    _hist(axes[0][0], keep, "pruning: keep ratio (all groups)")
    _counts(axes[0][1], prec, "quantization: precision (all groups)")
    _counts(axes[0][2], fusion, "fusion: pattern (all groups)")
    _hist(axes[1][0], temps, "distillation: temperature T")
    _hist(axes[1][1], alphas, "distillation: alpha")
    _counts(axes[1][2], scopes, "update: scope")
    fig.suptitle(f"Action distributions per agent{tag}", fontsize=11)
    _save(fig, path)


# -- HTML ---------------------------------------------------------------------------------
def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in r) + "</tr>" for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _fmt(v: Any, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def front_table(report: Mapping[str, Any], which: str = "pareto_front") -> list[dict[str, str]]:
    """Rows (dicts keyed by ``FRONT_COLUMNS``) for printing the Pareto front, e.g. with rich:
    ``t = Table(*FRONT_COLUMNS); [t.add_row(*r.values()) for r in front_table(report)]``.
    Sorted by latency (fastest first), which reads as the accuracy/latency trade-off."""
    rows = []
    for f in sorted(report[which], key=lambda f: f["objectives"]["latency_ms"]):
        o = f["objectives"]
        rows.append({
            "id": str(f["id"]),
            "accuracy_%": _fmt(100 * o["accuracy"], ".2f"),
            "latency_ms_p50": _fmt(o["latency_ms"], ".3f"),
            "peak_memory_mb": _fmt(o["memory_mb"], ".1f"),
            "size_kb": _fmt(o["size_bytes"] / 1024, ".1f"),
            "energy_mj": _fmt(o["energy_mj"], ".3f"),
            "update_kb": _fmt(o["update_bytes"] / 1024, ".1f"),
            "reward": _fmt(f.get("reward"), ".4f"),
            "source": str(f.get("measurement_source", "unknown")),
        })  # fmt: skip
    return rows


def _html(report: dict[str, Any], png: dict[str, bytes]) -> str:
    sim = " <b>[SIMULATED: analytic estimates, not measurements]</b>" if report["simulated"] else ""
    front = front_table(report)
    cands = [
        [c["id"], c["episode"], c["status"], _fmt(c["reward"], ".4f"),
         _fmt(c["objectives"] and 100 * c["objectives"]["accuracy"], ".2f"),
         _fmt(c["objectives"] and c["objectives"]["latency_ms"], ".3f"),
         _fmt(c["objectives"] and c["objectives"]["memory_mb"], ".1f"),
         _fmt(c["objectives"] and c["objectives"]["size_bytes"], "d"),
         (c["metrics"] or {}).get("energy_status", "-"), c["measurement_source"],
         "yes" if c["on_front"] else "", c["error"] or ""]
        for c in report["candidates"]
    ]  # fmt: skip
    imgs = "".join(
        f'<h3>{name}</h3><img alt="{name}" src="data:image/png;base64,'
        f'{base64.b64encode(data).decode()}"/>'
        for name, data in png.items()
    )
    chosen = report["chosen"]
    chosen_html = (
        _table(["key", "value"], [[k, json.dumps(v)] for k, v in chosen.items()])
        if chosen
        else "<p>No Pareto-front member satisfies the limits.</p>"
    )
    hv = report["hypervolume"] or {}
    return f"""<!DOCTYPE html><html><head><meta charset="utf-8"><title>hadmc report</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1200px}}table{{border-collapse:collapse;
font-size:12px;margin:1em 0}}td,th{{border:1px solid #ccc;padding:3px 6px}}th{{background:#eee}}
img{{max-width:100%}}pre{{background:#f6f6f6;padding:1em;overflow:auto}}</style></head><body>
<h1>hadmc run report{sim}</h1>
<p>Run directory: {html.escape(report["run_dir"])} &middot; generated {report["generated_at"]}
&middot; {report["counts"]["measured"]} measured, {report["counts"]["failed"]} failed</p>
<h2>Device</h2><pre>{html.escape(json.dumps(report["device"], indent=1))}</pre>
<h2>Baseline</h2><pre>{html.escape(json.dumps(report["baseline"]["objectives"], indent=1))}</pre>
<h2>Chosen model</h2>{chosen_html}
<h2>Pareto front</h2>{_table(FRONT_COLUMNS, [list(r.values()) for r in front])}
<p>Hypervolume {_fmt(hv.get("final"), ".4f")} over {
        html.escape(", ".join(hv.get("objectives", [])))
    },
reference point {hv.get("reference_point")} ({html.escape(hv.get("normalisation", ""))}).</p>
<h2>Plots</h2>{imgs}
<h2>All candidates</h2>{
        _table(
            [
                "id",
                "episode",
                "status",
                "reward",
                "acc %",
                "latency ms",
                "memory MB",
                "size B",
                "energy",
                "source",
                "front",
                "error",
            ],
            cands,
        )
    }
<h2>Run configuration</h2><pre>{html.escape(json.dumps(report["run"]["config"], indent=1))}</pre>
<h2>Provenance</h2><pre>{html.escape(json.dumps(report["provenance"], indent=1))}</pre>
</body></html>"""


def render(run_dir: str | Path) -> dict[str, Any]:
    """Write ``report.json``, ``report.html`` and ``plots/*.png`` into ``run_dir``; return the
    report dict. Raises ``FileNotFoundError`` when ``run_dir`` holds no results store."""
    run_dir = Path(run_dir)
    if not (run_dir / "results.sqlite").is_file():
        raise FileNotFoundError(f"no results.sqlite in {run_dir}: not a hadmc run directory")
    with ResultsStore(run_dir) as store:
        info = store.run_info()
        cands = _candidates(store, info["device"])
        schema = store.schema_version
    config = info["config"] or {}
    limits = _limits(config)
    baseline = _objectives(info["baseline"])
    choose_by = str(config.get("choose_by", "reward"))
    if choose_by not in ("reward", "accuracy"):
        raise ValueError(f"choose_by must be 'reward' or 'accuracy', got {choose_by!r}")
    analysis = _analyse(cands, baseline, limits, choose_by)
    sources = sorted({c["measurement_source"] for c in cands})
    simulated = "simulated" in sources or (info["device"] or {}).get("source") == "simulated"
    try:
        version = metadata.version("hadmc")
    except metadata.PackageNotFoundError:
        version = "unknown"
    plots_dir = run_dir / "plots"
    plots_dir.mkdir(exist_ok=True)
    report: dict[str, Any] = {
        "schema_version": REPORT_SCHEMA_VERSION,
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "run_dir": str(run_dir.resolve()),
        "simulated": simulated,
        "run": {"config": config},
        "device": info["device"],
        "baseline": {"metrics": info["baseline"], "objectives": baseline and baseline.to_dict()},
        "limits": {k: v for k, v in vars(limits).items()},
        "counts": {
            "total": len(cands),
            "measured": sum(c["status"] == "measured" for c in cands),
            "failed": sum(c["status"] == "failed" for c in cands),
        },
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
    tag = "  [simulated]" if simulated else ""
    png: dict[str, bytes] = {}
    for name, fn in (("pareto", _plot_pareto), ("hypervolume", _plot_hv),
                     ("reward", _plot_reward), ("actions", _plot_actions)):  # fmt: skip
        path = plots_dir / f"{name}.png"
        fn(report, path, tag)
        png[name] = path.read_bytes()
    (run_dir / "report.json").write_text(json.dumps(report, indent=1, allow_nan=False))
    (run_dir / "report.html").write_text(_html(report, png), encoding="utf-8")
    return report
