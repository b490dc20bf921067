"""TFLite (LiteRT) export of a PyTorch classifier as fp32 or full-integer int8.

Both go through ``litert_torch`` (the maintained PyTorch -> .tflite converter). int8 is
post-training static quantization with PT2E: ``torch.export`` -> ``prepare_pt2e`` with the
litert-torch quantizer (symmetric s8, per-channel weights, histogram-calibrated s8
activations) -> calibration forward passes -> ``convert_pt2e`` -> ``litert_torch.convert``
with that quantizer. The resulting model is full-integer: its input and output tensors are
int8 with a scale/zero-point (``ExportResult.input_dtype == "int8"``), and XNNPACK runs its
convolutions with integer kernels. Conversion takes seconds per model, so callers should
convert once and reuse the file.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from hadmc.compress.onnx_export import ExportError, ExportResult, _check_calib, _check_example

TFLITE_PRECISIONS = ("fp32", "int8")
CALIB_BATCH = 32


def _litert():
    # The converter prints a rich progress tree for every conversion; keep it quiet unless
    # the user asked for it through the converter's own environment variable.
    os.environ.setdefault("LITERT_TORCH_SHOW_PROGRESS", "n")
    import litert_torch

    return litert_torch


def _calib_batches(calib: np.ndarray) -> list[np.ndarray]:
    """Batches of CALIB_BATCH; a trailing single image joins the previous batch, because the
    program is exported with a dynamic batch that torch.export assumes is >= 2."""
    batches = [calib[i : i + CALIB_BATCH] for i in range(0, len(calib), CALIB_BATCH)]
    if len(batches) > 1 and len(batches[-1]) == 1:
        batches[-2] = np.concatenate(batches[-2:])
        batches.pop()
    return batches


def _quantized_program(model: nn.Module, calib: np.ndarray):
    """PT2E-quantize ``model`` (calibrated on ``calib``); returns (graph module, quantizer).

    The program is exported with a dynamic batch so that calibration runs in batches: the
    histogram observers cost per call, and one call per image took ~3 minutes for the demo
    model on a loaded 2-core machine. ``litert_torch.convert`` re-exports it at batch 1.
    """
    from litert_torch.quantize import pt2e_quantizer as pq
    from torchao.quantization.pt2e import move_exported_model_to_eval, quantize_pt2e

    if len(calib) < 2:
        raise ExportError("int8 TFLite export needs at least 2 calibration images")
    batches = [torch.from_numpy(np.ascontiguousarray(b)) for b in _calib_batches(calib)]
    gm = torch.export.export(
        model.eval(), (batches[0],), dynamic_shapes=({0: torch.export.Dim.AUTO},)
    ).module()
    quantizer = pq.PT2EQuantizer().set_global(
        pq.get_symmetric_quantization_config(is_per_channel=True)
    )
    gm = quantize_pt2e.prepare_pt2e(gm, quantizer)
    move_exported_model_to_eval(gm)
    with torch.no_grad():
        for batch in batches:
            gm(batch)
    gm = quantize_pt2e.convert_pt2e(gm, fold_quantize=False)
    move_exported_model_to_eval(gm)
    return gm, quantizer


def export_tflite(
    model: nn.Module,
    path: str | Path,
    example_input: torch.Tensor,
    *,
    precision: str = "fp32",
    calib_x: np.ndarray | None = None,
) -> ExportResult:
    """Export ``model`` to a .tflite file at ``path`` (batch 1, NCHW input as in torch).

    precision "int8" needs ``calib_x`` (>= 2 images; a few hundred is plenty).
    """
    if precision not in TFLITE_PRECISIONS:
        raise ExportError(
            f"unknown TFLite precision {precision!r}; choose from {TFLITE_PRECISIONS}"
        )
    _check_example(example_input)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    litert_torch = _litert()
    model = model.eval()
    if precision == "fp32":
        edge = litert_torch.convert(model, (example_input,))
    else:
        from litert_torch.quantize.quant_config import QuantConfig

        calib = _check_calib(calib_x, example_input)
        gm, quantizer = _quantized_program(model, calib)
        edge = litert_torch.convert(
            gm, (example_input,), quant_config=QuantConfig(pt2e_quantizer=quantizer)
        )
    edge.export(str(path))

    from ai_edge_litert.interpreter import Interpreter

    from hadmc.native_output import quiet_native

    with quiet_native():
        inp = Interpreter(model_path=str(path)).get_input_details()[0]
    return ExportResult(
        path=path,
        format="tflite",
        precision=precision,
        size_bytes=path.stat().st_size,
        input_name=str(inp["name"]),
        input_shape=tuple(int(d) for d in inp["shape"]),
        input_dtype=np.dtype(inp["dtype"]).name,
        float_modules=[],
    )
