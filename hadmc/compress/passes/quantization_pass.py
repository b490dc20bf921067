"""``quantization``: the precision of every layer group, chosen once per *precision stage*.

On onnxruntime the groups are cut into at most ``MAX_PRECISION_STAGES`` contiguous stages and
every group of a stage takes the stage's precision; on LiteRT the converter has no per-layer
precision, so the head acts once for the whole model (a per-group choice there was a majority
vote).

Why stages: the demo measured all-int8 1.61x, the first half float 1.42x, and a random half of
the groups float 0.95-1.25x, every other group float 0.88x (slower than fp32): each int8/float
boundary adds Quantize/Dequantize nodes. Contiguous stages cap the boundaries at
``MAX_PRECISION_STAGES - 1`` while keeping the "keep the sensitive end float" choice.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from hadmc.compress.registry import Build, CompressionPass, Feature
from protos import runtimes as runtime_table

# Precisions the runtime actually executes on a CPU. fp16 is left out for onnxruntime on CPU:
# its CPU execution provider has no fp16 kernels for most ops and inserts Casts, so fp16 ran
# slower than fp32 here (shared/notes/dependencies.md); offering it would only waste
# measurements. LiteRT's fp16 is a storage format dequantized to fp32 on CPU: same reason.
# Both come from the runtime table shared with the board (protos.runtimes).
RUNTIME_PRECISIONS: dict[str, tuple[str, ...]] = {r.name: r.precisions for r in runtime_table.TABLE}
# Whether the runtime can execute a different precision per group (onnxruntime's QDQ graph
# can; LiteRT's converter quantizes the whole model).
PER_GROUP_PRECISION: dict[str, bool] = {
    r.name: r.per_group_precision for r in runtime_table.TABLE
}
MAX_PRECISION_STAGES = 4
# What each runtime's exporter can build (hadmc.compress.onnx_export / tflite_export): a
# target's fp16 is offered only where an fp16 artifact exists (LiteRT's GPU delegate runs an
# fp32 .tflite at fp16 itself, so there it is not a separate choice).
EXPORT_PRECISIONS: dict[str, tuple[str, ...]] = {
    "onnxruntime": ("fp32", "fp16", "int8"),
    "litert": ("fp32", "int8"),
}


def precision_stages(n_groups: int, runtime: str) -> list[int]:
    """Stage index of every group: contiguous, as equal as possible (see module docstring)."""
    if n_groups < 1:
        raise ValueError("the model has no prunable layer groups")
    stages = min(MAX_PRECISION_STAGES, n_groups) if PER_GROUP_PRECISION[runtime] else 1
    return [min(stages - 1, i * stages // n_groups) for i in range(n_groups)]


def _frac_int8(precisions: Sequence[str], macs_share: Sequence[float]) -> float:
    return float(np.mean([p == "int8" for p in precisions])) if len(precisions) else 0.0


class QuantizationPass(CompressionPass):
    """``precisions``: what the execution target really runs (GetInfo's target row, e.g.
    fp32/fp16/int8 on ``onnxruntime:cuda``), kept to what the runtime's exporter can build;
    None: the runtime's CPU precisions (``RUNTIME_PRECISIONS``).

    ``int8_excluded_groups``: groups whose int8 the device measured slower than float
    (``host.int8_probe``); an int8 choice there becomes fp32 in every joint action, from any
    strategy (``parse`` for stored / uniform / Optuna values, ``refine`` for the environment's
    steps), so the stored value, cache key, surrogate features and artifact agree."""

    name = "quantization"
    order = 20
    phase = "export"
    default_choice = "fp32"
    optuna_name = "precision"
    plot_label = "precision"

    def __init__(
        self, precisions: Sequence[str] | None = None, int8_excluded_groups: Sequence[int] = ()
    ) -> None:
        self.precisions = tuple(precisions) if precisions else None
        self.int8_excluded_groups = frozenset(int(g) for g in int8_excluded_groups)

    def choices(self, runtime: str) -> tuple[str, ...]:
        if self.precisions is None:
            return RUNTIME_PRECISIONS[runtime]
        return tuple(p for p in self.precisions if p in EXPORT_PRECISIONS[runtime])

    def units(self, n_groups: int, runtime: str) -> list[int]:
        return precision_stages(n_groups, runtime)

    def parse(self, stored: Any) -> list[str]:
        ex = self.int8_excluded_groups
        return ["fp32" if i in ex and str(v) == "int8" else str(v) for i, v in enumerate(stored)]

    def refine(self, value: Any, ctx: Any) -> Any:
        return "fp32" if value == "int8" and ctx.step in self.int8_excluded_groups else value

    def features(self) -> tuple[Feature, ...]:
        return (Feature("frac_int8", _frac_int8, slot=2),)

    def apply(self, value: list[str], build: Build) -> None:
        n_int8 = sum(p == "int8" for p in value)
        if PER_GROUP_PRECISION[build.runtime]:
            if n_int8 == 0:
                # fp16 (a GPU target's choice) is a whole-graph conversion: the model is fp16
                # when most groups chose it, else fp32. fp16/fp32 islands would each pay a
                # Cast pair, as int8/float islands pay Q/DQ (module docstring).
                n_fp16 = sum(p == "fp16" for p in value)
                build.export.update(precision="fp16" if n_fp16 * 2 >= len(value) > 0 else "fp32")
                return
            # int8 present: static QDQ; the other groups' modules stay float32 (a mixed
            # artifact; an fp16 choice beside int8 is built as fp32, and the stored
            # artifact precision says "mixed").
            # int8 with static QDQ; the fp32 groups' modules stay float (a mixed artifact).
            float_modules = [
                name
                for g, p in zip(build.groups, value, strict=True)
                if p != "int8"
                for name in g.module_names
            ]
            build.export.update(
                precision="int8", calib_x=build.data.x_calib, float_modules=float_modules
            )
        else:
            # No per-module precision (export_tflite): the whole model is int8 when most
            # groups chose int8 (documented in docs/results.md).
            precision = "int8" if n_int8 * 2 >= len(value) and n_int8 > 0 else "fp32"
            build.export.update(precision=precision, calib_x=build.data.x_calib)
