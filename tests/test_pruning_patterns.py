"""Pruning on the patterns of third-party architectures, each on a small net built here.

Per pattern: every offered group pruned to 0.5 still gives the original output shape, really
removes parameters, and exports to an ONNX file whose outputs match the pruned torch model's
(a wrong channel mapping would run but disagree). A group that cannot be pruned safely is
left out of the list and named with its reason; pruning never crashes.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hadmc.compress.onnx_export import export_onnx
from hadmc.compress.pruning import (
    count_macs_params,
    find_layer_groups,
    group_modules,
    prune_model,
    unprunable_groups,
)

X = torch.randn(2, 1, 16, 16)


def cbr(i: int, o: int, k: int = 3, s: int = 1, g: int = 1, act: type = nn.ReLU) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(i, o, k, s, k // 2, groups=g, bias=False), nn.BatchNorm2d(o), act()
    )


class SqueezeExcite(nn.Module):
    """Gating: x * gate(x), the gate a 1x1-conv (hard-sigmoid) or a Linear (sigmoid) pair."""

    def __init__(self, c: int, linear: bool) -> None:
        super().__init__()
        self.linear = linear
        make = nn.Linear if linear else (lambda i, o: nn.Conv2d(i, o, 1))
        self.fc1, self.fc2 = make(c, c // 4), make(c // 4, c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = F.adaptive_avg_pool2d(x, 1)
        if self.linear:
            s = torch.sigmoid(self.fc2(F.relu(self.fc1(s.flatten(1)))))[:, :, None, None]
        else:
            s = F.hardsigmoid(self.fc2(F.relu(self.fc1(s))))
        return x * s


class SENet(nn.Module):
    """Squeeze-excite with hard-swish, SiLU and GELU activations; Linear classifier."""

    def __init__(self, linear_gate: bool) -> None:
        super().__init__()
        self.a, self.b = cbr(1, 16, act=nn.Hardswish), cbr(16, 32, act=nn.SiLU)
        self.se, self.c = SqueezeExcite(32, linear_gate), cbr(32, 32, act=nn.GELU)
        self.fc = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.c(self.se(self.b(self.a(x))))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


class GroupedNet(nn.Module):
    """A grouped conv (groups=4), a depthwise conv and a pointwise conv."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.g = cbr(1, 32), cbr(32, 32, g=4)
        self.dw, self.pw = cbr(32, 32, g=32), cbr(32, 64, k=1)
        self.fc = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pw(self.dw(self.g(self.a(x)))).mean((2, 3)))


class DenseNet(nn.Module):
    """DenseNet-like: every block's output concatenated to its input."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b1, self.b2 = cbr(1, 16), cbr(16, 8), cbr(24, 8)
        self.t, self.fc = cbr(32, 32, k=1), nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.a(x)
        x = torch.cat([x, self.b1(x)], 1)
        x = torch.cat([x, self.b2(x)], 1)
        return self.fc(self.t(x).mean((2, 3)))


class InceptionNet(nn.Module):
    """Inception-like: parallel 1x1 / 3x3 / 1x1-then-5x5 branches concatenated."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.p1, self.p3 = cbr(1, 16), cbr(16, 16, k=1), cbr(16, 16, k=3)
        self.p5 = nn.Sequential(cbr(16, 8, k=1), cbr(8, 16, k=5))
        self.t, self.fc = cbr(48, 32, k=1), nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.a(x)
        x = torch.cat([self.p1(x), self.p3(x), self.p5(x)], 1)
        return self.fc(self.t(x).mean((2, 3)))


class ConvHeadNet(nn.Module):
    """All-conv classifier (a 1x1 conv head) with a Linear squeeze-excite inside: the head is
    the layer that runs last, not the last Linear registered."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = cbr(1, 16), cbr(16, 32)
        self.se, self.head = SqueezeExcite(32, linear=True), nn.Conv2d(32, 10, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.se(self.b(self.a(x)))
        return self.head(F.adaptive_avg_pool2d(x, 1)).flatten(1)


class ShuffleNet(nn.Module):
    """A channel split and a channel shuffle (ShuffleNet): torch-pruning cannot follow the
    split's halves, so the stem's group must stay unpruned; the last conv stays prunable."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.c = cbr(1, 32), cbr(16, 16), cbr(32, 32, k=1)
        self.fc = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = self.a(x).chunk(2, dim=1)
        x = torch.cat([x1, self.b(x2)], 1)
        n, c, h, w = x.shape
        x = x.view(n, 2, c // 2, h, w).transpose(1, 2).reshape(n, c, h, w)
        return self.fc(self.c(x).mean((2, 3)))


PATTERNS = {
    "squeeze_excite_conv_gate": lambda: SENet(linear_gate=False),
    "squeeze_excite_linear_gate": lambda: SENet(linear_gate=True),
    "grouped_and_depthwise": GroupedNet,
    "dense_concat": DenseNet,
    "inception_concat": InceptionNet,
    "conv_classifier": ConvHeadNet,
}


def _init(net: nn.Module) -> nn.Module:
    torch.manual_seed(0)
    for m in net.modules():  # non-trivial BN statistics, so a mis-mapped channel shows
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
    return net.eval()


def _onnx_matches(model: nn.Module, path: Path) -> None:
    export_onnx(model, path, X[:1])
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = X[:1].numpy()
    got = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    with torch.no_grad():
        want = model(X[:1]).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("pattern", sorted(PATTERNS))
def test_every_offered_group_prunes_to_a_working_model(pattern: str, tmp_path: Path) -> None:
    torch.set_num_threads(1)
    net = _init(PATTERNS[pattern]())
    groups = find_layer_groups(net, X)
    assert groups, "every pattern here has prunable groups"
    assert unprunable_groups(net, X) == []
    pruned = prune_model(net, [0.5] * len(groups), X)
    with torch.no_grad():
        assert pruned(X).shape == net(X).shape == (2, 10)
    _, params = count_macs_params(net, X)
    _, pruned_params = count_macs_params(pruned, X)
    assert pruned_params < 0.8 * params  # channels really went
    _onnx_matches(pruned, tmp_path / f"{pattern}.onnx")


def test_classifier_is_the_layer_that_runs_last() -> None:
    net = _init(ConvHeadNet())
    names = [g.name for g in find_layer_groups(net, X)]
    assert "head" not in names and "se.fc1" in names  # the SE Linear is prunable, the head not
    _, classifier = group_modules(net, X)
    assert classifier is net.head
    pruned = prune_model(net, [0.3] * len(names), X)
    assert pruned.head.out_channels == 10  # the class logits are never pruned


def test_a_group_that_cannot_be_pruned_is_named_and_left_out(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    net = _init(ShuffleNet())
    skipped = unprunable_groups(net, X)
    assert [g.name for g in skipped] == ["a.0"]
    # torch-pruning couples the stem with the branch conv through the split and the concat
    assert "pruning it" in skipped[0].reason and skipped[0].module_names == ("a.0", "b.0")
    groups = find_layer_groups(net, X)
    assert "a.0" not in [g.name for g in groups] and groups  # the rest stays offered
    for keep in (1.0, 0.5, 0.3):  # never a crash, never a wrong shape
        pruned = prune_model(net, [keep] * len(groups), X)
        with torch.no_grad():
            assert pruned(X).shape == (2, 10)
        assert pruned.a[0].out_channels == 32 and pruned.b[0].out_channels == 16
    _onnx_matches(prune_model(net, [0.5] * len(groups), X), tmp_path / "shuffle.onnx")


@pytest.mark.slow
def test_search_names_the_unpruned_group_in_setup_and_report(tmp_path: Path, capsys) -> None:
    import argparse

    from host.search import add_search_arguments, run_search

    model_py = tmp_path / "shufflenet.py"
    model_py.write_text(
        "import torch\n"
        "from tests.test_pruning_patterns import ShuffleNet, _init\n"
        "def make():\n    return _init(ShuffleNet())\n"
    )
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 64), ("val", 40), ("test", 40)):
        arrays[f"x_{split}"] = rng.standard_normal((n, 1, 16, 16)).astype(np.float32)
        arrays[f"y_{split}"] = rng.integers(0, 10, n)
    np.savez(tmp_path / "d.npz", **arrays)
    parser = argparse.ArgumentParser()
    add_search_arguments(parser)
    out = tmp_path / "run"
    args = parser.parse_args([
        "--model", f"{model_py}:make", "--data", str(tmp_path / "d.npz"), "--out", str(out),
        "--device", "sim:raspberry-pi-4", "--strategy", "grid", "--episodes", "1",
        "--finetune-steps", "0", "--max-accuracy-drop", "none",
    ])  # fmt: skip
    run_search(args, {})
    err = capsys.readouterr().err
    assert "stay unpruned" in err and "a.0 (pruning it" in err
    report = json.loads((out / "report.json").read_text())
    assert [g["name"] for g in report["unprunable_groups"]] == ["a.0"]
    assert report["run"]["config"]["layer_groups"] == 1
    assert "left unpruned: a.0" in (out / "report.html").read_text()


@pytest.mark.parametrize("pattern", ["grouped_and_depthwise", "squeeze_excite_conv_gate"])
def test_prune_steps_equal_prune_model_at_every_keep(pattern: str) -> None:
    from hadmc.compress.pruning import prune_steps

    net = _init(PATTERNS[pattern]())
    n = len(find_layer_groups(net, X))
    keeps = (0.75, 0.5, 0.3)
    for i in range(n):
        for keep, stepped in zip(keeps, prune_steps(net, i, keeps, X), strict=True):
            ratios = [1.0] * n
            ratios[i] = keep
            direct = prune_model(net, ratios, X).state_dict()
            got = stepped.state_dict()
            assert direct.keys() == got.keys()
            for k, v in direct.items():
                assert torch.equal(v, got[k]), (i, keep, k)
    with pytest.raises(ValueError, match="decrease"):
        next(prune_steps(net, 0, (0.3, 0.5), X))
