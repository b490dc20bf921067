"""Fleet profiling: one artifact measured on many devices at once, and device inventories.

``profile_fleet`` opens every device and measures the same .onnx/.tflite file concurrently
(one thread per device: the work is network-bound, the measuring happens on the boards). A
device that fails yields a row with its error; the others still complete. ``describe_devices``
does the same with GetInfo + health. Rendering (rich tables, JSON) lives here too so the CLI
stays an argument parser.
"""

from __future__ import annotations

import hashlib
import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hadmc.device.hal import ArtifactSpec, DeviceError, MeasureOptions
from host.devices import open_device
from host.errors import UsageError, error_code, error_message
from protos import runtimes as runtime_table

SUFFIX_FORMAT = {f".{r.extension}": (r.format, r.name) for r in runtime_table.TABLE}
RUNTIME_FORMAT = {"onnxruntime": "onnx", "litert": "tflite"}  # what each runtime loads
SIM_NEEDS_MACS = (
    "a sim: device estimates from the model's multiply-accumulates, which hadmc-host profile "
    "counts only for .onnx files"
)
# Weighted ONNX ops, and those that are integer kernels by themselves (QOperator graphs).
ONNX_WEIGHTED_OPS = {"Conv", "ConvTranspose", "Gemm", "MatMul"}
ONNX_INT8_OPS = {"QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger"}
TFLITE_WEIGHTED_OPS = {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV"}


def precision_label(n_int8: int, n_float: int, fp16: bool = False) -> str:
    """The search's words for a model's precision, from its weighted layers: "int8" when all
    are integer, "mixed" when some stayed float (as ``hadmc.compress`` labels what it built)."""
    if n_int8:
        return "mixed" if n_float else "int8"
    return "fp16" if fp16 else "fp32"


@dataclass
class FleetRow:
    """One device's outcome: a measurement (as a dict) or an error."""

    device: str  # the --device value as given ("local" for a loopback agent)
    label: str  # the device's own name, e.g. "local (127.0.0.1:40123)"
    ok: bool
    elapsed_s: float
    measurement: dict[str, Any] | None = None
    info: dict[str, Any] | None = None
    healthy: bool | None = None
    error: str | None = None
    error_code: str | None = None


def artifact_spec_for(
    path: str | Path, input_shape: tuple[int, ...] | None = None, runtime: str | None = None
) -> ArtifactSpec:
    """An ArtifactSpec for a model file: format from the suffix, input (and MACs) from ONNX.

    For .tflite, input and precision come from the LiteRT interpreter when it is installed
    (else the agent feeds the model's own input); MACs are not counted, so ``sim:`` devices
    get a row saying they need them.
    """
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"model file not found: {path}", "not_found")
    if path.suffix.lower() not in SUFFIX_FORMAT:
        raise UsageError(f"unsupported model file {path.name!r}: expected .onnx or .tflite")
    fmt, default_runtime = SUFFIX_FORMAT[path.suffix.lower()]
    if runtime is not None and RUNTIME_FORMAT.get(runtime, fmt) != fmt:
        # Refused here, before any upload: the agent would only say so after receiving it.
        raise UsageError(
            f"--runtime {runtime} does not run {fmt.upper()} models: {path.name} needs "
            f"--runtime {default_runtime} (or convert it to .{RUNTIME_FORMAT[runtime]})"
        )
    spec = ArtifactSpec(
        path=path, format=fmt, runtime=runtime or default_runtime, input_name="", input_shape=()
    )
    if fmt == "onnx":
        _fill_from_onnx(spec)
    else:
        _fill_from_tflite(spec)
    if input_shape is not None:
        spec.input_shape = tuple(input_shape)
    return spec


def _fill_from_onnx(spec: ArtifactSpec) -> None:
    """Input name/shape/dtype, precision, MACs and params read from the ONNX graph."""
    import onnx
    from onnx import helper, shape_inference

    try:
        model = onnx.load(str(spec.path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - any parse failure is "not a valid ONNX file"
        raise UsageError(
            f"{spec.path.name}: not a readable ONNX model ({error_message(exc)})", "invalid_model"
        ) from None
    graph = model.graph
    init_names = {t.name for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in init_names]
    if inputs:
        first = inputs[0]
        tensor_type = first.type.tensor_type
        spec.input_name = first.name
        # Dynamic dimensions (batch) are measured at 1, as the agent does without a shape.
        spec.input_shape = tuple(
            d.dim_value if d.dim_value > 0 else 1 for d in tensor_type.shape.dim
        )
        spec.input_dtype = str(helper.tensor_dtype_to_np_dtype(tensor_type.elem_type))
    # QDQ graphs: a weighted op is integer when its weight comes through a DequantizeLinear;
    # a layer kept float reads its weight straight from an initializer.
    dequantized = {o for n in graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    n_int8 = n_float = 0
    for node in graph.node:
        if node.op_type in ONNX_INT8_OPS:
            n_int8 += 1
        elif node.op_type in ONNX_WEIGHTED_OPS and len(node.input) > 1:
            if node.input[1] in dequantized:
                n_int8 += 1
            else:
                n_float += 1
    fp16 = any(t.data_type == onnx.TensorProto.FLOAT16 for t in graph.initializer)
    spec.precision = precision_label(n_int8, n_float, fp16)
    spec.params = sum(math.prod(t.dims) for t in graph.initializer)
    try:
        inferred = shape_inference.infer_shapes(model).graph
    except Exception:  # noqa: BLE001 - MACs are optional; sim will report them missing
        return
    spec.macs = _count_macs(inferred) or None


def _fill_from_tflite(spec: ArtifactSpec) -> None:
    """Input and precision from the LiteRT interpreter, where it is installed on the host."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        return  # the agent then feeds the model's own input; precision stays unknown (fp32)
    from hadmc.native_output import quiet_native

    try:
        with quiet_native():
            interpreter = Interpreter(model_path=str(spec.path))
    except Exception as exc:  # noqa: BLE001 - any load failure is "not a valid .tflite file"
        raise UsageError(
            f"{spec.path.name}: not a loadable TFLite model ({error_message(exc)})",
            "invalid_model",
        ) from None
    first = interpreter.get_input_details()[0]
    spec.input_name = str(first["name"])
    spec.input_shape = tuple(int(d) if d > 0 else 1 for d in first["shape"])
    spec.input_dtype = first["dtype"].__name__
    dtypes = {d["index"]: d["dtype"].__name__ for d in interpreter.get_tensor_details()}
    n_int8 = n_float = 0
    ops = getattr(interpreter, "_get_ops_details", list)()  # the only per-op view LiteRT has
    if not ops and {"int8", "uint8"} & set(dtypes.values()):
        n_int8 = 1  # no per-op view: integer tensors at least mean integer kernels
    for op in ops:
        inputs = list(op["inputs"])
        if op["op_name"] in TFLITE_WEIGHTED_OPS and len(inputs) > 1:
            if dtypes.get(inputs[1]) in ("int8", "uint8"):
                n_int8 += 1
            else:
                n_float += 1
    spec.precision = precision_label(n_int8, n_float, "float16" in dtypes.values())


def _count_macs(graph: Any) -> int:
    """Multiply-accumulates of Conv/ConvInteger/QLinearConv, Gemm and MatMul nodes.

    Hand-written because the host has no ONNX FLOP counter among its dependencies; the count
    is exact for these ops given static shapes and ignores cheap elementwise ops.
    """
    shapes: dict[str, list[int]] = {}
    for vi in [*graph.input, *graph.value_info, *graph.output]:
        dims = vi.type.tensor_type.shape.dim
        shapes[vi.name] = [d.dim_value if d.dim_value > 0 else 1 for d in dims]
    for t in graph.initializer:
        shapes[t.name] = list(t.dims)
    macs = 0
    for node in graph.node:
        out = shapes.get(node.output[0]) if node.output else None
        if not out:
            continue
        if node.op_type in ("Conv", "ConvInteger", "QLinearConv"):
            w_index = 3 if node.op_type == "QLinearConv" else 1
            w = shapes.get(node.input[w_index]) if len(node.input) > w_index else None
            if w and len(w) >= 3:
                macs += math.prod(out) * math.prod(w[1:])  # w = [Cout, Cin/groups, kH, kW]
        elif node.op_type in ("Gemm", "MatMul", "MatMulInteger", "QLinearMatMul"):
            a = shapes.get(node.input[0])
            if a:
                k = a[-2] if node.op_type == "Gemm" and _attr(node, "transA") else a[-1]
                macs += math.prod(out) * k
    return macs


def _attr(node: Any, name: str) -> int:
    for a in node.attribute:
        if a.name == name:
            return int(a.i)
    return 0


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _run_on_all(addresses: list[str | None], fn: Any) -> list[FleetRow]:
    """Run ``fn(address) -> FleetRow`` for every address concurrently, in input order."""
    if any(a is None for a in addresses):
        # Local agents are started from worker threads, where signal handlers cannot be set.
        from host.local_agent import install_signal_handlers

        install_signal_handlers()
    with ThreadPoolExecutor(max_workers=max(1, len(addresses))) as pool:
        return list(pool.map(fn, addresses))


def _failed(
    address: str | None, start: float, exc: Exception, label: str | None = None
) -> FleetRow:
    name = address or "local"
    return FleetRow(
        device=name,
        label=label or name,
        ok=False,
        elapsed_s=time.monotonic() - start,
        error=error_message(exc),
        error_code=error_code(exc),  # host.errors' vocabulary, never a Python class name
    )


@dataclass
class FleetConfig:
    """How to reach the devices (shared by every address)."""

    token: str | None = None
    tls_ca: str | None = None
    timeout_s: float = 10.0
    retries: int = 2
    extra: dict[str, Any] = field(default_factory=dict)


def profile_fleet(
    artifact: ArtifactSpec,
    addresses: list[str | None],
    options: MeasureOptions,
    config: FleetConfig | None = None,
) -> list[FleetRow]:
    """Measure ``artifact`` on every device concurrently; one row per address, in order."""
    config = config or FleetConfig()

    def one(address: str | None) -> FleetRow:
        start = time.monotonic()
        label = None
        if address is not None and address.startswith("sim:") and artifact.macs is None:
            return _failed(address, start, DeviceError("invalid_model", SIM_NEEDS_MACS))
        try:
            device = open_device(
                address,
                config.token,
                tls_ca=config.tls_ca,
                timeout_s=config.timeout_s,
                retries=config.retries,
                **config.extra,
            )
        except Exception as exc:  # noqa: BLE001 - every failure becomes this device's row
            return _failed(address, start, exc)
        try:
            label = device.name
            m = device.measure(artifact, options)
            return FleetRow(
                device=address or "local",
                label=label,
                ok=True,
                elapsed_s=time.monotonic() - start,
                measurement=m.to_dict(),
            )
        except Exception as exc:  # noqa: BLE001
            return _failed(address, start, exc, label)
        finally:
            device.close()

    return _run_on_all(addresses, one)


def describe_devices(
    addresses: list[str | None], config: FleetConfig | None = None
) -> list[FleetRow]:
    """GetInfo + health of every device concurrently."""
    config = config or FleetConfig()

    def one(address: str | None) -> FleetRow:
        start = time.monotonic()
        try:
            device = open_device(
                address,
                config.token,
                tls_ca=config.tls_ca,
                timeout_s=config.timeout_s,
                retries=config.retries,
                check=False,
                **config.extra,
            )
        except Exception as exc:  # noqa: BLE001
            return _failed(address, start, exc)
        try:
            healthy = device.health()
            info = device.info()
            return FleetRow(
                device=address or "local",
                label=device.name,
                ok=healthy,
                elapsed_s=time.monotonic() - start,
                info=info,
                healthy=healthy,
                error=None if healthy else "health check did not report SERVING",
                error_code=None if healthy else "unhealthy",
            )
        except Exception as exc:  # noqa: BLE001
            row = _failed(address, start, exc, device.name)
            row.healthy = False
            return row
        finally:
            device.close()

    return _run_on_all(addresses, one)


# An analytic estimate gives one latency figure and the memory and energy it implies; these
# fields describe a real timed run and are null (a "-" in the table) for a simulated row.
NOT_SIMULATED = (
    "latency_ms_mean", "latency_ms_min", "latency_ms_p90", "latency_ms_p99", "latency_ms_std",
    "latency_cv", "n_runs", "load_ms", "first_inference_ms", "upload_bytes",
)  # fmt: skip


def is_simulated(row: FleetRow) -> bool:
    if row.measurement is not None:
        return row.measurement.get("source") == "simulated"
    return row.device.startswith("sim:")


def row_json(row: FleetRow) -> dict[str, Any]:
    """A row as JSON: ``simulated`` says whether anything was measured, and a simulated
    measurement holds only what the estimate gives."""
    out = {**asdict(row), "simulated": is_simulated(row)}
    m = out["measurement"]
    if m is not None and m.get("source") == "simulated":
        out["measurement"] = {k: (None if k in NOT_SIMULATED else v) for k, v in m.items()}
    return out


def fleet_json(artifact: ArtifactSpec, options: MeasureOptions, rows: list[FleetRow]) -> dict:
    """Machine-readable result of ``profile_fleet``."""
    return {
        "model": {
            "path": str(artifact.path),
            "format": artifact.format,
            "runtime": artifact.runtime,
            "precision": artifact.precision,
            "size_bytes": Path(artifact.path).stat().st_size,
            "sha256": file_sha256(Path(artifact.path)),
            "input_name": artifact.input_name,
            "input_shape": list(artifact.input_shape),
            "macs": artifact.macs,
            "params": artifact.params,
        },
        "options": asdict(options),
        "ok": all(r.ok for r in rows),
        "simulated": any(is_simulated(r) for r in rows),
        "results": [row_json(r) for r in rows],
    }
