"""Export that survives real models: the legacy exporter first, the dynamo exporter when it
fails, and one clear sentence (with the log) when both fail; nothing on the terminal."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from hadmc.compress.onnx_export import ExportError, export_onnx


@torch.jit.script
def _hard_swish(x: torch.Tensor) -> torch.Tensor:
    return x * (x + 3).clamp(min=0, max=6).div(6.0)


class HardSwishFn(torch.autograd.Function):
    """Like timm's HardSwishJitAutoFn: a custom autograd.Function around a jit helper, which
    the legacy exporter cannot export ("Couldn't export Python operator")."""

    @staticmethod
    def forward(ctx, x):  # noqa: ANN001, ANN205
        ctx.save_for_backward(x)
        return _hard_swish(x)

    @staticmethod
    def backward(ctx, grad):  # noqa: ANN001, ANN205
        return grad


class HardSwish(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return HardSwishFn.apply(x)


class Histogram(nn.Module):
    """torch.histc has no ONNX conversion in either exporter."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.histc(x, bins=4).reshape(1, 4).expand(x.shape[0], 4)


def _net(act: nn.Module) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3), act, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)
    ).eval()


def test_custom_autograd_function_exports_through_the_dynamo_fallback(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    import onnxruntime as ort

    net, x = _net(HardSwish()), torch.randn(1, 1, 8, 8)
    result = export_onnx(net, tmp_path / "m.onnx", x)
    assert result.exporter == "dynamo"  # the legacy exporter failed, the fallback worked
    sess = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    np.testing.assert_allclose(got, net(x).detach().numpy(), rtol=1e-4, atol=1e-5)
    out = capfd.readouterr()
    assert "graph(" not in out.out + out.err and "[torch.onnx]" not in out.out  # no IR pages
    log = (tmp_path / "m.onnx.export.log").read_text()
    assert "Couldn't export Python operator HardSwishFn" in log  # the legacy failure, kept


def test_plain_model_uses_the_legacy_exporter_and_leaves_no_log(tmp_path: Path) -> None:
    result = export_onnx(_net(nn.ReLU()), tmp_path / "m.onnx", torch.randn(1, 1, 8, 8))
    assert result.exporter == "legacy"
    assert not (tmp_path / "m.onnx.export.log").exists()


def test_both_exporters_failing_give_one_sentence(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(ExportError) as exc:
        net = nn.Sequential(nn.Conv2d(1, 4, 3), Histogram(), nn.Linear(4, 3)).eval()
        export_onnx(net, tmp_path / "m.onnx", torch.randn(1, 1, 8, 8))
    message = str(exc.value)
    assert "\n" not in message and len(message) < 600
    assert message.startswith("cannot export Sequential to ONNX:")
    assert "the legacy exporter and the dynamo exporter failed" in message
    assert "histc" in message
    assert str(tmp_path / "m.onnx.export.log") in message
    out = capfd.readouterr()
    assert "Traceback" not in out.err and "graph(" not in out.out + out.err
