"""The report's view of a pool of boards (``host.pool``): each board's baseline and share of
the measurements, the spread between boards, the boards lost mid-run, and, for a mixed pool,
the front's latency ratio on every kind (a column per kind)."""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import Any


def pool_fields(provenance: Mapping[str, Any] | None) -> dict[str, Any]:
    """Which board measured a candidate and, in a mixed pool, its figures per kind."""
    p = provenance or {}
    return {"board": p.get("board"), "per_kind": p.get("per_kind")}


def baseline_spread_pct(pool: Mapping[str, Any]) -> float | None:
    """(slowest - fastest) / fastest baseline p50 over the boards of the first kind, in %."""
    kind = (pool.get("kinds") or [None])[0]
    lat = [b["baseline_latency_ms_p50"] for b in pool.get("boards", [])
           if b.get("kind") == kind and b.get("baseline_latency_ms_p50")]  # fmt: skip
    return 100 * (max(lat) - min(lat)) / min(lat) if len(lat) > 1 else None


def _td(v: Any) -> str:
    return f"<td>{html.escape(str(v))}</td>"


def pool_html(report: Mapping[str, Any]) -> str:
    pool = (report.get("device") or {}).get("pool")
    if not pool:
        return ""
    lost = {x["address"]: x for x in pool.get("lost", [])}
    rows = "".join(
        "<tr>" + _td(b["address"]) + _td(b["kind"])
        + _td("-" if b.get("baseline_latency_ms_p50") is None
              else f"{b['baseline_latency_ms_p50']:.3f}")
        + _td(b.get("measured", 0))
        + _td("serving" if b.get("alive", True) else
              f"lost {lost.get(b['address'], {}).get('at', '')}: "
              f"{lost.get(b['address'], {}).get('reason', '')}")
        + "</tr>"
        for b in pool.get("boards", [])
    )  # fmt: skip
    spread = baseline_spread_pct(pool)
    note = (f"<p class=\"note\">Baseline spread between boards of one kind: {spread:.1f} %. "
            "Each candidate's speedup is against its own board's baseline.</p>"
            if spread is not None else "")  # fmt: skip
    out = (
        f"<h2>Boards ({len(pool.get('boards', []))})</h2><table><tr><th>board</th><th>kind</th>"
        "<th>baseline p50 ms</th><th>candidates measured</th><th>state</th></tr>"
        f"{rows}</table>{note}"
    )
    if pool.get("mixed"):
        out += _per_kind_front(report, pool)
    return out


def _per_kind_front(report: Mapping[str, Any], pool: Mapping[str, Any]) -> str:
    kinds = pool.get("kinds", [])
    head = "".join(f"<th>{html.escape(k)} ratio</th>" for k in kinds)
    rows = ""
    for e in report.get("pareto_front") or []:
        per = e.get("per_kind") or {}
        cells = "".join(
            _td("-" if (per.get(k) or {}).get("latency_ratio") is None
                else f"{per[k]['latency_ratio']:.3f}")
            for k in kinds
        )  # fmt: skip
        rows += f"<tr>{_td(e['id'])}{cells}</tr>"
    objective = pool.get("fleet_objective") or "worst"
    return (
        f"<h3>The front on every kind</h3><p class=\"note\">Latency as a ratio to each kind's "
        f"own baseline (lower is faster); the front and the reward use the {objective} kind's."
        f"</p><table><tr><th>candidate</th>{head}</tr>{rows}</table>"
    )
