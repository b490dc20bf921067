"""Analytic cost features of a configuration: what a pruned, mixed-precision model will hold.

Why hand-written: the surrogate scores hundreds of proposals per round, and building each with
torch-pruning costs ~0.2 s. Channel counts are exact instead: every conv / linear module has
its output channels in at most one layer group and its input channels in at most one (the
dependency graph couples them), so at keep ratios ``k`` its MACs are
``full_macs * frac(out_group) * frac(in_group)`` with ``frac = kept_channels(C, k) / C`` (a
depthwise conv's in-channels per group stay 1, so only its out fraction counts). A test checks
the prediction against ``count_macs_params`` of the really pruned model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from hadmc.compress.pruning import _raw_groups, kept_channels


@dataclass(frozen=True)
class ModuleCost:
    """One conv / linear module at full width."""

    name: str
    macs: int
    weight_params: int  # weights + bias of the module itself
    out_group: int | None  # layer group owning its output channels (None: the classifier)
    in_group: int | None  # layer group owning its input channels (None: the model input)
    depthwise: bool
    out_channels: int
    in_channels: int


@dataclass(frozen=True)
class ConfigFeatures:
    """Cost features of one configuration (predicted, not measured)."""

    macs_fp32: float
    macs_int8: float
    params_fp32: float
    params_int8: float
    boundaries: int  # float <-> int8 transitions along the group order (each costs Q/DQ)
    int8_groups: int

    @property
    def macs(self) -> float:
        return self.macs_fp32 + self.macs_int8


class ModelStructure:
    """Per-module costs and group ownership of a model, traced once."""

    def __init__(self, model: nn.Module, example_input: torch.Tensor) -> None:
        dg, raw, _order, macs = _raw_groups(model, example_input)
        names = {m: n for n, m in model.named_modules()}
        out_of: dict[nn.Module, int] = {}
        in_of: dict[nn.Module, int] = {}
        self.group_channels: list[int] = []
        for gi, (root, _layers, out_mods) in enumerate(raw):
            channels = int(root.out_channels if isinstance(root, nn.Conv2d) else root.out_features)
            self.group_channels.append(channels)
            for m in out_mods:
                if isinstance(m, nn.Conv2d | nn.Linear):
                    out_of.setdefault(m, gi)
            fn = dg.get_pruner_of_module(root).prune_out_channels
            for dep, _ in dg.get_pruning_group(root, fn, [0]):
                mod = dep.target.module
                if isinstance(mod, nn.Conv2d | nn.Linear) and dg.is_in_channel_pruning_fn(
                    dep.handler
                ):
                    in_of.setdefault(mod, gi)
        self.modules: list[ModuleCost] = []
        for m, n_macs in macs.items():
            depthwise = isinstance(m, nn.Conv2d) and m.groups > 1 and m.groups == m.in_channels
            self.modules.append(
                ModuleCost(
                    name=names[m],
                    macs=int(n_macs),
                    weight_params=sum(p.numel() for p in m.parameters(recurse=False)),
                    out_group=out_of.get(m),
                    in_group=None if depthwise else in_of.get(m),
                    depthwise=depthwise,
                    out_channels=int(m.out_channels if isinstance(m, nn.Conv2d) else m.out_features),
                    in_channels=int(m.in_channels if isinstance(m, nn.Conv2d) else m.in_features),
                )
            )
        self.n_groups = len(raw)

    def fractions(self, keep_ratios: Sequence[float], round_to: int = 8) -> list[float]:
        """Kept channel fraction per group, with the pruner's exact rounding."""
        if len(keep_ratios) != self.n_groups:
            raise ValueError(f"{len(keep_ratios)} keep ratios for {self.n_groups} groups")
        return [
            kept_channels(c, float(k), round_to) / c
            for c, k in zip(self.group_channels, keep_ratios, strict=True)
        ]

    def features(self, keep_ratios: Sequence[float], precisions: Sequence[str]) -> ConfigFeatures:
        """MACs / params split by precision, and boundaries, of one configuration."""
        frac = self.fractions(keep_ratios)
        if len(precisions) != self.n_groups:
            raise ValueError(f"{len(precisions)} precisions for {self.n_groups} groups")
        int8 = [p == "int8" for p in precisions]
        macs = {True: 0.0, False: 0.0}
        params = {True: 0.0, False: 0.0}
        for m in self.modules:
            f_out = 1.0 if m.out_group is None else frac[m.out_group]
            f_in = 1.0 if m.in_group is None else frac[m.in_group]
            q = m.out_group is not None and int8[m.out_group]
            macs[q] += m.macs * f_out * f_in
            params[q] += m.weight_params * f_out * f_in
        boundaries = sum(a != b for a, b in zip(int8, int8[1:], strict=False))
        return ConfigFeatures(
            macs_fp32=macs[False],
            macs_int8=macs[True],
            params_fp32=params[False],
            params_int8=params[True],
            boundaries=int(boundaries),
            int8_groups=int(sum(int8)),
        )
