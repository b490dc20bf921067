"""render() on a store of synthetic candidate rows: JSON keys, PNGs, front, chosen, labels,
run-dir relative paths (moved run directory), the headline, the interactive plot."""

from __future__ import annotations

import json
import re
import shutil
import sys
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest

from hadmc.search.reward import Objectives, RewardConfig, compute_reward
from host.report import FRONT_COLUMNS, PLOTS, REPORT_SCHEMA_VERSION, front_table, render
from host.report_interactive import DIV_ID
from host.store import ResultsStore

TOP_KEYS = {
    "schema_version", "generated_at", "run_dir", "simulated", "run", "device", "baseline",
    "limits", "counts", "candidates", "pareto_front", "chosen", "hypervolume", "plots",
    "provenance", "interactive", "surrogate", "unprunable_groups", "int8_probe",
}  # fmt: skip
BASELINE = {"accuracy": 0.97, "latency_ms_p50": 4.0, "peak_memory_mib": 40.0, "energy_mj": 14.0,
            "energy_status": "simulated", "size_bytes": 400_000, "update_bytes": 400_000,
            "source": "simulated"}  # fmt: skip


def fill(
    run_dir: Path, n: int = 24, seed: int = 0, source: str = "simulated", files: bool = False
) -> None:
    """``n`` synthetic candidates (every 7th failed) as the search stores them: artifact paths
    under ``run_dir/candidates``; with ``files`` the artifacts exist (small distinct files)."""
    rng = np.random.default_rng(seed)
    base = Objectives.from_metrics(BASELINE)
    cfg = RewardConfig()
    with ResultsStore(run_dir) as store:
        store.set_run({"episodes": n, "max_latency_ms": 3.0, "runtime": "onnxruntime",
                       "model_label": "demo CNN (digits)"},
                      baseline={**BASELINE, "source": source},
                      device={"name": "sim:raspberry-pi-4", "source": source})  # fmt: skip
        for i in range(n):
            keep = rng.choice([0.3, 0.5, 0.75, 1.0], size=4).tolist()
            actions = {
                "pruning": keep,
                "quantization": rng.choice(["fp32", "int8"], size=4).tolist(),
                "fusion": rng.choice(["none", "conv_bn", "conv_bn_act"], size=4).tolist(),
                "distillation": {
                    "temperature": float(rng.uniform(1, 20)),
                    "alpha": float(rng.uniform()),
                },
                "update_scope": str(rng.choice(["bn_bias", "last_1", "last_3", "all"])),
            }
            if i % 7 == 3:
                store.add_candidate(episode=i, config_key=f"k{i}", actions=actions,
                                    status="failed", error="timeout: worker hung")  # fmt: skip
                continue
            artifact = run_dir / "candidates" / f"c{i}.onnx"
            if files:
                artifact.parent.mkdir(exist_ok=True)
                artifact.write_bytes(f"onnx model {i}".encode() * 10)
            width = float(np.mean(keep))
            metrics = {
                "accuracy": float(0.97 - 0.3 * (1 - width) ** 2 - rng.uniform(0, 0.05)),
                "latency_ms_p50": float(4.0 * width * rng.uniform(0.8, 1.1)),
                "peak_memory_mib": float(30 + 10 * width),
                "energy_mj": float(14 * width),
                "energy_status": "simulated",
                "size_bytes": int(400_000 * width),
                "update_bytes": int(100_000 * width),
                "source": source,
            }
            r = compute_reward(Objectives.from_metrics(metrics), base, cfg)
            store.add_candidate(episode=i, config_key=f"k{i}", actions=actions, metrics=metrics,
                                provenance={"method": "analytic estimate from profile raspberry-pi-4"},
                                reward=r.reward, artifact_path=artifact)  # fmt: skip


def test_render_writes_json_html_and_pngs(tmp_path: Path) -> None:
    fill(tmp_path)
    report = render(tmp_path)
    on_disk = json.loads((tmp_path / "report.json").read_text())
    assert set(on_disk) == TOP_KEYS and on_disk["pareto_front"] == report["pareto_front"]
    assert on_disk["schema_version"] == REPORT_SCHEMA_VERSION == 3
    assert report["counts"] == {"total": 24, "measured": 21, "failed": 3, "predicted": 0}
    assert report["simulated"] is True
    assert report["provenance"]["measurement_sources"] == ["simulated"]
    failed = [c for c in report["candidates"] if c["status"] == "failed"]
    assert all(c["reward"] is None and "timeout" in c["error"] for c in failed)
    # Front: non-empty and flagged on the candidate rows.
    front_ids = {f["id"] for f in report["pareto_front"]}
    assert front_ids and all(report["candidates"][i - 1]["on_front"] for i in front_ids)
    # Chosen: feasible (latency <= 3 ms), on the front, highest reward among feasible front.
    chosen = report["chosen"]
    assert chosen is not None and chosen["id"] in front_ids
    assert chosen["objectives"]["latency_ms"] <= 3.0
    feasible = [f for f in report["pareto_front"] if f["objectives"]["latency_ms"] <= 3.0]
    assert chosen["reward"] == max(f["reward"] for f in feasible)
    hv = report["hypervolume"]["history"]
    assert len(hv) == 21 and all(b["hypervolume"] >= a["hypervolume"] for a, b in pairwise(hv))
    assert report["hypervolume"]["reference_point"] == [0.5, 2.0, 2.0, 2.0]
    for name in PLOTS:
        png = (tmp_path / report["plots"][name]).read_bytes()
        assert png.startswith(b"\x89PNG") and len(png) > 5000
    page = _outside_plot((tmp_path / "report.html").read_text())
    assert "SIMULATED" in page and page.count("data:image/png;base64,") == len(PLOTS)
    assert "timeout: worker hung" in page


def test_front_table_rows(tmp_path: Path) -> None:
    fill(tmp_path, n=10, seed=1)
    report = render(tmp_path)
    rows = front_table(report)
    assert len(rows) == len(report["pareto_front"])
    assert all(tuple(r) == FRONT_COLUMNS for r in rows)
    first = min(report["pareto_front"], key=lambda f: f["objectives"]["latency_ms"])
    assert rows[0]["accuracy_%"] == f"{100 * first['objectives']['accuracy']:.2f}"
    assert rows[0]["source"] == "simulated"
    lat = [float(r["latency_ms_p50"]) for r in rows]
    assert lat == sorted(lat)


def test_device_run_is_not_labelled_simulated(tmp_path: Path) -> None:
    fill(tmp_path, n=6, source="device")
    report = render(tmp_path)
    assert report["simulated"] is False
    assert "SIMULATED" not in (tmp_path / "report.html").read_text()


def test_not_a_run_dir(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="results.sqlite"):
        render(tmp_path)


def test_empty_run_renders(tmp_path: Path) -> None:
    ResultsStore(tmp_path).close()
    report = render(tmp_path)
    assert report["pareto_front"] == [] and report["chosen"] is None
    assert report["interactive"] == {"pareto": False, "unavailable_reason": "nothing was measured"}
    assert "No model chosen: nothing was measured" in (tmp_path / "report.html").read_text()


def _outside_plot(page: str) -> str:
    """The page without the interactive plot: the inlined plotly.js bundle holds URLs, data
    URIs and HTML snippets of its own that would blur counts and link checks."""
    start, end = page.index('<div id="pareto-plot">'), page.index("<h2>Pareto front</h2>")
    return page[:start] + page[end:]


def _hero(page: str) -> str:
    m = re.search(r'<section class="hero.*?</section>', page, re.S)
    assert m, "no headline section"
    return m.group(0)


def _finish_like_search(run_dir: Path, report: dict) -> None:
    """What the search's finish() does after the loop: copy the front to pareto/ and the
    chosen model to best.onnx, using the store's resolved (absolute) artifact paths."""
    with ResultsStore(run_dir) as store:
        for f in report["pareto_front"]:
            src = store.artifact_file(f["id"])
            assert src is not None and src.is_absolute() and src.is_file()
            (run_dir / "pareto").mkdir(exist_ok=True)
            shutil.copy2(src, run_dir / "pareto" / f"candidate-{f['id']}.onnx")
        src = store.artifact_file(report["chosen"]["id"])
        assert src is not None
        shutil.copy2(src, run_dir / "best.onnx")


def test_report_of_moved_run_dir_from_another_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from host.cli import main

    start = tmp_path / "start"
    start.mkdir()
    monkeypatch.chdir(start)
    # As the search does: a cwd-relative run directory, artifact paths given cwd-relative.
    run = Path("outputs/run-1")
    fill(run, n=12, files=True)
    _finish_like_search(run, render(run))
    moved = tmp_path / "shared" / "renamed-run"
    moved.parent.mkdir()
    shutil.move(str(start / "outputs" / "run-1"), str(moved))
    shutil.rmtree(start)  # nothing may still point into the old place
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)

    assert main(["report", str(moved)]) == 0
    text = (moved / "report.json").read_text()
    report = json.loads(text)
    assert str(start) not in text and report["run_dir"] == str(moved.resolve())
    measured = [c for c in report["candidates"] if c["status"] == "measured"]
    assert len(measured) == 10  # episodes 3 and 10 failed
    for c in measured:
        assert c["artifact_path"] == f"candidates/c{c['episode']}.onnx"
        assert c["artifact_exists"] and (moved / c["artifact_path"]).is_file()
    assert report["pareto_front"]
    for f in report["pareto_front"]:
        assert f["pareto_path"] == f"pareto/candidate-{f['id']}.onnx"
        assert (moved / f["pareto_path"]).read_bytes() == (moved / f["artifact_path"]).read_bytes()
    chosen = report["chosen"]
    assert chosen["best_path"] == "best.onnx" and chosen["pareto_path"]
    assert all((moved / p).is_file() for p in report["plots"].values())
    # Every link on the page is relative to the run directory and names an existing file.
    hrefs = re.findall(r'<a href="([^"]+)"', _outside_plot((moved / "report.html").read_text()))
    assert len(hrefs) >= 2 * len(report["pareto_front"]) + 3
    assert all(not Path(h).is_absolute() and (moved / h).is_file() for h in hrefs), hrefs


def test_headline_chosen_against_baseline(tmp_path: Path) -> None:
    fill(tmp_path)
    first = render(tmp_path)
    assert "test accuracy" not in _hero((tmp_path / "report.html").read_text())
    cid = first["chosen"]["id"]
    other = next(f["id"] for f in first["pareto_front"] if f["id"] != cid)
    with ResultsStore(tmp_path) as store:
        store.update_metrics(cid, {"test_accuracy": 0.948, "test_accuracy_ci95": [0.93, 0.962]})
        store.update_metrics(other, {"predicted": True})
        store.set_run(baseline={**BASELINE, "test_accuracy": 0.965})
    report = render(tmp_path)
    chosen = report["chosen"]
    assert chosen["id"] == cid and chosen["test_accuracy"] == 0.948
    assert chosen["test_accuracy_ci95"] == [0.93, 0.962]
    o, b = chosen["objectives"], report["baseline"]["objectives"]
    vs = chosen["versus_baseline"]
    assert vs["speedup"] == pytest.approx(b["latency_ms"] / o["latency_ms"])
    assert vs["size_ratio"] == pytest.approx(o["size_bytes"] / b["size_bytes"])
    assert vs["accuracy_drop_points"] == pytest.approx(100 * (b["accuracy"] - o["accuracy"]))
    assert chosen["limits_met"] == [
        {"limit": "max_latency_ms", "value": 3.0, "actual": o["latency_ms"], "met": True}
    ]
    page = (tmp_path / "report.html").read_text()
    hero = _hero(page)
    for text in (
        f"Chosen model: candidate {cid}",
        f"{vs['speedup']:.2f}×",
        f"{vs['size_ratio']:.2f}×",
        f"{vs['accuracy_drop_points']:.2f} pts",
        "94.80 %",
        "95 % CI [93.00, 96.20] %",
        "baseline 96.50 %",
        "sim:raspberry-pi-4 (simulated)",
        "onnxruntime",
        f"✓ latency p50 ≤ 3 ms: {o['latency_ms']:.3f} ms",
    ):
        assert text in hero, text
    assert "{" not in hero  # objectives are tiles and rows, not a JSON string
    # Device and baseline are tables, not JSON dumps.
    assert "<pre" not in page
    assert "<td>name</td><td>sim:raspberry-pi-4</td>" in page
    assert "<td>validation accuracy</td><td>97.00 %</td>" in page
    # The predicted candidate is labelled wherever it appears; the rest are simulated.
    assert report["counts"]["predicted"] == 1
    row = report["candidates"][other - 1]
    assert row["measurement_kind"] == "predicted"
    assert page.count('class="badge predicted"') == 2  # front table + all candidates
    assert "1 candidate(s) carry predicted, not measured, numbers" in page


def test_front_table_in_page_has_ratios_and_links(tmp_path: Path) -> None:
    from hadmc.stats import binomial_ci95

    fill(tmp_path, n=10, seed=1, files=True)
    first = render(tmp_path)["pareto_front"][0]["id"]
    with ResultsStore(tmp_path) as store:  # as the search records it: accuracy and set size
        store.update_metrics(first, {"test_accuracy": 0.9, "test_n": 500})
    report = render(tmp_path)
    row = next(f for f in report["pareto_front"] if f["id"] == first)
    assert row["test_accuracy_ci95"] == pytest.approx(list(binomial_ci95(450, 500)))
    assert row["test_n"] == 500
    page = (tmp_path / "report.html").read_text()
    table = re.search(r'<table class="front">.*?</table>', page, re.S)
    assert table
    header = re.findall(r"<th>(.*?)</th>", table.group(0))
    for col in ("speedup", "drop pts", "size KB", "size ratio", "peak mem MiB", "artifact",
                "test acc %"):  # fmt: skip
        assert col in header
    rows = re.findall(r"<tr><td>.*?</tr>", table.group(0), re.S)
    assert len(rows) == len(report["pareto_front"])
    by_id = {f["id"]: f for f in report["pareto_front"]}
    for tr in rows:
        fid = int(re.match(r"<tr><td>(\d+)", tr).group(1))
        assert f'<a href="{by_id[fid]["artifact_path"]}">export</a>' in tr
        assert f'<td class="n">{by_id[fid]["versus_baseline"]["speedup"]:.2f}</td>' in tr


def test_interactive_plot_is_inlined_with_configuration_hover(tmp_path: Path) -> None:
    pytest.importorskip("plotly")
    fill(tmp_path)
    report = render(tmp_path)
    assert report["interactive"] == {"pareto": True, "unavailable_reason": None}
    page = (tmp_path / "report.html").read_text()
    assert f'id="{DIV_ID}"' in page
    # Offline: the whole plotly.js bundle is in the page (no CDN script to fetch).
    from plotly.offline import get_plotlyjs

    assert get_plotlyjs() in page
    s = report["chosen"]["config_summary"]
    for text in (
        f"mean keep ratio {s['mean_keep_ratio']:.2f}",
        f"distillation T {s['temperature']:.1f}, alpha {s['alpha']:.2f}",
        f"update scope {s['update_scope']}",
        f"speedup {report['chosen']['versus_baseline']['speedup']:.2f}",
        "Pareto front (all objectives)",
        "chosen model",
    ):
        assert text in page, text


def test_without_plotly_the_page_falls_back_to_png(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from host.report_interactive import MISSING

    for name in [m for m in sys.modules if m == "plotly" or m.startswith("plotly.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "plotly", None)  # import plotly -> ImportError
    fill(tmp_path, n=8)
    report = render(tmp_path)
    assert report["interactive"] == {"pareto": False, "unavailable_reason": MISSING}
    page = (tmp_path / "report.html").read_text()
    assert DIV_ID not in page and f"Interactive plot unavailable: {MISSING}" in page
    # The static Pareto plot stands in (once there, once in the plots section).
    assert page.count("data:image/png;base64,") == len(PLOTS) + 1
