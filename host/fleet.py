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

from hadmc.hal import ArtifactSpec, DeviceError, MeasureOptions
from host.devices import open_device

SUFFIX_FORMAT = {".onnx": ("onnx", "onnxruntime"), ".tflite": ("tflite", "litert")}
SIM_NEEDS_MACS = (
    "a sim: device estimates from the model's multiply-accumulates, which hadmc-host profile "
    "counts only for .onnx files"
)
# ONNX ops whose presence means integer kernels (QDQ or QOperator int8 graphs).
INT8_OPS = {"QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul", "ConvInteger"}


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
        raise FileNotFoundError(f"model file not found: {path}")
    if path.suffix.lower() not in SUFFIX_FORMAT:
        raise ValueError(f"unsupported model file {path.name!r}: expected .onnx or .tflite")
    fmt, default_runtime = SUFFIX_FORMAT[path.suffix.lower()]
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
        raise DeviceError(
            "invalid_model", f"{spec.path.name}: not a readable ONNX model ({exc})"
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
    ops = {n.op_type for n in graph.node}
    if ops & INT8_OPS:
        spec.precision = "int8"
    elif any(t.data_type == onnx.TensorProto.FLOAT16 for t in graph.initializer):
        spec.precision = "fp16"
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
    try:
        interpreter = Interpreter(model_path=str(spec.path))
    except Exception as exc:  # noqa: BLE001 - any load failure is "not a valid .tflite file"
        raise DeviceError(
            "invalid_model", f"{spec.path.name}: not a loadable TFLite model ({exc})"
        ) from None
    first = interpreter.get_input_details()[0]
    spec.input_name = str(first["name"])
    spec.input_shape = tuple(int(d) if d > 0 else 1 for d in first["shape"])
    spec.input_dtype = first["dtype"].__name__
    kinds = {d["dtype"].__name__ for d in interpreter.get_tensor_details()}
    if kinds & {"int8", "uint8"}:
        spec.precision = "mixed" if "float32" in kinds else "int8"
    elif "float16" in kinds:
        spec.precision = "fp16"


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
    code = exc.code if isinstance(exc, DeviceError) else type(exc).__name__
    message = exc.message if isinstance(exc, DeviceError) else str(exc)
    name = address or "local"
    return FleetRow(
        device=name,
        label=label or name,
        ok=False,
        elapsed_s=time.monotonic() - start,
        error=" ".join(message.split()),
        error_code=code,
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
        "results": [asdict(r) for r in rows],
    }


# -- rendering --------------------------------------------------------------------------------
def console_for_stdout() -> Any:
    import sys

    from rich.console import Console

    # Not a terminal (pipes, CI logs): a wide fixed width rather than rich's 80 columns,
    # which would wrap every number.
    return Console(width=None if sys.stdout.isatty() else 200)


def _fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _energy_text(m: dict[str, Any]) -> str:
    if m["energy_mj"] is None:
        return f"- ({m['energy_status']})"
    return f"{m['energy_mj']:.3f} ({m['energy_status']})"


def print_profile_table(artifact: ArtifactSpec, rows: list[FleetRow]) -> None:
    """A rich table: one row per device, errors in the status column."""
    from rich.table import Table

    title = (
        f"{Path(artifact.path).name}  ({artifact.format}, {artifact.precision}, "
        f"input {artifact.input_name or '?'} {list(artifact.input_shape) or 'model default'})"
    )
    table = Table(title=title)
    for col in ("device", "runtime", "p50 ms", "p90 ms", "p99 ms", "CV", "runs", "load ms"):
        table.add_column(col, justify="left" if col in ("device", "runtime") else "right")
    for col in ("peak MB", "energy mJ/inf", "upload B", "status"):
        table.add_column(col, justify="right" if col != "status" else "left")
    for r in rows:
        m = r.measurement
        if m is None:
            table.add_row(r.label, artifact.runtime, *["-"] * 9, f"[red]{r.error_code}: {r.error}")
            continue
        table.add_row(
            r.label,
            f"{artifact.runtime} {m['provenance'].get('runtime_version', '')}".strip(),
            _fmt(m["latency_ms_p50"]),
            _fmt(m["latency_ms_p90"]),
            _fmt(m["latency_ms_p99"]),
            _fmt(m["latency_cv"]),
            str(m["n_runs"]),
            _fmt(m["load_ms"], 1),
            _fmt(m["peak_memory_mb"], 1),
            _energy_text(m),
            str(m["upload_bytes"]),
            "[green]ok" if m["source"] == "device" else f"[yellow]{m['source']}",
        )
    console_for_stdout().print(table)
