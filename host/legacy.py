"""Names that earlier versions stored, read under today's names.

What a run directory holds outlives the code that wrote it: ``hadmc-host report`` and
``--resume`` must read a run stored before a rename. Every such rename is listed here (the
pass names in ``hadmc.compress.registry.LEGACY_PASS_NAMES``), and the store and the saved
search configuration read through it, so a rename never strands a run.
"""

from __future__ import annotations

from typing import Any

from hadmc.compress.registry import renamed_pass_names

# Keys written before the units said what they are ("MB" meant 2**20 bytes all along): read
# under their new names, so runs and reports from before the rename still load and resume.
LEGACY_KEYS = {
    "memory_mb": "memory_mib",
    "peak_memory_mb": "peak_memory_mib",
    "max_memory_mb": "max_memory_mib",
    "baseline_memory_mb": "baseline_memory_mib",
    "ram_mb": "ram_mib",
}


def renamed_keys(value: Any) -> Any:
    """``value`` with every dict key of ``LEGACY_KEYS`` renamed, at any depth."""
    if isinstance(value, dict):
        return {LEGACY_KEYS.get(k, k): renamed_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [renamed_keys(v) for v in value]
    return value


def renamed_actions(value: Any) -> Any:
    """Stored actions under today's pass names (``hadmc.compress.registry``)."""
    return renamed_pass_names(value) if isinstance(value, dict) else value
