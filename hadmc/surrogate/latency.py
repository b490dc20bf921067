"""Latency (and size / memory) model calibrated on the user's own device.

Model (per candidate, milliseconds)::

    latency_ms = c0 + c_fp32 * MMACs_fp32 + c_int8 * MMACs_int8 + c_b * boundaries
                 + c_q * [any int8]

``MMACs`` are millions of multiply-accumulates of the pruned model split by the precision of
the layer group that owns each module's output (``hadmc.surrogate.structure``); ``boundaries``
counts float <-> int8 transitions (each a Quantize or Dequantize node); ``[any int8]`` is the
input Quantize + output Dequantize of any quantized model. The form follows what was measured
on the demo: a 4-feature least-squares fit over 42 candidates of two runs reached 9.7 %
leave-one-out MAPE at about 7.5 us per boundary.

Fit: non-negative least squares (every term is a cost) on *relative* errors (rows divided by
the measured latency, so a 0.3 ms and a 2 ms model count alike, which is what MAPE scores),
with weak prior rows that keep the fit defined while only a few measurements exist: the
baseline's latency spread over its MACs, int8 MACs at 0.6 x the fp32 cost, and a boundary
costing 0.5 % of the baseline. Each prior row has weight ``PRIOR_WEIGHT`` against 1 per
measurement, so after ~10 measurements the data decide.

Size and memory are affine in the parameter counts (``size ≈ s0 + 4 B x fp32 params + 1 B x
int8 params``; ``peak memory ≈ m0 + m1 x size``), fitted the same way. Every figure this
module returns is *predicted*.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import nnls

from hadmc.surrogate.structure import ConfigFeatures

PRIOR_WEIGHT = 0.3
LATENCY_TERMS = ("const", "mmacs_fp32", "mmacs_int8", "boundaries", "any_int8")


def latency_row(f: ConfigFeatures) -> np.ndarray:
    return np.array(
        [1.0, f.macs_fp32 / 1e6, f.macs_int8 / 1e6, float(f.boundaries), float(f.int8_groups > 0)]
    )


def _fit_relative(rows: np.ndarray, y: np.ndarray, prior_rows: np.ndarray, prior_y: np.ndarray):
    """NNLS of ``rows @ c ≈ y`` in relative error, plus weighted prior rows."""
    a = np.vstack([rows / y[:, None], PRIOR_WEIGHT * prior_rows / prior_y[:, None]])
    b = np.concatenate([np.ones(len(y)), PRIOR_WEIGHT * np.ones(len(prior_y))])
    coef, _ = nnls(a, b)
    return coef


@dataclass
class LatencyModel:
    """Predicts latency_ms, size_bytes and memory_mib of a configuration (see module doc)."""

    baseline: ConfigFeatures  # the uncompressed model's features
    baseline_latency_ms: float
    baseline_size_bytes: float
    baseline_memory_mib: float
    rows: list[np.ndarray] = field(default_factory=list)
    latency_ms: list[float] = field(default_factory=list)
    sizes: list[tuple[float, float, float]] = field(default_factory=list)  # fp32 p, int8 p, size
    memories: list[tuple[float, float]] = field(default_factory=list)  # size, memory
    coef: np.ndarray | None = None
    size_coef: np.ndarray | None = None
    memory_coef: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.add(self.baseline, self.baseline_latency_ms, self.baseline_size_bytes,
                 self.baseline_memory_mib)  # fmt: skip

    def _prior(self) -> tuple[np.ndarray, np.ndarray]:
        b = self.baseline
        lat = self.baseline_latency_ms
        mm = b.macs / 1e6
        per_mac = 0.8 * lat / max(mm, 1e-9)
        half = ConfigFeatures(b.macs / 2, 0.0, 0.0, 0.0, 0, 0)
        int8 = ConfigFeatures(0.0, b.macs, 0.0, 0.0, 0, 1)
        one_boundary = ConfigFeatures(b.macs / 2, b.macs / 2, 0.0, 0.0, 1, 1)
        rows = np.array([latency_row(f) for f in (half, int8, one_boundary)])
        y = np.array(
            [
                0.2 * lat + per_mac * mm / 2,
                0.2 * lat + 0.6 * per_mac * mm,
                0.2 * lat + 0.8 * per_mac * mm + 0.005 * lat,
            ]
        )
        return rows, y

    def add(
        self, f: ConfigFeatures, latency_ms: float, size_bytes: float, memory_mib: float
    ) -> None:
        """One real measurement; the model is refit at once."""
        self.rows.append(latency_row(f))
        self.latency_ms.append(float(latency_ms))
        self.sizes.append((f.params_fp32, f.params_int8, float(size_bytes)))
        self.memories.append((float(size_bytes), float(memory_mib)))
        self.refit()

    def refit(self) -> None:
        prior_rows, prior_y = self._prior()
        self.coef = _fit_relative(
            np.array(self.rows), np.array(self.latency_ms), prior_rows, prior_y
        )
        s = np.array(self.sizes)
        size_rows = np.column_stack([np.ones(len(s)), s[:, 0], s[:, 1]])
        b = self.baseline
        overhead = max(self.baseline_size_bytes - 4.0 * b.params_fp32, 1.0)
        self.size_coef = _fit_relative(
            size_rows, s[:, 2],
            np.array([[1.0, 0.0, b.params_fp32], [1.0, b.params_fp32, 0.0]]),
            np.array([overhead + b.params_fp32, self.baseline_size_bytes]),
        )  # fmt: skip
        m = np.array(self.memories)
        mem_rows = np.column_stack([np.ones(len(m)), m[:, 0] / 2**20])
        mib = self.baseline_size_bytes / 2**20
        self.memory_coef = _fit_relative(
            mem_rows, m[:, 1],
            np.array([[1.0, mib]]), np.array([self.baseline_memory_mib]),
        )  # fmt: skip

    @property
    def n_measurements(self) -> int:
        """Real measurements the fit has seen (the baseline included)."""
        return len(self.latency_ms)

    def predict_latency_ms(self, f: ConfigFeatures) -> float:
        assert self.coef is not None
        return float(latency_row(f) @ self.coef)

    def predict_size_bytes(self, f: ConfigFeatures) -> float:
        assert self.size_coef is not None
        return float(np.array([1.0, f.params_fp32, f.params_int8]) @ self.size_coef)

    def predict_memory_mib(self, size_bytes: float) -> float:
        assert self.memory_coef is not None
        return float(np.array([1.0, size_bytes / 2**20]) @ self.memory_coef)

    def loo_mape(self) -> float | None:
        """Leave-one-out MAPE over the real measurements (baseline excluded), in percent."""
        n = len(self.rows)
        if n < 4:
            return None
        prior_rows, prior_y = self._prior()
        rows, y = np.array(self.rows), np.array(self.latency_ms)
        errors = []
        for i in range(1, n):
            keep = np.arange(n) != i
            coef = _fit_relative(rows[keep], y[keep], prior_rows, prior_y)
            errors.append(abs(rows[i] @ coef - y[i]) / y[i])
        return 100.0 * float(np.mean(errors))

    def terms(self) -> dict[str, float]:
        """The fitted coefficients, named (ms per unit)."""
        assert self.coef is not None
        return dict(zip(LATENCY_TERMS, (float(c) for c in self.coef), strict=True))
