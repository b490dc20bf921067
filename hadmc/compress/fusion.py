"""Conv + BatchNorm (+ activation) folding, selectable per conv.

"conv_bn" folds the BN's affine transform and running statistics into the conv's weight and
bias (``torch.nn.utils.fusion.fuse_conv_bn_eval``, the maintained helper) and replaces the BN
with Identity. "conv_bn_act" additionally moves the activation into a :class:`ConvAct`
module placed under the conv's own name, so ONNX node names (and ``float_modules`` in the
export) still find it, and the activation's old place becomes Identity.

Which BN / activation follows a conv is read from the torch.fx graph (the data flow), not
from registration order; a conv whose output feeds anything but a single BN is left alone.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping

import torch
from torch import fx, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

FUSION_PATTERNS = ("none", "conv_bn", "conv_bn_act")
ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.Hardtanh, nn.Hardswish, nn.SiLU, nn.GELU, nn.LeakyReLU)


class FusionError(ValueError):
    """Unknown pattern or module name, or a model whose graph cannot be read."""


class ConvAct(nn.Module):
    """A BN-folded conv followed by its activation (the result of "conv_bn_act")."""

    def __init__(self, conv: nn.Conv2d, act: nn.Module) -> None:
        super().__init__()
        self.conv = conv
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv(x))


def _only_user(node: fx.Node) -> fx.Node | None:
    users = list(node.users)
    return users[0] if len(users) == 1 else None


def _chains(model: nn.Module) -> dict[str, tuple[str | None, str | None]]:
    """conv name -> (name of the BN it feeds alone, name of the activation the BN feeds alone)."""
    try:
        graph = fx.symbolic_trace(model).graph
    except Exception as exc:  # fx raises many types on untraceable control flow
        raise FusionError(f"cannot trace the model to find conv-BN chains: {exc}") from exc
    modules = dict(model.named_modules())
    chains: dict[str, tuple[str | None, str | None]] = {}
    for node in graph.nodes:
        if node.op != "call_module" or not isinstance(modules.get(node.target), nn.Conv2d):
            continue
        bn_node = _only_user(node)
        if bn_node is None or bn_node.op != "call_module":
            chains[node.target] = (None, None)
            continue
        if not isinstance(modules.get(bn_node.target), nn.BatchNorm2d):
            chains[node.target] = (None, None)
            continue
        act_node = _only_user(bn_node)
        act = None
        if act_node is not None and act_node.op == "call_module":
            if isinstance(modules.get(act_node.target), ACTIVATIONS):
                act = act_node.target
        chains[node.target] = (bn_node.target, act)
    return chains


def _set_module(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def fuse_model(model: nn.Module, patterns: Mapping[str, str]) -> nn.Module:
    """A deep copy in eval mode with the given convs fused; keys are conv module names.

    A conv with no BN directly after it is left as is ("conv_bn" has nothing to fold);
    "conv_bn_act" where no activation follows the BN folds the BN only.
    """
    for name, pattern in patterns.items():
        if pattern not in FUSION_PATTERNS:
            raise FusionError(
                f"unknown fusion pattern {pattern!r} for {name!r}; known {FUSION_PATTERNS}"
            )
    fused = copy.deepcopy(model).eval()
    wanted = {n: p for n, p in patterns.items() if p != "none"}
    if not wanted:
        return fused
    modules = dict(fused.named_modules())
    unknown = [n for n in wanted if n not in modules]
    if unknown:
        raise FusionError(f"modules not in the model: {unknown}")
    not_conv = [n for n in wanted if not isinstance(modules[n], nn.Conv2d)]
    if not_conv:
        raise FusionError(f"fusion applies to Conv2d modules only, got {not_conv}")
    chains = _chains(fused)
    for name, pattern in wanted.items():
        bn_name, act_name = chains.get(name, (None, None))
        if bn_name is None:
            continue
        conv, bn = modules[name], modules[bn_name]
        folded = fuse_conv_bn_eval(conv, bn)  # type: ignore[arg-type]
        _set_module(fused, bn_name, nn.Identity())
        if pattern == "conv_bn_act" and act_name is not None:
            _set_module(fused, name, ConvAct(folded, copy.deepcopy(modules[act_name])))
            _set_module(fused, act_name, nn.Identity())
        else:
            _set_module(fused, name, folded)
    return fused
