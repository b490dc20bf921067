"""One runtime table (protos.runtimes): every host and board mapping derives from it, and it
agrees with the wire contract, so a runtime added there is seen everywhere at once."""

from __future__ import annotations

import numpy as np

from protos import hadmc_device_pb2 as pb
from protos import runtimes as table


def test_every_row_names_real_wire_enums() -> None:
    for r in table.TABLE:
        assert pb.Runtime.Value(r.wire) > 0 and pb.ModelFormat.Value(r.format_wire) > 0
        assert set(r.precisions) <= {"fp32", "fp16", "int8"} and "fp32" in r.precisions
    # The wire's enums hold nothing the table lacks (besides UNSPECIFIED).
    assert {pb.Runtime.Name(v) for v in pb.Runtime.values()} - {"RUNTIME_UNSPECIFIED"} == {
        r.wire for r in table.TABLE
    }
    dtypes = {pb.DataType.Name(v) for v in pb.DataType.values()} - {"DATA_TYPE_UNSPECIFIED"}
    assert dtypes == {n.upper() for n in table.DTYPE_BYTES}
    assert all(np.dtype(n).itemsize == b for n, b in table.DTYPE_BYTES.items())


def test_host_mappings_derive_from_the_table() -> None:
    from hadmc.compress.passes.quantization_pass import PER_GROUP_PRECISION, RUNTIME_PRECISIONS
    from hadmc.search.candidate import ARTIFACT_EXT
    from host.device_client import DTYPES, FORMATS, RUNTIMES
    from host.fleet import SUFFIX_FORMAT

    for r in table.TABLE:
        assert RUNTIMES[r.name] == pb.Runtime.Value(r.wire)
        assert FORMATS[r.format] == pb.ModelFormat.Value(r.format_wire)
        assert ARTIFACT_EXT[r.name] == r.extension
        assert SUFFIX_FORMAT[f".{r.extension}"] == (r.format, r.name)
        assert RUNTIME_PRECISIONS[r.name] == r.precisions
        assert PER_GROUP_PRECISION[r.name] == r.per_group_precision
    assert len(RUNTIMES) == len(FORMATS) == len(ARTIFACT_EXT) == len(table.TABLE)
    assert {DTYPES[n] for n in table.DTYPE_BYTES} == set(pb.DataType.values()) - {0}


def test_board_mappings_derive_from_the_table() -> None:
    from device_agent import measure, runtimes, validation

    for r in table.TABLE:
        spec = runtimes.RUNTIMES[pb.Runtime.Value(r.wire)]
        assert (spec.name, spec.module, spec.distributions) == (r.name, r.module, r.distributions)
        assert runtimes.FORMAT_OF_RUNTIME[spec.runtime] == pb.ModelFormat.Value(r.format_wire)
    for name, nbytes in table.DTYPE_BYTES.items():
        assert validation.DTYPE_BYTES[name] == nbytes
        assert validation.DTYPE_ENUMS[name] == pb.DataType.Value(name.upper())
        assert np.dtype(measure.DTYPES[name]).itemsize == nbytes


def test_cli_offers_exactly_the_table_runtimes() -> None:
    import argparse

    from host.search_args import add_search_arguments

    p = argparse.ArgumentParser()
    add_search_arguments(p)
    action = next(a for a in p._actions if a.dest == "runtime")
    assert tuple(action.choices) == table.RUNTIME_NAMES
    try:
        table.row("tensorrt")
    except ValueError as exc:
        assert "onnxruntime" in str(exc) and "litert" in str(exc)
    else:
        raise AssertionError("an unknown runtime must be refused")


def test_every_runtime_has_an_exporter_and_a_host_runner() -> None:
    from hadmc.compress.export import EXPORTERS, PREDICTORS, ExportError, exporter_for

    assert set(EXPORTERS) == set(table.RUNTIME_NAMES)
    assert set(PREDICTORS) == {r.format for r in table.TABLE}
    try:
        exporter_for("tensorrt")
    except ExportError as exc:
        assert "no exporter for runtime 'tensorrt'" in str(exc)
    else:
        raise AssertionError("an unknown runtime must be refused")


def test_every_runtime_has_a_board_adapter_that_probes_prepares_and_runs(tmp_path) -> None:
    import onnx
    from onnx import TensorProto, helper

    from device_agent import measure
    from device_agent.adapters import ADAPTERS, adapter

    assert set(ADAPTERS) == set(table.RUNTIME_NAMES)
    status = adapter("onnxruntime").probe()
    assert status.available and status.spec.name == "onnxruntime" and status.version
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / "relu.onnx"
    onnx.save(model, path)
    ort = adapter("onnxruntime")
    ort.load()
    handle, specs, meta = ort.prepare(str(path), 1, [], "", {})
    assert [(s.name, s.shape, s.dtype) for s in specs] == [("x", [1, 4], "float32")]
    assert meta["execution_provider"] == "CPUExecutionProvider"
    (y,) = ort.run(handle, specs)()
    x = measure.random_input(specs[0], np.random.default_rng(0))  # the same seeded input
    assert np.array_equal(y, np.maximum(x, 0))
    assert ort.placement(str(path), "", {}, specs) == {}  # only asked for accelerators
    try:
        adapter("tensorrt")
    except ValueError as exc:
        assert "no runtime adapter for 'tensorrt'" in str(exc)
    else:
        raise AssertionError("an unknown runtime must be refused")
