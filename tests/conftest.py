"""Shared fixtures: the trained demo model and its data (trained once per machine, cached)."""

from __future__ import annotations

import random

import numpy as np
import pytest

# Two cores shared by the whole suite (and other jobs): one intra-op thread avoids
# OpenMP barrier spinning under contention, which made 2-thread runs up to ~10x slower.
TORCH_THREADS = 1


def seed_all(seed: int = 0) -> None:
    """Seed Python, numpy and (when installed) torch."""
    random.seed(seed)
    np.random.seed(seed)
    try:
        import torch
    except ImportError:
        return
    torch.manual_seed(seed)


@pytest.fixture(scope="session", autouse=True)
def _modest_threads() -> None:
    try:
        import torch
    except ImportError:  # device-side tests run without torch
        return
    torch.set_num_threads(TORCH_THREADS)


@pytest.fixture(scope="session")
def demo():
    """(model, DataSplits): the tiny demo, MobileNetV2 on 32x32 digits, eval mode.

    Shared by every test in the session: never modify it in place (all hadmc.compress
    passes work on deep copies). Trained on first use (~2 min on 2 cores), then cached under
    $HADMC_CACHE_DIR or ~/.cache/hadmc.
    """
    pytest.importorskip("torch")
    from hadmc.models import load_demo

    seed_all(0)
    model, data = load_demo(progress=False, demo="tiny")  # the default 48x48 is 2.2x slower
    return model.eval(), data


@pytest.fixture
def seeded() -> None:
    """Seed all RNGs to 0 before a test."""
    seed_all(0)
