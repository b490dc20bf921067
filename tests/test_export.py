"""Export to ONNX (fp32/fp16/int8/mixed) and TFLite (fp32/int8): artifacts load, run in their
runtime, stay close to the torch model, and int8 really is integer.

Accuracy tests use the project's demo model (``demo`` fixture from conftest) when it exists;
before ``hadmc.models`` landed they use a small CNN trained here on scikit-learn's 8x8 digits.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from hadmc.compress.export import (
    ExportError,
    evaluate_artifact,
    export_onnx,
    export_tflite,
    module_scope,
    optimized_op_types,
    predict_artifact,
)

torch.set_num_threads(1)


class _SmallNet(nn.Module):
    """Fallback classifier for 1x8x8 digits: conv-BN-ReLU blocks, a residual add, a Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU()),
            nn.Sequential(nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU()),
            nn.Sequential(nn.Conv2d(32, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU6()),
            nn.AdaptiveAvgPool2d(1),
        )
        self.classifier = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


def _train_small() -> tuple[nn.Module, np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    rng = np.random.default_rng(0)
    idx = rng.permutation(len(d.target))
    x = (d.images[idx] / 16.0).astype(np.float32)[:, None]
    y = d.target[idx].astype(np.int64)
    x_train, y_train, x_test, y_test = x[:1400], y[:1400], x[1400:], y[1400:]
    torch.manual_seed(0)
    model = _SmallNet()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    xt, yt = torch.from_numpy(x_train), torch.from_numpy(y_train)
    for _ in range(12):
        perm = torch.randperm(len(xt))
        for i in range(0, len(xt), 64):
            b = perm[i : i + 64]
            opt.zero_grad()
            nn.functional.cross_entropy(model(xt[b]), yt[b]).backward()
            opt.step()
    return model.eval(), x_train[:256], x_test, y_test


@pytest.fixture(scope="module")
def trained(request):
    """(model, calib_x, x_test, y_test): the demo model if it exists, else the fallback."""
    try:
        import hadmc.models  # noqa: F401

        model, data = request.getfixturevalue("demo")
        return model.eval(), data.x_calib, data.x_test, data.y_test
    except (ImportError, pytest.FixtureLookupError):
        return _train_small()


@pytest.fixture(scope="module")
def example(trained) -> torch.Tensor:
    return torch.from_numpy(trained[2][:1].copy())


@pytest.fixture(scope="module")
def onnx_artifacts(trained, example, tmp_path_factory):
    model, calib, _, _ = trained
    out = tmp_path_factory.mktemp("onnx")
    return {
        p: export_onnx(model, out / f"{p}.onnx", example, precision=p, calib_x=calib)
        for p in ("fp32", "fp16", "int8")
    }


@pytest.fixture(scope="module")
def torch_logits(trained) -> np.ndarray:
    model, _, x_test, _ = trained
    with torch.no_grad():
        return model.eval()(torch.from_numpy(x_test)).numpy()


def _torch_accuracy(logits: np.ndarray, y: np.ndarray) -> float:
    return float((logits.argmax(1) == y).mean())


def test_onnx_fp32_and_fp16_match_torch(onnx_artifacts, trained, torch_logits):
    x_test = trained[2]
    fp32 = predict_artifact(onnx_artifacts["fp32"], x_test)
    # Same float32 math in another library: differences are summation-order rounding only.
    assert np.abs(fp32 - torch_logits).max() < 1e-3
    fp16 = predict_artifact(onnx_artifacts["fp16"], x_test)
    # fp16 keeps 11 mantissa bits (~5e-4 relative per op); over a dozen layers the error
    # stays within a few percent of the logit range, far below the gap between classes.
    scale = np.abs(torch_logits).max()
    assert np.abs(fp16 - torch_logits).max() < 0.05 * scale
    assert np.mean(fp16.argmax(1) == torch_logits.argmax(1)) >= 0.99
    r = onnx_artifacts["fp16"]
    assert r.precision == "fp16" and r.input_dtype == "float32"
    weights = [t for t in onnx.load(str(r.path)).graph.initializer if len(t.dims) == 4]
    assert weights and all(t.data_type == onnx.TensorProto.FLOAT16 for t in weights)


def test_onnx_int8_accuracy_within_one_point(onnx_artifacts, trained, torch_logits):
    _, _, x_test, y_test = trained
    acc_fp32 = evaluate_artifact(onnx_artifacts["fp32"], x_test, y_test)
    acc_int8 = evaluate_artifact(onnx_artifacts["int8"], x_test, y_test)
    assert acc_fp32 == pytest.approx(_torch_accuracy(torch_logits, y_test), abs=1e-9)
    assert acc_fp32 > 0.9  # a trained model: otherwise "within 1 point" would mean nothing
    assert acc_int8 >= acc_fp32 - 0.01


def test_onnx_int8_graph_is_integer(onnx_artifacts):
    r = onnx_artifacts["int8"]
    assert r.precision == "int8" and r.size_bytes == r.path.stat().st_size
    graph = onnx.load(str(r.path)).graph
    ops = [n.op_type for n in graph.node]
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    inits = {t.name: t for t in graph.initializer}
    producer = {o: n for n in graph.node for o in n.output}
    convs = [n for n in graph.node if n.op_type == "Conv"]
    assert convs
    for conv in convs:  # every Conv reads its weight as DQ(int8 initializer, per-channel scale)
        dq = producer[conv.input[1]]
        assert dq.op_type == "DequantizeLinear"
        assert inits[dq.input[0]].data_type == onnx.TensorProto.INT8
        out_channels = inits[dq.input[0]].dims[0]
        assert list(inits[dq.input[1]].dims) == [out_channels]
        assert producer[conv.input[0]].op_type == "DequantizeLinear"  # activation is quantized
    # What ORT actually executes after its graph optimisation: fused integer kernels.
    run_ops = optimized_op_types(r.path)
    assert "QLinearConv" in run_ops
    assert "Conv" not in run_ops


def test_onnx_float_module_stays_float(trained, example, tmp_path):
    model, calib, x_test, y_test = trained
    convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    keep = convs[len(convs) // 2]
    r = export_onnx(
        model,
        tmp_path / "mixed.onnx",
        example,
        precision="int8",
        calib_x=calib,
        float_modules=[keep],
    )
    assert r.precision == "mixed" and r.float_modules == [keep]
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.optimized_model_filepath = str(tmp_path / "opt.onnx")
    ort.InferenceSession(str(r.path), so, providers=["CPUExecutionProvider"])
    nodes = onnx.load(str(tmp_path / "opt.onnx")).graph.node
    kept = [n for n in nodes if n.name.startswith(module_scope(keep))]
    assert kept and any(n.op_type in ("Conv", "FusedConv") for n in kept)
    assert not any(n.op_type.startswith("QLinear") for n in kept)
    # ...while the rest is still integer.
    assert any(n.op_type == "QLinearConv" for n in nodes)
    assert evaluate_artifact(r, x_test, y_test) > 0.85


def test_onnx_bad_requests(trained, example, tmp_path):
    model, calib, _, _ = trained
    with pytest.raises(ExportError, match="precision"):
        export_onnx(model, tmp_path / "a.onnx", example, precision="int4")
    with pytest.raises(ExportError, match="calib_x"):
        export_onnx(model, tmp_path / "a.onnx", example, precision="int8")
    with pytest.raises(ExportError, match="not in the model"):
        export_onnx(
            model,
            tmp_path / "a.onnx",
            example,
            precision="int8",
            calib_x=calib,
            float_modules=["nope"],
        )
    with pytest.raises(ExportError, match="batch size 1"):
        export_onnx(model, tmp_path / "a.onnx", torch.cat([example, example]))
    with pytest.raises(ExportError, match="does not match"):
        export_onnx(model, tmp_path / "a.onnx", example, precision="int8", calib_x=calib[:, :, :4])


def test_tflite_fp32_matches_torch(tmp_path):
    """One conversion on a small untrained net: fp32 .tflite computes the same function."""
    torch.manual_seed(1)
    model = _SmallNet().eval()
    x = np.random.default_rng(1).random((16, 1, 8, 8), dtype=np.float32)
    res = export_tflite(model, tmp_path / "m.tflite", torch.from_numpy(x[:1].copy()))
    assert res.format == "tflite" and res.precision == "fp32" and res.input_dtype == "float32"
    assert res.input_shape == (1, 1, 8, 8) and res.size_bytes == res.path.stat().st_size
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    # float32 in both; XNNPACK reorders sums, so allow rounding-level differences.
    assert np.abs(predict_artifact(res, x) - expected).max() < 1e-4 * max(
        1.0, np.abs(expected).max()
    )
    with pytest.raises(ExportError, match="precision"):
        export_tflite(
            model, tmp_path / "x.tflite", torch.from_numpy(x[:1].copy()), precision="fp16"
        )


def test_tflite_int8_is_full_integer_and_accurate(trained, example, onnx_artifacts, tmp_path):
    """One conversion of the (demo) model to full-integer int8 .tflite."""
    model, calib, x_test, y_test = trained
    int8 = export_tflite(
        model, tmp_path / "m_int8.tflite", example, precision="int8", calib_x=calib
    )
    assert int8.precision == "int8" and int8.input_dtype == "int8"
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(int8.path))
    interp.allocate_tensors()
    by_index = {t["index"]: t for t in interp.get_tensor_details()}
    convs = [
        op
        for op in interp._get_ops_details()
        if op["op_name"] in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")
    ]
    assert convs
    for op in convs:  # activations and weights of every conv / dense op are 8-bit integers
        assert by_index[op["inputs"][0]]["dtype"] == np.int8
        assert by_index[op["inputs"][1]]["dtype"] == np.int8
    # fp32 reference: the fp32 ONNX artifact, shown above to equal torch.
    acc_fp32 = evaluate_artifact(onnx_artifacts["fp32"], x_test, y_test)
    acc_int8 = evaluate_artifact(int8, x_test, y_test)
    assert acc_int8 >= acc_fp32 - 0.01


class _IteratedBlocks(nn.Module):
    """Blocks in a ModuleList the model iterates itself (EfficientNet does): the list is never
    called, so the exporter writes no scope for it."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 8, 3, padding=1)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU()) for _ in range(3)
        )
        self.fc = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for block in self.blocks:
            x = block(x)
        return self.fc(x.mean((2, 3)))


def test_float_module_inside_an_iterated_container_stays_float(tmp_path):
    torch.manual_seed(0)
    model = _IteratedBlocks().eval()
    example = torch.randn(1, 1, 16, 16)
    calib = np.random.default_rng(0).standard_normal((16, 1, 16, 16)).astype(np.float32)
    r = export_onnx(
        model, tmp_path / "m.onnx", example, precision="int8", calib_x=calib,
        float_modules=["blocks.1.0"],
    )  # fmt: skip
    assert r.precision == "mixed"
    graph = onnx.load(str(r.path)).graph
    assert [n for n in graph.node if n.name.startswith("/blocks.1/")]  # no "/blocks/" level
    # The float block's conv reads a dequantized weight; the other blocks' convs do too in
    # QDQ form, so check by the node set: the float conv has no QuantizeLinear feeding it.
    producers = {o: n for n in graph.node for o in n.output}
    convs = {n.name: n for n in graph.node if n.op_type == "Conv"}
    fed_by_q = {
        name: any(producers.get(i) is not None and producers[i].op_type == "DequantizeLinear"
                  and producers[producers[i].input[0]].op_type == "QuantizeLinear"
                  if producers[i].input[0] in producers else False
                  for i in n.input[:1] if i in producers)
        for name, n in convs.items()
    }  # fmt: skip
    assert fed_by_q["/blocks.1/blocks.1.0/Conv"] is False
    assert fed_by_q["/blocks.0/blocks.0.0/Conv"] is True
