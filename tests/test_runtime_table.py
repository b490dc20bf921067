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
    from device_agent import measure, runtimes, targets, validation

    for r in table.TABLE:
        spec = runtimes.RUNTIMES[r.name]
        assert (spec.name, spec.module, spec.distributions) == (r.name, r.module, r.distributions)
        assert spec.runtime == pb.Runtime.Value(r.wire)
        assert spec.formats == (pb.ModelFormat.Value(r.format_wire),)
        assert spec.format == r.format
        # Every runtime has its default target, with the table's accelerator.
        default = targets.resolve("", r.name)
        assert default.name == f"{r.name}:{r.default_accelerator}" and default.runtime == r.name
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


def _request(**kw: object) -> pb.ProfileRequest:
    manifest = pb.ModelManifest(name="m", sha256="0" * 64, size_bytes=10)
    return pb.ProfileRequest(model=manifest, **kw)


def _limits():
    from device_agent.validation import Limits

    return Limits(2**20, 2**21, 2**20, 60.0, 10.0)


def test_the_runtime_travels_by_name_and_old_clients_by_enum() -> None:
    from device_agent import validation
    from device_agent.errors import AgentError

    by_name = validation.check_request(_request(runtime_name="onnxruntime"), _limits())
    old_client = validation.check_request(_request(runtime=pb.ONNXRUNTIME, format=pb.ONNX), _limits())
    both = validation.check_request(
        _request(runtime_name="onnxruntime", runtime=pb.ONNXRUNTIME, format=pb.ONNX), _limits()
    )
    for status, fmt, target in (by_name, old_client, both):
        assert (status.spec.name, fmt, target.name) == ("onnxruntime", "onnx", "onnxruntime:cpu")
    refused = {
        "tensorrt": _request(runtime_name="tensorrt"),
        "disagree": _request(runtime_name="onnxruntime", runtime=pb.LITERT),
        "format": _request(runtime_name="onnxruntime", format=pb.TFLITE),
        "nothing": _request(),
    }
    for what, req in refused.items():
        try:
            validation.check_request(req, _limits())
        except AgentError as exc:
            assert exc.code == pb.INVALID_REQUEST, what
            if what != "format":
                assert "this agent runs litert, onnxruntime" in exc.message, what
        else:
            raise AssertionError(f"{what}: must be refused")


def test_a_runtime_newer_than_the_proto_enums_needs_no_proto_change(monkeypatch) -> None:
    """A row with no wire enum (what a new runtime is) is requested by name alone, is listed
    in GetInfo by name, and gets its default target: no proto change, no targets edit."""
    import dataclasses
    import importlib

    from device_agent import runtimes, targets, validation

    onnx_row = table.row("onnxruntime")
    # The same module as onnxruntime, so it probes as installed here; a new name and no enums.
    new = dataclasses.replace(onnx_row, name="newrt", wire="", format_wire="")
    monkeypatch.setattr(table, "TABLE", (*table.TABLE, new))
    monkeypatch.setattr(table, "DEFAULT_ACCELERATOR", {**table.DEFAULT_ACCELERATOR, "newrt": "cpu"})
    try:
        importlib.reload(runtimes)
        importlib.reload(targets)
        importlib.reload(validation)
        status, fmt, target = validation.check_request(_request(runtime_name="newrt"), _limits())
        assert (status.spec.name, status.spec.runtime, status.spec.formats) == ("newrt", 0, ())
        assert status.available and fmt == "onnx" and target.name == "newrt:cpu"
        info = pb.DeviceInfo()
        info.runtimes.add(runtime=status.spec.runtime, name=status.spec.name, available=True)
        from host.wire import device_info_to_dict

        listed = device_info_to_dict(pb.DeviceInfo.FromString(info.SerializeToString()), "x")
        assert listed["runtimes"][0]["runtime"] == "newrt"  # by name, the enum is 0
    finally:
        monkeypatch.undo()
        for mod in (runtimes, targets, validation):
            importlib.reload(mod)
    assert "newrt" not in runtimes.RUNTIMES


def test_an_old_agent_listing_enums_only_is_read_by_enum_name() -> None:
    from host.wire import device_info_to_dict

    info = pb.DeviceInfo()
    info.runtimes.add(runtime=pb.LITERT, available=True, formats=[pb.TFLITE])  # no name
    listed = device_info_to_dict(info, "x")["runtimes"][0]
    assert (listed["runtime"], listed["formats"]) == ("litert", ["tflite"])
