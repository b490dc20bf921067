"""MobileNetV2-style CNN for small images (inverted residuals, depthwise convs, Conv-BN-ReLU6).

Layout follows torchvision's MobileNetV2 (``features.N.conv.K.J`` module names) so layer-group
names read familiar, but strides are reduced for 32x32 inputs (CIFAR-style: the stem keeps
full resolution) and widths are chosen so that 1x1 (pointwise) convs dominate compute: they
are what structured pruning shrinks and what int8 kernels in ONNX Runtime speed up most.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

# (expansion t, output channels c, repeats n, first stride s) per stage, as in the paper's table 2.
MBV2_SMALL_SETTING: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 3, 2),
    (6, 96, 2, 1),
    (6, 160, 2, 1),
)


class ConvBNReLU6(nn.Sequential):
    """Conv2d (no bias) -> BatchNorm2d -> ReLU6; indices 0/1/2 are what fusion folds."""

    def __init__(self, c_in: int, c_out: int, kernel: int = 3, stride: int = 1, groups: int = 1):
        super().__init__(
            nn.Conv2d(c_in, c_out, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU6(inplace=False),
        )


class InvertedResidual(nn.Module):
    """1x1 expand -> 3x3 depthwise -> 1x1 linear projection; identity shortcut when shapes match."""

    def __init__(self, c_in: int, c_out: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        hidden = c_in * expand_ratio
        self.use_residual = stride == 1 and c_in == c_out
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvBNReLU6(c_in, hidden, kernel=1))
        layers += [
            ConvBNReLU6(hidden, hidden, kernel=3, stride=stride, groups=hidden),
            nn.Conv2d(hidden, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_residual else self.conv(x)


class MobileNetV2Small(nn.Module):
    """MobileNetV2 for small single- or multi-channel images (default 32x32 digits)."""

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 1,
        width_mult: float = 1.0,
        stem_channels: int = 32,
        last_channels: int = 512,
        setting: Sequence[tuple[int, int, int, int]] = MBV2_SMALL_SETTING,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if num_classes < 2 or in_channels < 1:
            raise ValueError(
                f"need num_classes >= 2 and in_channels >= 1, got {num_classes}, {in_channels}"
            )

        def width(c: int) -> int:
            # Multiples of 8 keep pruning's round_to=8 and SIMD kernels aligned.
            return max(8, int(round(c * width_mult / 8)) * 8)

        c_prev = width(stem_channels)
        features: list[nn.Module] = [ConvBNReLU6(in_channels, c_prev, kernel=3, stride=1)]
        for t, c, n, s in setting:
            c_out = width(c)
            for i in range(n):
                features.append(InvertedResidual(c_prev, c_out, s if i == 0 else 1, t))
                c_prev = c_out
        features.append(ConvBNReLU6(c_prev, last_channels, kernel=1))
        self.features = nn.Sequential(*features)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(last_channels, num_classes))
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.features(x))
        return self.classifier(torch.flatten(x, 1))
