"""ParetoArchive: known front, kernel rule, hand-computed 2-D and 4-D HV, best_under."""

from __future__ import annotations

from itertools import permutations

import moocore
import numpy as np
import pytest

from hadmc.search.pareto import ParetoArchive, kernel
from hadmc.search.reward import COLLAPSE_FRACTION, Limits, Objectives

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
    # D is the most accurate front member, but at 12 ms slower than the 10 ms baseline: a
    # model slower than the original is never chosen, so A (0.90, 5 ms) is.
    assert a.best_under(Limits()).candidate_id == "A"
    assert a.best_under(Limits(), score=lambda e: e.objectives.accuracy).candidate_id == "A"
    only_slow = ParetoArchive(BASE, hv_objectives=("accuracy", "latency"))
    only_slow.add("slow", obj(0.99, 10.5, mem=20.0))  # smaller, nearly lossless, slower
    assert only_slow.front_ids() == ["slow"] and only_slow.best_under(Limits()) is None
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


# The documented "removes" relation, written out independently of hadmc.search.pareto: minimised
# columns (-accuracy, latency, memory, size, update); tolerance 3 % on latency and memory, 0 on
# size and update, ``acc_tol`` (absolute) on accuracy, taken at the removed point b.
REL_TOL = (0.0, 0.03, 0.03, 0.0, 0.0)


def removes(a: Objectives, b: Objectives, acc_tol: float = 0.0) -> bool:
    va = (-a.accuracy, a.latency_ms, a.memory_mib, a.size_bytes, a.update_bytes)
    vb = (-b.accuracy, b.latency_ms, b.memory_mib, b.size_bytes, b.update_bytes)
    tol = [r * abs(x) for r, x in zip(REL_TOL, vb, strict=True)]
    tol[0] = acc_tol
    within = all(x <= y + t for x, y, t in zip(va, vb, tol, strict=True))
    clearly = any(x < y - t for x, y, t in zip(va, vb, tol, strict=True))
    pareto = all(x <= y for x, y in zip(va, vb, strict=True)) and va != vb
    return within and (clearly or pareto)


WORKED = {"a": obj(0.90, 5.0), "b": obj(0.89, 4.9), "c": obj(0.88, 4.8)}


def test_front_keeps_what_no_front_member_removes() -> None:
    # a removes b (5.0 <= 4.9 * 1.03 = 5.047, more accurate), b removes c (4.9 <= 4.944), but
    # a does not remove c (5.0 > 4.8 * 1.03 = 4.944): b is gone, so c stays. Pruning every
    # point that any point removes gave [a].
    assert removes(WORKED["a"], WORKED["b"]) and removes(WORKED["b"], WORKED["c"])
    assert not removes(WORKED["a"], WORKED["c"])
    for order in permutations("abc"):  # well-defined: the same front in any insertion order
        a = ParetoArchive(BASE)
        for k in order:
            a.add(k, WORKED[k])
        assert sorted(a.front_ids()) == ["a", "c"], order


def test_hypervolume_is_over_front_members_only() -> None:
    a = ParetoArchive(BASE, hv_objectives=("accuracy", "latency"))
    for k, o in WORKED.items():
        a.add(k, o)
    # Front [a, c]: normalised a (0.10, 0.50), c (0.12, 0.48); ref (0.5, 2):
    # 0.02 * (2 - 0.5) + 0.38 * (2 - 0.48) = 0.03 + 0.5776 = 0.6076.
    # With the removed b (0.11, 0.49) it would be 0.6077.
    assert a.hypervolume() == pytest.approx(0.6076, abs=1e-12)
    assert a.hypervolume() == pytest.approx(
        moocore.hypervolume(np.asarray([[0.10, 0.50], [0.12, 0.48]]), ref=np.asarray([0.5, 2.0])),
        abs=1e-12,
    )


def test_hypervolume_can_dip_within_noise() -> None:
    # Documented: a newcomer within noise of a member removes it, so the HV may fall by a
    # sliver. b (0.10, 0.5): 0.4 * 1.5 = 0.6 ; p (0.099, 0.5149) removes b (0.901 > 0.90,
    # 5.149 <= 5.15): 0.401 * 1.4851 = 0.5955251.
    a = ParetoArchive(BASE, hv_objectives=("accuracy", "latency"))
    a.add("b", obj(0.90, 5.0))
    assert a.hypervolume() == pytest.approx(0.6)
    a.add("p", obj(0.901, 5.149))
    assert a.front_ids() == ["p"]
    assert a.hypervolume() == pytest.approx(0.5955251, abs=1e-9)


def test_ties_in_accuracy_follow_the_relation_not_a_fixed_order() -> None:
    # Same accuracy: "lean" is 2 % slower (within noise) and 25 % leaner, so it removes
    # "quick"; a single pass ordered by (accuracy, latency) would keep "quick" first and then
    # "lean" too, a front member removing another.
    lean, quick = obj(0.9, 5.1, mem=30.0), obj(0.9, 5.0, mem=40.0)
    assert removes(lean, quick) and not removes(quick, lean)
    for order in (("lean", "quick"), ("quick", "lean")):
        a = ParetoArchive(BASE)
        for k in order:
            a.add(k, {"lean": lean, "quick": quick}[k])
        assert a.front_ids() == ["lean"]


def random_archive(
    seed: int, n: int, acc_tol_points: float = 0.0, acc_levels: int = 100
) -> ParetoArchive:
    rng = np.random.default_rng(seed)
    a = ParetoArchive(BASE, accuracy_tolerance_points=acc_tol_points)
    for i in range(n):
        # Accuracy on an ``acc_levels`` grid (ties, as on a real validation split); latency and
        # memory in narrow bands so that many pairs are within the 3 % noise tolerance.
        a.add(
            i,
            obj(
                float(rng.integers(acc_levels * 2 // 5, acc_levels)) / acc_levels,
                float(rng.uniform(4.0, 6.0)),
                float(rng.uniform(36.0, 44.0)),
                int(rng.choice([600, 800, 1000])),
            ),
        )
    return a


@pytest.mark.parametrize(("seed", "acc_levels"), [(0, 100), (1, 100), (2, 100), (3, 10)])
def test_front_invariants_on_random_points(seed: int, acc_levels: int) -> None:
    a = random_archive(seed, 80, acc_levels=acc_levels)
    front = a.front()
    front_ids = {e.candidate_id for e in front}
    working = [e for e in a.entries if e.objectives.accuracy > a.min_accuracy]
    assert 1 < len(front) < len(working)
    assert all(e.objectives.accuracy > a.min_accuracy for e in front)
    for e in working:
        if e.candidate_id not in front_ids:
            assert any(removes(f.objectives, e.objectives) for f in front), e
    for f in front:
        assert not any(removes(g.objectives, f.objectives) for g in front), f
    # Hypervolume = moocore's over exactly the front's normalised points.
    pts = np.asarray([a.normalised(e.objectives) for e in front])
    inside = pts[np.all(pts < a.reference_point, axis=1)]
    assert a.hypervolume() == pytest.approx(moocore.hypervolume(inside, ref=a.reference_point))


def test_four_d_hypervolume_by_hand() -> None:
    a = ParetoArchive(BASE)  # (accuracy, latency, size, memory), ref (0.5, 2, 2, 2)
    a.add("P", obj(0.90, 4.0, mem=32.0, size=600))  # (0.10, 0.4, 0.6, 0.8)
    a.add("Q", obj(0.80, 2.0, mem=24.0, size=800))  # (0.20, 0.2, 0.8, 0.6)
    a.add("R", obj(0.85, 3.0, mem=36.0, size=500))  # (0.15, 0.3, 0.5, 0.9)
    assert a.front_ids() == ["P", "Q", "R"]
    # Inclusion-exclusion of the boxes [x, ref]:
    #   P 0.4*1.6*1.4*1.2 = 1.0752   Q 0.3*1.8*1.2*1.4 = 0.9072   R 0.35*1.7*1.5*1.1 = 0.98175
    #   PQ (0.2,0.4,0.8,0.8) 0.3*1.6*1.2*1.2 = 0.6912   PR (0.15,0.4,0.6,0.9) 0.35*1.6*1.4*1.1
    #   = 0.8624   QR (0.2,0.3,0.8,0.9) 0.3*1.7*1.2*1.1 = 0.6732
    #   PQR (0.2,0.4,0.8,0.9) 0.3*1.6*1.2*1.1 = 0.6336
    expected = 1.0752 + 0.9072 + 0.98175 - 0.6912 - 0.8624 - 0.6732 + 0.6336
    assert expected == pytest.approx(1.37095)
    assert a.hypervolume() == pytest.approx(expected, abs=1e-12)
    # Over accuracy and latency only it would be 0.705.
    two = ParetoArchive(BASE, hv_objectives=("accuracy", "latency"))
    for k, o in zip("PQR", (e.objectives for e in a.entries), strict=True):
        two.add(k, o)
    assert two.hypervolume() == pytest.approx(0.705)


def test_accuracy_tolerance_is_explicit() -> None:
    fast = obj(0.899, 3.0)  # 0.1 points less accurate, 40 % faster
    exact = ParetoArchive(BASE)
    exact.add("acc", obj(0.900, 5.0))
    exact.add("fast", fast)
    assert exact.accuracy_tolerance_points == 0.0
    assert exact.front_ids() == ["acc", "fast"]  # any accuracy gain is a trade-off
    noisy = ParetoArchive(BASE, accuracy_tolerance_points=0.5)
    noisy.add("acc", obj(0.900, 5.0))
    noisy.add("fast", fast)
    assert noisy.front_ids() == ["fast"]  # 0.1 points is within noise: removed by "fast"
    assert removes(fast, obj(0.900, 5.0), acc_tol=0.005)
    with pytest.raises(ValueError, match="points"):
        ParetoArchive(BASE, accuracy_tolerance_points=-1.0)


def test_accuracy_tolerance_front_still_absorbs_every_point() -> None:
    # Accuracy, latency and memory all tolerant: cycles are possible, so only the first rule
    # is guaranteed: every working non-front point is removed by a front member.
    a = random_archive(4, 80, acc_tol_points=2.0)
    front = a.front()
    ids = {e.candidate_id for e in front}
    for e in a.entries:
        if e.objectives.accuracy > a.min_accuracy and e.candidate_id not in ids:
            assert any(removes(f.objectives, e.objectives, acc_tol=0.02) for f in front)


def test_front_floor_is_the_reward_collapse_fraction() -> None:
    assert ParetoArchive(BASE).min_accuracy == COLLAPSE_FRACTION * BASE.accuracy
    base2 = Objectives(0.985, 2.0, 8.0, None, 8_000_000, 0)
    assert ParetoArchive(base2).min_accuracy == pytest.approx(0.4925)


def test_kernel_breaks_a_cycle_and_still_absorbs() -> None:
    # 0 removes 1, 1 removes 2, 2 removes 0: no set meets both rules. The first in the order
    # (0) joins, removes 1, then 2 (no longer removed by a remaining point) joins.
    cycle = np.zeros((3, 3), dtype=bool)
    cycle[0, 1] = cycle[1, 2] = cycle[2, 0] = True
    assert kernel(cycle, [0, 1, 2]).tolist() == [True, False, True]
    assert kernel(cycle, [1, 2, 0]).tolist() == [True, True, False]
    # Without a cycle the order does not matter: chain 0 -> 1 -> 2 gives {0, 2}.
    chain = np.zeros((3, 3), dtype=bool)
    chain[0, 1] = chain[1, 2] = True
    for order in permutations(range(3)):
        assert kernel(chain, list(order)).tolist() == [True, False, True]
