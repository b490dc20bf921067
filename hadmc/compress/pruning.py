"""Structured channel pruning with torch-pruning's dependency graph: channels really go.

A *layer group* is a set of output channels that must be removed together: torch-pruning's
``DependencyGraph`` couples a conv's output channels with its BN, with a following
depthwise conv (and that conv's BN), with the input channels of every consumer, and across
residual additions. Each group gets one keep-ratio; the kept count is rounded to a multiple
of ``round_to`` and the lowest-magnitude channels (``GroupMagnitudeImportance``, L2 over the
whole group) are removed. The classifier's output (the class logits) is never pruned: the
classifier is the conv or linear layer that runs *last* (a squeeze-excite block's Linear comes
earlier, and an all-conv net's 1x1 head is found the same way).

A group that cannot be pruned safely stays unpruned. Before a model's groups are offered,
each one is pruned alone on a copy (at the smallest keep ratio, 0.3) and the copy
is run: a group whose pruning raises (torch-pruning cannot follow a ``chunk`` or a channel
shuffle, say) or changes the output's shape is left out of the list, and so out of the
pruning head, and named with its reason by ``unprunable_groups``. ``prune_model`` checks the
whole pruned model the same way, so a combination that breaks fails as one clear error.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator, Sequence
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


# Keep ratios a group is tried at before it is offered (``_unsafe_reasons``): the smallest of
# the pruning head's choices (``passes.pruning_pass.KEEP_RATIOS``). What breaks torch-pruning
# is structural (a split or shuffle it cannot follow), not the count; the one count rule, a
# grouped conv's equal blocks, ``_prune_groups`` meets by construction (``_lowest``).
SAFETY_KEEPS = (0.3,)


@dataclass(frozen=True)
class UnprunableGroup:
    """A coupled channel group left unpruned, and why."""

    name: str
    module_names: tuple[str, ...]
    reason: str


def _classifier(order: dict[nn.Module, int]) -> nn.Module:
    """The conv or linear layer that runs last in the forward pass (``_forward_trace``)."""
    if not order:
        raise PruningError("model has no Linear or Conv2d layer")
    return max(order, key=order.__getitem__)


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


RawGroup = tuple[nn.Module, list[nn.Module], list[nn.Module]]


def _raw_groups(
    model: nn.Module, example_input: torch.Tensor
) -> tuple[tp.DependencyGraph, list[RawGroup], dict, dict]:
    """(graph, [(root, out-channel convs/linears in forward order, all out-channel modules)],
    forward order, MACs) of the groups that can be pruned safely (``_unsafe_reasons``)."""
    dg, raw, order, macs = _all_raw_groups(model, example_input)
    reasons = _unsafe_reasons(model, example_input, len(raw))
    return dg, [r for r, why in zip(raw, reasons, strict=True) if why is None], order, macs


def _all_raw_groups(
    model: nn.Module, example_input: torch.Tensor
) -> tuple[tp.DependencyGraph, list[RawGroup], dict, dict]:
    dg = _build_graph(model, example_input)
    order, macs = _forward_trace(model, example_input)
    raw = []
    for group in dg.get_all_groups(
        ignored_layers=[_classifier(order)], root_module_types=[nn.Conv2d, nn.Linear]
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


_SAFETY_CACHE: dict[tuple, list[str | None]] = {}


def _signature(model: nn.Module, example_input: torch.Tensor) -> tuple:
    """What the safety check depends on: the class, every module's type and parameter
    shapes, the input shape (a pruned copy has other shapes, so it is checked on its own)."""
    mods = tuple(
        (n, type(m).__name__, tuple(tuple(p.shape) for p in m.parameters(recurse=False)))
        for n, m in model.named_modules()
    )
    return (type(model).__qualname__, mods, tuple(example_input.shape))


def _unsafe_reasons(model: nn.Module, example_input: torch.Tensor, n: int) -> list[str | None]:
    """Per group of ``_all_raw_groups``: None when pruning it alone, at every keep of
    ``SAFETY_KEEPS``, runs and keeps the output's shape; else the reason. Cached per model
    structure (the search prunes the same structure once per candidate)."""
    key = _signature(model, example_input)
    if key in _SAFETY_CACHE:
        return _SAFETY_CACHE[key]
    with torch.no_grad():
        want = tuple(model.eval()(example_input).shape)
    reasons: list[str | None] = []
    for i in range(n):
        why = None
        for keep in SAFETY_KEEPS:
            copy_ = copy.deepcopy(model).eval()
            try:
                dg, raw, _, _ = _all_raw_groups(copy_, example_input)
                _prune_groups(dg, [raw[i]], [keep], 8)
                with torch.no_grad():
                    got = tuple(copy_(example_input).shape)
            except Exception as exc:  # noqa: BLE001 - any failure means "not safe"
                why = f"pruning it fails ({type(exc).__name__}: {str(exc).splitlines()[0][:120]})"
                break
            if got != want:
                why = f"pruning it changes the output shape from {want} to {got}"
                break
        reasons.append(why)
    if len(_SAFETY_CACHE) > 64:  # bounded: one entry per distinct structure seen
        _SAFETY_CACHE.clear()
    _SAFETY_CACHE[key] = reasons
    return reasons


def unprunable_groups(model: nn.Module, example_input: torch.Tensor) -> list[UnprunableGroup]:
    """The coupled channel groups ``find_layer_groups`` leaves out, each with its reason."""
    names = {m: n for n, m in model.named_modules()}
    _, raw, _, _ = _all_raw_groups(model, example_input)
    reasons = _unsafe_reasons(model, example_input, len(raw))
    return [
        UnprunableGroup(names[root], tuple(names[m] for m in layers), why)
        for (root, layers, _), why in zip(raw, reasons, strict=True)
        if why is not None
    ]


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
    # Every coupled group, safe to prune or not: this only picks what a fine-tune trains, and
    # it runs on pruned students, whose structures the safety check has not seen.
    _, raw, order, _ = _all_raw_groups(model, example_input)
    return [list(out_mods) for _, _, out_mods in raw], _classifier(order)


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
    with torch.no_grad():
        want = tuple(model.eval()(example_input).shape)
    try:
        _prune_groups(dg, raw, ratios, round_to)
        with torch.no_grad():
            got = tuple(pruned(example_input).shape)
    except Exception as exc:  # noqa: BLE001 - torch-pruning / forward errors of many types
        raise PruningError(
            f"this combination of keep ratios could not be applied ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:120]}); each group alone passed the safety check"
        ) from exc
    if got != want:
        raise PruningError(f"pruning changed the output shape from {want} to {got}")
    return pruned


def prune_steps(
    model: nn.Module,
    group_index: int,
    keeps: Sequence[float],
    example_input: torch.Tensor,
    *,
    round_to: int = 8,
) -> Iterator[nn.Module]:
    """One group of ``find_layer_groups(model)`` pruned to each of ``keeps`` (decreasing) in
    turn, on one copy and one dependency graph: what the sensitivity table needs, at a third
    of the graph builds of a ``prune_model`` per keep. The same model comes back at every
    step, pruned further, so use it before asking for the next (it must be on the CPU then).
    Each step equals ``prune_model`` with that keep at that group: channels are ranked once,
    on the unpruned model, and each step drops the next of that ranking."""
    if list(keeps) != sorted(keeps, reverse=True):
        raise PruningError(f"keeps must decrease, got {list(keeps)}")
    pruned = copy.deepcopy(model).eval()
    dg, raw, _, _ = _raw_groups(pruned, example_input)
    root = raw[group_index][0]
    full = _out_channels(root)
    fn = dg.get_pruner_of_module(root).prune_out_channels
    group = dg.get_pruning_group(root, fn, list(range(full)))
    blocks = _conv_groups(group)
    scores = tp.importance.GroupMagnitudeImportance(p=2)(group)
    alive = list(range(full))  # original indices of the channels left, in their order
    for keep in keeps:
        n_keep = _n_keep(full, float(keep), round_to, blocks)
        if n_keep is not None and n_keep < len(alive):
            gone = set(_lowest(scores, full - n_keep, blocks))
            dg.get_pruning_group(root, fn, [i for i, c in enumerate(alive) if c in gone]).prune()
            alive = [c for c in alive if c not in gone]
        yield pruned


def _n_keep(channels: int, ratio: float, round_to: int, blocks: int) -> int | None:
    """Channels kept, a multiple of the group's conv ``blocks``; None when they cannot be
    split evenly (the safety check names such a group)."""
    if channels % blocks:
        return None
    n_keep = kept_channels(channels, ratio, math.lcm(round_to, blocks))
    return max(blocks, n_keep - n_keep % blocks)


def _prune_groups(
    dg: tp.DependencyGraph, raw: Sequence[RawGroup], ratios: Sequence[float], round_to: int
) -> None:
    importance = tp.importance.GroupMagnitudeImportance(p=2)
    plans = []
    # Score every group on the unpruned weights first, so the result does not depend on
    # the order in which groups are pruned.
    for (root, _, _), ratio in zip(raw, ratios, strict=True):
        channels = _out_channels(root)
        fn = dg.get_pruner_of_module(root).prune_out_channels
        group = dg.get_pruning_group(root, fn, list(range(channels)))
        blocks = _conv_groups(group)
        n_keep = _n_keep(channels, ratio, round_to, blocks)
        if n_keep is None or n_keep >= channels:
            continue
        scores = importance(group)
        plans.append((root, fn, _lowest(scores, channels - n_keep, blocks)))
    for root, fn, idxs in plans:
        dg.get_pruning_group(root, fn, idxs).prune()


def _conv_groups(group: tp.Group) -> int:
    """How many equal blocks the group's channels fall into: a grouped conv (1 < groups,
    not depthwise) in the group, on either side, splits its channels into ``groups`` blocks,
    and pruning must take as many channels from every block (else torch-pruning indexes past
    a block and fails); depthwise convs prune channel by channel and impose nothing."""
    blocks = 1
    for dep, _ in group:
        m = dep.target.module
        if isinstance(m, nn.Conv2d) and 1 < m.groups and not m.groups == m.in_channels:
            blocks = math.lcm(blocks, m.groups)
    return blocks


def _lowest(scores: torch.Tensor, n_drop: int, blocks: int) -> list[int]:
    """The ``n_drop`` lowest-scoring channels, the same number from each of ``blocks``
    contiguous blocks."""
    per = scores.numel() // blocks
    rows = scores.reshape(blocks, per)
    drop = torch.argsort(rows, dim=1, stable=True)[:, : n_drop // blocks]
    return sorted(int(b * per + i) for b in range(blocks) for i in drop[b])


def count_macs_params(model: nn.Module, example_input: torch.Tensor) -> tuple[int, int]:
    """(multiply-accumulates of every Conv2d and Linear call at the example's batch size,
    parameter count). BN, activations and pooling are not counted: BN folds into the conv at
    export and the rest is a rounding error next to the convolutions (torch-pruning's counter
    adds them, which makes "MACs" harder to check by hand)."""
    _, macs = _forward_trace(model, example_input)
    return int(sum(macs.values())), int(sum(p.numel() for p in model.parameters()))
