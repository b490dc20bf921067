"""Confidence intervals for accuracies measured on a finite test split.

Why this exists: an accuracy of 0.97 on 360 images and one of 0.97 on 2,250 are not the same
claim; reports carry the interval so a "-0.5 point" drop can be read against its noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

# Two-sided 95%: the 0.975 quantile of the standard normal, 1.959963984540054.
Z95 = NormalDist().inv_cdf(0.975)


def binomial_ci95(correct: int, n: int) -> tuple[float, float]:
    """95% Wilson score interval ``(low, high)`` for an accuracy of ``correct / n``.

    Why Wilson and not the normal approximation ``p +- z*sqrt(p(1-p)/n)``: near 0 or 1 (an
    accuracy of 0.97 or 1.0 is the usual case here) and for small n the normal interval is
    too narrow, collapses to zero width at 0/n and n/n, and can leave [0, 1]; Wilson's
    interval stays inside [0, 1], is never empty, and keeps close to the nominal 95%
    coverage for all p (Brown, Cai & DasGupta 2001, "Interval estimation for a binomial
    proportion"). It is also closed-form, unlike Clopper-Pearson (which is conservative).

    Raises ValueError for n < 1 or correct outside [0, n].
    """
    _check_counts(correct, n)
    p = correct / n
    z2 = Z95 * Z95
    denom = 1.0 + z2 / n
    center = (p + z2 / (2 * n)) / denom
    half = Z95 * math.sqrt(p * (1.0 - p) / n + z2 / (4 * n * n)) / denom
    # At 0/n and n/n one bound is exactly 0 or 1 in exact arithmetic; pin it, since
    # center -+ half can land a few ulps off.
    low = 0.0 if correct == 0 else max(0.0, center - half)
    high = 1.0 if correct == n else min(1.0, center + half)
    return low, high


@dataclass(frozen=True)
class AccuracyCI:
    """An accuracy with its 95% Wilson interval; all values in [0, 1]."""

    correct: int
    n: int
    accuracy: float
    low: float
    high: float

    @property
    def half_width(self) -> float:
        """Half the interval's width (not symmetric about ``accuracy`` in general)."""
        return (self.high - self.low) / 2.0

    def __str__(self) -> str:
        return (
            f"{100 * self.accuracy:.2f}% "
            f"[95% CI {100 * self.low:.2f}-{100 * self.high:.2f}, n={self.n}]"
        )


def accuracy_with_ci(correct: int, n: int) -> AccuracyCI:
    """``correct / n`` with its :func:`binomial_ci95` interval."""
    low, high = binomial_ci95(correct, n)
    return AccuracyCI(correct=int(correct), n=int(n), accuracy=correct / n, low=low, high=high)


def _check_counts(correct: int, n: int) -> None:
    # Counts, not fractions: an accuracy passed by mistake (0.97) must not pass silently.
    for name, v in (("correct", correct), ("n", n)):
        if isinstance(v, bool) or int(v) != v:
            raise ValueError(f"{name} must be an integer count, got {v!r}")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if not 0 <= correct <= n:
        raise ValueError(f"correct must be in [0, n={n}], got {correct}")
