"""ParetoArchive: known front, hand-computed 2-D hypervolume, monotone HV, best_under."""

from __future__ import annotations

import numpy as np
import pytest

from hadmc.pareto import ParetoArchive
from hadmc.reward import Limits, Objectives

BASE = Objectives(1.0, 10.0, 40.0, None, 1000, 0)


def obj(acc: float, lat: float, mem: float = 40.0, size: int = 1000) -> Objectives:
    return Objectives(acc, lat, mem, None, size, 0)


def two_d() -> ParetoArchive:
    a = ParetoArchive(BASE, hv_objectives=("accuracy", "latency"))
    a.add("A", obj(0.90, 5.0))  # normalised (0.10, 0.5)
    a.add("B", obj(0.80, 2.0))  # (0.20, 0.2)
    a.add("C", obj(0.70, 6.0))  # (0.30, 0.6): dominated by A and B
    a.add("D", obj(0.95, 12.0))  # (0.05, 1.2)
    return a


def test_known_front() -> None:
    a = two_d()
    assert a.front_ids() == ["A", "B", "D"]
    assert a.add("E", obj(0.5, 25.0)) is False  # dominated
    assert a.add("F", obj(0.6, 1.0)) is True  # fastest
    assert "F" in a.front_ids()


def test_noise_level_gains_do_not_keep_a_worse_model_on_the_front() -> None:
    # Seen in a real run: a much less accurate candidate, 5 % slower than a 95 % one, stayed
    # "non-dominated" because its peak memory was 1.2 MB (1.6 %) lower, which is noise.
    a = ParetoArchive(BASE)
    a.add("good", obj(0.948, 5.15, mem=72.9, size=1295))
    a.add("worse", obj(0.60, 5.39, mem=71.7, size=1295))
    a.add("tradeoff", obj(0.98, 7.38, mem=73.7, size=1676))  # slower but more accurate: stays
    a.add("lean", obj(0.55, 5.30, mem=60.0, size=1295))  # 18 % less memory: a real trade-off
    a.add("twin", obj(0.948, 5.10, mem=73.0, size=1295))  # within noise of "good": both stay
    assert sorted(a.front_ids()) == ["good", "lean", "tradeoff", "twin"]


def test_collapsed_models_are_archived_but_never_on_the_front() -> None:
    # A broken model is as fast and small as a working one of its shape, so dominance alone
    # keeps it; at or below half the baseline's accuracy it is recorded but not a trade-off.
    a = ParetoArchive(BASE)
    a.add("working", obj(0.90, 5.0, size=900))
    hv_working = a.hypervolume()
    assert a.add("collapsed", obj(0.10, 1.0, mem=20.0, size=100)) is False
    assert a.add("half", obj(0.50, 1.0, mem=20.0, size=100)) is False  # the bound is exclusive
    assert len(a) == 3 and "collapsed" in a
    assert a.front_ids() == ["working"]
    assert a.hypervolume() == pytest.approx(hv_working)
    assert a.add("just_above", obj(0.51, 1.0, mem=20.0, size=100)) is True
    assert a.hypervolume() > hv_working
    only_broken = ParetoArchive(BASE)
    only_broken.add("collapsed", obj(0.10, 1.0))
    assert only_broken.front() == [] and only_broken.hypervolume() == 0.0
    assert only_broken.best_under(Limits()) is None


def test_two_d_hypervolume_by_hand() -> None:
    a = two_d()
    # ref (0.5, 2): slabs x in [0.05,0.1) h=0.8, [0.1,0.2) h=1.5, [0.2,0.5) h=1.8
    expected = 0.05 * 0.8 + 0.1 * 1.5 + 0.3 * 1.8
    assert expected == pytest.approx(0.73)
    assert a.hypervolume() == pytest.approx(expected)
    hvs = [h for _, _, h in a.history]
    assert hvs[0] == pytest.approx(0.4 * 1.5)
    assert hvs[2] == hvs[1]  # dominated C adds nothing
    a.add("out", obj(0.5, 25.0))  # beyond the reference point: nothing
    assert a.hypervolume() == pytest.approx(expected)


def test_baseline_hv_is_one_half_with_default_reference() -> None:
    a = ParetoArchive(BASE)
    a.add(0, BASE)
    # (0.5-0) x (2-1) x (2-1) x (2-1)
    assert a.hypervolume() == pytest.approx(0.5)


def test_hv_never_decreases() -> None:
    rng = np.random.default_rng(0)
    a = ParetoArchive(BASE)
    prev = 0.0
    for i in range(60):
        o = obj(
            float(rng.uniform(0.3, 1.0)),
            float(rng.uniform(1.0, 25.0)),
            float(rng.uniform(10.0, 90.0)),
            int(rng.integers(100, 2500)),
        )
        a.add(i, o)
        hv = a.hypervolume()
        assert hv >= prev - 1e-12
        prev = hv
    assert prev > 0
    assert 0 < len(a.front()) < 60


def test_energy_dominance_only_when_all_have_it() -> None:
    base = Objectives(1.0, 10.0, 40.0, 5.0, 1000, 0)
    a = ParetoArchive(base)
    a.add("x", Objectives(0.9, 5.0, 40.0, 3.0, 1000, 0))
    a.add("y", Objectives(0.9, 5.0, 40.0, 2.0, 1000, 0))  # better energy only
    assert a.front_ids() == ["y"]
    a.add("z", Objectives(0.5, 9.0, 40.0, None, 1000, 0))
    assert set(a.front_ids()) == {"x", "y"}  # energy dropped from dominance


def test_best_under_limits() -> None:
    a = two_d()
    assert a.best_under(Limits()).candidate_id == "D"
    assert a.best_under(Limits(max_latency_ms=4.0)).candidate_id == "B"
    assert a.best_under(Limits(max_accuracy_drop=7.0, max_latency_ms=6.0)) is None
    assert a.best_under(Limits(max_latency_ms=6.0)).candidate_id == "A"
    rewards = {"A": 1.0, "B": 2.0, "D": 0.5}
    assert a.best_under(Limits(), score=lambda e: rewards[e.candidate_id]).candidate_id == "B"


def test_bad_input() -> None:
    with pytest.raises(ValueError):
        ParetoArchive(BASE, hv_objectives=("flops",))
    a = two_d()
    assert "A" in a and "Z" not in a
    with pytest.raises(ValueError, match="already"):
        a.add("A", obj(0.9, 5.0))
