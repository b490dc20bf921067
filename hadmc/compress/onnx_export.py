"""ONNX export of a PyTorch classifier as fp32, fp16 or static int8 (QDQ), with exclusions.

fp32 uses the legacy TorchScript exporter (``dynamo=False``) first: on this project's models
it is ~20x faster than the dynamo exporter (0.08 s vs 1-2.5 s, see notes/dependencies.md),
and it names nodes after the module scope (``/features/features.3/conv/conv.0/Conv``), which
is what lets ``float_modules`` map torch module names onto ONNX nodes to keep them in float.
Models it cannot export (a custom ``torch.autograd.Function``, e.g. timm's hard-swish in its
default configuration) fall back to the dynamo exporter, which traces through Python; its node
names differ, so ``float_modules`` cannot be mapped onto a dynamo export (an ExportError says
so). Exporter output goes to ``<artifact>.export.log``, never to the terminal.

int8 is ONNX Runtime static quantization in QDQ format with u8 activations and per-channel
s8 weights, after ``quant_pre_process`` (shape inference + graph optimisation). On an x86
CPU with VNNI this is the variant ORT fuses into integer kernels (QLinearConv); QDQ with s8
activations stayed in float and was slower than fp32 (measured, notes/dependencies.md).
"""

from __future__ import annotations

import re
import tempfile
import traceback
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from hadmc.native_output import output_to


class ExportError(ValueError):
    """Bad export request (unknown precision, missing calibration data, unknown module...)."""


@dataclass
class ExportResult:
    """An exported artifact and what a runtime needs to feed it."""

    path: Path
    format: str  # "onnx" | "tflite"
    precision: str  # "fp32" | "fp16" | "int8" | "mixed"
    size_bytes: int
    input_name: str
    input_shape: tuple[int, ...]
    input_dtype: str  # "float32"; "int8" for a full-integer .tflite with quantized I/O
    float_modules: list[str] = field(default_factory=list)
    exporter: str = "legacy"  # "dynamo" when the legacy exporter failed and the fallback worked


ONNX_OPSET = 17
INPUT_NAME = "input"
OUTPUT_NAME = "logits"
ONNX_PRECISIONS = ("fp32", "fp16", "int8")
CALIB_BATCH = 32


def _check_example(example_input: torch.Tensor) -> None:
    if not isinstance(example_input, torch.Tensor) or example_input.dtype != torch.float32:
        raise ExportError("example_input must be a float32 torch.Tensor, e.g. shape (1, C, H, W)")
    if example_input.ndim < 2 or example_input.shape[0] != 1:
        raise ExportError(
            f"example_input must have batch size 1, got shape {tuple(example_input.shape)}"
        )


def _export_fp32(
    model: nn.Module, path: Path, example_input: torch.Tensor, log_path: Path | None = None
) -> str:
    """Export with the legacy exporter, else the dynamo exporter; returns which one worked.

    Exporter output (TorchScript IR, progress lines, warnings) goes to ``<path>.export.log``,
    never to the terminal; when both exporters fail, one ExportError sentence says which
    operator failed, what was tried and what to do, and points at that log.
    """
    model = model.eval()
    log_path = log_path or _log_of(path)
    log_path.unlink(missing_ok=True)
    failures: list[tuple[str, BaseException]] = []
    for exporter in EXPORTERS:
        try:
            with output_to(log_path):
                _run_exporter(exporter, model, path, example_input)
        except Exception as exc:  # noqa: BLE001 - each exporter fails in its own way
            failures.append((exporter, exc))
            with open(log_path, "a") as log:
                log.write(f"\n=== {exporter} exporter failed ===\n")
                log.write("".join(traceback.format_exception(exc)))
            continue
        if not failures:
            log_path.unlink(missing_ok=True)  # nothing worth keeping
        return exporter
    raise ExportError(explain_export_failure(model, failures, log_path))


EXPORTERS = ("legacy", "dynamo")


def _log_of(artifact: Path) -> Path:
    return artifact.with_name(artifact.name + ".export.log")


def _run_exporter(exporter: str, model: nn.Module, path: Path, example: torch.Tensor) -> None:
    with warnings.catch_warnings():
        # The legacy exporter is deprecated in torch 2.9+; we use it on purpose (see module doc).
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        if exporter == "legacy":
            torch.onnx.export(
                model,
                (example,),
                str(path),
                dynamo=False,
                opset_version=ONNX_OPSET,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                do_constant_folding=True,
            )
        else:  # torch.export-based: traces through Python (autograd.Function, jit helpers)
            program = torch.onnx.export(
                model,
                (example,),
                dynamo=True,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_shapes=({0: torch.export.Dim("batch")},),
                verbose=False,
            )
            program.save(str(path))


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def explain_export_failure(
    model: nn.Module, failures: list[tuple[str, BaseException]], log_path: Path
) -> str:
    """One sentence: what failed, in which operator, what was tried, what to do."""
    text = _ANSI.sub("", "\n".join(str(exc) for _, exc in failures))
    python_op = re.search(r"Couldn't export Python operator (\w+)", text)
    aten_op = re.search(r"\b(aten[.:]{1,2}\w+)", text)
    if python_op:
        where = f"the custom torch.autograd.Function {python_op.group(1)!r}"
        advice = (
            "replace it with plain torch ops, or build the model in its library's "
            "export-friendly mode (e.g. timm's exportable=True)"
        )
    elif aten_op:
        where = f"operator {aten_op.group(1)!r}, which has no ONNX conversion"
        advice = "replace that operation in the model, or keep it out of the exported forward"
    else:
        last = failures[-1][1]
        first_line = _ANSI.sub("", str(last)).strip().splitlines()[:1] or [type(last).__name__]
        where = f"{type(last).__name__}: {first_line[0][:200]}"
        advice = "see the log for the operator that failed"
    tried = " and ".join(f"the {name} exporter" for name, _ in failures)
    return (
        f"cannot export {type(model).__name__} to ONNX: {tried} failed at {where}; "
        f"{advice} (full exporter output: {log_path})"
    )


def module_scope(module_name: str) -> str:
    """The node-name prefix the legacy exporter gives to nodes of ``module_name``.

    Each scope level is the module's name relative to its nearest non-numeric ancestor:
    ``features.3.conv.0.0`` -> ``/features/features.3/conv/conv.0/conv.0.0/``.
    """
    parts = module_name.split(".")
    comps: list[str] = []
    anchor = 0
    for i, part in enumerate(parts):
        if not part.isdigit():
            anchor = i
        comps.append(".".join(parts[anchor : i + 1]))
    return "/" + "/".join(comps) + "/"


def _called_within(node_scopes: Sequence[str], module_scopes: Sequence[str]) -> bool:
    """Whether a node whose scope path is ``node_scopes`` ran inside the module whose full
    ancestor path is ``module_scopes`` (``module_scope`` split): the exporter only writes a
    scope for a module that was *called*, and a container a model iterates over itself
    (``for block in self._blocks``: EfficientNet) is never called, so the node's path is the
    module's with some ancestors missing. It ran inside the module when a prefix of its path
    ends with the module's own scope and the rest of that prefix is, in order, a subset of
    the module's ancestors."""
    own, ancestors = module_scopes[-1], list(module_scopes[:-1])
    for j, comp in enumerate(node_scopes):
        if comp != own:
            continue
        it = iter(ancestors)
        if all(any(c == a for a in it) for c in node_scopes[:j]):  # ordered subsequence
            return True
    return False


def nodes_of_modules(graph: onnx.GraphProto, module_names: Sequence[str]) -> list[str]:
    """ONNX node names that belong to any of the torch modules; error if one matches none."""
    names: list[str] = []
    for mod in module_names:
        prefix = module_scope(mod)
        scopes = prefix.strip("/").split("/")
        hits = [
            n.name
            for n in graph.node
            if n.name.startswith(prefix) or _called_within(n.name.split("/")[1:-1], scopes)
        ]
        if not hits:
            raise ExportError(
                f"float module {mod!r} matches no ONNX node (expected names under {prefix!r})"
            )
        names.extend(h for h in hits if h not in names)
    return names


class _ArrayReader:
    """CalibrationDataReader over a numpy array, in batches (ORT calls get_next until None)."""

    def __init__(self, x: np.ndarray, batch: int = CALIB_BATCH) -> None:
        self._batches = [x[i : i + batch] for i in range(0, len(x), batch)]
        self._i = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._i >= len(self._batches):
            return None
        self._i += 1
        return {INPUT_NAME: self._batches[self._i - 1]}

    def rewind(self) -> None:
        self._i = 0


def _check_calib(calib_x: np.ndarray | None, example_input: torch.Tensor) -> np.ndarray:
    if calib_x is None:
        raise ExportError("int8 export needs calib_x (calibration images, float32 N x C x H x W)")
    calib = np.ascontiguousarray(calib_x, dtype=np.float32)
    if calib.ndim != example_input.ndim or calib.shape[1:] != tuple(example_input.shape[1:]):
        raise ExportError(
            f"calib_x shape {calib.shape} does not match example_input {tuple(example_input.shape)}"
        )
    if len(calib) == 0:
        raise ExportError("calib_x is empty")
    return calib


def _quantize_int8(
    fp32_path: Path,
    path: Path,
    calib: np.ndarray,
    float_modules: Sequence[str],
    reduce_range: bool,
) -> None:
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(fp32_path), str(pre))
        exclude = nodes_of_modules(onnx.load(str(pre)).graph, float_modules)
        quantize_static(
            str(pre),
            str(path),
            _ArrayReader(calib),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=True,
            reduce_range=reduce_range,
            nodes_to_exclude=exclude or None,
            # By default the quantizer deletes Relu/Clip before a Q (the u8 range clamps) and
            # renames the tensor, so "the float input" of an excluded node would skip its
            # activation. Keeping them makes the rewiring below exact; ORT's Relu/Clip-Quant
            # fusion removes them again at load time, so integer kernels are unchanged.
            extra_options={"QDQKeepRemovableActivations": True} if exclude else None,
        )
    if exclude:
        model = onnx.load(str(path))
        _detach_activation_qdq(model.graph, set(exclude))
        onnx.save(model, str(path))


def _detach_activation_qdq(graph: onnx.GraphProto, excluded: set[str]) -> None:
    """Feed excluded nodes the float tensor instead of its Q->DQ round trip.

    ``quantize_static(nodes_to_exclude=...)`` leaves a float weight on the node, but when the
    node's input activation is quantized for another consumer it still reads it through a
    DequantizeLinear, and ORT's graph optimiser (WeightBiasQuantization + QDQ fusion) then
    quantizes the float weight at load time and runs the node as QLinearConv anyway
    (measured with ORT 1.32). No quantizer option prevents that, so we rewire here: an
    excluded node whose input is DQ(Q(t)) reads t directly and stays a float Conv.
    """
    producer = {o: n for n in graph.node for o in n.output}
    for node in graph.node:
        if node.name not in excluded:
            continue
        for i, name in enumerate(node.input):
            dq = producer.get(name)
            if dq is None or dq.op_type != "DequantizeLinear":
                continue
            q = producer.get(dq.input[0])
            if q is not None and q.op_type == "QuantizeLinear":
                node.input[i] = q.input[0]


def export_onnx(
    model: nn.Module,
    path: str | Path,
    example_input: torch.Tensor,
    *,
    precision: str = "fp32",
    calib_x: np.ndarray | None = None,
    float_modules: Sequence[str] = (),
    reduce_range: bool = True,
) -> ExportResult:
    """Export ``model`` to ONNX at ``path``.

    precision: "fp32"; "fp16" (weights and activations fp16, float32 I/O kept so callers feed
    the same inputs; note ORT's CPU provider has few fp16 kernels and inserts casts, so fp16
    is a size win, rarely a CPU speed win); "int8" (static QDQ, needs ``calib_x``).
    float_modules: torch module names whose nodes stay float in an int8 export; the result
    is labelled "mixed" when any are given. The batch axis is dynamic.
    reduce_range: quantize weights to 7 bits. On x86 CPUs without VNNI (AVX2 only, like this
    project's CI machine), ORT's u8 x s8 kernels add pairs of products in int16 (vpmaddubsw)
    and saturate with full 8-bit weights: measured 3 points of accuracy lost on digits,
    recovered exactly with 7-bit weights (ORT's documented remedy). ARM and VNNI CPUs do not
    saturate, so pass False when the target is known to be one of those.
    """
    if precision not in ONNX_PRECISIONS:
        raise ExportError(f"unknown ONNX precision {precision!r}; choose from {ONNX_PRECISIONS}")
    _check_example(example_input)
    float_modules = list(float_modules)
    if float_modules and precision != "int8":
        raise ExportError("float_modules only applies to precision='int8'")
    known = {name for name, _ in model.named_modules()}
    unknown = [m for m in float_modules if m not in known]
    if unknown:
        raise ExportError(f"float_modules not in the model: {unknown}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    if precision == "fp32":
        exporter = _export_fp32(model, path, example_input)
    elif precision == "fp16":
        from onnxconverter_common import float16

        with tempfile.TemporaryDirectory() as tmp:
            fp32_path = Path(tmp) / "fp32.onnx"
            exporter = _export_fp32(model, fp32_path, example_input, _log_of(path))
            with warnings.catch_warnings():
                # "float32 number 4e-08 will be truncated to 1e-07": values below fp16's
                # smallest normal are clamped, once per weight; harmless for inference.
                warnings.simplefilter("ignore", UserWarning)
                half = float16.convert_float_to_float16(
                    onnx.load(str(fp32_path)), keep_io_types=True
                )
        onnx.save(half, str(path))
    else:
        calib = _check_calib(calib_x, example_input)
        with tempfile.TemporaryDirectory() as tmp:
            fp32_path = Path(tmp) / "fp32.onnx"
            exporter = _export_fp32(model, fp32_path, example_input, _log_of(path))
            _quantize_int8(fp32_path, path, calib, float_modules, reduce_range)

    label = "mixed" if float_modules else precision
    return ExportResult(
        path=path,
        format="onnx",
        precision=label,
        size_bytes=path.stat().st_size,
        input_name=INPUT_NAME,
        input_shape=tuple(int(d) for d in example_input.shape),
        input_dtype="float32",
        float_modules=float_modules,
        exporter=exporter,
    )


def optimized_op_types(path: str | Path) -> set[str]:
    """Op types of the graph ORT actually runs (after its optimisations), for checks/reports."""
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        opt = Path(tmp) / "opt.onnx"
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        so.optimized_model_filepath = str(opt)
        ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        return {n.op_type for n in onnx.load(str(opt)).graph.node}
