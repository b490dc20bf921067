"""Wilson 95% intervals for accuracies: hand-computed values, edges, errors."""

from __future__ import annotations

import pytest

from hadmc.stats import Z95, AccuracyCI, accuracy_with_ci, binomial_ci95


def test_z_is_the_two_sided_95_quantile() -> None:
    assert Z95 == pytest.approx(1.959963984540054, abs=1e-12)


@pytest.mark.parametrize(
    ("correct", "n", "low", "high"),
    [
        # Worked by hand from (p + z^2/2n -+ z sqrt(p(1-p)/n + z^2/4n^2)) / (1 + z^2/n), and
        # matched by scipy.stats.binomtest(k, n).proportion_ci(method="wilson").
        (90, 100, 0.825634, 0.944771),
        (97, 100, 0.915481, 0.989745),
        (5, 20, 0.111862, 0.468701),
        (349, 360, 0.946122, 0.982854),  # the old 360-image digits test split
        (2183, 2250, 0.962358, 0.976484),  # the augmented 2,250-image test split
    ],
)
def test_wilson_matches_hand_computed_values(correct: int, n: int, low: float, high: float) -> None:
    lo, hi = binomial_ci95(correct, n)
    assert lo == pytest.approx(low, abs=1e-6) and hi == pytest.approx(high, abs=1e-6)
    assert lo < correct / n < hi


def test_wilson_is_not_the_normal_approximation() -> None:
    # Normal approximation at 90/100: 0.9 -+ 1.96 * 0.03 = (0.8412, 0.9588), symmetric.
    lo, hi = binomial_ci95(90, 100)
    assert abs(lo - 0.8412) > 0.01 and abs(hi - 0.9588) > 0.01
    assert (0.9 - lo) > (hi - 0.9)  # pulled toward 0.5: longer on the side away from 1


@pytest.mark.parametrize("n", [1, 10, 100, 2250])
def test_edges_zero_and_all_correct(n: int) -> None:
    # Closed forms at the edges: 0/n -> (0, z^2/(n+z^2)); n/n -> (n/(n+z^2), 1).
    z2 = Z95**2
    assert binomial_ci95(0, n) == (0.0, pytest.approx(z2 / (n + z2), abs=1e-12))
    assert binomial_ci95(n, n) == (pytest.approx(n / (n + z2), abs=1e-12), 1.0)
    # Never zero width, unlike the normal approximation at p = 0 or 1.
    assert binomial_ci95(n, n)[0] < 1.0 and binomial_ci95(0, n)[1] > 0.0


def test_edges_by_hand_for_ten() -> None:
    assert binomial_ci95(0, 10) == (0.0, pytest.approx(0.277533, abs=1e-6))
    assert binomial_ci95(10, 10) == (pytest.approx(0.722467, abs=1e-6), 1.0)


def test_interval_narrows_with_n_and_is_symmetric_in_complement() -> None:
    widths = [b - a for a, b in (binomial_ci95(97 * k, 100 * k) for k in (1, 4, 16))]
    assert widths[0] > widths[1] > widths[2]
    lo, hi = binomial_ci95(30, 100)
    lo_c, hi_c = binomial_ci95(70, 100)
    assert lo == pytest.approx(1.0 - hi_c, abs=1e-12) and hi == pytest.approx(1.0 - lo_c, abs=1e-12)


@pytest.mark.parametrize(
    ("correct", "n", "match"),
    [(0, 0, "n must be >= 1"), (1, 0, "n must be >= 1"), (-1, 10, "correct must be in"),
     (11, 10, "correct must be in"), (0.97, 1, "integer count"), (5, 10.5, "integer count")],
)  # fmt: skip
def test_bad_counts_raise(correct: float, n: float, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        binomial_ci95(correct, n)  # type: ignore[arg-type]


def test_accuracy_with_ci() -> None:
    r = accuracy_with_ci(90, 100)
    assert isinstance(r, AccuracyCI)
    assert (r.correct, r.n, r.accuracy) == (90, 100, 0.9)
    assert (r.low, r.high) == pytest.approx((0.825634, 0.944771), abs=1e-6)
    assert r.half_width == pytest.approx((0.944771 - 0.825634) / 2, abs=1e-6)
    assert str(r) == "90.00% [95% CI 82.56-94.48, n=100]"
    with pytest.raises(ValueError):
        accuracy_with_ci(0, 0)
