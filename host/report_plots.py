"""Static PNG plots of a run report (``plots/*.png``): they work in any viewer, offline and in
docs, where the interactive plotly figure (``host.report_interactive``) cannot.

matplotlib's object API with the Agg canvas: no pyplot global state, no display needed.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from hadmc.compress.registry import action_series


def title_tag(report: Mapping[str, Any]) -> str:
    """Suffix for plot titles, so an estimate is never mistaken for a measurement."""
    tags = ["simulated"] if report["simulated"] else []
    if report["counts"].get("predicted"):
        tags.append("some points predicted")
    return f"  [{', '.join(tags)}]" if tags else ""


def _save(fig: Figure, path: Path) -> None:
    FigureCanvasAgg(fig)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _xy(rows: Sequence[Mapping[str, Any]]) -> tuple[list[float], list[float]]:
    return (
        [c["objectives"]["latency_ms"] for c in rows],
        [100 * c["objectives"]["accuracy"] for c in rows],
    )


def _plot_pareto(report: dict[str, Any], path: Path, tag: str) -> None:
    fig = Figure(figsize=(6.4, 4.6))
    ax = fig.add_subplot()
    rows = [c for c in report["candidates"] if c["objectives"]]
    others = [c for c in rows if not c["on_front"]]
    front = sorted((c for c in rows if c["on_front"]), key=lambda c: c["objectives"]["latency_ms"])
    ax.scatter(*_xy(others), s=18, c="0.6", label="dominated candidates")
    ax.plot(*_xy(front), "o-", c="tab:red", drawstyle="steps-post",
            label="Pareto front (all objectives)")  # fmt: skip
    predicted = [c for c in rows if c["measurement_kind"] == "predicted"]
    if predicted:
        ax.scatter(*_xy(predicted), s=70, facecolors="none", edgecolors="tab:orange",
                   linewidths=1.5, zorder=4, label="predicted, not measured")  # fmt: skip
    base = report["baseline"]["objectives"]
    if base:
        ax.scatter([base["latency_ms"]], [100 * base["accuracy"]], marker="*", s=220,
                   c="tab:blue", zorder=5, label="baseline (uncompressed)")  # fmt: skip
    chosen = report["chosen"]
    if chosen:
        ax.scatter(*_xy([chosen]), s=160, facecolors="none", edgecolors="k", linewidths=2,
                   zorder=6, label="chosen")  # fmt: skip
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
        ax.plot([e for e, _ in best], [r for _, r in best], c="tab:orange",
                drawstyle="steps-post", label="best so far")  # fmt: skip
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
    """One panel per series of every compression pass (``hadmc.compress.registry``), three a
    row: a histogram for numbers (keep ratio, T, alpha), counts for choices."""
    series = action_series([c["actions"] or {} for c in report["candidates"]])
    cols = 3
    rows = max(1, math.ceil(len(series) / cols))
    fig = Figure(figsize=(9.6, 2.8 * rows))
    axes = list(fig.subplots(rows, cols, squeeze=False).flat)
    for ax, s in zip(axes, series, strict=False):
        (_hist if s.numeric else _counts)(ax, s.values, s.title)
    for ax in axes[len(series) :]:
        ax.set_axis_off()
    fig.suptitle(f"Action distributions per agent{tag}", fontsize=11)
    _save(fig, path)


DRAW: dict[str, Callable[[dict[str, Any], Path, str], None]] = {
    "pareto": _plot_pareto,
    "hypervolume": _plot_hv,
    "reward": _plot_reward,
    "actions": _plot_actions,
}


def draw_all(report: dict[str, Any], plots_dir: Path) -> dict[str, bytes]:
    """Write every plot of ``report["plots"]`` into ``plots_dir``; return name -> PNG bytes
    (the page inlines them, so it stays one self-contained file)."""
    plots_dir.mkdir(parents=True, exist_ok=True)
    tag = title_tag(report)
    png: dict[str, bytes] = {}
    for name in report["plots"]:
        path = plots_dir / f"{name}.png"
        DRAW[name](report, path, tag)
        png[name] = path.read_bytes()
    return png
