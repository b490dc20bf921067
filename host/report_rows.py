"""The Pareto front as printable rows (strings keyed by ``FRONT_COLUMNS``), shared by the
report page and any terminal table; kept apart from ``host.report`` so the page module does
not import the report builder back."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

FRONT_COLUMNS = (
    "id", "accuracy_%", "accuracy_drop_pts", "latency_ms_p50", "speedup_x", "peak_memory_mib",
    "size_kb", "energy_mj", "update_kb", "reward", "source", "artifact",
)  # fmt: skip


def _fmt(v: Any, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def front_table(report: Mapping[str, Any], which: str = "pareto_front") -> list[dict[str, str]]:
    """Rows (dicts keyed by ``FRONT_COLUMNS``) for printing the Pareto front, e.g. with rich:
    ``t = Table(*FRONT_COLUMNS); [t.add_row(*r.values()) for r in front_table(report)]``.
    Sorted by latency (fastest first), which reads as the accuracy/latency trade-off."""
    rows = []
    for f in sorted(report[which], key=lambda f: f["objectives"]["latency_ms"]):
        o, vs = f["objectives"], f.get("versus_baseline") or {}
        rows.append({
            "id": str(f["id"]),
            "accuracy_%": _fmt(100 * o["accuracy"], ".2f"),
            "accuracy_drop_pts": _fmt(vs.get("accuracy_drop_points"), ".2f"),
            "latency_ms_p50": _fmt(o["latency_ms"], ".3f"),
            "speedup_x": _fmt(vs.get("speedup"), ".2f"),
            "peak_memory_mib": _fmt(o["memory_mib"], ".1f"),
            "size_kb": _fmt(o["size_bytes"] / 1024, ".1f"),
            "energy_mj": _fmt(o["energy_mj"], ".3f"),
            "update_kb": _fmt(o["update_bytes"] / 1024, ".1f"),
            "reward": _fmt(f.get("reward"), ".4f"),
            "source": str(f.get("measurement_kind") or f.get("measurement_source", "unknown")),
            "artifact": str(f.get("pareto_path") or f.get("artifact_path") or "-"),
        })  # fmt: skip
    return rows


def ran_on(entry: Mapping[str, Any], runtime: str = "") -> str:
    """Where a front entry or the baseline was measured, in words: target, execution
    provider, and the share of nodes the accelerator left to the CPU (flagged when most)."""
    where = entry.get("target") or (f"{runtime} (default target)" if runtime else "-")
    if entry.get("execution_provider"):
        where += f" · {entry['execution_provider']}"
    fallback = entry.get("cpu_fallback_fraction")
    if fallback is not None:
        where += f" · {100 * fallback:.0f} % of nodes on the CPU"
        if entry.get("mostly_cpu_fallback"):
            where += " ⚠ mostly CPU fallback"
    return where
