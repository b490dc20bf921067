"""Paired measurements: a candidate timed interleaved with a reference in one window.

The drift tests run the real ``run_paired`` / ``run_budget`` loops on a virtual clock whose
board slows down over time, so they are exact and need no real timing.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from device_agent import measure as m
from hadmc.device.hal import ArtifactSpec, DeviceError, Measurement, MeasureOptions
from hadmc.device.hal_sim import SimulatedDevice
from hadmc.search.reward import Objectives
from host.search_config import SearchConfig


class DriftingBoard:
    """A virtual clock: a call of ``cost_ms`` takes cost x (1 + slope x elapsed seconds)."""

    def __init__(self, slope_per_s: float) -> None:
        self.now_ns = 0
        self.slope = slope_per_s

    def perf_counter_ns(self) -> int:
        return self.now_ns

    def perf_counter(self) -> float:
        return self.now_ns / 1e9

    def time(self) -> float:
        return 1e9 + self.perf_counter()

    def model(self, cost_ms: float):
        def call() -> None:
            factor = 1.0 + self.slope * self.perf_counter()
            self.now_ns += int(cost_ms * factor * 1e6)

        return call


BUDGET = m.Budget(warmup_runs=5, warmup_min_seconds=0.0, min_runs=200, min_seconds=1.0)


def test_paired_ratio_cancels_drift_that_biases_separate_calls(monkeypatch):
    board = DriftingBoard(slope_per_s=0.5)  # 50 % slower every second
    monkeypatch.setattr(m, "time", board)
    fast, slow = board.model(1.0), board.model(2.0)  # true ratio 0.5
    # Separate calls: the reference first, then the candidate, on a board that slowed down.
    t_ref, t_cand = m.Timing(), m.Timing()
    m.run_budget(slow, BUDGET, t_ref)
    m.run_budget(fast, BUDGET, t_cand)
    separate = np.median(t_cand.latencies_ms) / np.median(t_ref.latencies_ms)
    assert separate > 0.55  # the drift alone makes the faster model look 10 %+ slower
    board.now_ns = 0
    timing, ref = m.Timing(), m.PairedTiming()
    m.run_paired(fast, slow, BUDGET, timing, ref)
    ratio, low, high = m.paired_ratio(timing.latencies_ms, ref.latencies_ms, ref.blocks)
    assert ratio == pytest.approx(0.5, abs=0.01)
    assert low <= ratio <= high
    # Each model's run count meets min_runs; blocks hold PAIR_BLOCK_RUNS - 1 timed runs.
    assert len(ref.latencies_ms) >= BUDGET.min_runs
    assert len(timing.latencies_ms) == len(ref.latencies_ms) == ref.blocks * (m.PAIR_BLOCK_RUNS - 1)
    assert timing.window_end_unix - timing.window_start_unix >= BUDGET.min_seconds


def test_paired_blocks_alternate_which_model_goes_first(monkeypatch):
    board = DriftingBoard(0.0)
    monkeypatch.setattr(m, "time", board)
    order: list[str] = []

    def tagged(tag: str):
        inner = board.model(1.0)

        def call() -> None:
            order.append(tag)
            inner()

        return call

    n = m.PAIR_BLOCK_RUNS  # a block times n - 1 runs: n runs per model need two blocks
    budget = m.Budget(warmup_runs=0, warmup_min_seconds=0.0, min_runs=n, min_seconds=0.0)
    m.run_paired(tagged("a"), tagged("b"), budget, m.Timing(), m.PairedTiming())
    # the reference's first inference, then a b | b a: each goes first in one pair
    assert order == ["b"] + ["a"] * n + ["b"] * n + ["b"] * n + ["a"] * n


def test_paired_ratio_hand_computed():
    a = [1.0, 1.0, 3.0, 2.0, 2.0, 2.0]  # 2 blocks of 3 runs: median 2.0
    b = [4.0, 4.0, 4.0, 4.0, 8.0, 8.0]  # median 4.0
    ratio, low, high = m.paired_ratio(a, b, blocks=2)
    assert ratio == pytest.approx(0.5)
    assert 0.25 <= low <= ratio <= high <= 0.75
    one = m.paired_ratio([1.0, 2.0, 3.0], [2.0, 4.0, 6.0], blocks=1)
    assert one == (0.5, 0.5, 0.5)


def _metrics(m_: Measurement, baseline_ms: float) -> dict:
    from host.search_eval import metrics_of

    class Export:
        size_bytes = 1000

    class Built:
        export = Export()
        accuracy, test_accuracy, test_n = 0.9, 0.9, 100
        macs, params, precision = 1, 1, "int8"
        finetune_steps, finetune_lr, timings_s = 0, 0.0, {}

    return metrics_of(Built(), m_, 0, baseline_ms)


def _spec(tmp_path: Path, name: str, width: int, precision: str = "fp32") -> ArtifactSpec:
    from hadmc.compress.onnx_export import export_onnx

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, width, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(width, 4, 1)
    ).eval()
    path = tmp_path / f"{name}.onnx"
    export_onnx(net, path, torch.randn(1, 1, 32, 32))
    return ArtifactSpec(path, "onnx", "onnxruntime", "input", (1, 1, 32, 32), precision=precision)


def test_sim_pairing_fills_the_ratio_and_search_uses_the_paired_latency(tmp_path):
    dev = SimulatedDevice("raspberry-pi-4")
    small = ArtifactSpec(tmp_path / "s.onnx", "onnx", "onnxruntime", "x", (1, 1, 32, 32),
                         macs=10_000_000, params=1000)  # fmt: skip
    big = ArtifactSpec(tmp_path / "b.onnx", "onnx", "onnxruntime", "x", (1, 1, 32, 32),
                       macs=40_000_000, params=1000)  # fmt: skip
    opts = MeasureOptions(threads=1)
    paired = dev.measure(small, opts, reference=big)
    alone_small, alone_big = dev.measure(small, opts), dev.measure(big, opts)
    want = alone_small.latency_ms_p50 / alone_big.latency_ms_p50
    assert paired.latency_ratio == pytest.approx(want)
    assert alone_small.latency_ratio is None
    metrics = _metrics(paired, baseline_ms=10.0)
    assert metrics["latency_ms_p50_paired"] == pytest.approx(10.0 * want)
    assert metrics["latency_ms_p50"] == pytest.approx(alone_small.latency_ms_p50)
    obj = Objectives.from_metrics({**metrics, "peak_memory_mib": 1.0})
    assert obj.latency_ms == pytest.approx(10.0 * want)  # the paired figure, not the raw one
    unpaired = _metrics(alone_small, baseline_ms=10.0)
    assert "latency_ms_p50_paired" not in unpaired
    assert Objectives.from_metrics(unpaired).latency_ms == alone_small.latency_ms_p50


def test_resumed_run_saved_before_pairing_stays_unpaired():
    old = json.loads(SearchConfig().to_json())
    old.pop("paired_latency")
    assert SearchConfig.from_json(json.dumps(old)).paired_latency == "off"
    assert SearchConfig().paired_latency == "on"
    assert SearchConfig.from_json(SearchConfig().to_json()).paired_latency == "on"


@pytest.fixture(scope="module")
def local_device(tmp_path_factory):
    from host.local_agent import LocalDevice

    with LocalDevice(cache_dir=tmp_path_factory.mktemp("cache")) as dev:
        yield dev


FAST = MeasureOptions(warmup_runs=2, warmup_min_seconds=0.05, min_runs=20, min_seconds=0.2)


def test_agent_pairs_a_model_with_itself_and_with_a_bigger_one(local_device, tmp_path):
    small, big = _spec(tmp_path, "small", 8), _spec(tmp_path, "big", 96)
    same = local_device.measure(small, FAST, reference=small)
    low, high = same.latency_ratio_ci95
    assert 0.85 < same.latency_ratio < 1.15 and low <= same.latency_ratio <= high
    faster = local_device.measure(small, FAST, reference=big)
    assert faster.latency_ratio < 0.7  # 12x the channels
    assert faster.latency_ratio == pytest.approx(
        faster.latency_ms_p50 / faster.reference_latency_ms_p50
    )
    assert faster.n_runs >= FAST.min_runs and faster.provenance["reference_latency_n"] >= 20
    assert faster.energy_status == "unavailable" and "paired" in faster.energy_source
    assert "before the reference model was loaded" in faster.provenance["peak_memory_method"]
    alone = local_device.measure(small, FAST)
    assert alone.latency_ratio is None and "pair_blocks" not in alone.provenance


def test_agent_refuses_a_reference_that_does_not_fit(local_device, tmp_path):
    from hadmc.compress.onnx_export import export_onnx

    small = _spec(tmp_path, "small", 8)
    other = tmp_path / "other.onnx"  # takes 3 channels, the candidate's inputs have 1
    export_onnx(torch.nn.Conv2d(3, 4, 1).eval(), other, torch.randn(1, 3, 32, 32))
    ref = ArtifactSpec(other, "onnx", "onnxruntime", "input", (1, 3, 32, 32))
    with pytest.raises(DeviceError) as exc:
        local_device.measure(small, FAST, reference=ref)
    assert exc.value.code == "invalid_request" and "reference" in exc.value.message
    tfl = ArtifactSpec(other, "tflite", "litert", "input", (1, 3, 32, 32))
    with pytest.raises(DeviceError, match="same format and runtime"):
        local_device.measure(small, FAST, reference=tfl)
