"""``update_scope`` (the update-scope head): which weights the fine-tune may change.

Acts once, at the last step; the scopes are ``hadmc.compress.distill.UPDATE_SCOPES`` (BN and
biases, the last layers, all). Everything outside the scope stays bit-identical.
"""

from __future__ import annotations

from typing import Any

from hadmc.compress.registry import Build, CompressionPass


class UpdateScopePass(CompressionPass):
    # Not "update": that is PPO's update; the update's size is the objective "update_size".
    # Runs stored before the rename call it "update" (read back by JointAction.from_dict).
    name = "update_scope"
    order = 50
    per_group = False
    phase = "finetune"
    default_choice = "all"
    optuna_name = "update_scope"
    plot_label = "weights the fine-tune changes"

    def choices(self, runtime: str) -> tuple[str, ...]:
        from hadmc.compress.distill import UPDATE_SCOPES

        return UPDATE_SCOPES

    def parse(self, stored: Any) -> str:
        return str(stored)

    def apply(self, value: str, build: Build) -> None:
        build.finetune["scope"] = value
