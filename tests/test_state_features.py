"""State features against numbers worked out by hand (hadmc/search/observation.py's tables).

Covers the hardware vector and the layer-group part of the observation (the first
``len(GROUP_FEATURES)`` entries). The compression-state part is deliberately not checked here.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from hadmc.search.observation import (
    FEATURE_NAMES,
    GROUP_FEATURES,
    HardwareFeatures,
    ObservationEncoder,
)


def _group(**kw: object) -> SimpleNamespace:
    """Stand-in for hadmc.compress.pruning.LayerGroup: only the attributes the encoder reads."""
    return SimpleNamespace(**kw)


# Chosen so every normaliser is exercised: max out_channels 64 (log2 = 6), max kernel 3,
# max stride 3 (so stride 2 -> 0.5), max macs 9999 (log10(1 + macs) = 4), params total 1000.
GROUPS = [
    _group(kind="conv", out_channels=16, kernel_size=3, stride=2, macs=999, params=100,
           position=0.0),
    _group(kind="depthwise", out_channels=64, kernel_size=3, stride=3, macs=99, params=200,
           position=1 / 3),
    _group(kind="pointwise", out_channels=32, kernel_size=1, stride=1, macs=0, params=300,
           position=2 / 3),
    _group(kind="linear", out_channels=10, kernel_size=1, stride=1, macs=9999, params=400,
           position=1.0),
]  # fmt: skip
SENSITIVITY = [0.2, 1.5, -0.1, 0.05]  # 1.5 and -0.1 are clipped to [0, 1]

# kind one-hot (conv, pointwise, depthwise, linear), out_channels, kernel, stride, log_macs,
# params_share, position, sensitivity
EXPECTED_GROUPS = np.array(
    [
        [1, 0, 0, 0, 4 / 6, 1.0, 0.5, 3 / 4, 0.1, 0.0, 0.2],
        [0, 0, 1, 0, 6 / 6, 1.0, 1.0, 2 / 4, 0.2, 1 / 3, 1.0],
        [0, 1, 0, 0, 5 / 6, 1 / 3, 0.0, 0 / 4, 0.3, 2 / 3, 0.0],
        [0, 0, 0, 1, math.log2(10) / 6, 1 / 3, 0.0, 4 / 4, 0.4, 1.0, 0.05],
    ],
    dtype=np.float32,
)

HW = HardwareFeatures(cores=4, memory_mib=1024.0, baseline_latency_ms=9.0, int8_available=True)


def test_hardware_vector_hand_values() -> None:
    # cores 4/16; memory log2(1024) = 10 -> 10/16; latency log10(1 + 9) / 3; int8 1
    np.testing.assert_allclose(HW.vector(), [0.25, 0.625, 1 / 3, 1.0], atol=1e-6)
    small = HardwareFeatures(
        cores=1, memory_mib=256.0, baseline_latency_ms=0.0, int8_available=False
    )
    np.testing.assert_allclose(small.vector(), [1 / 16, 0.5, 0.0, 0.0], atol=1e-6)
    # caps: >16 cores, > 64 GB, > 1 s all saturate at 1
    big = HardwareFeatures(
        cores=64, memory_mib=2.0**20, baseline_latency_ms=5e3, int8_available=True
    )
    np.testing.assert_allclose(big.vector(), [1.0, 1.0, 1.0, 1.0], atol=1e-6)
    assert HW.vector().dtype == np.float32


def test_group_features_hand_values() -> None:
    enc = ObservationEncoder(GROUPS, SENSITIVITY, HW)
    assert GROUP_FEATURES[:4] == ("kind_conv", "kind_pointwise", "kind_depthwise", "kind_linear")
    assert enc.dim == len(FEATURE_NAMES)
    k = len(GROUP_FEATURES)
    hw_at = FEATURE_NAMES.index("cores")
    for step, expected in enumerate(EXPECTED_GROUPS):
        obs = enc.encode(step, {}, None)
        assert obs.shape == (enc.dim,) and obs.dtype == np.float32
        np.testing.assert_allclose(obs[:k], expected, atol=1e-6, err_msg=f"group {step}")
        np.testing.assert_allclose(obs[hw_at : hw_at + 4], HW.vector(), atol=0)
    # past the last group (step == n) the encoder shows the last group again
    last = enc.encode(len(GROUPS), {}, None)
    np.testing.assert_allclose(last[:k], EXPECTED_GROUPS[-1], atol=1e-6)


def test_group_features_need_known_kinds_and_matching_sensitivities() -> None:
    with pytest.raises(ValueError, match="kind"):
        ObservationEncoder([_group(**{**vars(GROUPS[0]), "kind": "attention"})], [0.0], HW)
    with pytest.raises(ValueError, match="sensitivities"):
        ObservationEncoder(GROUPS, [0.0], HW)
