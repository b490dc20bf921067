"""Export facade: ONNX / TFLite artifacts and accuracy of the artifact itself.

``export_onnx`` lives in ``onnx_export.py`` and ``export_tflite`` in ``tflite_export.py``;
this module re-exports them and adds ``evaluate_artifact``, which runs the exported file in
its own runtime (onnxruntime or ai_edge_litert) so that the accuracy the search sees is the
accuracy of what gets deployed, quantization error included.
"""

from __future__ import annotations

import numpy as np

from hadmc.compress.onnx_export import (
    ExportError,
    ExportResult,
    export_onnx,
    module_scope,
    nodes_of_modules,
    optimized_op_types,
)
from hadmc.compress.tflite_export import export_tflite

__all__ = [
    "ExportError",
    "ExportResult",
    "EXPORTERS",
    "evaluate_artifact",
    "export_onnx",
    "exporter_for",
    "export_tflite",
    "module_scope",
    "nodes_of_modules",
    "optimized_op_types",
    "predict_artifact",
]

ORT_BATCH = 256

# The host's exporter registry, keyed by runtime name (protos.runtimes): one exporter and one
# host-side runner per runtime, so build_candidate and export_baseline never branch on it.
EXPORTERS = {"onnxruntime": export_onnx, "litert": export_tflite}


def exporter_for(runtime: str):
    """The export function of ``runtime`` (``(model, path, example, **options)``)."""
    try:
        return EXPORTERS[runtime]
    except KeyError:
        raise ExportError(f"no exporter for runtime {runtime!r}; known {sorted(EXPORTERS)}") from None


def _predict_onnx(result: ExportResult, x: np.ndarray, threads: int) -> np.ndarray:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(result.path), so, providers=["CPUExecutionProvider"])
    outs = [
        sess.run(None, {result.input_name: x[i : i + ORT_BATCH]})[0]
        for i in range(0, len(x), ORT_BATCH)
    ]
    return np.concatenate(outs).astype(np.float32)


def _predict_tflite(result: ExportResult, x: np.ndarray, threads: int) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter

    from hadmc.native_output import quiet_native

    with quiet_native():  # LiteRT prints "Created TensorFlow Lite XNNPACK delegate" from C++
        interp = Interpreter(model_path=str(result.path), num_threads=threads)
        interp.allocate_tensors()
    inp = interp.get_input_details()[0]
    out = interp.get_output_details()[0]
    in_scale, in_zp = inp["quantization"]
    out_scale, out_zp = out["quantization"]
    in_dtype = np.dtype(inp["dtype"])
    batch = int(inp["shape"][0])
    if len(x) % batch:
        raise ExportError(f"{len(x)} samples do not split into the model's batch of {batch}")
    logits = []
    for i in range(0, len(x), batch):
        xb = x[i : i + batch]
        if in_dtype.kind in "iu":  # full-integer model: quantize the input as the model expects
            info = np.iinfo(in_dtype)
            xb = np.clip(np.round(xb / in_scale) + in_zp, info.min, info.max).astype(in_dtype)
        interp.set_tensor(inp["index"], np.ascontiguousarray(xb))
        interp.invoke()
        yb = interp.get_tensor(out["index"])
        if np.dtype(yb.dtype).kind in "iu":
            yb = (yb.astype(np.float32) - out_zp) * out_scale
        logits.append(np.array(yb, dtype=np.float32))
    return np.concatenate(logits)


PREDICTORS = {"onnx": _predict_onnx, "tflite": _predict_tflite}  # by artifact format


def predict_artifact(result: ExportResult, x: np.ndarray, threads: int = 1) -> np.ndarray:
    """Float logits of the exported artifact on ``x`` (float32, N x C x H x W)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim != len(result.input_shape) or x.shape[1:] != tuple(result.input_shape[1:]):
        raise ExportError(f"x shape {x.shape} does not match the artifact's {result.input_shape}")
    if threads < 1:
        raise ExportError("threads must be >= 1")
    predict = PREDICTORS.get(result.format)
    if predict is None:
        raise ExportError(f"unknown artifact format {result.format!r}")
    return predict(result, x, threads)


def evaluate_artifact(
    result: ExportResult, x: np.ndarray, y: np.ndarray, threads: int = 1
) -> float:
    """Top-1 accuracy in [0, 1] of the exported artifact, run in its own runtime."""
    y = np.asarray(y)
    if len(x) != len(y) or len(y) == 0:
        raise ExportError(f"x and y must be non-empty and equally long ({len(x)} vs {len(y)})")
    logits = predict_artifact(result, x, threads)
    return float((logits.argmax(axis=1) == y).mean())
