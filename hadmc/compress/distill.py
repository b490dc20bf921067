"""Knowledge-distillation fine-tune of a compressed student against the original teacher.

Loss (Hinton et al. 2015): ``alpha * T^2 * KL(softmax(t/T) || softmax(s/T)) + (1 - alpha) * CE``.
The trainable scope is selectable; everything outside it has ``requires_grad=False`` and stays
bit-identical, BN running statistics included (frozen BNs run in eval mode).
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hadmc.compress.pruning import group_modules
from hadmc.data import DataSplits
from hadmc.host_compute import autocast
from hadmc.models.train import (
    _progress,
    channels_last,
    minibatch_indices,
    nhwc_batch,
    predict_logits,
    recalibrate_bn,
    seed_everything,
)

UPDATE_SCOPES = ("bn_bias", "last_1", "last_3", "all")
BN_RECALIBRATION_IMAGES = 512


@dataclass
class DistillConfig:
    """Fine-tune hyperparameters; ``max_steps`` (if set) caps ``epochs``."""

    temperature: float = 4.0
    alpha: float = 0.7
    scope: str = "all"
    epochs: float = 1.0
    lr: float = 1e-3
    batch_size: int = 128
    seed: int = 0
    max_steps: int | None = None

    def validate(self) -> None:
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {self.alpha}")
        if self.scope not in UPDATE_SCOPES:
            raise ValueError(f"unknown scope {self.scope!r}; known {UPDATE_SCOPES}")
        if not self.epochs > 0 or not self.lr > 0 or self.batch_size < 1:
            raise ValueError("epochs and lr must be > 0 and batch_size >= 1")
        if self.max_steps is not None and self.max_steps < 0:
            raise ValueError(f"max_steps must be >= 0, got {self.max_steps}")


@dataclass
class DistillResult:
    model: (
        nn.Module
    )  # the fine-tuned student (a copy), eval mode; frozen params keep requires_grad=False
    steps: int
    trainable_params: int
    final_loss: float | None
    seconds: float


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    targets: torch.Tensor,
    temperature: float,
    alpha: float,
) -> torch.Tensor:
    """alpha * T^2 * KL(softmax(t/T) || softmax(s/T)) + (1 - alpha) * CE(s, y), batch mean."""
    t = float(temperature)
    kl = F.kl_div(
        F.log_softmax(student_logits / t, dim=1),
        F.log_softmax(teacher_logits / t, dim=1),
        log_target=True,
        reduction="batchmean",
    )
    return alpha * t * t * kl + (1.0 - alpha) * F.cross_entropy(student_logits, targets)


def _scope_modules(model: nn.Module, scope: str, example: torch.Tensor) -> list[nn.Module] | None:
    """Modules trained in full for a last_k scope (None: scope is not last_k)."""
    if not scope.startswith("last_"):
        return None
    k = int(scope.split("_")[1])
    groups, classifier = group_modules(model, example)
    chosen: list[nn.Module] = [classifier]
    for mods in groups[-k:]:
        chosen.extend(mods)
    return chosen


def _freeze(
    model: nn.Module, scope: str, example: torch.Tensor
) -> tuple[list[nn.Parameter], list[nn.Module]]:
    """Set requires_grad per scope; returns (trainable params, BNs whose statistics may move)."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    # Trace before freezing: torch-pruning follows autograd's graph, which skips frozen params.
    chosen = _scope_modules(model, scope, example) or []
    for p in model.parameters():
        p.requires_grad_(scope == "all")
    if scope == "all":
        return list(model.parameters()), bns
    if scope == "bn_bias":
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                for p in m.parameters(recurse=False):
                    p.requires_grad_(True)
            elif getattr(m, "bias", None) is not None and isinstance(m.bias, nn.Parameter):
                m.bias.requires_grad_(True)
        return [p for p in model.parameters() if p.requires_grad], bns
    for m in chosen:
        for p in m.parameters(recurse=False):
            p.requires_grad_(True)
    return [p for p in model.parameters() if p.requires_grad], [
        m for m in bns if any(m is c for c in chosen)
    ]


def teacher_logits_for(
    teacher: nn.Module, data: DataSplits, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """The teacher's eval-mode logits for all of ``data.x_train`` (on the CPU), for
    :func:`distill_finetune`; computed on ``device``."""
    device = torch.device(device)
    model = teacher if device.type == "cpu" else copy.deepcopy(teacher).to(device)
    return predict_logits(model, data.x_train)


def distill_finetune(
    student: nn.Module,
    teacher: nn.Module,
    data: DataSplits,
    config: DistillConfig,
    *,
    progress: bool = False,
    teacher_logits: torch.Tensor | None = None,
    device: torch.device | str = "cpu",
) -> DistillResult:
    """Fine-tune a copy of ``student`` on the training split with the distillation loss.

    ``teacher_logits``: the teacher's eval-mode logits for every image of ``data.x_train``
    (:func:`teacher_logits_for`), computed once and reused. Why: the data has no augmentation,
    so the teacher's output per image never changes, and its forward pass was half of a
    fine-tune step on the demo net (0.20 s of ~0.37 s at batch 64, 2 threads). Without them,
    the teacher runs on each batch as usual. ``device``: where the fine-tune runs
    (``hadmc.host_compute``); the returned model is on the CPU either way.
    """
    config.validate()
    if teacher_logits is not None and teacher_logits.shape[0] != len(data.x_train):
        raise ValueError(
            f"teacher_logits has {teacher_logits.shape[0]} rows, x_train {len(data.x_train)}"
        )
    t0 = time.perf_counter()
    seed_everything(config.seed)
    model = copy.deepcopy(student)
    example = torch.from_numpy(np.ascontiguousarray(data.x_train[:1], dtype=np.float32))
    teacher.eval()
    with torch.no_grad():
        if model.eval()(example).shape != teacher(example).shape:
            raise ValueError("student and teacher outputs differ in shape")
    trainable, live_bns = _freeze(model, config.scope, example)  # traces on the CPU
    device = torch.device(device)
    model.to(device)
    if teacher_logits is not None:
        teacher_logits = teacher_logits.to(device)
    n_trainable = sum(p.numel() for p in trainable)
    batch = min(config.batch_size, len(data.x_train))
    per_epoch = max(1, len(data.x_train) // batch)
    steps = int(round(config.epochs * per_epoch))
    if config.max_steps is not None:
        steps = min(steps, config.max_steps)
    if n_trainable == 0:
        steps = 0
    gen = torch.Generator().manual_seed(config.seed)
    opt = torch.optim.Adam(trainable, lr=config.lr) if steps else None
    done, last_loss = 0, None
    teacher_cl = (
        copy.deepcopy(teacher).to(device).to(memory_format=torch.channels_last).eval()
        if teacher_logits is None
        else None
    )
    # channels_last: ~1.6x faster CPU conv backward; undone on exit (values are unchanged).
    with channels_last(model), _progress(progress, steps, "distilling") as advance:
        while done < steps:
            for idx in minibatch_indices(len(data.x_train), batch, gen):
                if done >= steps:
                    break
                xb = nhwc_batch(data.x_train[idx], device)
                yb = torch.from_numpy(data.y_train[idx]).to(device)
                model.train()
                for m in model.modules():  # frozen BNs keep their running statistics
                    if isinstance(m, nn.modules.batchnorm._BatchNorm) and not any(
                        m is b for b in live_bns
                    ):
                        m.eval()
                if teacher_logits is not None:
                    t_logits = teacher_logits[torch.from_numpy(idx).to(device)]
                else:
                    with torch.no_grad():
                        t_logits = teacher_cl(xb)  # type: ignore[misc]
                with autocast(device):
                    loss = distillation_loss(
                        model(xb), t_logits, yb, config.temperature, config.alpha
                    )
                opt.zero_grad(set_to_none=True)  # type: ignore[union-attr]
                loss.backward()
                opt.step()  # type: ignore[union-attr]
                last_loss = float(loss.detach())
                done += 1
                advance()  # type: ignore[operator]
    if done and live_bns:
        # The BNs that moved get exact statistics for their final weights (see recalibrate_bn).
        recalibrate_bn(model, data.x_train[:BN_RECALIBRATION_IMAGES], only=live_bns)
    model.to("cpu")  # exports and hashing always see a CPU model
    return DistillResult(model.eval(), done, n_trainable, last_loss, time.perf_counter() - t0)
