"""Interactive accuracy-vs-latency plot for ``report.html`` (plotly, optional).

plotly.js is written into the page (``include_plotlyjs=True``, about 4.7 MB) rather than
loaded from a CDN: a report is opened from a shared folder, an e-mail or an air-gapped lab
machine, and a figure that needs the network would show nothing there. Without plotly the page
falls back to the static PNG (``host.report_plots``) and says why.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

DIV_ID = "pareto-interactive"
MISSING = "plotly is not installed (pip install plotly; part of hadmc[host])"


def _fmt(v: Any, spec: str, unit: str = "") -> str:
    return "-" if v is None else f"{format(v, spec)}{unit}"


def hover_text(c: Mapping[str, Any]) -> str:
    """One point's configuration and result, as plotly hover HTML."""
    o, vs, s = c["objectives"], c.get("versus_baseline") or {}, c["config_summary"]
    prec = ", ".join(f"{k}×{n}" for k, n in s["precisions"].items()) or "-"
    kind = c["measurement_kind"]
    test = (c.get("metrics") or {}).get("test_accuracy")
    lines = [
        f"<b>candidate {c['id']}</b>" + (" · Pareto front" if c["on_front"] else "")
        + ("" if kind == "measured" else f" · <i>{kind}</i>"),
        f"accuracy {_fmt(100 * o['accuracy'], '.2f', ' %')}"
        f" (drop {_fmt(vs.get('accuracy_drop_points'), '.2f', ' pts')})"
        + ("" if test is None else f", test {100 * test:.2f} %"),
        f"latency {_fmt(o['latency_ms'], '.3f', ' ms')},"
        f" speedup {_fmt(vs.get('speedup'), '.2f', '×')}",
        f"size {_fmt(o['size_bytes'] / 1024, '.1f', ' KB')},"
        f" peak memory {_fmt(o['memory_mib'], '.1f', ' MiB')}",
        f"mean keep ratio {_fmt(s['mean_keep_ratio'], '.2f')} · precisions {prec}",
        f"distillation T {_fmt(s['temperature'], '.1f')}, alpha {_fmt(s['alpha'], '.2f')}"
        f" · update scope {s['update_scope'] or '-'}",
    ]  # fmt: skip
    return "<br>".join(lines)


def figure(report: Mapping[str, Any]) -> Any:
    """The plotly Figure (raises ImportError without plotly)."""
    import plotly.graph_objects as go

    rows = [c for c in report["candidates"] if c["objectives"]]
    front = sorted((c for c in rows if c["on_front"]), key=lambda c: c["objectives"]["latency_ms"])

    def trace(points: list[Mapping[str, Any]], name: str, **style: Any) -> Any:
        return go.Scatter(
            x=[c["objectives"]["latency_ms"] for c in points],
            y=[100 * c["objectives"]["accuracy"] for c in points],
            text=[hover_text(c) for c in points],
            hovertemplate="%{text}<extra></extra>",
            name=name,
            **style,
        )

    fig = go.Figure()
    fig.add_trace(trace([c for c in rows if not c["on_front"]], "dominated candidates",
                        mode="markers", marker={"size": 7, "color": "#9e9e9e"}))  # fmt: skip
    fig.add_trace(trace(front, "Pareto front (all objectives)", mode="lines+markers",
                        line={"shape": "hv", "color": "#d62728"},
                        marker={"size": 10, "color": "#d62728"}))  # fmt: skip
    predicted = [c for c in rows if c["measurement_kind"] == "predicted"]
    if predicted:
        fig.add_trace(trace(predicted, "predicted, not measured", mode="markers",
                            marker={"size": 16, "color": "rgba(0,0,0,0)",
                                    "line": {"color": "#ff7f0e", "width": 2}}))  # fmt: skip
    chosen = report["chosen"]
    if chosen:
        point = next(c for c in rows if c["id"] == chosen["id"])
        fig.add_trace(trace([point], "chosen model", mode="markers",
                            marker={"size": 20, "color": "rgba(0,0,0,0)",
                                    "line": {"color": "black", "width": 3}}))  # fmt: skip
    base = report["baseline"]["objectives"]
    if base:
        fig.add_trace(go.Scatter(
            x=[base["latency_ms"]], y=[100 * base["accuracy"]], mode="markers",
            name="baseline (uncompressed)",
            marker={"symbol": "star", "size": 18, "color": "#1f77b4"},
            hovertemplate=f"<b>baseline</b><br>accuracy {100 * base['accuracy']:.2f} %<br>"
            f"latency {base['latency_ms']:.3f} ms<extra></extra>",
        ))  # fmt: skip
    limit = report["limits"].get("max_latency_ms")
    if limit:
        fig.add_vline(x=limit, line_dash="dash", line_color="black", line_width=1,
                      annotation_text="latency limit", annotation_position="top")  # fmt: skip
    tag = " [simulated]" if report["simulated"] else ""
    fig.update_layout(
        title=f"Accuracy vs latency{tag} (hover a point for its configuration)",
        xaxis_title="latency p50 (ms)",
        yaxis_title="accuracy (%)",
        template="plotly_white",
        height=480,
        margin={"l": 60, "r": 20, "t": 60, "b": 50},
        legend={"orientation": "h", "y": -0.18},
    )
    return fig


def pareto_div(report: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """(HTML of the plot with plotly.js inlined, None) or (None, why it is missing)."""
    if not any(c["objectives"] for c in report["candidates"]):
        return None, "nothing was measured"
    try:
        fig = figure(report)
    except ImportError:
        return None, MISSING
    html = fig.to_html(
        full_html=False,
        include_plotlyjs=True,
        div_id=DIV_ID,
        config={"displaylogo": False, "responsive": True},
    )
    return html, None
