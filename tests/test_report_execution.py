"""The report says where each model ran: target, execution provider, provider options and the
share of nodes an accelerator left to the CPU, flagged when most of the model fell back."""

from __future__ import annotations

from pathlib import Path

from test_report import BASELINE, fill

from hadmc.search.reward import Objectives, RewardConfig, compute_reward
from host.report import MOSTLY_CPU_FALLBACK, execution_fields, render
from host.store import ResultsStore

ACTIONS = {"pruning": [0.5, 0.5], "quantization": ["int8", "int8"], "fusion": ["none", "none"],
           "distillation": {"temperature": 4.0, "alpha": 0.7}, "update_scope": "all"}  # fmt: skip


def _cuda_run(run_dir: Path, fallbacks: list[float]) -> None:
    """One candidate per fallback share, each faster and less accurate than the last, all on
    onnxruntime:cuda (so every one is on the front)."""
    base = Objectives.from_metrics(BASELINE)
    prov = {"target": "onnxruntime:cuda", "execution_provider": "CUDAExecutionProvider",
            "provider_options": {"device_id": "0"}}  # fmt: skip
    with ResultsStore(run_dir) as store:
        store.set_run({"episodes": len(fallbacks), "runtime": "onnxruntime"},
                      baseline={**BASELINE, "provenance": {**prov, "cpu_fallback_fraction": 0.0}},
                      device={"name": "jetson", "source": "device"})  # fmt: skip
        for i, fallback in enumerate(fallbacks):
            metrics = {**BASELINE, "accuracy": 0.96 - 0.01 * i, "latency_ms_p50": 3.0 - 0.5 * i,
                       "source": "device"}  # fmt: skip
            r = compute_reward(Objectives.from_metrics(metrics), base, RewardConfig())
            store.add_candidate(episode=i, config_key=f"k{i}", actions=ACTIONS, metrics=metrics,
                                provenance={**prov, "cpu_fallback_fraction": fallback},
                                reward=r.reward)  # fmt: skip


def test_front_entries_name_their_target_and_flag_mostly_cpu_fallback(tmp_path: Path) -> None:
    fallbacks = [0.1, 0.5, 0.8]
    _cuda_run(tmp_path, fallbacks)
    report = render(tmp_path)
    front = sorted(report["pareto_front"], key=lambda f: f["id"])
    assert len(front) == 3
    for entry, fallback in zip(front, fallbacks, strict=True):
        assert entry["target"] == "onnxruntime:cuda"
        assert entry["execution_provider"] == "CUDAExecutionProvider"
        assert entry["provider_options"] == {"device_id": "0"}
        assert entry["cpu_fallback_fraction"] == fallback
        assert entry["mostly_cpu_fallback"] is (fallback > MOSTLY_CPU_FALLBACK)
    assert report["baseline"]["target"] == "onnxruntime:cuda"
    page = (tmp_path / "report.html").read_text()
    assert "<th>ran on</th>" in page or ">ran on<" in page
    # The 80 % row only, and the headline too when that row is the chosen model.
    chosen = report["chosen"]
    assert page.count("⚠ mostly CPU fallback") == 1 + chosen["mostly_cpu_fallback"]
    assert "80 % of nodes on the CPU" in page and "10 % of nodes on the CPU" in page


def test_a_cpu_run_has_no_ran_on_column(tmp_path: Path) -> None:
    fill(tmp_path, n=8)
    render(tmp_path)
    page = (tmp_path / "report.html").read_text()
    assert ">ran on<" not in page and "mostly CPU fallback" not in page
    assert "onnxruntime (default target)" in page  # the headline still says where


def test_execution_fields_without_placement() -> None:
    f = execution_fields({"target": "onnxruntime:cpu", "execution_provider": "CPUExecutionProvider"})
    assert f["cpu_fallback_fraction"] is None and f["mostly_cpu_fallback"] is False
    assert execution_fields(None)["target"] is None
