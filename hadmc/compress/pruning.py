"""Structured channel pruning with torch-pruning's dependency graph: channels really go.

A *layer group* is a set of output channels that must be removed together: torch-pruning's
``DependencyGraph`` couples a conv's output channels with its BN, with a following
depthwise conv (and that conv's BN), with the input channels of every consumer, and across
residual additions. Each group gets one keep-ratio; the kept count is rounded to a multiple
of ``round_to`` and the lowest-magnitude channels (``GroupMagnitudeImportance``, L2 over the
whole group) are removed. The classifier's output (the class logits) is never pruned.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch_pruning as tp
from torch import nn

GROUP_KINDS = ("conv", "pointwise", "depthwise", "linear")


class PruningError(ValueError):
    """Bad keep-ratios, or a model torch-pruning cannot trace."""


@dataclass
class LayerGroup:
    """One prunable group of coupled output channels, with the features the RL state uses."""

    index: int  # forward order, 0..n-1
    name: str  # root module name: the first (in forward order) module whose outputs are in it
    module_names: list[str]  # conv/linear modules whose OUTPUT channels belong to this group
    kind: str  # "conv" | "pointwise" | "depthwise" | "linear"
    out_channels: int
    kernel_size: int  # largest kernel among module_names (3 for expand 1x1 + depthwise 3x3)
    stride: int  # largest stride among module_names
    macs: int  # of module_names at full width, batch 1
    params: int  # of every module whose output channels are in the group (convs, BNs)
    position: float  # index / max(1, n - 1)


def _classifier(model: nn.Module) -> nn.Module:
    """The last Linear (or, for all-conv nets, the last conv) in registration order."""
    last: nn.Module | None = None
    for m in model.modules():
        if isinstance(m, nn.Linear):
            last = m
    if last is None:
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                last = m
    if last is None:
        raise PruningError("model has no Linear or Conv2d layer")
    return last


def _forward_trace(model: nn.Module, example_input: torch.Tensor) -> tuple[dict, dict]:
    """Execution order and per-call MACs of every conv / linear, from forward hooks."""
    order: dict[nn.Module, int] = {}
    macs: dict[nn.Module, int] = {}

    def hook(mod: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        order.setdefault(mod, len(order))
        if isinstance(mod, nn.Conv2d):
            k = mod.kernel_size[0] * mod.kernel_size[1] * (mod.in_channels // mod.groups)
            macs[mod] = macs.get(mod, 0) + int(output.numel()) * k
        else:
            macs[mod] = macs.get(mod, 0) + int(output.numel()) * mod.in_features

    handles = [
        m.register_forward_hook(hook)
        for m in model.modules()
        if isinstance(m, nn.Conv2d | nn.Linear)
    ]
    was_training = model.training
    try:
        with torch.no_grad():
            model.eval()(example_input)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return order, macs


def _build_graph(model: nn.Module, example_input: torch.Tensor) -> tp.DependencyGraph:
    # torch-pruning traces autograd's graph, which leaves out frozen parameters (a model
    # returned by a narrow-scope distillation has some): trace with every grad enabled.
    flags = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in flags:
        p.requires_grad_(True)
    try:
        return tp.DependencyGraph().build_dependency(model, example_inputs=example_input)
    except Exception as exc:  # tracing failures come as many exception types
        raise PruningError(f"torch-pruning could not trace the model: {exc}") from exc
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


def _raw_groups(
    model: nn.Module, example_input: torch.Tensor
) -> tuple[
    tp.DependencyGraph, list[tuple[nn.Module, list[nn.Module], list[nn.Module]]], dict, dict
]:
    """(graph, [(root, out-channel convs/linears in forward order, all out-channel modules)])."""
    dg = _build_graph(model, example_input)
    order, macs = _forward_trace(model, example_input)
    raw = []
    for group in dg.get_all_groups(
        ignored_layers=[_classifier(model)], root_module_types=[nn.Conv2d, nn.Linear]
    ):
        out_mods: list[nn.Module] = []
        for dep, _ in group:
            mod = dep.target.module
            if dg.is_out_channel_pruning_fn(dep.handler) and mod not in out_mods:
                out_mods.append(mod)
        layers = sorted(
            (m for m in out_mods if isinstance(m, nn.Conv2d | nn.Linear) and m in order),
            key=order.__getitem__,
        )
        if layers:
            raw.append((layers[0], layers, out_mods))
    raw.sort(key=lambda r: order[r[0]])
    return dg, raw, order, macs


def _out_channels(m: nn.Module) -> int:
    return int(m.out_channels if isinstance(m, nn.Conv2d) else m.out_features)


def find_layer_groups(model: nn.Module, example_input: torch.Tensor) -> list[LayerGroup]:
    """The prunable groups of ``model`` in forward order (the classifier output excluded)."""
    names = {m: n for n, m in model.named_modules()}
    _, raw, _, macs = _raw_groups(model, example_input)
    n = len(raw)
    groups = []
    for i, (root, layers, out_mods) in enumerate(raw):
        convs = [m for m in layers if isinstance(m, nn.Conv2d)]
        if isinstance(root, nn.Linear):
            kind = "linear"
        elif any(m.groups > 1 and m.groups == m.in_channels for m in convs):
            kind = "depthwise"
        elif all(m.kernel_size == (1, 1) for m in convs):
            kind = "pointwise"
        else:
            kind = "conv"
        groups.append(
            LayerGroup(
                index=i,
                name=names[root],
                module_names=[names[m] for m in layers],
                kind=kind,
                out_channels=_out_channels(root),
                kernel_size=max((m.kernel_size[0] for m in convs), default=1),
                stride=max((m.stride[0] for m in convs), default=1),
                macs=sum(macs.get(m, 0) for m in layers),
                params=sum(p.numel() for m in out_mods for p in m.parameters(recurse=False)),
                position=i / max(1, n - 1),
            )
        )
    return groups


def group_modules(
    model: nn.Module, example_input: torch.Tensor
) -> tuple[list[list[nn.Module]], nn.Module]:
    """Per group (forward order) every module whose output channels are in it (convs, BNs),
    and the classifier. Used to pick a fine-tuning scope of "the last k groups"."""
    _, raw, _, _ = _raw_groups(model, example_input)
    return [list(out_mods) for _, _, out_mods in raw], _classifier(model)


def kept_channels(channels: int, keep_ratio: float, round_to: int = 8) -> int:
    """Channels kept for a keep-ratio: nearest multiple of ``round_to``, at least one multiple
    (or 1 channel when the layer is narrower than ``round_to``), at most ``channels``."""
    if not 0.0 < keep_ratio <= 1.0:
        raise PruningError(f"keep ratios must be in (0, 1], got {keep_ratio}")
    if keep_ratio == 1.0:
        return channels
    if channels < round_to:
        return max(1, min(channels, round(keep_ratio * channels)))
    kept = round_to * max(1, round(keep_ratio * channels / round_to))
    return min(channels, kept)


def prune_model(
    model: nn.Module,
    keep_ratios: Sequence[float],
    example_input: torch.Tensor,
    *,
    round_to: int = 8,
) -> nn.Module:
    """A pruned deep copy: ``keep_ratios[i]`` applies to ``find_layer_groups(model)[i]``.

    Uses the dependency graph's ``get_pruning_group(...).prune()`` per group rather than
    ``MetaPruner``: MetaPruner derives the count as ``C - int(C * (1 - ratio))``, which float
    rounding can put one channel off the intended multiple; here the count is exact.
    """
    if round_to < 1:
        raise PruningError(f"round_to must be >= 1, got {round_to}")
    pruned = copy.deepcopy(model).eval()
    dg, raw, _, _ = _raw_groups(pruned, example_input)
    if len(keep_ratios) != len(raw):
        raise PruningError(f"{len(keep_ratios)} keep ratios for {len(raw)} layer groups")
    ratios = [float(r) for r in keep_ratios]
    for r in ratios:
        if not math.isfinite(r):
            raise PruningError(f"keep ratios must be finite, got {r}")
        kept_channels(8, r)  # validates the range
    importance = tp.importance.GroupMagnitudeImportance(p=2)
    plans = []
    # Score every group on the unpruned weights first, so the result does not depend on
    # the order in which groups are pruned.
    for (root, _, _), ratio in zip(raw, ratios, strict=True):
        channels = _out_channels(root)
        n_keep = kept_channels(channels, ratio, round_to)
        if n_keep >= channels:
            continue
        fn = dg.get_pruner_of_module(root).prune_out_channels
        group = dg.get_pruning_group(root, fn, list(range(channels)))
        scores = importance(group)
        drop = torch.argsort(scores, stable=True)[: channels - n_keep]
        plans.append((root, fn, sorted(int(i) for i in drop)))
    for root, fn, idxs in plans:
        dg.get_pruning_group(root, fn, idxs).prune()
    return pruned


def count_macs_params(model: nn.Module, example_input: torch.Tensor) -> tuple[int, int]:
    """(multiply-accumulates of every Conv2d and Linear call at the example's batch size,
    parameter count). BN, activations and pooling are not counted: BN folds into the conv at
    export and the rest is a rounding error next to the convolutions (torch-pruning's counter
    adds them, which makes "MACs" harder to check by hand)."""
    _, macs = _forward_trace(model, example_input)
    return int(sum(macs.values())), int(sum(p.numel() for p in model.parameters()))
