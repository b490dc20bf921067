"""Surrogate parts: exact channel arithmetic, the calibrated latency fit, the accuracy proxy,
prospective error accounting and AMC-style action bounding."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hadmc.compress.pruning import count_macs_params, find_layer_groups, prune_model
from hadmc.models import build_model
from hadmc.search.env import KEEP_RATIOS, JointAction
from hadmc.search.reward import Objectives, RewardConfig
from hadmc.surrogate.accuracy import AccuracyProxy, interpolate_drop
from hadmc.surrogate.latency import LatencyModel
from hadmc.surrogate.model import Surrogate
from hadmc.surrogate.structure import ConfigFeatures, ModelStructure


@pytest.fixture(scope="module")
def net() -> tuple[torch.nn.Module, torch.Tensor, ModelStructure]:
    torch.manual_seed(0)
    model = build_model("mobilenetv2_small", num_classes=10, in_channels=1).eval()
    x = torch.zeros(1, 1, 16, 16)
    return model, x, ModelStructure(model, x)


def test_structure_predicts_the_macs_of_the_really_pruned_model(net) -> None:
    model, x, s = net
    groups = find_layer_groups(model, x)
    assert s.n_groups == len(groups)
    rng = np.random.default_rng(1)
    for _ in range(3):
        keeps = rng.choice(KEEP_RATIOS, size=len(groups)).tolist()
        macs, _ = count_macs_params(prune_model(model, keeps, x), x)
        f = s.features(keeps, ["fp32"] * len(groups))
        assert f.macs == pytest.approx(macs, rel=1e-9)  # exact, not an estimate
    full = s.features([1.0] * len(groups), ["int8"] * len(groups))
    assert full.macs == count_macs_params(model, x)[0]
    # Every group int8 except the last one: the classifier (no group) stays float.
    prec = ["int8"] * (len(groups) - 1) + ["fp32"]
    f = s.features([1.0] * len(groups), prec)
    assert f.boundaries == 1 and f.int8_groups == len(groups) - 1
    assert 0 < f.macs_fp32 < f.macs_int8


def _feat(fp32: float, int8: float, boundaries: int) -> ConfigFeatures:
    return ConfigFeatures(fp32 * 1e6, int8 * 1e6, 0.0, 0.0, boundaries, int(int8 > 0))


def test_latency_fit_recovers_a_linear_device() -> None:
    # A device with 0.1 ms overhead, 0.02 ms per fp32 MMAC, 0.008 per int8 MMAC, 0.03 per
    # boundary and 0.05 for any int8 model.
    def device(f: ConfigFeatures) -> float:
        return 0.1 + 0.02 * f.macs_fp32 / 1e6 + 0.008 * f.macs_int8 / 1e6 + 0.03 * f.boundaries \
            + 0.05 * (f.int8_groups > 0)  # fmt: skip

    base = _feat(100, 0, 0)
    model = LatencyModel(base, device(base), 1e6, 30.0)
    rng = np.random.default_rng(0)
    for _ in range(30):
        f = _feat(rng.uniform(0, 100), rng.uniform(0, 100), int(rng.integers(0, 4)))
        model.add(f, device(f), 1e6, 30.0)
    held_out = _feat(37.0, 41.0, 2)
    assert model.predict_latency_ms(held_out) == pytest.approx(device(held_out), rel=0.02)
    assert model.loo_mape() < 2.0
    assert model.terms()["boundaries"] == pytest.approx(0.03, rel=0.1)


def test_latency_prior_is_sane_before_any_measurement() -> None:
    base = _feat(100, 0, 0)
    model = LatencyModel(base, 2.0, 8e6, 30.0)
    assert model.predict_latency_ms(base) == pytest.approx(2.0, rel=0.05)
    # Half the MACs is faster, int8 is faster than fp32 at the same MACs.
    assert model.predict_latency_ms(_feat(50, 0, 0)) < 2.0
    assert model.predict_latency_ms(_feat(0, 100, 0)) < model.predict_latency_ms(base)


def test_accuracy_proxy_interpolates_and_learns_a_correction() -> None:
    assert interpolate_drop([0.1, 0.3, 0.6], 1.0, (0.75, 0.5, 0.3)) == 0.0
    assert interpolate_drop([0.1, 0.3, 0.6], 0.625, (0.75, 0.5, 0.3)) == pytest.approx(0.2)
    proxy = AccuracyProxy([[0.1, 0.3, 0.6]] * 2, baseline_accuracy=0.95)
    x = proxy.features([0.5, 0.5], "all", macs_kept=0.25, int8_share=1.0)
    assert x[1] == pytest.approx(0.6)  # raw drop: 0.3 + 0.3
    # Real results where the drop is exactly 0.5 x raw: the correction finds it.
    for keeps in ([1.0, 0.5], [0.5, 0.5], [0.3, 0.75], [0.3, 0.3], [0.75, 0.75], [1.0, 0.3]):
        xi = proxy.features(keeps, "all", 0.5, 0.0)
        proxy.add(xi, 0.95 - 0.5 * xi[1])
    xi = proxy.features([0.5, 0.3], "all", 0.5, 0.0)
    assert proxy.predict(xi) == pytest.approx(0.95 - 0.5 * 0.9, abs=0.03)


def test_surrogate_scores_prospectively_and_bounds_actions(net) -> None:
    model, x, s = net
    n = s.n_groups
    full = s.features([1.0] * n, ["fp32"] * n)
    per_mmac = 1.5 / (full.macs / 1e6)

    def device_ms(j: JointAction) -> float:  # a device linear in MACs: int8 costs 0.5x
        f = s.features(j.keep_ratios, j.precisions)
        return 0.2 + per_mmac * (f.macs_fp32 + 0.5 * f.macs_int8) / 1e6

    baseline = Objectives(0.95, 0.2 + 1.5, 30.0, None, 8_000_000, 0)
    lat = LatencyModel(full, baseline.latency_ms, 8e6, 30.0)
    proxy = AccuracyProxy([[0.01, 0.05, 0.2]] * n, 0.95)
    sur = Surrogate(s, lat, proxy, baseline, RewardConfig())
    rng = np.random.default_rng(0)
    for _ in range(12):
        j = JointAction.uniform(n, float(rng.choice(KEEP_RATIOS)), str(rng.choice(["fp32", "int8"])))
        pred = sur.predict(j)
        assert pred.to_dict()["predicted"] is True
        sur.observe(j, {"latency_ms_p50": device_ms(j), "accuracy": 0.9,
                        "size_bytes": 4e6, "peak_memory_mib": 29.0})  # fmt: skip
    rep = sur.report()
    assert rep["label"] == "predicted" and rep["latency_predictions_scored"] == 12 - 4
    assert rep["latency_mape_prospective_pct"] < 5.0
    # Action bounding: under a limit, the bound never allows a predicted-too-slow choice.
    limit = 0.6 * baseline.latency_ms
    bound = sur.keep_bound(limit)
    k0 = bound(0, [], ["fp32"])
    assert k0 in KEEP_RATIOS
    lowest = min(KEEP_RATIOS)
    f = s.features([k0] + [lowest] * (n - 1), ["fp32"] + ["int8"] * (n - 1))
    assert sur.latency.predict_latency_ms(f) <= limit
    if k0 < 1.0:  # the next larger choice would break the limit
        larger = min(k for k in KEEP_RATIOS if k > k0)
        f = s.features([larger] + [lowest] * (n - 1), ["fp32"] + ["int8"] * (n - 1))
        assert sur.latency.predict_latency_ms(f) > limit


def test_proxy_is_monotone_capped_and_knows_where_it_has_not_looked() -> None:
    """More pruning never predicts a smaller drop (non-negative ridge), nothing is predicted
    above the baseline, and the GP's uncertainty is small next to measured layouts and large
    far from them."""
    n = 8
    proxy = AccuracyProxy([[0.01, 0.03, 0.08]] * n, baseline_accuracy=0.95)

    def x_of(keeps):
        return proxy.features(keeps, "all", macs_kept=float(np.mean(keeps)) ** 2, int8_share=1.0)

    def true_acc(keeps):  # a real interaction: the first half costs more than the sum says
        raw = proxy.raw_drop(keeps)
        return 0.95 - 0.5 * raw - 0.05 * (1.0 - float(np.mean(keeps[: n // 2])))

    rng = np.random.default_rng(0)
    seen = []
    for _ in range(14):  # first half and second half pruned independently
        a, b = rng.choice(KEEP_RATIOS, 2)
        keeps = [float(a)] * (n // 2) + [float(b)] * (n // 2)
        seen.append(keeps)
        # one lucky candidate above the baseline: the fit must not learn "pruning helps"
        proxy.add(x_of(keeps), true_acc(keeps) + (0.03 if len(seen) == 3 else 0.0))
    assert np.all(proxy.coef[1:] >= 0)
    preds = [proxy.predict(x_of([k] * n)) for k in sorted(KEEP_RATIOS, reverse=True)]
    assert all(p1 >= p2 for p1, p2 in zip(preds, preds[1:], strict=False))
    assert max(preds) <= 0.95
    near = proxy.predict_std(x_of(seen[0]))
    far = proxy.predict_std(x_of([0.3, 0.3, 1.0, 1.0, 1.0, 1.0, 0.3, 0.3]))  # stages unlike any seen
    assert near < 0.5 * far and far <= 0.05


def test_surrogate_reward_is_computed_on_the_accuracy_lower_bound(net) -> None:
    from hadmc.surrogate.model import KAPPA

    model, x, s = net
    n = s.n_groups
    full = s.features([1.0] * n, ["fp32"] * n)
    baseline = Objectives(0.95, 2.0, 30.0, None, 8_000_000, 0)
    lat = LatencyModel(full, baseline.latency_ms, 8e6, 30.0)
    sur = Surrogate(s, lat, AccuracyProxy([[0.01, 0.05, 0.2]] * n, 0.95), baseline,
                    RewardConfig())  # fmt: skip
    assert sur.predict(JointAction.uniform(n, 0.7, "int8")).accuracy_std == 0.0  # nothing seen
    for k, acc in ((1.0, 0.95), (0.9, 0.94), (0.5, 0.85), (0.3, 0.7)):
        sur.observe(JointAction.uniform(n, k, "int8"), {"latency_ms_p50": 2.0 * k, "accuracy": acc,
                    "size_bytes": 4e6 * k, "peak_memory_mib": 29.0})  # fmt: skip
    j = JointAction.uniform(n, 0.7, "int8")
    p = sur.predict(j)
    assert p.accuracy_std > 0
    assert p.conservative.accuracy == pytest.approx(p.objectives.accuracy - KAPPA * p.accuracy_std)
    from hadmc.search.reward import compute_reward

    assert p.reward == pytest.approx(compute_reward(p.conservative, baseline, RewardConfig()).reward)
    assert p.reward < compute_reward(p.objectives, baseline, RewardConfig()).reward
