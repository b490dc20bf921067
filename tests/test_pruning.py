"""Structured pruning: groups, exact parameter/MAC counts, physical removal, ONNX export."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from hadmc.compress.pruning import (
    PruningError,
    count_macs_params,
    find_layer_groups,
    kept_channels,
    prune_model,
)
from hadmc.models import build_model

X32 = torch.zeros(1, 1, 32, 32)


def _plain_cnn() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10),
    ).eval()  # fmt: skip


def test_counts_fall_exactly_as_computed_by_hand() -> None:
    model, x = _plain_cnn(), torch.zeros(1, 1, 8, 8)
    groups = find_layer_groups(model, x)
    assert [g.module_names for g in groups] == [["0"], ["3"]]  # the Linear's outputs never
    # full width: conv1 16*64 outputs * 9, conv2 32*64 * 16*9, linear 32*10
    assert count_macs_params(model, x) == (16 * 64 * 9 + 32 * 64 * 144 + 320, 5178)
    pruned = prune_model(model, [0.5, 0.25], x)
    # kept: 8 and 8 channels. params: conv1 8*9, bn1 2*8, conv2 8*8*9, bn2 2*8, fc 8*10+10
    params = 8 * 9 + 16 + 8 * 8 * 9 + 16 + 90
    macs = 8 * 64 * 9 + 8 * 64 * 8 * 9 + 8 * 10
    assert count_macs_params(pruned, x) == (macs, params)
    assert pruned[0].out_channels == 8 and pruned[3].in_channels == 8 and pruned[8].in_features == 8
    assert model[0].out_channels == 16  # the original is untouched (deep copy)
    # the kept channels are the largest-L2 ones of the group (conv weight + BN)
    assert pruned(torch.ones(2, 1, 8, 8)).shape == (2, 10)


def test_kept_channels_rounding() -> None:
    assert kept_channels(48, 0.5) == 24
    assert kept_channels(48, 0.3) == 16  # 14.4 -> nearest multiple of 8
    assert kept_channels(48, 0.05) == 8  # never below one multiple
    assert kept_channels(640, 1.0) == 640
    assert kept_channels(4, 0.5) == 2  # narrower than round_to: plain rounding
    for bad in (0.0, -0.1, 1.5):
        with pytest.raises(PruningError):
            kept_channels(48, bad)


def test_mobilenet_groups_features() -> None:
    model = build_model("mobilenetv2_small").eval()
    groups = find_layer_groups(model, X32)
    names = dict(model.named_modules())
    assert len(groups) == 20
    assert [g.index for g in groups] == list(range(20))
    assert groups[0].position == 0.0 and groups[-1].position == 1.0
    for g in groups:
        assert g.name == g.module_names[0]
        for n in g.module_names:
            assert isinstance(names[n], nn.Conv2d)
            assert names[n].out_channels == g.out_channels
        assert g.macs > 0 and g.params > 0
    # expand 1x1 + depthwise 3x3 share channels; a stage's projections share them via the adds
    g2 = groups[2]
    assert g2.module_names == ["features.2.conv.0.0", "features.2.conv.1.0"]
    assert (g2.kind, g2.kernel_size, g2.stride, g2.out_channels) == ("depthwise", 3, 2, 144)
    assert groups[6].module_names == ["features.4.conv.2", "features.5.conv.2", "features.6.conv.2"]
    assert groups[6].kind == "pointwise"
    assert groups[-1].name == "features.14.0"
    assert "classifier.1" not in {n for g in groups for n in g.module_names}
    for param in model.parameters():  # frozen params (e.g. after a narrow fine-tune) trace too
        param.requires_grad_(False)
    assert [g.module_names for g in find_layer_groups(model, X32)] == [
        g.module_names for g in groups
    ]
    # forward order: every group's first conv runs after the previous group's first conv
    order = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    assert [order.index(g.name) for g in groups] == sorted(order.index(g.name) for g in groups)


def test_residual_group_counts_and_untouched_groups() -> None:
    model = build_model("mobilenetv2_small").eval()
    groups = find_layer_groups(model, X32)
    ratios = [1.0] * len(groups)
    ratios[17] = 0.5  # the 240-channel stage coupled through a residual add
    pruned = prune_model(model, ratios, X32)
    m = dict(model.named_modules())
    p = dict(pruned.named_modules())
    removed = 120
    hidden_12 = m["features.12.conv.2"].in_channels  # 864
    hidden_13 = m["features.13.conv.2"].in_channels  # 1440
    # out side: two projection convs and their BNs; in side: the expand conv of block 13
    # and the final 1x1 conv read the 240-wide tensor
    expected_drop = (
        removed * hidden_12 + 2 * removed
        + removed * hidden_13 + 2 * removed
        + removed * m["features.13.conv.0.0"].out_channels
        + removed * m["features.14.0"].out_channels
    )  # fmt: skip
    p0, p1 = count_macs_params(model, X32)[1], count_macs_params(pruned, X32)[1]
    assert p0 - p1 == expected_drop
    assert (
        p["features.12.conv.2"].out_channels == 120 and p["features.13.conv.2"].out_channels == 120
    )
    assert p["features.13.conv.0.0"].in_channels == 120 and p["features.14.0"].in_channels == 120
    after = find_layer_groups(pruned, X32)
    for i, (a, b) in enumerate(zip(groups, after, strict=True)):
        assert b.out_channels == (120 if i == 17 else a.out_channels)
    # a group with keep 1.0 whose inputs are also unpruned is bit-identical
    for name in ("features.2.conv.0.0", "features.12.conv.0.0", "classifier.1"):
        assert torch.equal(m[name].weight, p[name].weight)
    assert pruned(torch.ones(3, 1, 32, 32)).shape == (3, 10)


def test_all_ones_is_identity_and_bad_input() -> None:
    model = build_model("resnet_small").eval()
    groups = find_layer_groups(model, X32)
    same = prune_model(model, [1.0] * len(groups), X32)
    a, b = model.state_dict(), same.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(PruningError, match="keep ratios"):
        prune_model(model, [1.0] * (len(groups) + 1), X32)
    with pytest.raises(PruningError):
        prune_model(model, [0.0] * len(groups), X32)


@pytest.mark.parametrize("name", ["mobilenetv2_small", "resnet_small"])
def test_pruned_model_exports_to_onnx_and_matches(name: str, tmp_path: Path) -> None:
    import onnxruntime as ort

    model = build_model(name).eval()
    n = len(find_layer_groups(model, X32))
    ratios = [0.5 if i % 2 == 0 else 0.75 for i in range(n)]
    pruned = prune_model(model, ratios, X32)
    m0, p0 = count_macs_params(model, X32)
    m1, p1 = count_macs_params(pruned, X32)
    assert m1 < 0.75 * m0 and p1 < 0.75 * p0
    x = torch.randn(2, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = pruned(x).numpy()
    path = tmp_path / "pruned.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            pruned, (X32,), str(path), dynamo=False, input_names=["input"],
            dynamic_axes={"input": {0: "batch"}},
        )  # fmt: skip
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = sess.run(None, {"input": x.numpy()})[0]
    assert out.shape == (2, 10)
    assert np.abs(out - ref).max() < 1e-4
