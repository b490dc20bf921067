"""Third-party architectures for ``bench/compress.py --third-party``: nets this project did
not write, trained here on the demo's digits, then compressed like the demo.

- ``efficientnet_b0``: ``efficientnet-pytorch`` in its default configuration (memory-efficient
  Swish, squeeze-excite, depthwise convs), 1 input channel, the digits' 32x32 images;
- ``monai_densenet``: MONAI's 2-D DenseNet (dense concatenation), a small configuration.

Both need only torch (the dev extra installs them). Each gets fp32, int8 and a pruned (keep
0.5) + distilled + int8 row; speedups are against its own fp32 row.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch


def _efficientnet(num_classes: int, channels: int, image_size: int) -> torch.nn.Module:
    from efficientnet_pytorch import EfficientNet

    return EfficientNet.from_name(
        "efficientnet-b0", in_channels=channels, num_classes=num_classes, image_size=image_size
    )


def _densenet(num_classes: int, channels: int, image_size: int) -> torch.nn.Module:
    from monai.networks.nets import DenseNet

    return DenseNet(
        spatial_dims=2, in_channels=channels, out_channels=num_classes,
        init_features=32, growth_rate=16, block_config=(4, 4, 4),
    )  # fmt: skip


ARCHS: dict[str, Callable[[int, int, int], torch.nn.Module]] = {
    "efficientnet_b0": _efficientnet,
    "monai_densenet": _densenet,
}


def add_rows(
    add: Callable[..., None],
    prune_and_distill: Callable[..., tuple[torch.nn.Module, str]],
    data: Any,
    example: torch.Tensor,
    epochs: int,
    distill_epochs: float,
) -> None:
    """Train each architecture on ``data`` and ``add`` its rows (``add(name, model, keep,
    precision=..., note=..., model_name=...)``, as in ``bench/compress.run``)."""
    from hadmc.compress.distill import teacher_logits_for
    from hadmc.models import train_classifier

    channels, size = data.input_shape[0], data.input_shape[-1]
    for arch, make in ARCHS.items():
        t0 = time.perf_counter()
        torch.manual_seed(0)
        model = make(data.num_classes, channels, size)
        val = train_classifier(model, data, epochs=epochs, lr=3e-3, batch_size=64, seed=0)
        model.eval()
        print(f"{arch}: trained {epochs} epochs, val {100 * val:.2f} % "
              f"({time.perf_counter() - t0:.0f} s)", flush=True)  # fmt: skip
        note = f"trained here {epochs} epochs"
        add(f"{arch} fp32", model, 1.0, note=note, model_name=arch)
        add(f"{arch} int8", model, 1.0, precision="int8", note=note, model_name=arch)
        logits = teacher_logits_for(model, data)
        student, how = prune_and_distill(model, data, example, 0.5, distill_epochs, logits)
        add(f"{arch} pruned50+int8", student, 0.5, precision="int8", note=how, model_name=arch)
