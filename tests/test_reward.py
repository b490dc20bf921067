"""compute_reward against hand-computed values."""

from __future__ import annotations

import pytest

from hadmc.reward import (
    DEFAULT_WEIGHTS,
    Limits,
    Objectives,
    RewardConfig,
    compute_reward,
)

BASE = Objectives(
    accuracy=0.9,
    latency_ms=10.0,
    memory_mb=40.0,
    energy_mj=20.0,
    size_bytes=1_000_000,
    update_bytes=0,
)


def cand(**kw: float) -> Objectives:
    values = {**BASE.to_dict(), "update_bytes": 1_000_000}
    values.update(kw)
    return Objectives.from_dict(values)


def test_baseline_against_itself_scores_its_accuracy() -> None:
    # Every ratio is 1 (update: (1e6 + 1) / (1e6 + 1)), so the reward is the accuracy.
    r = compute_reward(cand(), BASE)
    assert r.reward == pytest.approx(0.9)
    assert r.feasible and r.terms["penalty"] == 0.0


def test_default_weights_halved_latency() -> None:
    r = compute_reward(cand(latency_ms=5.0), BASE)
    # 0.9 * 0.5 ** -0.25 = 0.9 * 1.189207...
    assert DEFAULT_WEIGHTS["latency"] == -0.25
    assert r.reward == pytest.approx(0.9 * 1.1892071150)
    assert r.terms["latency"] == pytest.approx(1.1892071150)


def test_custom_weights_hand_computed() -> None:
    cfg = RewardConfig(weights={"latency": -0.5, "size": -0.25})
    r = compute_reward(cand(accuracy=0.81, latency_ms=2.5, size_bytes=62_500), BASE, cfg)
    # 0.81 * (0.25 ** -0.5 = 2) * ((1/16) ** -0.25 = 2) = 3.24
    assert r.reward == pytest.approx(3.24)
    assert r.terms["memory"] == 1.0 and r.terms["energy"] == 1.0


def test_energy_only_when_both_have_it() -> None:
    cfg = RewardConfig(weights={"energy": -1.0})
    assert compute_reward(cand(energy_mj=10.0), BASE, cfg).reward == pytest.approx(1.8)
    no_energy = cand()
    no_energy.energy_mj = None
    r = compute_reward(no_energy, BASE, cfg)
    assert "energy" not in r.terms and r.reward == pytest.approx(0.9)


def test_update_bytes_zero_is_guarded() -> None:
    cfg = RewardConfig(weights={"update": -0.5})
    # (0 + 1) / (1e6 + 1) clipped to 0.01 -> 0.01 ** -0.5 = 10
    r = compute_reward(cand(update_bytes=0), BASE, cfg)
    assert r.reward == pytest.approx(9.0)
    # (9999 + 1) / (1e6 + 1) = 0.0099999.. -> clipped; 250_000 -> ~0.25 -> ~2
    r = compute_reward(cand(update_bytes=249_999), BASE, cfg)
    assert r.reward == pytest.approx(0.9 * (250_000 / 1_000_001) ** -0.5)


def test_penalties_scale_with_violation() -> None:
    cfg = RewardConfig(weights={"latency": -0.5, "size": -0.25}, limits=Limits(max_latency_ms=2.0))
    r = compute_reward(cand(accuracy=0.81, latency_ms=2.5, size_bytes=62_500), BASE, cfg)
    # violation 2.5/2 - 1 = 0.25 ; penalty 1.0 * (0.1 + 0.25)
    assert r.violations == {"latency": pytest.approx(0.25)}
    assert r.reward == pytest.approx(3.24 - 0.35)
    assert not r.feasible
    worse = compute_reward(cand(accuracy=0.81, latency_ms=3.0, size_bytes=62_500), BASE, cfg)
    assert worse.violations["latency"] > r.violations["latency"]


def test_accuracy_drop_and_memory_limits() -> None:
    cfg = RewardConfig(
        weights={}, limits=Limits(max_accuracy_drop=5.0, max_memory_mb=30.0), penalty=2.0
    )
    r = compute_reward(cand(accuracy=0.81, memory_mb=45.0), BASE, cfg)
    # drop 9 points vs 5 allowed -> (9-5)/5 = 0.8 ; memory 45/30 - 1 = 0.5
    assert r.violations["accuracy"] == pytest.approx(0.8)
    assert r.violations["memory"] == pytest.approx(0.5)
    assert r.reward == pytest.approx(0.81 - 2.0 * (0.1 + 0.8 + 0.1 + 0.5))
    ok = compute_reward(cand(accuracy=0.86, memory_mb=30.0), BASE, cfg)
    assert ok.feasible and ok.reward == pytest.approx(0.86)


def test_bad_input_is_rejected() -> None:
    with pytest.raises(ValueError, match="accuracy"):
        compute_reward(cand(accuracy=87.0), BASE)
    with pytest.raises(ValueError, match="unknown reward weights"):
        RewardConfig(weights={"flops": -1.0})
    with pytest.raises(ValueError, match="points"):
        Limits(max_accuracy_drop=150)
    with pytest.raises(ValueError, match="baseline latency_ms"):
        compute_reward(cand(), Objectives.from_dict({**BASE.to_dict(), "latency_ms": 0.0}))


def test_from_metrics() -> None:
    o = Objectives.from_metrics(
        {
            "accuracy": 0.5,
            "latency_ms_p50": 1.5,
            "peak_memory_mb": 3.0,
            "energy_mj": None,
            "size_bytes": 10,
            "update_bytes": None,
        }
    )
    assert o.latency_ms == 1.5 and o.energy_mj is None and o.update_bytes == 0
    with pytest.raises(ValueError, match="latency_ms_p50"):
        Objectives.from_metrics({"accuracy": 0.5})
