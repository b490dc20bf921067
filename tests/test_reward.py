"""compute_reward against hand-computed values: targets, soft constraint, tiers, update bytes."""

from __future__ import annotations

import numpy as np
import pytest

from hadmc.search.reward import (
    COLLAPSE_FRACTION,
    DEFAULT_WEIGHTS,
    DEFAULT_WEIGHTS_ABOVE,
    Limits,
    Objectives,
    RewardConfig,
    compute_reward,
    is_collapsed,
    limit_violations,
)

BASE = Objectives(
    accuracy=0.9,
    latency_ms=10.0,
    memory_mib=40.0,
    energy_mj=20.0,
    size_bytes=1_000_000,
    update_bytes=0,
)


def cand(**kw: float) -> Objectives:
    # Default: a re-exported copy of the baseline whose update re-sends the whole file.
    values = {**BASE.to_dict(), "update_bytes": 1_000_000}
    values.update(kw)
    return Objectives.from_dict(values)


def test_baseline_against_itself_scores_its_accuracy() -> None:
    # Every ratio is 1 (update: (1e6 + 1) / (1e6 + 1)), so the reward is the accuracy.
    r = compute_reward(cand(), BASE)
    assert r.reward == pytest.approx(0.9)
    assert r.feasible and r.tier == "feasible" and r.terms["penalty"] == 0.0
    # As the search stores it (update_bytes 0: already deployed): (0+1)/(1e6+1) -> clip 0.01,
    # 0.01 ** -0.05 = 1.2589254; 0.9 * 1.2589254 = 1.1330329.
    assert compute_reward(BASE, BASE).reward == pytest.approx(1.1330329, abs=1e-6)


def test_default_weights_halved_latency() -> None:
    r = compute_reward(cand(latency_ms=5.0), BASE)
    # 0.9 * 0.5 ** -0.25 = 0.9 * 1.189207...
    assert DEFAULT_WEIGHTS["latency"] == -0.25 and DEFAULT_WEIGHTS_ABOVE["latency"] == -1.0
    assert r.reward == pytest.approx(0.9 * 1.1892071150)
    assert r.terms["latency"] == pytest.approx(1.1892071150)


def test_custom_weights_hand_computed() -> None:
    cfg = RewardConfig(weights={"latency": -0.5, "size": -0.25})
    assert cfg.weights_above == {"latency": -2.0, "size": -1.0}  # 4 x below by default
    r = compute_reward(
        cand(accuracy=0.81, latency_ms=2.5, size_bytes=62_500, update_bytes=62_500), BASE, cfg
    )
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


def test_exponent_switches_at_a_latency_limit() -> None:
    # Target = the user's limit 4 ms (not the 10 ms baseline).
    cfg = RewardConfig(limits=Limits(max_latency_ms=4.0))
    below = compute_reward(cand(latency_ms=3.96), BASE, cfg)
    # ratio 0.99, w_below -0.25: 0.99 ** -0.25 = 1.0025157; 0.9 * 1.0025157 = 0.9022642
    assert below.terms["latency_target"] == 4.0
    assert below.terms["latency"] == pytest.approx(1.0025157, abs=1e-7)
    assert below.feasible and below.reward == pytest.approx(0.9022642, abs=1e-7)
    above = compute_reward(cand(latency_ms=4.04), BASE, cfg)
    # ratio 1.01, w_above -1.0: 1.01 ** -1 = 0.9900990 (w_below would give 0.9975155);
    # base 0.9 * 0.990099 = 0.8910891. Over the limit: v = 0.01, s = 0.1 + 0.01 = 0.11,
    # reward = -0.11 / 1.11 = -0.0990991.
    assert above.terms["latency"] == pytest.approx(0.9900990, abs=1e-7)
    assert above.terms["base"] == pytest.approx(0.8910891, abs=1e-7)
    assert above.tier == "infeasible" and above.reward == pytest.approx(-0.0990991, abs=1e-7)


def test_targets_come_from_the_baseline_without_limits() -> None:
    faster = compute_reward(cand(latency_ms=9.9), BASE)
    slower = compute_reward(cand(latency_ms=10.1), BASE)
    assert faster.terms["latency_target"] == 10.0 and faster.terms["memory_target"] == 40.0
    # 0.9 * 0.99 ** -0.25 = 0.9022642 ; 0.9 * 1.01 ** -1.0 = 0.8910891 (still feasible)
    assert faster.reward == pytest.approx(0.9022642, abs=1e-7)
    assert slower.feasible and slower.reward == pytest.approx(0.8910891, abs=1e-7)
    # A memory limit above the baseline moves the target: 40 / 50 = 0.8, 0.8 ** -0.05 =
    # 1.0112197, 0.9 * 1.0112197 = 0.9100977.
    cfg = RewardConfig(limits=Limits(max_memory_mib=50.0))
    r = compute_reward(cand(), BASE, cfg)
    assert r.terms["memory_target"] == 50.0
    assert r.reward == pytest.approx(0.9100977, abs=1e-7)


def test_worked_ordering_lossless_over_55_over_collapsed() -> None:
    base = Objectives(0.985, 2.0, 8.0, None, 8_000_000, 0)
    lossless = Objectives(0.985, 2.0, 8.0, None, 8_000_000, 8_000_000)
    m55 = Objectives(0.55, 0.5, 8.0, None, 2_000_000, 2_000_000)  # pruned: every chunk new
    m47 = Objectives(0.47, 0.4, 8.0, None, 640_000, 640_000)  # pruned + int8
    # The previous formula (ratios vs the baseline, update vs baseline size, no tiers) gave
    # m47: 0.47 * 0.2**-0.25 * 0.08**-0.1 * (640001/8000001)**-0.05 = 1.0265 > lossless 0.985.
    r_lossless = compute_reward(lossless, base).reward
    r55 = compute_reward(m55, base).reward
    r47 = compute_reward(m47, base)
    assert r_lossless == pytest.approx(0.985)  # every ratio 1
    # 0.55 * 0.25**-0.25 (1.4142136) * 0.25**-0.1 (1.1486984) * update (1.0) = 0.8934776
    assert r55 == pytest.approx(0.8934776, abs=1e-7)
    # Collapsed: 0.47 <= 0.5 * 0.985 = 0.4925; -2 - (1 - 0.47 / 0.4925) = -2.0456853
    assert r47.collapsed and r47.tier == "collapsed"
    assert r47.reward == pytest.approx(-2.0456853, abs=1e-7)
    assert r_lossless > r55 > r47.reward
    # Also below the deployed baseline itself (0.985 * 1.2589254 = 1.2400415).
    assert compute_reward(base, base).reward == pytest.approx(1.2400415, abs=1e-7)
    # However fast: 49 % at 1 microsecond (ratio clipped to 0.01) is still collapsed.
    tiny = Objectives(0.49, 0.001, 0.1, None, 1_000, 1_000)
    assert compute_reward(tiny, base).reward < 0 < compute_reward(lossless, base).reward


def test_accuracy_limit_puts_55_below_every_candidate_within_it() -> None:
    base = Objectives(0.985, 2.0, 8.0, None, 8_000_000, 0)
    cfg = RewardConfig(limits=Limits(max_accuracy_drop=1.0))
    m55 = compute_reward(Objectives(0.55, 0.5, 8.0, None, 2_000_000, 2_000_000), base, cfg)
    # drop 43.5 points: v = (43.5 - 1) / 1 = 42.5, s = 42.6, reward = -42.6 / 43.6 = -0.9770642
    assert m55.violations == {"accuracy": pytest.approx(42.5)}
    assert m55.reward == pytest.approx(-0.9770642, abs=1e-7)
    within = {
        # 0.9 points, 1.5x slower than the baseline: 0.976 * 1.5 ** -1 = 0.6506667
        "slow": Objectives(0.976, 3.0, 8.0, None, 8_000_000, 8_000_000),
        # exactly 1 point (100 * (0.985 - 0.975) is 1.0000000000000009 in floats)
        "at_limit": Objectives(0.975, 2.0, 8.0, None, 8_000_000, 8_000_000),
        "lossless": Objectives(0.985, 2.0, 8.0, None, 8_000_000, 8_000_000),
        # 100x slower, larger, hungrier (ratios clipped to 100): 0.98 * 100 ** -1.6 = 6.18e-4
        "awful": Objectives(0.98, 500.0, 2000.0, None, 900_000_000, 900_000_000),
    }
    rewards = {k: compute_reward(o, base, cfg) for k, o in within.items()}
    assert all(r.feasible for r in rewards.values())
    assert rewards["slow"].reward == pytest.approx(0.6506667, abs=1e-7)
    assert rewards["at_limit"].reward == pytest.approx(0.975)
    assert rewards["awful"].reward == pytest.approx(0.98 * 100**-1.6)
    assert min(r.reward for r in rewards.values()) > m55.reward
    collapsed = compute_reward(Objectives(0.47, 0.4, 8.0, None, 640_000, 640_000), base, cfg)
    assert collapsed.tier == "collapsed" and collapsed.reward < m55.reward


def test_tiers_hold_for_any_magnitudes() -> None:
    # Random candidates, from tiny to huge ratios: every feasible > every infeasible > every
    # collapsed, for several limit sets.
    rng = np.random.default_rng(3)
    limit_sets = [
        Limits(max_accuracy_drop=2.0),
        Limits(max_latency_ms=5.0, max_memory_mib=45.0),
        Limits(max_latency_ms=20.0, max_accuracy_drop=3.0),
    ]
    for limits in limit_sets:
        cfg = RewardConfig(limits=limits)
        by_tier: dict[str, list[float]] = {"feasible": [], "infeasible": [], "collapsed": []}
        for _ in range(400):
            o = Objectives(
                accuracy=float(rng.choice([rng.uniform(0, 0.9), rng.uniform(0.87, 0.9)])),
                latency_ms=float(10 ** rng.uniform(-3, 3)),
                memory_mib=float(10 ** rng.uniform(-1, 4)),
                energy_mj=float(10 ** rng.uniform(-2, 4)),
                size_bytes=int(10 ** rng.uniform(2, 9)),
                update_bytes=0,
            )
            o.update_bytes = int(rng.integers(0, o.size_bytes + 1))
            r = compute_reward(o, BASE, cfg)
            by_tier[r.tier].append(r.reward)
            assert r.collapsed == is_collapsed(o, BASE)
            assert r.feasible == (not limit_violations(o, BASE, limits))
        assert all(by_tier.values())
        assert min(by_tier["feasible"]) > 0 > max(by_tier["infeasible"])
        assert min(by_tier["infeasible"]) > -2 >= max(by_tier["collapsed"])


def test_collapsed_tier_bounds_and_gradient() -> None:
    assert COLLAPSE_FRACTION == 0.5
    at_floor = compute_reward(cand(accuracy=0.45), BASE)  # 0.5 * 0.9: inclusive
    assert at_floor.collapsed and at_floor.reward == pytest.approx(-2.0)
    assert at_floor.feasible  # no limits set: the user's limits are met, the model is broken
    zero = compute_reward(cand(accuracy=0.0, latency_ms=0.1), BASE)
    assert zero.reward == pytest.approx(-3.0)
    # -2 - (1 - 0.3 / 0.45) = -2.3333333 ; more accuracy scores higher, speed does not count
    r = compute_reward(cand(accuracy=0.3), BASE)
    assert r.reward == pytest.approx(-2.3333333, abs=1e-7)
    assert compute_reward(cand(accuracy=0.3, latency_ms=0.1), BASE).reward == r.reward
    just_above = compute_reward(cand(accuracy=0.4501), BASE)
    assert not just_above.collapsed and just_above.reward == pytest.approx(0.4501)


def test_update_bytes_are_not_counted_twice() -> None:
    # Pruned to a quarter, every chunk re-sent: update fraction (250001 / 250001) = 1, so the
    # whole saving is in the size term: 0.9 * 0.25 ** -0.1 = 0.9 * 1.1486984 = 1.0338285.
    # (Update vs the baseline's size, as before, would multiply another 0.25 ** -0.05.)
    full = compute_reward(cand(size_bytes=250_000, update_bytes=250_000), BASE)
    assert full.terms["update_size"] == 1.0
    assert full.reward == pytest.approx(1.0338285, abs=1e-7)
    no_update = RewardConfig(weights={**DEFAULT_WEIGHTS, "update_size": 0.0})
    assert full.reward == pytest.approx(
        compute_reward(cand(size_bytes=250_000, update_bytes=250_000), BASE, no_update).reward
    )
    # Half the chunks unchanged: (125000 / 250001) ** -0.05 = 1.0352651 on top.
    half = compute_reward(cand(size_bytes=250_000, update_bytes=124_999), BASE)
    assert half.terms["update_size"] == pytest.approx(1.0352651, abs=1e-7)
    assert half.reward == pytest.approx(1.0338285 * 1.0352651, abs=1e-6)


def test_update_bytes_zero_is_guarded() -> None:
    cfg = RewardConfig(weights={"update_size": -0.5})
    # (0 + 1) / (1e6 + 1) clipped to 0.01 -> 0.01 ** -0.5 = 10
    r = compute_reward(cand(update_bytes=0), BASE, cfg)
    assert r.reward == pytest.approx(9.0)
    # Against the candidate's own size: (249999 + 1) / (500000 + 1) ~= 0.5 -> 0.5 ** -0.5
    r = compute_reward(cand(size_bytes=500_000, update_bytes=249_999), BASE, cfg)
    assert r.reward == pytest.approx(0.9 * (250_000 / 500_001) ** -0.5)


def test_penalties_scale_with_violation() -> None:
    cfg = RewardConfig(weights={"latency": -0.5, "size": -0.25}, limits=Limits(max_latency_ms=2.0))
    r = compute_reward(cand(accuracy=0.81, latency_ms=2.5, size_bytes=62_500), BASE, cfg)
    # violation 2.5/2 - 1 = 0.25 ; s = 1.0 * (0.1 + 0.25) = 0.35 ; reward -0.35 / 1.35
    assert r.violations == {"latency": pytest.approx(0.25)}
    assert r.reward == pytest.approx(-0.35 / 1.35) and r.reward == pytest.approx(-0.2592593)
    # base (diagnostic): 0.81 * 1.25 ** -2.0 (w_above) * 2 = 1.0368
    assert r.terms["base"] == pytest.approx(1.0368)
    assert not r.feasible
    worse = compute_reward(cand(accuracy=0.81, latency_ms=3.0, size_bytes=62_500), BASE, cfg)
    # v 0.5, s 0.6 -> -0.375: larger violation, lower reward
    assert worse.violations["latency"] > r.violations["latency"]
    assert worse.reward == pytest.approx(-0.375) and worse.reward < r.reward
    # Even a huge violation stays above the collapsed tier: v = 999, s = 999.1
    huge = compute_reward(cand(accuracy=0.81, latency_ms=2000.0), BASE, cfg)
    assert huge.reward == pytest.approx(-999.1 / 1000.1) and huge.reward > -1.0


def test_accuracy_drop_and_memory_limits() -> None:
    cfg = RewardConfig(
        weights={}, limits=Limits(max_accuracy_drop=5.0, max_memory_mib=30.0), penalty=2.0
    )
    r = compute_reward(cand(accuracy=0.81, memory_mib=45.0), BASE, cfg)
    # drop 9 points vs 5 allowed -> (9-5)/5 = 0.8 ; memory 45/30 - 1 = 0.5
    assert r.violations["accuracy"] == pytest.approx(0.8)
    assert r.violations["memory"] == pytest.approx(0.5)
    # s = 2.0 * (0.1 + 0.8 + 0.1 + 0.5) = 3.0 -> -3 / 4
    assert r.reward == pytest.approx(-0.75)
    one = compute_reward(cand(accuracy=0.81, memory_mib=30.0), BASE, cfg)
    # only the accuracy violation: s = 2.0 * 0.9 = 1.8 -> -1.8 / 2.8 = -0.6428571
    assert one.reward == pytest.approx(-0.6428571, abs=1e-7) and one.reward > r.reward
    ok = compute_reward(cand(accuracy=0.86, memory_mib=30.0), BASE, cfg)
    assert ok.feasible and ok.reward == pytest.approx(0.86)


def test_bad_input_is_rejected() -> None:
    with pytest.raises(ValueError, match="accuracy"):
        compute_reward(cand(accuracy=87.0), BASE)
    with pytest.raises(ValueError, match="unknown reward weights"):
        RewardConfig(weights={"flops": -1.0})
    with pytest.raises(ValueError, match="<= 0"):
        RewardConfig(weights={"latency": 0.5})
    with pytest.raises(ValueError, match="steeper"):
        RewardConfig(weights={"latency": -0.5}, weights_above={"latency": -0.1})
    with pytest.raises(ValueError, match="penalty"):
        RewardConfig(penalty=0.0)
    with pytest.raises(ValueError, match="points"):
        Limits(max_accuracy_drop=150)
    with pytest.raises(ValueError, match="baseline latency_ms"):
        compute_reward(cand(), Objectives.from_dict({**BASE.to_dict(), "latency_ms": 0.0}))
    # A 0-accuracy baseline does not divide by zero: a 0-accuracy candidate is collapsed, -3.
    zero_base = Objectives.from_dict({**BASE.to_dict(), "accuracy": 0.0})
    assert compute_reward(cand(accuracy=0.0), zero_base).reward == -3.0


def test_from_metrics() -> None:
    o = Objectives.from_metrics(
        {
            "accuracy": 0.5,
            "latency_ms_p50": 1.5,
            "peak_memory_mib": 3.0,
            "energy_mj": None,
            "size_bytes": 10,
            "update_bytes": None,
        }
    )
    assert o.latency_ms == 1.5 and o.energy_mj is None and o.update_bytes == 0
    with pytest.raises(ValueError, match="latency_ms_p50"):
        Objectives.from_metrics({"accuracy": 0.5})
