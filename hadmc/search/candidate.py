"""Turn a joint action into a deployable, evaluated artifact (everything but the device).

The compression passes (``hadmc.compress.registry``) apply phase by phase, in pass order
within a phase (DESIGN §1): ``model`` passes (prune: physical channel removal, ``round_to``
channel multiples; then fuse) -> ``finetune`` passes set the distillation fine-tune against
the original model as teacher (bounded number of steps), which runs -> ``export`` passes set
the exporter's options (ONNX: int8 groups quantized with static QDQ, fp32 groups kept float via
``float_modules``; or TFLite), and it exports -> accuracy of the EXPORTED artifact on the
validation split.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import io
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from hadmc.compress.distill import DistillConfig, distill_finetune
from hadmc.compress.export import ExportResult, evaluate_artifact, exporter_for
from hadmc.compress.pruning import count_macs_params
from hadmc.compress.registry import Build, CompressionPass, resolve_passes
from hadmc.search.env import JointAction
from protos import runtimes as runtime_table

ARTIFACT_EXT = {r.name: r.extension for r in runtime_table.TABLE}  # protos.runtimes
# Fine-tune batch: 64 rather than DistillConfig's 128: within the same time budget, short
# fine-tunes recover more accuracy with more, smaller steps. One step on the demo net (student
# forward/backward, teacher logits cached) costs ~0.15-0.25 s at 64 on a quiet 2-core machine.
FINETUNE_BATCH = 64
# Fine-tune learning rate (Adam) by the share of MACs pruning removed: geometric from
# FINETUNE_LR_MIN with nothing removed to FINETUNE_LR_MAX at FINETUNE_LR_FULL_AT removed or
# more. Why not one rate: measured on the demo (2026-12-02, 20 steps of 64, uniform int8,
# test accuracy of the exported file, baseline 97.1 %), a rate that recovers a heavily pruned
# model wrecks a mildly compressed one, and the reverse:
#   MACs removed   lr 1e-3   lr 3e-4   lr 1e-4
#        0 %       95.8 %    97.4 %    97.2 %
#       17 %       95.9 %    96.6 %
#       36 %       95.1 %    95.0 %
#       50 %       94.4 %    91.7 %    84.1 %
#       73 %       87.0 %    75.3 %
FINETUNE_LR_MIN, FINETUNE_LR_MAX, FINETUNE_LR_FULL_AT = 3e-4, 1e-3, 0.4


def finetune_lr(macs_removed: float) -> float:
    """The fine-tune learning rate for a candidate that lost ``macs_removed`` (0..1) of its
    MACs to pruning (see FINETUNE_LR_MIN)."""
    t = min(max(float(macs_removed) / FINETUNE_LR_FULL_AT, 0.0), 1.0)
    return float(FINETUNE_LR_MIN * (FINETUNE_LR_MAX / FINETUNE_LR_MIN) ** t)


def model_hash(model: nn.Module) -> str:
    """sha256 over the class name and every state-dict tensor (names, shapes, bytes)."""
    h = hashlib.sha256(type(model).__qualname__.encode())
    for name, tensor in model.state_dict().items():
        t = tensor.detach().cpu().contiguous()
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(str(t.dtype).encode())
        buf = io.BytesIO()
        np.save(buf, t.float().numpy() if t.is_floating_point() else t.numpy())
        h.update(buf.getvalue())
    return h.hexdigest()


def example_input_for(input_shape: Sequence[int]) -> torch.Tensor:
    return torch.zeros(1, *[int(d) for d in input_shape], dtype=torch.float32)


@dataclass
class BuiltCandidate:
    """A compressed, fine-tuned, exported artifact and its accuracy (not yet measured)."""

    export: ExportResult
    accuracy: float  # of the exported artifact on the validation split, in [0, 1]
    macs: int
    params: int
    precision: str  # effective precision of the artifact: fp32 | int8 | mixed
    finetune_steps: int
    timings_s: dict[str, float] = field(default_factory=dict)
    finetune_lr: float | None = None  # the rate used (finetune_lr), None without a fine-tune
    # Held-out truth: accuracy of the exported artifact on the test split, never used to
    # select (selection uses ``accuracy``, on validation); None when there is no test split.
    test_accuracy: float | None = None
    test_n: int = 0


def strip_unused_opsets(result: ExportResult) -> ExportResult:
    """Drop ``opset_import`` entries of domains no node uses (semantics unchanged).

    Why: onnxruntime's quantizer declares every contrib domain it knows (com.microsoft.nchwc,
    org.pytorch.aten, ...) although a QDQ graph only uses the default domain. ``hadmc-device``
    checks only the domains nodes use, but other deployment tools (converters, stricter
    runtimes, audits) read the declarations; the artifact we ship declares only what it uses.
    """
    if result.format != "onnx":
        return result
    import onnx

    model = onnx.load(str(result.path))
    used = {n.domain for n in model.graph.node} | {""}
    for f in model.functions:
        used |= {n.domain for n in f.node} | {f.domain}
    keep = [o for o in model.opset_import if o.domain in used or o.domain == "ai.onnx"]
    if len(keep) == len(model.opset_import):
        return result
    del model.opset_import[:]
    model.opset_import.extend(keep)
    onnx.save(model, str(result.path))
    return dataclasses.replace(result, size_bytes=Path(result.path).stat().st_size)


def build_candidate(
    model: nn.Module,
    data: Any,
    groups: Sequence[Any],
    joint: JointAction,
    path_stem: Path,
    *,
    runtime: str = "onnxruntime",
    finetune_steps: int = 10,
    seed: int = 0,
    threads: int = 1,
    teacher_logits: torch.Tensor | None = None,
    passes: Sequence[CompressionPass] | None = None,
    host_device: Any = "cpu",
) -> BuiltCandidate:
    """Apply ``joint`` to a copy of ``model`` and export to ``path_stem`` + runtime extension.

    ``teacher_logits``: ``model``'s logits on the training split (``teacher_logits_for``),
    computed once per search rather than in every fine-tune step. ``passes``: the passes
    ``joint`` was decided with (default: the registry). ``host_device``: where the fine-tune
    runs (``hadmc.host_compute``); pruning and export run on the CPU.
    """
    if runtime not in ARTIFACT_EXT:
        raise ValueError(f"unknown runtime {runtime!r}; known {sorted(ARTIFACT_EXT)}")
    passes = resolve_passes(passes)
    n = len(groups)
    for p in passes:
        if p.per_group and len(joint[p.name]) != n:
            raise ValueError(f"joint action is for {len(joint[p.name])} groups, model has {n}")
    example = example_input_for(data.input_shape)
    timings: dict[str, float] = {}
    build = Build(model, model, data, groups, example, runtime)

    for p in passes:
        if p.phase == "model":
            t0 = time.perf_counter()
            p.apply(joint[p.name], build)
            timings[f"{p.timing or p.name}_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    for p in passes:
        if p.phase == "finetune":
            p.apply(joint[p.name], build)
    # Model passes return copies; without any, the fine-tune must not train the user's model.
    student = build.student if build.student is not model else copy.deepcopy(model)
    # Counted once, before the fine-tune: it changes weights, never shapes.
    macs, params = count_macs_params(student, example)
    steps = 0
    if finetune_steps > 0:
        if "lr" not in build.finetune:  # a pass may set it; else by how much was pruned
            kept = macs / max(count_macs_params(model, example)[0], 1)
            build.finetune["lr"] = finetune_lr(1.0 - kept)
        cfg = DistillConfig(
            **build.finetune,
            epochs=1000.0,  # bounded by max_steps, not epochs
            max_steps=finetune_steps,
            batch_size=FINETUNE_BATCH,
            seed=seed,
        )
        result = distill_finetune(
            student, copy.deepcopy(model).eval(), data, cfg, teacher_logits=teacher_logits,
            device=host_device,
        )  # fmt: skip
        student, steps = result.model, int(result.steps)
    student = student.eval()
    timings["finetune_s"] = time.perf_counter() - t0

    path = Path(f"{path_stem}.{ARTIFACT_EXT[runtime]}")
    t0 = time.perf_counter()
    for p in passes:
        if p.phase == "export":
            p.apply(joint[p.name], build)
    exporter = exporter_for(runtime)
    exported = strip_unused_opsets(exporter(student, path, example, **build.export))
    timings["export_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    accuracy = evaluate_artifact(exported, data.x_val, data.y_val, threads=threads)
    timings["evaluate_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    test_accuracy, test_n = test_accuracy_of(exported, data, threads)
    timings["test_s"] = time.perf_counter() - t0
    return BuiltCandidate(
        export=exported,
        accuracy=float(accuracy),
        macs=int(macs),
        params=int(params),
        precision=exported.precision,
        finetune_steps=steps,
        finetune_lr=float(build.finetune["lr"]) if steps else None,
        timings_s=timings,
        test_accuracy=test_accuracy,
        test_n=test_n,
    )


def test_accuracy_of(exported: ExportResult, data: Any, threads: int) -> tuple[float | None, int]:
    """(accuracy on the held-out test split, its size); (None, 0) without a test split."""
    x_test = getattr(data, "x_test", None)
    if x_test is None or len(x_test) == 0:
        return None, 0
    return float(evaluate_artifact(exported, x_test, data.y_test, threads=threads)), len(x_test)


def export_baseline(
    model: nn.Module, data: Any, path_stem: Path, *, runtime: str, threads: int = 1
) -> BuiltCandidate:
    """The uncompressed fp32 model, exported and evaluated the same way as candidates."""
    example = example_input_for(data.input_shape)
    path = Path(f"{path_stem}.{ARTIFACT_EXT[runtime]}")
    m = copy.deepcopy(model).eval()
    exported = exporter_for(runtime)(m, path, example, precision="fp32")
    macs, params = count_macs_params(m, example)
    acc = evaluate_artifact(exported, data.x_val, data.y_val, threads=threads)
    test_accuracy, test_n = test_accuracy_of(exported, data, threads)
    return BuiltCandidate(
        exported, float(acc), int(macs), int(params), "fp32", 0,
        test_accuracy=test_accuracy, test_n=test_n,
    )  # fmt: skip
