"""render() on a store of synthetic candidate rows: JSON keys, PNGs, front, chosen, labels."""

from __future__ import annotations

import json
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest

from hadmc.reward import Objectives, RewardConfig, compute_reward
from host.report import FRONT_COLUMNS, PLOTS, front_table, render
from host.store import ResultsStore

TOP_KEYS = {
    "schema_version", "generated_at", "run_dir", "simulated", "run", "device", "baseline",
    "limits", "counts", "candidates", "pareto_front", "chosen", "hypervolume", "plots",
    "provenance",
}  # fmt: skip
BASELINE = {"accuracy": 0.97, "latency_ms_p50": 4.0, "peak_memory_mb": 40.0, "energy_mj": 14.0,
            "energy_status": "simulated", "size_bytes": 400_000, "update_bytes": 400_000,
            "source": "simulated"}  # fmt: skip


def fill(run_dir: Path, n: int = 24, seed: int = 0, source: str = "simulated") -> None:
    rng = np.random.default_rng(seed)
    base = Objectives.from_metrics(BASELINE)
    cfg = RewardConfig()
    with ResultsStore(run_dir) as store:
        store.set_run({"episodes": n, "max_latency_ms": 3.0, "runtime": "onnxruntime"},
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
                "update": str(rng.choice(["bn_bias", "last_1", "last_3", "all"])),
            }
            if i % 7 == 3:
                store.add_candidate(episode=i, config_key=f"k{i}", actions=actions,
                                    status="failed", error="timeout: worker hung")  # fmt: skip
                continue
            width = float(np.mean(keep))
            metrics = {
                "accuracy": float(0.97 - 0.3 * (1 - width) ** 2 - rng.uniform(0, 0.05)),
                "latency_ms_p50": float(4.0 * width * rng.uniform(0.8, 1.1)),
                "peak_memory_mb": float(30 + 10 * width),
                "energy_mj": float(14 * width),
                "energy_status": "simulated",
                "size_bytes": int(400_000 * width),
                "update_bytes": int(100_000 * width),
                "source": source,
            }
            r = compute_reward(Objectives.from_metrics(metrics), base, cfg)
            store.add_candidate(episode=i, config_key=f"k{i}", actions=actions, metrics=metrics,
                                provenance={"method": "analytic estimate from profile raspberry-pi-4"},
                                reward=r.reward, artifact_path=f"pareto/c{i}.onnx")  # fmt: skip


def test_render_writes_json_html_and_pngs(tmp_path: Path) -> None:
    fill(tmp_path)
    report = render(tmp_path)
    on_disk = json.loads((tmp_path / "report.json").read_text())
    assert set(on_disk) == TOP_KEYS and on_disk["pareto_front"] == report["pareto_front"]
    assert report["counts"] == {"total": 24, "measured": 21, "failed": 3}
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
    page = (tmp_path / "report.html").read_text()
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
    assert (tmp_path / "report.html").is_file()
