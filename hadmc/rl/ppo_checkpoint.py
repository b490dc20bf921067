"""Checkpoint helpers for ``hadmc.rl.ppo.PPO``: RNG states and ActionSpec as plain data.

Everything is stored as tensors, ints, floats, strings and lists so ``torch.load(...,
weights_only=True)`` can read it back (no pickled numpy objects or classes).
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

from hadmc.rl.policy import ActionSpec, HeadSpec

CHECKPOINT_FORMAT = 1


def spec_to_data(spec: ActionSpec) -> list[list[Any]]:
    return [[h.name, h.kind, h.size] for h in spec.heads]


def spec_from_data(data: list[list[Any]]) -> ActionSpec:
    return ActionSpec(tuple(HeadSpec(str(n), str(k), int(z)) for n, k, z in data))


def capture_rng_states(generator: torch.Generator, np_rng: np.random.Generator) -> dict[str, Any]:
    """The PPO's own generators plus the process-global torch, numpy and python RNGs."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    return {
        "generator": generator.get_state(),
        "np_rng": np_rng.bit_generator.state,  # dict of str/int (PCG64 128-bit ints)
        "torch_global": torch.get_rng_state(),
        "numpy_global": [np_state[0], np_state[1].tolist(), *np_state[2:]],
        "python": [py_state[0], list(py_state[1]), py_state[2]],
    }


def restore_rng_states(
    states: dict[str, Any], generator: torch.Generator, np_rng: np.random.Generator
) -> None:
    """Inverse of ``capture_rng_states`` (sets the global RNGs too)."""
    generator.set_state(states["generator"])
    np_rng.bit_generator.state = states["np_rng"]
    torch.set_rng_state(states["torch_global"])
    ng = states["numpy_global"]
    np.random.set_state((ng[0], np.asarray(ng[1], dtype=np.uint32), *ng[2:]))
    py = states["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
