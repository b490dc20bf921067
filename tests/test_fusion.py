"""Conv+BN(+act) folding: outputs equal the unfused model within 1e-5."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hadmc.compress.fusion import FUSION_PATTERNS, ConvAct, FusionError, fuse_model
from hadmc.compress.pruning import find_layer_groups, prune_model
from hadmc.models import build_model

X32 = torch.zeros(1, 1, 32, 32)


def _with_random_bn_stats(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial BN statistics and affine params, so folding has real work to do."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.5)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=g) * 0.2)
    return model.eval()


@pytest.fixture(scope="module")
def mbv2() -> nn.Module:
    torch.manual_seed(0)
    return _with_random_bn_stats(build_model("mobilenetv2_small"))


def _conv_names(model: nn.Module) -> list[str]:
    return [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]


def _max_diff(a: nn.Module, b: nn.Module, x: torch.Tensor) -> float:
    with torch.no_grad():
        return float((a(x) - b(x)).abs().max())


X = torch.rand(4, 1, 32, 32, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("pattern", FUSION_PATTERNS)
def test_each_pattern_matches_unfused(mbv2: nn.Module, pattern: str) -> None:
    fused = fuse_model(mbv2, {n: pattern for n in _conv_names(mbv2)})
    assert _max_diff(mbv2, fused, X) < 1e-5
    n_bn = sum(isinstance(m, nn.BatchNorm2d) for m in fused.modules())
    n_convact = sum(isinstance(m, ConvAct) for m in fused.modules())
    n_relu6 = sum(isinstance(m, nn.ReLU6) for m in fused.modules())
    total_bn = sum(isinstance(m, nn.BatchNorm2d) for m in mbv2.modules())
    if pattern == "none":
        assert n_bn == total_bn and n_convact == 0
    elif pattern == "conv_bn":
        assert n_bn == 0 and n_convact == 0
        assert all(m.bias is not None for m in fused.modules() if isinstance(m, nn.Conv2d))
    else:
        # every Conv-BN-ReLU6 became a ConvAct; projection convs (no activation) fold BN only
        assert n_bn == 0 and n_convact > 0
        assert n_relu6 == n_convact  # each ReLU6 now lives inside a ConvAct
    assert sum(isinstance(m, nn.BatchNorm2d) for m in mbv2.modules()) == total_bn  # copy


def test_mixed_patterns_keep_conv_names_and_resnet(mbv2: nn.Module) -> None:
    names = _conv_names(mbv2)
    patterns = {n: FUSION_PATTERNS[i % 3] for i, n in enumerate(names)}
    fused = fuse_model(mbv2, patterns)
    assert _max_diff(mbv2, fused, X) < 1e-5
    mods = dict(fused.named_modules())
    assert all(n in mods for n in names)  # conv names survive (export's float_modules use them)
    for n, pattern in patterns.items():
        m = mods[n]
        if pattern == "none":
            assert isinstance(m, nn.Conv2d) and m.bias is None
        elif pattern == "conv_bn" or not isinstance(m, ConvAct):  # projections: no activation
            assert isinstance(m, nn.Conv2d) and m.bias is not None
            assert pattern == "conv_bn" or n.endswith("conv.2") or n == "features.1.conv.1"
        else:
            assert isinstance(m.conv, nn.Conv2d) and isinstance(m.act, nn.ReLU6)
    torch.manual_seed(0)
    resnet = _with_random_bn_stats(build_model("resnet_small"))
    fused_r = fuse_model(resnet, {n: "conv_bn_act" for n in _conv_names(resnet)})
    assert _max_diff(resnet, fused_r, X) < 1e-5
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fused_r.modules())


def test_fusion_on_pruned_model(mbv2: nn.Module) -> None:
    groups = find_layer_groups(mbv2, X32)
    pruned = prune_model(mbv2, [0.5] * len(groups), X32)
    patterns = {n: "conv_bn_act" for g in groups for n in g.module_names}
    fused = fuse_model(pruned, patterns)
    assert _max_diff(pruned, fused, X) < 1e-5
    assert _max_diff(mbv2, pruned, X) > 1e-3  # pruning really changed the function


def test_bad_patterns(mbv2: nn.Module) -> None:
    with pytest.raises(FusionError, match="unknown fusion pattern"):
        fuse_model(mbv2, {"features.0.0": "conv_relu"})
    with pytest.raises(FusionError, match="not in the model"):
        fuse_model(mbv2, {"features.99": "conv_bn"})
    with pytest.raises(FusionError, match="Conv2d"):
        fuse_model(mbv2, {"classifier.1": "conv_bn"})
