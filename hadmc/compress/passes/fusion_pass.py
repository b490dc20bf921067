"""``fusion``: the Conv+BN(+activation) folding pattern of every layer group.

Offered only on a runtime where it changes the artifact (``FUSION_CHANGES_ARTIFACT``). On
onnxruntime the exporter already folds every BN: the demo fully fused and unfused gave the
same graph (40 Conv, 27 Clip, 7 Add; only names differ), so it is not offered there. On
LiteRT it stays: the fused demo converted to a different file (7,993,864 against 8,020,372
bytes).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hadmc.compress.registry import Build, CompressionPass

FUSION_CHANGES_ARTIFACT: dict[str, bool] = {"onnxruntime": False, "litert": True}


class FusionPass(CompressionPass):
    name = "fusion"
    order = 30
    phase = "model"
    default_choice = "none"
    timing = "fuse"
    plot_label = "pattern"

    def offered(self, runtime: str) -> bool:
        return FUSION_CHANGES_ARTIFACT[runtime]

    def choices(self, runtime: str) -> tuple[str, ...]:
        from hadmc.compress.fusion import FUSION_PATTERNS

        return FUSION_PATTERNS

    def parse(self, stored: Any) -> list[str]:
        return [str(v) for v in stored]

    def suggest(self, trial: Any, runtime: str, units: Sequence[int] | None) -> Any:
        # Optuna's space never had fusion; kept so its results stay comparable with before.
        return self.default(len(units or ()))

    def apply(self, value: list[str], build: Build) -> None:
        from torch import nn

        from hadmc.compress.fusion import fuse_model

        convs = {n for n, m in build.student.named_modules() if isinstance(m, nn.Conv2d)}
        patterns: dict[str, str] = {}
        for g, pattern in zip(build.groups, value, strict=True):
            if pattern == "none":
                continue
            for name in g.module_names:
                if name in convs:  # only convolutions have a BN (and activation) to fold into
                    patterns[name] = pattern
        if patterns:
            build.student = fuse_model(build.student, patterns)  # a fused copy
