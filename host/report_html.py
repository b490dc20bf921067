"""``report.html``: one self-contained page a user can share (PNGs and plotly.js inlined).

Order follows what a reader asks first: which model to deploy and what it gains over the
baseline, then the trade-off (interactive plot, front table with artifact links), then the
device, baseline and the evidence (plots, every candidate, configuration, provenance).
Artifact links are relative to the page, which sits in the run directory, so they keep working
when the directory is moved or zipped.
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any
from urllib.parse import quote

from host.report_pool import pool_html
from host.report_rows import front_table, ran_on


class Raw(str):
    """Cell content that is already HTML (links, badges); everything else is escaped."""


def _esc(v: Any) -> str:
    return v if isinstance(v, Raw) else html.escape(str(v))


def _fmt(v: Any, spec: str, unit: str = "") -> str:
    return "-" if v is None else f"{format(v, spec)}{unit}"


def _table(
    header: Sequence[str],
    rows: Sequence[Sequence[Any]],
    cls: str = "",
    numeric: Collection[int] = (),
) -> str:
    """``numeric``: column indices right-aligned with tabular figures, so digits line up."""
    head = "".join(f"<th>{_esc(h)}</th>" for h in header)

    def cell(i: int, v: Any) -> str:
        return f'<td class="n">{_esc(v)}</td>' if i in numeric else f"<td>{_esc(v)}</td>"

    body = "".join("<tr>" + "".join(cell(i, v) for i, v in enumerate(r)) + "</tr>" for r in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _flatten(d: Mapping[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """Nested dict -> (dotted key, readable value) rows; lists of scalars joined by commas."""
    rows: list[tuple[str, str]] = []
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping) and v:
            rows.extend(_flatten(v, f"{key}."))
        elif isinstance(v, list) and all(not isinstance(x, Mapping | list) for x in v):
            rows.append((key, ", ".join(str(x) for x in v) or "-"))
        elif isinstance(v, float):
            rows.append((key, f"{v:.6g}"))
        elif v is None or v == {}:
            rows.append((key, "-"))
        else:
            rows.append((key, v if isinstance(v, str) else json.dumps(v)))
    return rows


def _kv(d: Mapping[str, Any] | None, empty: str) -> str:
    if not d:
        return f"<p>{html.escape(empty)}</p>"
    return _table(["", ""], _flatten(d), "kv")


def badge(kind: str) -> Raw:
    """Visible label of an estimate; measured numbers get none."""
    if kind in ("simulated", "predicted"):
        title = {"simulated": "analytic estimate of the sim: device, not a measurement",
                 "predicted": "predicted by a model, not measured"}[kind]  # fmt: skip
        return Raw(f'<span class="badge {kind}" title="{title}">{kind}</span>')
    return Raw("")


def _kind_cell(kind: str, timing: str | None = None) -> Raw:
    """The measurement's kind; "measured, paired" when timed interleaved with the baseline."""
    if kind != "measured":
        return badge(kind)
    return Raw("measured, paired" if timing == "paired" else "measured")


def link(path: str | None, label: str | None = None) -> Raw:
    if not path:
        return Raw("-")
    return Raw(f'<a href="{html.escape(quote(path))}">{html.escape(label or path)}</a>')


def _pct(v: float | None) -> str:
    return _fmt(None if v is None else 100 * v, ".2f", " %")


def _ci(ci: Sequence[float] | None, n: int | None = None) -> str:
    if not ci or len(ci) != 2:
        return ""
    return f"95 % CI [{100 * ci[0]:.2f}, {100 * ci[1]:.2f}] %" + (f", n = {n}" if n else "")


def _config(s: Mapping[str, Any], long: bool = False) -> str:
    """A configuration in one line: terse in tables, spelled out in the headline."""
    prec = ", ".join(f"{k}×{n}" for k, n in s["precisions"].items()) or "-"
    keep, t, a = (_fmt(s["mean_keep_ratio"], ".2f"), _fmt(s["temperature"], ".1f"),
                  _fmt(s["alpha"], ".2f"))  # fmt: skip
    if long:
        return (
            f"mean keep ratio {keep} · precisions {prec} · distillation T {t}, alpha {a}"
            f" · update scope {s['update_scope'] or '-'}"
        )
    return f"keep {keep} · {prec} · T {t} α {a} · {s['update_scope'] or '-'}"


LIMIT_TEXT = {
    "max_latency_ms": ("latency p50", "ms"),
    "max_memory_mib": ("peak memory", "MiB"),
    "max_accuracy_drop": ("accuracy drop", "pts"),
}


def _tile(big: str, what: str, detail: str) -> str:
    return (
        f'<div class="tile"><div class="big">{html.escape(big)}</div>'
        f'<div class="what">{html.escape(what)}</div>'
        f'<div class="detail">{html.escape(detail)}</div></div>'
    )


def headline(report: Mapping[str, Any]) -> str:
    """The chosen model against the baseline: what a reader shares."""
    chosen, base = report["chosen"], report["baseline"]
    device = report["device"] or {}
    runtime = report["run"]["config"].get("runtime", "-")
    dev = f"{device.get('name', '-')}" + (" (simulated)" if report["simulated"] else "")
    if chosen is None:
        why = ("nothing was measured" if not report["pareto_front"]
               else "no Pareto-front member satisfies the limits")  # fmt: skip
        return (
            f'<section class="hero none"><h2>No model chosen: {why}</h2>'
            f"<p>Device {html.escape(dev)} · runtime {html.escape(str(runtime))}. The front "
            "and every candidate are below.</p></section>"
        )
    o, vs, bo = chosen["objectives"], chosen["versus_baseline"] or {}, base["objectives"] or {}
    tiles = [
        _tile(_fmt(vs.get("speedup"), ".2f", "×"), "faster (p50 latency)",
              f"{_fmt(o['latency_ms'], '.3f')} ms vs {_fmt(bo.get('latency_ms'), '.3f')} ms"),
        _tile(_fmt(vs.get("size_ratio"), ".2f", "×"), "model size of baseline",
              f"{o['size_bytes'] / 1024:.1f} KB vs "
              f"{_fmt(bo.get('size_bytes') and bo['size_bytes'] / 1024, '.1f')} KB"),
        _tile(_fmt(vs.get("accuracy_drop_points"), ".2f", " pts"), "accuracy drop (validation)",
              f"{_pct(o['accuracy'])} vs {_pct(bo.get('accuracy'))}"),
        _tile(_fmt(vs.get("memory_ratio"), ".2f", "×"), "peak memory of baseline",
              f"{o['memory_mib']:.1f} MiB vs {_fmt(bo.get('memory_mib'), '.1f')} MiB"),
    ]  # fmt: skip
    if chosen.get("test_accuracy") is not None:
        detail = _ci(chosen.get("test_accuracy_ci95"), chosen.get("test_n"))
        if base.get("test_accuracy") is not None:
            detail += f" · baseline {_pct(base['test_accuracy'])}"
        tiles.append(_tile(_pct(chosen["test_accuracy"]), "test accuracy (held out)", detail))
    limits = [
        f'<li class="{"met" if r["met"] else "unmet"}">{"✓" if r["met"] else "✗"} '
        f"{LIMIT_TEXT[r['limit']][0]} ≤ {r['value']:g} {LIMIT_TEXT[r['limit']][1]}: "
        f"{r['actual']:.3f} {LIMIT_TEXT[r['limit']][1]}</li>"
        for r in chosen["limits_met"]
    ]
    artifacts = " · ".join(
        str(link(p, label))
        for p, label in (
            (chosen.get("best_path"), None),
            (chosen.get("pareto_path"), None),
            (chosen.get("artifact_path"), "candidate export"),
        )  # fmt: skip
        if p
    )
    facts = [
        ("device", dev),
        ("runs on", ran_on(chosen, str(runtime))),
        ("limits met", Raw(f"<ul>{''.join(limits)}</ul>") if limits else "none were set"),
        ("chosen by", chosen["rule"]),
        ("configuration", _config(chosen["config_summary"], long=True)),
        ("artifacts", Raw(artifacts or "-")),
    ]
    return (
        f'<section class="hero"><h2>Chosen model: candidate {chosen["id"]} '
        f"{badge(chosen['measurement_kind'])}</h2>"
        f'<div class="tiles">{"".join(tiles)}</div>{_table(["", ""], facts, "kv")}</section>'
    )


Column = tuple[str, Callable[[Mapping[str, Any], Mapping[str, str]], Any], bool]


def _files(f: Mapping[str, Any]) -> Raw:
    files = [str(link(f["pareto_path"])), str(link(f["artifact_path"], "export"))]
    return Raw(" · ".join(x for x in files if x != "-") or "-")


def _front(report: Mapping[str, Any]) -> str:
    """Fastest first (``front_table``'s order and number formats), links to the files."""
    by_id = {f["id"]: f for f in report["pareto_front"]}
    if not by_id:
        return "<p>No working candidate was measured.</p>"
    chosen_id = (report["chosen"] or {}).get("id")
    # (header, cell from (front row, front_table row), numeric: right-aligned)
    columns: list[Column] = [
        ("id", lambda f, r: f"{f['id']}{' ★' if f['id'] == chosen_id else ''}", False),
        ("source", lambda f, r: _kind_cell(f["measurement_kind"], f.get("latency_timing")),
         False),
        ("accuracy %", lambda f, r: r["accuracy_%"], True),
        ("test acc %", lambda f, r: _fmt(f["test_accuracy"] and 100 * f["test_accuracy"],
                                          ".2f"), True),
        ("drop pts", lambda f, r: r["accuracy_drop_pts"], True),
        ("latency ms", lambda f, r: r["latency_ms_p50"], True),
        ("speedup", lambda f, r: r["speedup_x"], True),
        ("size KB", lambda f, r: r["size_kb"], True),
        ("size ratio", lambda f, r: _fmt((f["versus_baseline"] or {}).get("size_ratio"),
                                         ".2f", "×"), True),
        ("peak mem MiB", lambda f, r: r["peak_memory_mib"], True),
        ("energy mJ", lambda f, r: r["energy_mj"], True),
        ("reward", lambda f, r: r["reward"], True),
        ("configuration", lambda f, r: _config(f["config_summary"]), False),
        ("ran on", lambda f, r: ran_on(f), False),
        ("artifact", lambda f, r: _files(f), False),
    ]  # fmt: skip
    if len({f.get("target") for f in by_id.values()}) <= 1 and all(
        f.get("cpu_fallback_fraction") is None for f in by_id.values()
    ):  # one target, no placement profiled: the headline says where, a column would repeat it
        columns = [c for c in columns if c[0] != "ran on"]
    if all(f.get("test_accuracy") is None for f in by_id.values()):
        # Only when the search recorded one: a column of dashes says nothing.
        columns = [c for c in columns if c[0] != "test acc %"]
    rows = [[cell(by_id[int(r["id"])], r) for _, cell, _ in columns] for r in front_table(report)]
    numeric = {i for i, (_, _, num) in enumerate(columns) if num}
    return _table([h for h, _, _ in columns], rows, "front", numeric)


def _baseline(report: Mapping[str, Any]) -> str:
    m, b = report["baseline"]["metrics"], report["baseline"]
    if not m:
        return "<p>No baseline was stored.</p>"
    lat = [(q, m.get(f"latency_ms_{q}")) for q in ("p50", "mean", "p90", "p99")]
    energy = m.get("energy_mj")
    rows = [
        ("validation accuracy", _pct(m.get("accuracy"))),
        (
            "test accuracy",
            f"{_pct(b['test_accuracy'])} {_ci(b['test_accuracy_ci95'], b['test_n'])}",
        ),
        ("latency", " · ".join(f"{q} {v:.3f} ms" for q, v in lat if v is not None)),
        ("peak memory", _fmt(m.get("peak_memory_mib"), ".1f", " MiB")),
        ("model size", _fmt(m.get("size_bytes") and m["size_bytes"] / 1024, ".1f", " KB")),
        ("energy", "-" if energy is None else f"{energy:.3f} mJ ({m.get('energy_status', '-')})"),
        ("parameters", _fmt(m.get("params"), ",")),
        ("MACs", _fmt(m.get("macs"), ",")),
        ("precision", m.get("precision") or "-"),
        ("source", m.get("source") or "-"),
        ("layer groups", _groups_cell(report)),
    ]
    # A key the search did not record is left out rather than shown as a row of dashes.
    return _table(["", ""], [(k, v) for k, v in rows if v.strip() not in ("", "-")], "kv")


def _groups_cell(report: Mapping[str, Any]) -> str:
    """Prunable groups, and the ones left unpruned with their reasons."""
    cfg = report["run"]["config"]
    n, skipped = cfg.get("layer_groups"), report.get("unprunable_groups") or []
    if n is None:
        return "-"
    text = f"{n} pruned by the search"
    if skipped:
        text += "; left unpruned: " + "; ".join(f"{g['name']} ({g['reason']})" for g in skipped)
    return text


def _candidates(report: Mapping[str, Any]) -> str:
    rows = []
    for c in report["candidates"]:
        o, vs = c["objectives"] or {}, c["versus_baseline"] or {}
        rows.append([
            c["id"], _kind_cell(c["measurement_kind"]), c["episode"], c["status"],
            _fmt(c["reward"], ".4f"), _fmt(o.get("accuracy") and 100 * o["accuracy"], ".2f"),
            _fmt(o.get("latency_ms"), ".3f"), _fmt(vs.get("speedup"), ".2f", "×"),
            _fmt(o.get("memory_mib"), ".1f"), _fmt(o.get("size_bytes"), "d"),
            (c["metrics"] or {}).get("energy_status", "-"), _config(c["config_summary"]),
            "yes" if c["on_front"] else "", c["error"] or "",
        ])  # fmt: skip
    header = ["id", "source", "episode", "status", "reward", "acc %", "latency ms", "speedup",
              "peak mem MiB", "size B", "energy", "configuration", "front", "error"]  # fmt: skip
    return _table(header, rows, "all", numeric={0, 2, 4, 5, 6, 7, 8, 9})


PLOT_TITLES = {
    "pareto": "Accuracy vs latency",
    "hypervolume": "Hypervolume after each measured candidate",
    "reward": "Reward per episode",
    "actions": "What each agent chose",
}

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2em auto;max-width:1240px;
padding:0 1em;color:#222}h1{margin-bottom:.2em}h2{margin-top:1.6em}.sub{color:#555}
table{border-collapse:collapse;font-size:13px;margin:.6em 0}td,th{border:1px solid #ddd;
padding:4px 8px;text-align:left;vertical-align:top}th{background:#f2f2f2}
td.n{text-align:right;font-variant-numeric:tabular-nums}
table.kv td:first-child{color:#555;white-space:nowrap}table.kv thead{display:none}
table.kv ul{margin:0;padding-left:0;list-style:none}li.met{color:#1b7a1b}li.unmet{color:#b00}
.hero h2{margin-top:.6em}table.front td:first-child{white-space:nowrap}
.hero{border:1px solid #cfd8e3;background:#f7fafd;border-radius:8px;padding:.4em 1.2em 1em}
.hero.none{background:#fff8f0;border-color:#f0d0a0}.tiles{display:flex;flex-wrap:wrap;gap:12px}
.tile{background:#fff;border:1px solid #dde;border-radius:6px;padding:10px 14px;min-width:170px}
.tile .big{font-size:28px;font-weight:600}.tile .what{font-weight:500}
.tile .detail{color:#555;font-size:12px}.badge{font-size:11px;font-weight:600;border-radius:4px;
padding:1px 6px;margin-left:4px;vertical-align:middle;color:#fff}
.badge.simulated{background:#8e44ad}
.badge.predicted{background:#e67e22}.banner{background:#8e44ad;color:#fff;padding:.5em 1em;
border-radius:6px}img{max-width:100%}details{margin:1em 0}summary{cursor:pointer;font-weight:600}
.note{color:#555;font-size:13px}
"""


def _surrogate(report: Mapping[str, Any]) -> str:
    """How good the predicted figures were (they only chose what to measure)."""
    s = report.get("surrogate")
    if not s:
        return ""
    rows = {
        "latency MAPE, predicted before each measurement": _fmt(
            s.get("latency_mape_prospective_pct"), ".1f") + " %",
        "latency MAPE, leave-one-out": _fmt(s.get("latency_mape_loo_pct"), ".1f") + " %",
        "accuracy proxy vs real artifact accuracy (Spearman rho)": _fmt(
            s.get("proxy_spearman"), ".2f"),
        "predictions scored": s.get("latency_predictions_scored"),
    }  # fmt: skip
    return (
        "<h2>Surrogate (predicted figures)</h2><p class=\"note\">Predicted figures only ranked "
        "proposals before the device; every number in the front and the chosen model is "
        "measured.</p>" + _kv(rows, "-")
    )


def _int8_probe(report: Mapping[str, Any]) -> str:
    """The setup probe: int8 per precision stage, measured paired with the baseline."""
    probe = report.get("int8_probe")
    if not probe or not probe.get("timings"):
        return ""
    rows = {
        ("every stage int8" if t["float_stage"] is None else f"stage {t['float_stage']} float"):
        f"{1 / t['latency_ratio']:.2f}x fp32"
        for t in probe["timings"]
    }
    kept = ", ".join(map(str, probe.get("excluded_stages") or [])) or "none"
    return ("<h2>int8 probe (setup, measured)</h2><p class=\"note\">Stages kept float because "
            f"int8 was slower there on this device: {html.escape(kept)}.</p>" + _kv(rows, "-"))


def page(report: Mapping[str, Any], png: Mapping[str, bytes], interactive: str | None) -> str:
    """The whole page. ``interactive``: the plotly div (``host.report_interactive``) or None,
    in which case the static Pareto PNG stands in and the reason is shown."""
    cfg = report["run"]["config"]
    model = cfg.get("model_label") or cfg.get("model") or "model"
    device = (report["device"] or {}).get("name", "unknown device")
    banner = (
        '<p class="banner">SIMULATED: analytic estimates, not measurements (device '
        f"{html.escape(str(device))}).</p>"
        if report["simulated"]
        else ""
    )
    if report["counts"].get("predicted"):
        banner += (
            f'<p class="banner" style="background:#e67e22">{report["counts"]["predicted"]} '
            "candidate(s) carry predicted, not measured, numbers (labelled below).</p>"
        )
    imgs = {
        name: f'<img alt="{name} plot" src="data:image/png;base64,'
        f'{base64.b64encode(data).decode()}"/>'
        for name, data in png.items()
    }
    reason = (report.get("interactive") or {}).get("unavailable_reason")
    plot = interactive or (
        f'<p class="note">Interactive plot unavailable: {html.escape(str(reason))}.</p>'
        + imgs.get("pareto", "")
    )
    hv = report["hypervolume"] or {}
    c = report["counts"]
    return f"""<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>hadmc report: {html.escape(str(model))} on {html.escape(str(device))}</title>
<style>{CSS}</style></head><body>
<h1>hadmc compression report</h1>
<p class="sub">{html.escape(str(model))} on {html.escape(str(device))} ·
runtime {html.escape(str(cfg.get("runtime", "-")))} · {c["measured"]} measured,
{c["failed"]} failed · generated {report["generated_at"]}</p>
{banner}
{headline(report)}
<h2>Trade-off: accuracy vs latency</h2>
<div id="pareto-plot">{plot}</div>
<h2>Pareto front</h2>
<p class="note">Non-dominated over accuracy, latency, memory, size, energy and update size;
fastest first. ★ chosen model. Speedup and ratios are against the baseline below.</p>
{_front(report)}
<p class="note">Hypervolume {_fmt(hv.get("final"), ".4f")} over
{html.escape(", ".join(hv.get("objectives", [])))}, reference point
{html.escape(str(hv.get("reference_point")))} ({html.escape(hv.get("normalisation", ""))}).</p>
{_surrogate(report)}
{_int8_probe(report)}
<h2>Baseline (uncompressed, same device)</h2>{_baseline(report)}
<h2>Device</h2>{_kv({k: v for k, v in (report["device"] or {}).items() if k != "pool"},
                    "No device information was stored.")}
{pool_html(report)}
<h2>Plots</h2>
<p class="note">Static copies (plots/*.png) for print and docs.</p>
{"".join(f"<h3>{PLOT_TITLES.get(n, n)}</h3>{img}" for n, img in imgs.items())}
<details><summary>All candidates ({c["total"]})</summary>{_candidates(report)}</details>
<details><summary>Run configuration</summary>{_kv(cfg, "No configuration was stored.")}</details>
<details><summary>Provenance</summary>{_kv(report["provenance"], "-")}
<p class="note">Run directory when rendered: {html.escape(report["run_dir"])}. Links and
report.json paths are relative to it.</p></details>
</body></html>"""
